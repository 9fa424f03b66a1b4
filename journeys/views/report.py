"""A journey's report (operators, analysts) and one customer's trace through it (anyone who may see her: a rep
only their own customers; another's is "not found")."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date

from customers.selectors import get_customer
from customers.visibility import sees_all_customers
from journeys import reports
from journeys.models import Journey
from messaging.views.outbox import decision_log, reason_label, status_tone

DEFAULT_DAYS = 30


def get_journey(pk: int) -> Journey:
    try:
        return Journey.objects.select_related("current_version").get(pk=pk)
    except Journey.DoesNotExist:
        raise Http404("Journey not found") from None


def _date_range(request: HttpRequest) -> tuple[datetime.date, datetime.date]:
    """The report's days: `since` and `until` (YYYY-MM-DD) from the query, by default the last 30 days."""
    today = timezone.localdate()
    until = parse_date(request.GET.get("until") or "") or today
    since = parse_date(request.GET.get("since") or "") or until - datetime.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        since, until = until, since
    return max(since, until - datetime.timedelta(days=reports.MAX_DAYS - 1)), until


@login_required
def journey_report(request, pk: int):
    """Where the journey's customers are now, its daily flow, totals and GMV, split arms, message outcomes,
    reps' confirmations and group invitations. `?customer=<id>` opens that customer's trace."""
    if not sees_all_customers(request.user):
        raise PermissionDenied
    journey = get_journey(pk)
    if (customer := request.GET.get("customer", "").strip()).isdigit():
        return redirect("journeys:trace", pk=journey.pk, customer_pk=int(customer))
    since, until = _date_range(request)
    days = reports.daily_flow(journey, since=since, until=until)
    counts = reports.step_counts(journey)
    context: dict[str, Any] = {
        "journey": journey,
        "since": since,
        "until": until,
        "totals": reports.totals(journey),
        "step_counts": counts,
        "arms": reports.split_results(journey),
        "outcomes": reports.touchpoint_outcomes(journey),
        "reps": reports.rep_confirmations(journey),
        "invites": reports.group_invites(journey),
        "latest": reports.latest_enrollments(journey),
        "daily": {
            "days": [day.day.isoformat() for day in days],
            "entered": [day.entered for day in days],
            "completed": [day.completed for day in days],
            "exited": [day.exited for day in days],
            "converted": [day.converted for day in days],
        },
        "steps_chart": {
            "labels": [f"v{row.version} · {row.step}" for row in counts],
            "active": [row.active for row in counts],
        },
    }
    return render(request, "journeys/report.html", context)


def _with_status(touchpoint: Any) -> Any:
    """The touchpoint with what the trace shows of it: a badge tone, the reason and the decision log in words."""
    if touchpoint is None:
        return None
    touchpoint.tone = status_tone(touchpoint.status)
    touchpoint.reason_text = reason_label(touchpoint.reason) if touchpoint.reason else ""
    touchpoint.decision_entries = decision_log(touchpoint.decisions)
    return touchpoint


@login_required
def customer_trace(request, pk: int, customer_pk: int):
    """What happened to one customer in the journey and why, rotation by rotation."""
    customer = get_customer(request.user, customer_pk)
    journey = get_journey(pk)
    trace = reports.customer_trace(journey, customer)
    for enrollment in trace.enrollments:
        for run in enrollment.runs:
            _with_status(run.touchpoint)
        _with_status(enrollment.waiting_touchpoint)
    context = {
        "journey": journey,
        "customer": customer,
        "trace": trace,
        "sees_report": sees_all_customers(request.user),
    }
    return render(request, "journeys/trace.html", context)
