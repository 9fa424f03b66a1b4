"""Reps' tasks: their open tasks due first (overdue ones marked) with the script to follow, completed with an
optional outcome or cancelled through HTMX; operators see everyone's and filter by assignee."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from customers.models import Staff
from journeys import selectors
from journeys.models import Task, TaskStatus
from journeys.services.tasks import cancel_task, complete_task

LIST_SIZE = 200
UNASSIGNED = "none"
STATUSES = (TaskStatus.OPEN, TaskStatus.DONE, TaskStatus.CANCELLED)


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _filters(request: HttpRequest) -> tuple[str, str]:
    status = request.GET.get("status", TaskStatus.OPEN)
    status = status if status in STATUSES else TaskStatus.OPEN
    assignee = request.GET.get("assignee", "") if request.user.can_manage else ""
    assignee = assignee if assignee == UNASSIGNED or assignee.isdigit() else ""
    return status, assignee


@login_required
def task_list(request):
    """The tasks the user may see, due first (done and cancelled ones: latest first); the table alone for HTMX."""
    status, assignee = _filters(request)
    tasks = selectors.tasks_for(request.user, status)
    if assignee == UNASSIGNED:
        tasks = tasks.filter(assignee__isnull=True)
    elif assignee:
        tasks = tasks.filter(assignee_id=int(assignee))
    now = timezone.now()
    counts = tasks.aggregate(total=Count("id"), overdue=Count("id", filter=Q(due_at__lt=now)))
    if status != TaskStatus.OPEN:
        tasks = tasks.order_by("-completed_at", "-id")
    context: dict[str, Any] = {
        "tasks": list(tasks[:LIST_SIZE]),
        "now": now,
        "status": status,
        "assignee": assignee,
        "total": counts["total"],
        "overdue": counts["overdue"] if status == TaskStatus.OPEN else 0,
        "limit": LIST_SIZE,
        "can_write": request.user.can_write,
        "unassigned": UNASSIGNED,
    }
    if is_htmx(request):
        return render(request, "journeys/_report_tasks_table.html", context)
    context["statuses"] = [(value, label) for value, label in TaskStatus.choices if value in STATUSES]
    if request.user.can_manage:
        context["staff"] = list(Staff.objects.filter(is_active=True).order_by("name").values_list("pk", "name"))
    return render(request, "journeys/tasks.html", context)


def _acted(request: HttpRequest, task: Task) -> HttpResponse:
    if is_htmx(request):
        return render(
            request, "journeys/_report_task_row.html",
            {"task": task, "now": timezone.now(), "can_write": request.user.can_write},
        )  # fmt: skip
    return redirect("journeys:tasks")


def _writable_task(request: HttpRequest, pk: int) -> Task:
    """A task the user may see (else 404) and change (else 403: analysts read only)."""
    task = selectors.get_task(request.user, pk)
    if not request.user.can_write:
        raise PermissionDenied
    return task


@login_required
@require_POST
def complete(request, pk: int):
    """Mark the task done with the outcome typed in (if any); doing it twice changes nothing."""
    task = _writable_task(request, pk)
    task = complete_task(task, by=request.user, outcome=request.POST.get("outcome", ""))
    return _acted(request, selectors.get_task(request.user, task.pk))


@login_required
@require_POST
def cancel(request, pk: int):
    """Operators drop a task no one should do any more; doing it twice changes nothing."""
    task = _writable_task(request, pk)
    if not request.user.can_manage:
        raise PermissionDenied
    task = cancel_task(task, by=request.user)
    return _acted(request, selectors.get_task(request.user, task.pk))
