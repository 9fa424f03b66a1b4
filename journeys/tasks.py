"""Celery entry points of the journey runtime: thin, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from journeys.services import runtime, scheduled

logger = logging.getLogger(__name__)


@shared_task(name="journeys.advance", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def advance() -> int:
    """Advance due enrollments until none is due, for a few seconds at a time: with work left it sends itself again,
    to the back of the queue, so dispatch and the domain-event consumers get their turn."""
    result = runtime.advance_until_idle()
    if result.claimed:
        logger.info("journeys.advanced", extra={"claimed": result.claimed, "step_runs": result.step_runs})
    if result.more:
        runtime.kick_now()
    return result.step_runs


@shared_task(name="journeys.enroll_date_triggered", acks_late=True, ignore_result=True)
def enroll_date_triggered() -> int:
    return sum(scheduled.enroll_date_triggered().values())


@shared_task(name="journeys.announce_due_tasks", acks_late=True, ignore_result=True)
def announce_due_tasks() -> int:
    from journeys.services.tasks import announce_due_tasks as announce

    return announce()


@shared_task(name="journeys.run_group_plans", acks_late=True, ignore_result=True)
def run_group_plans() -> int:
    return scheduled.run_group_plans()
