"""Messaging's Celery entry points: thin, safe to run twice, each one service call."""

import logging

from celery import shared_task
from django.conf import settings

from messaging.integrations_tasks import send_deliveries  # noqa: F401  (registers the task)
from messaging.services.dispatch import dispatch_until_idle
from messaging.wecom import callback_tasks  # noqa: F401  (registers the WeCom callback tasks)
from messaging.wecom import tasks as wecom_tasks  # noqa: F401  (registers the mass-send poller)

logger = logging.getLogger(__name__)


@shared_task(name="messaging.dispatch", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def dispatch() -> dict:
    """Dispatch due touchpoints until none is due or the time budget is spent. Any number run side by side."""
    report = dispatch_until_idle(seconds=settings.MESSAGING_DISPATCH_SECONDS)
    if report.claimed:
        logger.info("messaging.dispatched", extra={"claimed": report.claimed, **report.outcomes})
    return {"claimed": report.claimed, **report.outcomes}


@shared_task(name="messaging.dispatch_tick", ignore_result=True)
def dispatch_tick() -> None:
    """Beat's tick: start MESSAGING_DISPATCH_TASKS dispatchers (they share the queue through SKIP LOCKED)."""
    from scrm.celery import send_quietly

    for _ in range(settings.MESSAGING_DISPATCH_TASKS):
        send_quietly(dispatch)
