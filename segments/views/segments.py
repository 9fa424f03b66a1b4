"""The segment list and a segment's page: size over time, members, exports, exclusions, static lists, freeze,
recompute."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from customers.conditions import RuleError, RuleIssue, describe
from segments import exports, selectors
from segments.forms import CustomerIdsForm, ExcludeForm, FreezeForm, MembersForm, StaticSegmentForm
from segments.models import RecomputeStatus, Segment, SegmentKind
from segments.services import segments as service

LIST_SIZE = 500
PAGE_SIZE = 50
SIZES_SHOWN = 180
EXCLUSIONS_SHOWN = 100

STATUS_LABELS = {
    RecomputeStatus.IDLE: (RecomputeStatus.IDLE.label, "success"),
    RecomputeStatus.CALCULATING: (RecomputeStatus.CALCULATING.label, "info"),
    RecomputeStatus.FAILED: (RecomputeStatus.FAILED.label, "danger"),
    "stalled": (gettext_lazy("Stalled: the recompute stopped and will be retried"), "warning"),
}


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def require_manager(request: HttpRequest) -> None:
    if not request.user.can_manage:
        raise PermissionDenied


def with_status(segment: Segment, now) -> Segment:
    key = "stalled" if selectors.is_stalled(segment, now=now) else segment.status
    segment.status_label, segment.status_colour = STATUS_LABELS[key]
    segment.is_stalled = key == "stalled"
    return segment


def managed_segment(request: HttpRequest, pk: int, *kinds: str) -> Segment:
    """A segment a manager changes, of one of `kinds` (if given): the change does not exist for the others (a model
    segment is kept by its model, only a dynamic one is recomputed, only a static one takes a list)."""
    require_manager(request)
    segment = selectors.get_segment(request.user, pk)
    if kinds and segment.kind not in kinds:
        raise Http404("Not available for this kind of segment")
    return segment


# ------------------------------------------------------------------------------------------------ segment list


def _render_list(request: HttpRequest, *, static_form: StaticSegmentForm | None = None) -> HttpResponse:
    kind = request.GET.get("kind", "")
    kind = kind if kind in SegmentKind.values else ""
    search = request.GET.get("q", "").strip()
    now = timezone.now()
    segments = selectors.segment_list(request.user, kind=kind, search=search)[:LIST_SIZE]
    segments = selectors.with_member_counts(request.user, segments)
    context: dict[str, Any] = {
        "segments": [with_status(s, now) for s in segments],
        "kinds": SegmentKind.choices,
        "kind": kind,
        "q": search,
        "can_manage": request.user.can_manage,
    }
    if is_htmx(request):
        return render(request, "segments/_segment_table.html", context)
    if request.user.can_manage:
        context["static_form"] = static_form or StaticSegmentForm()
    return render(request, "segments/list.html", context)


@login_required
def segment_list(request):
    return _render_list(request)


@login_required
@require_POST
def create_static(request):
    """A new static segment, with the customers pasted in (if any)."""
    require_manager(request)
    form = StaticSegmentForm(request.POST)
    if form.is_valid() and (missing := invisible(request, form.cleaned_data["customers"])):
        form.add_error("customers", _("Customers not found: %(ids)s") % {"ids": missing})
    if not form.is_valid():
        return _render_list(request, static_form=form)
    with transaction.atomic():  # the segment and its first members, or neither
        segment = service.save_segment(
            None,
            name=form.cleaned_data["name"],
            kind=SegmentKind.STATIC,
            description=form.cleaned_data["description"],
            by=request.user,
        )
        if ids := form.cleaned_data["customers"]:
            service.add_to_static(segment, ids)
    messages.success(request, _("Static segment “%(name)s” created.") % {"name": segment.name})
    return redirect("segments:detail", pk=segment.pk)


def invisible(request: HttpRequest, ids: list[int]) -> str:
    """The ids among `ids` that are not customers the user may see, for an error message ("" if none)."""
    missing = sorted(set(ids) - selectors.visible_customer_ids(request.user, ids))
    return ", ".join(map(str, missing[:20])) + ("…" if len(missing) > 20 else "")


# ------------------------------------------------------------------------------------------------ segment page


def _members_page(request: HttpRequest, segment: Segment, form: MembersForm) -> dict[str, Any]:
    """One keyset page of the members the user may see, newest entry first."""
    since = form.since_moment() if form.is_valid() else None
    members = selectors.segment_members(request.user, segment, since=since)
    after = form.cleaned_data.get("after") if form.is_valid() else None
    if after:
        members = members.filter(pk__lt=after)
    page = list(members[: PAGE_SIZE + 1])
    has_next = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    since_value = form.cleaned_data.get("since") if form.is_valid() else None
    return {
        "members": page,
        "next_after": page[-1].pk if has_next else None,
        "since": since_value.isoformat() if since_value else "",
        "is_first_page": not after,
        "can_exclude": request.user.can_manage and segment.kind == SegmentKind.DYNAMIC,
        "can_remove": request.user.can_manage and segment.kind == SegmentKind.STATIC,
    }


def _rule_words(segment: Segment) -> tuple[str, list[RuleIssue]]:
    if segment.kind != SegmentKind.DYNAMIC or segment.rule is None:
        return "", []
    try:
        return describe(segment.rule), []
    except RuleError as error:  # e.g. a segment or a tag it names was deleted since
        return "", error.issues


@login_required
def segment_detail(request, pk: int):
    segment = with_status(selectors.get_segment(request.user, pk), timezone.now())
    user = request.user
    sizes = selectors.with_visible_sizes(user, segment, selectors.segment_sizes(user, segment)[:SIZES_SHOWN])
    rule_text, stored_issues = _rule_words(segment)
    context: dict[str, Any] = {
        "segment": segment,
        "rule_text": rule_text,
        "stored_issues": stored_issues,
        "members_form": MembersForm(request.GET or None),
        "sizes": [
            {"at": timezone.localtime(s.at).strftime("%Y-%m-%d %H:%M"), "size": s.visible_size} for s in reversed(sizes)
        ],
        "can_manage": user.can_manage,
        "is_dynamic": segment.kind == SegmentKind.DYNAMIC,
        "is_static": segment.kind == SegmentKind.STATIC,
        "exclusions": (
            list(selectors.segment_exclusions(user, segment).order_by("-excluded_at", "-id")[:EXCLUSIONS_SHOWN])
            if segment.kind == SegmentKind.DYNAMIC
            else []
        ),
    }
    context |= _members_page(request, segment, context["members_form"])
    if user.can_manage:
        context |= {
            "freeze_form": FreezeForm(
                initial={
                    "name": _("%(name)s (snapshot %(date)s)")
                    % {"name": segment.name[:70], "date": timezone.localdate()}
                }
            ),
            "exclude_form": ExcludeForm(),
            "ids_form": CustomerIdsForm(),
        }
    return render(request, "segments/detail.html", context)


@login_required
def segment_members(request, pk: int):
    """The members list alone (HTMX): another page, or the "members since" filter."""
    segment = selectors.get_segment(request.user, pk)
    context = {"segment": segment, **_members_page(request, segment, MembersForm(request.GET or None))}
    return render(request, "segments/_members.html", context)


@login_required
def export_segment(request, pk: int):
    """The current members the user may see, as CSV (streamed) or as an Excel workbook (`?format=xlsx`)."""
    segment = selectors.get_segment(request.user, pk)
    try:
        return exports.download(request.user, segment, as_xlsx=request.GET.get("format") == "xlsx")
    except exports.TooManyRows:
        messages.error(request, _("Too many members for one Excel sheet; export CSV instead."))
        return redirect("segments:detail", pk=segment.pk)


@login_required
@require_POST
def recompute(request, pk: int):
    """Rebuild a dynamic segment now, in this request."""
    segment = managed_segment(request, pk, SegmentKind.DYNAMIC)
    change = service.recompute_segment(segment)
    if change is not None:
        messages.success(
            request,
            _("Recomputed: %(matched)s match, %(entered)s entered, %(exited)s left.")
            % {"matched": change.matched, "entered": change.entered, "exited": change.exited},
        )
    else:
        segment.refresh_from_db()
        if segment.status == RecomputeStatus.FAILED:
            messages.error(request, _("The recompute failed: %(error)s") % {"error": segment.last_error})
        else:
            messages.warning(request, _("A recompute of this segment is already running."))
    return redirect("segments:detail", pk=segment.pk)


@login_required
@require_POST
def freeze(request, pk: int):
    """A static copy of the segment's current members (all of them, whoever asks: a manager sees everyone)."""
    segment = managed_segment(request, pk)
    form = FreezeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give the static copy a name."))
        return redirect("segments:detail", pk=segment.pk)
    frozen = service.freeze(segment, name=form.cleaned_data["name"], by=request.user)
    messages.success(request, _("Frozen as the static segment “%(name)s”.") % {"name": frozen.name})
    return redirect("segments:detail", pk=frozen.pk)


@login_required
@require_POST
def exclude(request, pk: int):
    """Keep a customer out of a dynamic segment (through every recompute) until the exclusion is cleared."""
    segment = managed_segment(request, pk, SegmentKind.DYNAMIC)
    form = ExcludeForm(request.POST)
    if not form.is_valid() or invisible(request, [form.cleaned_data["customer"]]):
        messages.error(request, _("Enter the id of a customer to exclude."))
        return redirect("segments:detail", pk=segment.pk)
    service.exclude(segment, [form.cleaned_data["customer"]], reason=form.cleaned_data["reason"], by=request.user)
    messages.success(request, _("Customer #%(id)s excluded from this segment.") % {"id": form.cleaned_data["customer"]})
    return redirect("segments:detail", pk=segment.pk)


@login_required
@require_POST
def clear_exclusions(request, pk: int):
    """Let excluded customers back (one, or every one the user sees with `all`); those who match re-enter now."""
    segment = managed_segment(request, pk, SegmentKind.DYNAMIC)
    if request.POST.get("all"):
        ids = list(selectors.segment_exclusions(request.user, segment).values_list("customer_id", flat=True))
    else:
        ids = [int(value) for value in request.POST.getlist("customer") if value.isdigit()]
    change = service.clear_exclusions(segment, ids)
    messages.success(
        request,
        _("%(count)s exclusions cleared; %(entered)s customers are back in the segment.")
        % {"count": len(ids), "entered": change.entered},
    )
    return redirect("segments:detail", pk=segment.pk)


def _change_list(request: HttpRequest, pk: int, *, add: bool) -> HttpResponse:
    segment = managed_segment(request, pk, SegmentKind.STATIC)
    form = CustomerIdsForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["customers"]))
        return redirect("segments:detail", pk=segment.pk)
    ids = form.cleaned_data["customers"]
    if missing := invisible(request, ids):
        messages.error(request, _("Customers not found: %(ids)s") % {"ids": missing})
        return redirect("segments:detail", pk=segment.pk)
    if add:
        change = service.add_to_static(segment, ids)
        messages.success(request, _("%(count)s customers added.") % {"count": change.entered})
    else:
        change = service.remove_from_static(segment, ids)
        messages.success(request, _("%(count)s customers removed.") % {"count": change.exited})
    return redirect("segments:detail", pk=segment.pk)


@login_required
@require_POST
def add_members(request, pk: int):
    return _change_list(request, pk, add=True)


@login_required
@require_POST
def remove_members(request, pk: int):
    return _change_list(request, pk, add=False)


@login_required
@require_POST
def delete_segment(request, pk: int):
    """Delete a segment with its history; refused while a segment's or a tag's rule reads it."""
    segment = managed_segment(request, pk, SegmentKind.DYNAMIC, SegmentKind.STATIC)
    if using := selectors.rules_reading(segment):
        messages.error(
            request, _("The rules of %(rules)s read this segment; change them first.") % {"rules": "、".join(using)}
        )
        return redirect("segments:detail", pk=segment.pk)
    segment.delete()
    messages.success(request, _("Segment “%(name)s” deleted.") % {"name": segment.name})
    return redirect("segments:list")
