"""Reps' tasks: completing one records a `task_completed` behaviour event for the customer (with its
`event.recorded` domain event, in the same transaction), so a journey goal or a wait-for-event step reacts;
cancelling one records nothing."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from customers import domain_events
from customers.visibility import WORKSPACE
from journeys.models import Task, TaskStatus

logger = logging.getLogger(__name__)

TASK_COMPLETED = "task_completed"
TASK_DONE = "task.done"
EVENT_SOURCE = "journeys"


def complete_task(task: Task, *, by: Any, outcome: str = "") -> Task:
    """Mark the task done by `by` with an optional outcome and record the customer's `task_completed` event.
    Idempotent: a task no longer open is returned unchanged (the task's row is locked while deciding)."""
    from customers.services.ingest import bulk_record_events

    with transaction.atomic(durable=True):
        locked = Task.objects.select_for_update().get(pk=task.pk)
        if locked.status != TaskStatus.OPEN:
            return locked
        now = timezone.now()
        locked.status = TaskStatus.DONE
        locked.completed_at = now
        locked.completed_by = by if getattr(by, "pk", None) else None
        locked.outcome = outcome.strip()[:200]
        locked.save(update_fields=["status", "completed_at", "completed_by", "outcome"])
        row = {
            "customer": {"id": locked.customer_id},
            "type": TASK_COMPLETED,
            "occurred_at": now.isoformat(),
            "properties": {"task_id": locked.pk, "journey_id": locked.journey_id, "title": locked.title},
            "source": EVENT_SOURCE,
            "external_id": f"task:{locked.pk}",  # the event's dedupe key: recorded once per task
        }
        result = bulk_record_events([row], user=WORKSPACE)
        if result.errors:  # the customer is gone (merged away and deleted): the task is done all the same
            logger.warning("journeys.task_event_not_recorded", extra={"task": locked.pk})
        domain_events.record(TASK_DONE, [locked.customer_id], [_payload(locked)])
    logger.info("journeys.task_completed", extra={"task": locked.pk, "journey": locked.journey_id})
    return locked


def _payload(task: Task) -> dict[str, Any]:
    return {"task_id": task.pk, "title": task.title, "journey_id": task.journey_id, "assignee_id": task.assignee_id,
            "due_at": task.due_at.isoformat(), "outcome": task.outcome}  # fmt: skip


_TASK_PAYLOAD = (
    "jsonb_build_object('task_id', id, 'title', title, 'journey_id', journey_id, 'assignee_id', assignee_id, "
    "'due_at', due_at)"
)
_ANNOUNCE_DUE = f"""
WITH due AS (
    UPDATE journeys_task SET due_announced_at = %(now)s
    WHERE status = 'open' AND due_at <= %(now)s AND due_announced_at IS NULL
    RETURNING id, customer_id, title, journey_id, assignee_id, due_at
),
{domain_events.outbox_sql("due", "'task.due'", _TASK_PAYLOAD)}
SELECT count(*) FROM due
"""  # noqa: S608  (the outbox's SQL from constants)


def announce_due_tasks(*, now: datetime.datetime | None = None) -> int:
    """Record a `task.due` domain event (integrations subscribe to it) once for every open task whose due time has
    come; one statement."""
    with connection.cursor() as cursor:
        cursor.execute(_ANNOUNCE_DUE, {"now": now or timezone.now()})
        announced = cursor.fetchone()[0]
    if announced:
        domain_events.kick_after_commit()
    return announced


def cancel_task(task: Task, *, by: Any) -> Task:
    """Cancel an open task (nothing is recorded for the customer). Idempotent: a task no longer open is returned
    unchanged."""
    with transaction.atomic(durable=True):
        locked = Task.objects.select_for_update().get(pk=task.pk)
        if locked.status != TaskStatus.OPEN:
            return locked
        locked.status = TaskStatus.CANCELLED
        locked.completed_at = timezone.now()
        locked.completed_by = by if getattr(by, "pk", None) else None
        locked.save(update_fields=["status", "completed_at", "completed_by"])
    logger.info("journeys.task_cancelled", extra={"task": locked.pk})
    return locked
