"""The outbox: every touchpoint the user may see, filtered and paged by id, a detail with the rendered message,
the full decision log and the provider's answer, and Retry / Cancel. The dead-letter view is the outbox limited to
messages that failed for good, with a retry of the whole filtered set.

Operators see every message; a sales rep sees those of their own customers and groups (messaging.selectors),
another's is "not found". Retrying and cancelling need write access; the bulk retry needs an operator.
One view renders the page or, for HTMX, only the fragment asked for.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from messaging import selectors
from messaging.api.filters import TouchpointFilter
from messaging.models import Touchpoint, TouchpointStatus
from messaging.services.operator import RETRYABLE_STATUSES, NotRetryable, retry_touchpoint, retry_touchpoints
from messaging.services.scheduling import cancel_touchpoints
from messaging.sources import name_sources

PAGE_SIZE = 50
S = TouchpointStatus
CANCELLABLE_STATUSES = (S.SCHEDULED, S.DEFERRED)
CANCELLED_IN_OUTBOX = "cancelled_in_outbox"

# ------------------------------------------------------------------------------------------------------- labels

REASON_LABELS = {
    "scheduled": gettext_lazy("Scheduled"),
    "policy": gettext_lazy("Contact policy passed"),
    "send": gettext_lazy("Handed to the channel"),
    "status": gettext_lazy("Status reported by the channel"),
    "expired": gettext_lazy("Expired before it could be sent"),
    "opted_out": gettext_lazy("The customer opted out of this channel"),
    "no_address": gettext_lazy("No address on this channel"),
    "render_error": gettext_lazy("The template could not be rendered"),
    "quiet_hours": gettext_lazy("Quiet hours"),
    "frequency_cap": gettext_lazy("Frequency cap reached"),
    "wecom_monthly_budget": gettext_lazy("WeCom monthly receipt budget used up"),
    "cap_expired": gettext_lazy("No cap slot before the expiry"),
    "rate_limited": gettext_lazy("Waiting for the rate limit"),
    "retry": gettext_lazy("Temporary error, retrying later"),
    "retries_exhausted": gettext_lazy("Temporary errors until the attempts ran out"),
    "provider_error": gettext_lazy("Refused by the provider"),
    "provider_report": gettext_lazy("The provider reported a failure"),
    "manual_retry": gettext_lazy("Retried by hand"),
    "cancelled": gettext_lazy("Cancelled"),
    CANCELLED_IN_OUTBOX: gettext_lazy("Cancelled in the outbox"),
}
OUTCOME_LABELS = {**dict(S.choices), "passed": gettext_lazy("Passed")}
DETAIL_LABELS = {
    "attempt": gettext_lazy("Attempt"),
    "code": gettext_lazy("Provider code"),
    "until": gettext_lazy("Until"),
    "limit": gettext_lazy("Limit"),
    "cap": gettext_lazy("Cap"),
    "channel": gettext_lazy("Channel"),
    "expires_at": gettext_lazy("Expires at"),
    "detail": gettext_lazy("Detail"),
    "by": gettext_lazy("By"),
    "previous": gettext_lazy("Was"),
    "previous_reason": gettext_lazy("Because"),
    "expiry_cleared": gettext_lazy("Expiry cleared"),
}
TIME_DETAILS = ("until", "expires_at")
LABELLED_DETAILS = ("cap", "previous_reason")
GOOD = {S.SENT, S.DELIVERED, S.READ, S.CLICKED, S.CONFIRMED}
BAD = {S.FAILED, S.UNDELIVERABLE}
WAITING = {S.SCHEDULED, S.DEFERRED, S.SENDING, S.AWAITING_CONFIRMATION}


def reason_label(reason: str) -> str:
    return str(REASON_LABELS.get(reason, reason))


def status_tone(status: str) -> str:
    """A Bootstrap colour for a status badge."""
    if status in GOOD:
        return "success"
    if status in BAD:
        return "danger"
    return "warning" if status in WAITING else "secondary"


def _moment(value: Any) -> datetime.datetime | Any:
    try:
        return datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value


@dataclass(frozen=True)
class Decision:
    at: datetime.datetime | Any
    step: str
    label: str
    outcome: str
    outcome_label: str
    tone: str
    details: list[tuple[str, Any]]


def decision_log(decisions: list[dict[str, Any]]) -> list[Decision]:
    """The touchpoint's decisions in order, each step and outcome labelled, its details named and readable."""
    log = []
    for entry in decisions if isinstance(decisions, list) else []:
        outcome = str(entry.get("outcome", ""))
        details = []
        for key, value in entry.items():
            if key in ("at", "step", "outcome"):
                continue
            if key in TIME_DETAILS:
                value = _moment(value)
            elif key in LABELLED_DETAILS:
                value = reason_label(str(value))
            elif key == "previous":
                value = OUTCOME_LABELS.get(value, value)
            details.append((str(DETAIL_LABELS.get(key, key)), value))
        step = str(entry.get("step", ""))
        log.append(
            Decision(
                at=_moment(entry.get("at")),
                step=step,
                label=reason_label(step),
                outcome=outcome,
                outcome_label=str(OUTCOME_LABELS.get(outcome, outcome)),
                tone=status_tone(outcome) if outcome != "passed" else "success",
                details=details,
            )
        )
    return log


@dataclass(frozen=True)
class Row:
    touchpoint: Touchpoint
    reason: str
    tone: str


def _rows(touchpoints: list[Touchpoint]) -> list[Row]:
    name_sources(touchpoints)
    return [Row(tp, reason_label(tp.reason) if tp.reason else "", status_tone(tp.status)) for tp in touchpoints]


# -------------------------------------------------------------------------------------------------------- pages


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _query_without_paging(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("after", None)
    return query.urlencode()


def _outbox(request: HttpRequest, *, dead_letter: bool) -> HttpResponse:
    touchpoints = selectors.touchpoints_for(request.user)
    if dead_letter:
        touchpoints = selectors.dead_letters(touchpoints)
    filters = TouchpointFilter(request.GET, queryset=touchpoints)
    rows = filters.qs
    after = request.GET.get("after", "")
    if after.isdigit():
        rows = rows.filter(pk__lt=int(after))
    page = list(rows[: PAGE_SIZE + 1])
    has_next = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    list_url = reverse("messaging-outbox-dead-letter" if dead_letter else "messaging-outbox")
    context: dict[str, Any] = {
        "rows": _rows(page),
        "next_after": page[-1].pk if has_next else None,
        "is_first_page": not after,
        "page_url": request.get_full_path(),
        "query": _query_without_paging(request),
        "list_url": list_url,
        "dead_letter": dead_letter,
        "can_bulk_retry": dead_letter and request.user.can_manage,
    }
    if _is_htmx(request):
        return render(request, "messaging/outbox/_table.html", context)
    context.update(
        form=filters.form,
        statuses=S.choices,
        selected_statuses=request.GET.getlist("status"),
        sources=filters.filters["source"].extra["choices"],
        channels=filters.filters["channel"].extra["choices"],
    )
    return render(request, "messaging/outbox/list.html", context)


@login_required
def outbox(request: HttpRequest) -> HttpResponse:
    return _outbox(request, dead_letter=False)


@login_required
def dead_letter(request: HttpRequest) -> HttpResponse:
    return _outbox(request, dead_letter=True)


def _detail_context(request: HttpRequest, touchpoint: Touchpoint) -> dict[str, Any]:
    name_sources([touchpoint])
    rendered = touchpoint.rendered if isinstance(touchpoint.rendered, dict) else {}
    source = touchpoint.content if isinstance(touchpoint.content, dict) else {}
    return {
        "touchpoint": touchpoint,
        "tone": status_tone(touchpoint.status),
        "reason": reason_label(touchpoint.reason) if touchpoint.reason else "",
        "content": rendered,
        "card": {key: value for key, value in (rendered.get("card") or {}).items() if value},
        "source": source,
        "source_card": {key: value for key, value in (source.get("card") or {}).items() if value},
        "decisions": decision_log(touchpoint.decisions),
        "provider_response": json.dumps(touchpoint.provider_response, ensure_ascii=False, indent=2)
        if touchpoint.provider_response
        else "",
        "can_retry": request.user.can_write and touchpoint.status in RETRYABLE_STATUSES,
        "can_cancel": request.user.can_write and touchpoint.status in CANCELLABLE_STATUSES,
    }


def _render_detail(request: HttpRequest, touchpoint: Touchpoint) -> HttpResponse:
    context = {**_detail_context(request, touchpoint), "is_fragment": _is_htmx(request)}
    template = "messaging/outbox/_detail.html" if context["is_fragment"] else "messaging/outbox/detail.html"
    return render(request, template, context)


@login_required
def outbox_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, selectors.get_touchpoint(request.user, pk))


def _after_action(request: HttpRequest, touchpoint: Touchpoint) -> HttpResponse:
    if _is_htmx(request):
        response = _render_detail(request, selectors.get_touchpoint(request.user, touchpoint.pk))
        response["HX-Trigger"] = "outbox-changed"  # the list beside the detail reloads its page
        return response
    return redirect("messaging-outbox-detail", pk=touchpoint.pk)


@login_required
@require_POST
def retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a failed, expired, undeliverable or capped message again (a new attempt; its history stays)."""
    touchpoint = selectors.get_touchpoint(request.user, pk)
    if not request.user.can_write:
        raise PermissionDenied
    try:
        retry_touchpoint(touchpoint, by=request.user)
    except NotRetryable as refused:
        label = OUTCOME_LABELS.get(refused.status, refused.status)
        messages.error(request, _("A message that is “%(status)s” cannot be retried.") % {"status": label})
    else:
        messages.success(request, _("Queued again; it is due now."))
    return _after_action(request, touchpoint)


@login_required
@require_POST
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel a message that is still queued; one a worker is sending or has sent is left alone."""
    touchpoint = selectors.get_touchpoint(request.user, pk)
    if not request.user.can_write:
        raise PermissionDenied
    if cancel_touchpoints(ids=[touchpoint.pk], reason=CANCELLED_IN_OUTBOX):
        messages.success(request, _("Cancelled; it will not be sent."))
    else:
        messages.error(request, _("Only a message still waiting in the queue can be cancelled."))
    return _after_action(request, touchpoint)


@login_required
@require_POST
def bulk_retry(request: HttpRequest) -> HttpResponse:
    """Retry every dead letter the dead-letter view's current filters (the query string) select, not just the
    page shown."""
    if not request.user.can_manage:
        raise PermissionDenied
    dead = selectors.dead_letters(selectors.touchpoints_for(request.user))
    count = retry_touchpoints(TouchpointFilter(request.GET, queryset=dead).qs, by=request.user)
    messages.success(request, _("%(count)d messages queued again.") % {"count": count})
    query = _query_without_paging(request)
    return redirect(reverse("messaging-outbox-dead-letter") + (f"?{query}" if query else ""))
