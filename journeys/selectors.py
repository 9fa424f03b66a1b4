"""Reads for callers: enrollments, tasks and one customer's journeys, each limited to what the acting user may see
(customers.visibility: a sales rep sees their own customers; a task is also visible to the rep it is assigned to).
A row the user may not see is "not found"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from customers.models import Customer
from customers.visibility import customer_visibility_q, sees_all_customers
from journeys import definition as definitions
from journeys.models import Enrollment, Journey, Refusal, Task, TaskStatus
from journeys.steps import REGISTRY

PANEL_ENROLLMENTS = 30
PANEL_REFUSALS = 20
PANEL_TASKS = 20

# Step types whose describe() reads nothing from the database: the customer panel describes these in full and
# names the others by their type, so the panel costs the same few queries whatever her journeys wait at.
SELF_DESCRIBING_STEPS = frozenset({"wait", "wait_event", "send", "split", "task", "update_attribute", "exit"})


def enrollments_for(user: Any, journey: Journey | None = None) -> QuerySet[Enrollment]:
    """Enrollments of the customers `user` may see (of one journey if given), newest first."""
    rows = Enrollment.objects.filter(customer_visibility_q(user, path="customer__"))
    if journey is not None:
        rows = rows.filter(journey=journey)
    return rows.order_by("-entered_at", "-id")


def task_visibility_q(user: Any) -> Q:
    """Tasks `user` may see: everyone's for those who see every customer; a rep's own customers' tasks and the
    tasks assigned to them (an assignee keeps a task after the customer moved to another rep)."""
    if not (user and user.is_authenticated):
        return Q(pk__in=[])
    if sees_all_customers(user):
        return Q()
    return customer_visibility_q(user, path="customer__") | Q(assignee__user_id=user.pk)


def tasks_for(user: Any, status: str | None = None) -> QuerySet[Task]:
    """Tasks `user` may see (with a status if given), due first, with customer, assignee and journey joined."""
    rows = Task.objects.filter(task_visibility_q(user)).select_related("customer", "assignee", "journey")
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("due_at", "id")


def get_task(user: Any, pk: int) -> Task:
    """One task `user` may see, or Http404."""
    try:
        return tasks_for(user).get(pk=pk)
    except (Task.DoesNotExist, ValueError, TypeError):
        raise Http404("Task not found") from None


def step_text(definition: Mapping[str, Any], step_id: str, *, queries: bool = True) -> str:
    """What a step of a version does, in words ("" for a step no longer in it). With `queries` False, step types
    whose description reads the database are named by their type instead."""
    params = definitions.by_id(definition).get(step_id)
    if params is None:
        return ""
    kind = REGISTRY.get(params.get("type"))
    if kind is None:
        return str(params.get("type"))
    if not queries and kind.type not in SELF_DESCRIBING_STEPS:
        return str(kind.label)
    try:
        return kind.describe(params)
    except (KeyError, TypeError, ValueError):  # a definition from before a step type changed its settings
        return str(kind.label)


@dataclass(frozen=True)
class CustomerJourneys:
    """A customer's journeys: her enrollments, past and present (newest first, each with `version_number`,
    `step_description`, `is_converted`), and the triggers that did not enroll her, with why."""

    enrollments: list[Enrollment]
    refusals: list[Refusal]


def customer_journeys(user: Any, customer: Customer) -> CustomerJourneys:
    """Her latest enrollments and refusals (two queries), or nothing if `user` may not see her."""
    visible = customer_visibility_q(user, path="customer__")
    enrollments = list(
        Enrollment.objects.filter(visible, customer=customer)
        .select_related("journey", "version")
        .order_by("-entered_at", "-id")[:PANEL_ENROLLMENTS]
    )
    for enrollment in enrollments:
        enrollment.version_number = enrollment.version.number
        enrollment.step_description = (
            step_text(enrollment.version.definition, enrollment.step, queries=False) if enrollment.step else ""
        )
        enrollment.is_converted = enrollment.converted_at is not None
    refusals = list(
        Refusal.objects.filter(visible, customer=customer)
        .select_related("journey")
        .order_by("-at", "-id")[:PANEL_REFUSALS]
    )
    return CustomerJourneys(enrollments, refusals)


def customer_open_tasks(user: Any, customer: Customer) -> list[Task]:
    """Her open tasks `user` may see, due first (one query)."""
    return list(tasks_for(user, TaskStatus.OPEN).filter(customer=customer)[:PANEL_TASKS])
