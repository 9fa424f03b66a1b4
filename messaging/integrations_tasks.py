"""Celery entry points of event subscriptions: thin, safe to run twice (the claim's lease decides who sends)."""

import logging

from celery import shared_task

from messaging import integrations

logger = logging.getLogger(__name__)


@shared_task(
    name="messaging.integrations.send_deliveries",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    expires=60,
)
def send_deliveries() -> int:
    """Send due deliveries for up to 20 seconds. Kicked after new deliveries commit and by beat every 5 s (which
    also picks up retries whose backoff ended and rows of a dead worker whose lease ended)."""
    report = integrations.send_pending(seconds=20.0)
    if report.claimed:
        logger.info("subscriptions.task_done", extra=vars(report))
    return report.claimed
