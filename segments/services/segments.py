"""Segments: saving (validation, dependencies, cycles), recomputing under a lease, incremental updates per
customer, static lists, manual exclusions and freezing a dynamic segment into a static one."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.conditions import (
    Context,
    RuleError,
    RuleIssue,
    is_time_relative,
    leads_back,
    matching_customers,
    predicates_of,
    reactions_of,
)
from customers.conditions import validate as validate_rule
from customers.models import Customer
from segments.models import (
    MembershipReason,
    RecomputeStatus,
    Segment,
    SegmentExclusion,
    SegmentKind,
    SegmentMembership,
    SegmentSize,
)
from segments.services.membership import MembershipChange, lock_segment, queryset_sql, sync_membership

logger = logging.getLogger(__name__)

LEASE_SECONDS = 15 * 60


def referenced_segments(rule: Any) -> list[int]:
    """Segment ids an (already valid) rule reads through `in_segment`."""
    node = validate_rule(rule)
    return sorted({sid for name, params in predicates_of(node) if name == "in_segment" for sid in params["segments"]})


def _check_no_cycle(segment_id: int | None, depends_on: list[int]) -> None:
    graph = {s.pk: s.depends_on for s in Segment.objects.exclude(pk=segment_id).only("pk", "depends_on")}
    if segment_id is not None and leads_back(segment_id, depends_on, graph):
        raise RuleError([RuleIssue("$", _("The segment depends on itself (directly or through other segments)."))])


def save_segment(
    segment: Segment | None,
    *,
    name: str,
    kind: str = SegmentKind.DYNAMIC,
    rule: Any = None,
    description: str = "",
    by=None,
) -> Segment:
    """Create or update a dynamic or static segment. A dynamic rule is validated (RuleError) and may read other
    segments but never itself; after commit the segment is rebuilt in a worker."""
    depends_on: list[int] = []
    time_relative = False
    if kind == SegmentKind.DYNAMIC:
        if rule is None:
            raise RuleError([RuleIssue("$", _("A dynamic segment needs a rule."))])
        node = validate_rule(rule)
        depends_on = referenced_segments(rule)
        _check_no_cycle(segment.pk if segment else None, depends_on)
        time_relative = is_time_relative(node)
    elif kind != SegmentKind.STATIC:
        raise ValueError("model segments are kept by their models")
    with transaction.atomic():
        if segment is None:
            segment = Segment(created_by=by if getattr(by, "is_authenticated", False) else None)
        segment.name, segment.description, segment.kind = name, description, kind
        segment.rule = rule if kind == SegmentKind.DYNAMIC else None
        segment.depends_on, segment.is_time_relative = depends_on, time_relative
        if segment.pk is None:
            segment.save()
        else:  # never write back recompute state (size, status…) read before a concurrent recompute
            segment.save(update_fields=["name", "description", "kind", "rule", "depends_on", "is_time_relative",
                                        "updated_at"])  # fmt: skip
        if kind == SegmentKind.DYNAMIC:
            segment_id = segment.pk
            transaction.on_commit(lambda: enqueue_recompute(segment_id))
    return segment


def enqueue_recompute(segment_id: int) -> None:
    """Send the segment's full rebuild to a worker; if the broker is down, the nightly rebuild catches up."""
    from scrm.celery import send_quietly
    from segments.tasks import recompute_segment_task

    send_quietly(recompute_segment_task, segment_id)


# -------------------------------------------------------------------------------------------------- recompute


def _claim(segment: Segment, now) -> bool:
    """Take the recompute lease: free, failed, or expired (a crashed run)."""
    claimable = ~Q(status=RecomputeStatus.CALCULATING) | Q(lease_until__lt=now) | Q(lease_until__isnull=True)
    lease = now + timedelta(seconds=LEASE_SECONDS)
    taken = Segment.objects.filter(claimable, pk=segment.pk).update(
        status=RecomputeStatus.CALCULATING, lease_until=lease, last_started_at=now, last_error=""
    )
    return bool(taken)


def members_query(segment: Segment, ctx: Context) -> tuple[str, list[Any]]:
    """SQL selecting who should be in a dynamic segment now."""
    return queryset_sql(matching_customers(segment.rule, ctx=ctx))


def recompute_segment(segment: Segment, *, now=None, work_mem: str | None = "256MB") -> MembershipChange | None:
    """Full set-based rebuild of a dynamic segment under a lease; None if another run holds the lease or the
    segment is not dynamic. Duration, counts and any error are stored on the segment."""
    if segment.kind != SegmentKind.DYNAMIC or segment.is_archived:
        return None
    now = now or timezone.now()
    if not _claim(segment, now):
        return None
    started = time.monotonic()
    try:
        with transaction.atomic():
            if work_mem:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('work_mem', %s, true)", [work_mem])
            sql, params = members_query(segment, Context(now=now))
            change = sync_membership(segment, sql, params, at=now)
    except Exception as exc:
        Segment.objects.filter(pk=segment.pk).update(
            status=RecomputeStatus.FAILED, lease_until=None, last_error=f"{type(exc).__name__}: {exc}"[:2000],
            last_finished_at=timezone.now(), last_duration_ms=int((time.monotonic() - started) * 1000),
        )  # fmt: skip
        logger.exception("segments.recompute_failed", extra={"segment": segment.pk})
        return None
    _finish(segment, change, started)
    return change


def _finish(segment: Segment, change: MembershipChange, started: float) -> None:
    size = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).count()
    Segment.objects.filter(pk=segment.pk).update(
        status=RecomputeStatus.IDLE, lease_until=None, last_finished_at=timezone.now(),
        last_duration_ms=int((time.monotonic() - started) * 1000), last_counts=change.as_dict(), size=size,
    )  # fmt: skip
    SegmentSize.objects.create(segment=segment, size=size, entered=change.entered, exited=change.exited)


def dependency_order(segments: Iterable[Segment]) -> list[Segment]:
    """Segments ordered so that each comes after the segments its rule reads."""
    by_id = {s.pk: s for s in segments}
    ordered: list[Segment] = []
    done: set[int] = set()

    def visit(segment: Segment, trail: frozenset[int]) -> None:
        if segment.pk in done or segment.pk in trail:
            return
        for dependency in segment.depends_on:
            if dependency in by_id:
                visit(by_id[dependency], trail | {segment.pk})
        done.add(segment.pk)
        ordered.append(segment)

    for segment in sorted(by_id.values(), key=lambda s: s.pk):
        visit(segment, frozenset())
    return ordered


def recompute_segments(*, time_relative_only: bool = False, now=None) -> dict[int, MembershipChange | None]:
    """Rebuild every dynamic segment (or those whose rules depend on the clock, and what reads them), in
    dependency order."""
    segments = list(Segment.objects.filter(kind=SegmentKind.DYNAMIC, is_archived=False))
    if time_relative_only:
        wanted = {s.pk for s in segments if s.is_time_relative}
        grew = True
        while grew:  # segments reading a time-relative segment change with it
            extra = {s.pk for s in segments if s.pk not in wanted and wanted.intersection(s.depends_on)}
            wanted |= extra
            grew = bool(extra)
        segments = [s for s in segments if s.pk in wanted]
    return {s.pk: recompute_segment(s, now=now) for s in dependency_order(segments)}


def retry_stalled(*, now=None) -> list[int]:
    """Re-run recomputes that crashed (lease expired while "calculating") or failed."""
    now = now or timezone.now()
    stalled = Segment.objects.filter(kind=SegmentKind.DYNAMIC, is_archived=False).filter(
        Q(status=RecomputeStatus.FAILED) | Q(status=RecomputeStatus.CALCULATING, lease_until__lt=now)
    )
    retried = []
    for segment in dependency_order(stalled):
        if recompute_segment(segment, now=now) is not None:
            retried.append(segment.pk)
    return retried


def update_for_customers(customer_ids: Iterable[int], *, kinds: Iterable[str] | None = None, now=None) -> int:
    """Incremental update after these customers changed: each dynamic segment whose rule reacts to `kinds` is
    re-evaluated for them alone (one statement per segment), in dependency order. Returns the changes."""
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    ctx = Context(now=now or timezone.now())
    kinds = set(kinds or ["*"])
    changed = 0
    for segment in dependency_order(Segment.objects.filter(kind=SegmentKind.DYNAMIC, is_archived=False)):
        reactions = reactions_of(segment.rule)
        if "*" not in reactions and "*" not in kinds and not (reactions & kinds):
            continue
        sql, params = queryset_sql(matching_customers(segment.rule, ctx=ctx, customer_ids=ids))
        change = sync_membership(segment, sql, params, customer_ids=ids, at=ctx.now)
        changed += change.entered + change.exited
    return changed


# ------------------------------------------------------------------------------------- static lists, exclusions


def add_to_static(segment: Segment, customers: Iterable[int] | Any) -> MembershipChange:
    """Add customers (ids or a Customer queryset) to a static segment; members already in stay as they are."""
    if segment.kind != SegmentKind.STATIC:
        raise ValueError("only static segments take lists")
    sql, params = _ids_sql(customers)
    members = (
        "SELECT customer_id FROM segments_segmentmembership WHERE segment_id = %s AND exited_at IS NULL "  # noqa: S608
        f"UNION SELECT c.id FROM ({sql}) AS n(id) JOIN customers_customer c ON c.id = n.id AND c.merged_into_id IS NULL"
    )
    return sync_membership(segment, members, [segment.pk, *params], entry_reason=MembershipReason.LIST,
                           honour_exclusions=False)  # fmt: skip


def remove_from_static(segment: Segment, customer_ids: Iterable[int]) -> MembershipChange:
    if segment.kind != SegmentKind.STATIC:
        raise ValueError("only static segments take lists")
    ids = sorted(set(customer_ids))
    members = (
        "SELECT customer_id FROM segments_segmentmembership WHERE segment_id = %s AND exited_at IS NULL "
        "AND NOT customer_id = ANY(%s::bigint[])"
    )
    return sync_membership(segment, members, [segment.pk, ids], exit_reason=MembershipReason.REMOVED,
                           honour_exclusions=False)  # fmt: skip


def _ids_sql(customers: Iterable[int] | Any) -> tuple[str, list[Any]]:
    if hasattr(customers, "query"):
        return queryset_sql(customers)
    return "SELECT unnest(%s::bigint[])", [sorted({int(pk) for pk in customers})]


def freeze(segment: Segment, *, name: str, by=None) -> Segment:
    """A static copy of the segment's current members (a snapshot that never changes on recompute)."""
    with transaction.atomic():
        frozen = save_segment(None, name=name, kind=SegmentKind.STATIC, by=by,
                              description=_("Snapshot of “%(name)s”") % {"name": segment.name})  # fmt: skip
        current = Customer.objects.filter(segment_memberships__segment=segment, segment_memberships__exited_at=None)
        add_to_static(frozen, current)
    return frozen


def exclude(segment: Segment, customer_ids: Iterable[int], *, reason: str = "", by=None) -> MembershipChange:
    """Keep these customers out of a dynamic segment until the exclusion is cleared (they leave it now)."""
    ids = sorted(set(customer_ids))
    with transaction.atomic():
        lock_segment(segment.pk)
        SegmentExclusion.objects.bulk_create(
            [SegmentExclusion(segment=segment, customer_id=pk, reason=reason[:200],
                              excluded_by=by if getattr(by, "is_authenticated", False) else None) for pk in ids],
            ignore_conflicts=True,
        )  # fmt: skip
        return _reevaluate(segment, ids)


def clear_exclusions(segment: Segment, customer_ids: Iterable[int]) -> MembershipChange:
    """Let these customers back: they re-enter at once if they match."""
    ids = sorted(set(customer_ids))
    with transaction.atomic():
        lock_segment(segment.pk)
        SegmentExclusion.objects.filter(segment=segment, customer_id__in=ids).delete()
        return _reevaluate(segment, ids)


def _reevaluate(segment: Segment, ids: list[int]) -> MembershipChange:
    if segment.kind == SegmentKind.DYNAMIC:
        sql, params = queryset_sql(matching_customers(segment.rule, customer_ids=ids))
    else:  # static and model segments: current members, minus the excluded (sync takes them out)
        sql = (
            "SELECT customer_id FROM segments_segmentmembership WHERE segment_id = %s AND exited_at IS NULL "
            "AND customer_id = ANY(%s::bigint[])"
        )
        params = [segment.pk, ids]
    return sync_membership(segment, sql, params, customer_ids=ids, exit_reason=MembershipReason.NO_LONGER_MATCHING)
