"""Celery entry points of the customers app: thin, idempotent, the work is in the services."""

import logging

from celery import shared_task

from customers import domain_events

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def consume_domain_events() -> int:
    """Handle pending domain events of every shard no other worker holds. Sent after each write's commit."""
    handled = domain_events.consume_all()
    if handled:
        logger.info("domain_events.consumed", extra={"count": handled})
    return handled


@shared_task(ignore_result=True, expires=4)
def sweep_domain_events() -> int:
    """Beat's safety net: consume whatever a lost or never-sent task left pending."""
    return domain_events.consume_all()
