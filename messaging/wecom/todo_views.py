"""The rep's WeCom to-do: enterprise mass sends waiting for their confirmation (one row per mass send) with a
"remind me" button, and, for operators, every rep's pending sends and confirmation rate. One view renders the
page or, for HTMX, only the table."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from customers.models import Staff
from customers.visibility import sees_all_customers
from messaging.wecom import mass_send

LIST_SIZE = 200


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _with_reminders(rows: list[dict[str, Any]], *, now: datetime.datetime) -> list[dict[str, Any]]:
    """Each row with how many reminders its sender has left today (one query for all rows)."""
    used = mass_send.reminders_used(sorted({row["sender_staff_id"] for row in rows}), now=now) if rows else {}
    for row in rows:
        row["reminders_left"] = max(mass_send.DAILY_REMINDERS - used.get(row["sender_staff_id"], 0), 0)
    return rows


def _selected_staff(request: HttpRequest) -> int | None:
    value = request.GET.get("staff", "")
    return int(value) if value.isdigit() and sees_all_customers(request.user) else None


@login_required
def todo(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    staff_id = _selected_staff(request)
    rows = list(mass_send.pending_mass_sends(request.user, staff_id=staff_id)[:LIST_SIZE])
    context: dict[str, Any] = {
        "rows": _with_reminders(rows, now=now),
        "sees_all": sees_all_customers(request.user),
        "can_remind": request.user.can_write,
        "staff_id": staff_id,
        "list_size": LIST_SIZE,
    }
    if is_htmx(request):
        return render(request, "messaging/wecom/_todo_table.html", context)
    context["rates"] = mass_send.confirmation_rates(request.user, now=now)
    if context["sees_all"]:
        context["staff_choices"] = list(Staff.objects.filter(is_active=True).order_by("name").values_list("id", "name"))
    return render(request, "messaging/wecom/todo.html", context)


@login_required
@require_POST
def remind(request: HttpRequest) -> HttpResponse:
    """Remind the sender of one pending mass send the user may see (404 otherwise)."""
    if not request.user.can_write:
        raise PermissionDenied
    msgid = request.POST.get("msgid", "")
    row = mass_send.pending_mass_sends(request.user).filter(provider_message_id=msgid).first() if msgid else None
    if row is None:
        raise Http404("No such mass send waiting for confirmation")
    staff = Staff.objects.get(pk=row["sender_staff_id"])
    outcome = mass_send.remind_pending(staff, msgid=msgid)
    if is_htmx(request):
        context = {
            "row": _with_reminders([row], now=timezone.now())[0],
            "sees_all": sees_all_customers(request.user),
            "can_remind": True,
            "outcome": outcome,
        }
        return render(request, "messaging/wecom/_todo_row.html", context)
    (messages.success if outcome.is_sent else messages.error)(request, outcome.reason)
    return redirect("wecom-todo")
