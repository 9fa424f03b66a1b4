"""Celery entry points of the customers app: thin, idempotent, the work is in the services."""

import logging

from celery import shared_task

from customers import domain_events

logger = logging.getLogger(__name__)


# A consuming task's share of a worker slot before it yields: the rest goes on in a fresh task at the queue's back,
# behind what the consumers queued (journeys advancing, dispatch), so the whole flow keeps moving under ingest.
CONSUME_SECONDS = 2.0


def _consume_a_while() -> tuple[int, bool]:
    """Consume for CONSUME_SECONDS; with work left, send a consuming task to the queue's back."""
    handled, more = domain_events.consume_for(CONSUME_SECONDS)
    if more:
        domain_events.enqueue_consumers()
    return handled, more


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def consume_domain_events() -> int:
    """Handle pending domain events of every shard no other worker holds. Sent after each write's commit."""
    handled, more = _consume_a_while()
    if handled:
        logger.info("domain_events.consumed", extra={"count": handled, "more": more})
    return handled


@shared_task(ignore_result=True, expires=4)
def sweep_domain_events() -> int:
    """Beat's safety net: consume whatever a lost or never-sent task left pending."""
    return _consume_a_while()[0]
