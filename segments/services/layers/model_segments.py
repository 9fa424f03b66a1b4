"""Model segments: one stored segment per class or stage of a layering model ("rfm:important_value",
"aipl:interest", "lifecycle:vip", "ladder:5"), created on first use and kept by the model's recompute through
`sync_membership`, so every move writes a history row and a `segment.entered` / `segment.exited` event."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone, translation
from django.utils.functional import Promise

from segments.models import MembershipReason, RecomputeStatus, Segment, SegmentKind, SegmentSize
from segments.services.membership import MembershipChange, sync_membership

logger = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x5E62  # (namespace, model) advisory locks: one recompute of a model at a time
MODEL_LOCKS = {"rfm": 1, "aipl": 2, "lifecycle": 3, "ladder": 4}
NOBODY = "SELECT NULL::bigint WHERE FALSE"


@dataclass(frozen=True)
class ModelSegment:
    """A class or stage of a model: its segment key, its name and description (translatable), and the SQL
    selecting its members from the model's stored table."""

    key: str
    name: Promise | str
    description: Promise | str
    members_sql: str
    params: tuple[Any, ...]


def lock_model(model: str) -> None:
    """Serialize recomputes of one model until the transaction ends (a second run waits, then finds no change)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, MODEL_LOCKS[model]])


def set_work_mem(value: str = "256MB") -> None:
    """Room for the sorts and hashes of a set-based recompute, for this transaction only (SET LOCAL); no JIT, whose
    compilation of these large plans (close to a second at a million customers) costs more than it saves."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)", [value])


def ensure_segments(prefix: str, wanted: list[ModelSegment]) -> dict[str, Segment]:
    """The model's segments by key, creating the missing ones (named in the workspace language; operators may
    rename them afterwards). Includes segments of the prefix that `wanted` no longer lists (a former preset)."""
    existing = {s.model_key: s for s in Segment.objects.filter(model_key__startswith=prefix)}
    missing = [spec for spec in wanted if spec.key not in existing]
    if missing:
        with translation.override(settings.LANGUAGE_CODE):
            Segment.objects.bulk_create(
                [Segment(kind=SegmentKind.MODEL, model_key=spec.key, name=str(spec.name)[:100],
                         description=str(spec.description)[:300]) for spec in missing],
                ignore_conflicts=True,
            )  # fmt: skip
        existing = {s.model_key: s for s in Segment.objects.filter(model_key__startswith=prefix)}
    return existing


# The customers whose open memberships in the model's segments differ from what the model says (a class or stage
# change, a new customer, a merge, a cleared exclusion, a new or former segment): one hash full join. {scope}
# narrows both sides to the customers a run says may have moved.
MISMATCH_SQL = """
WITH seg AS (SELECT id, model_key FROM segments_segment WHERE id = ANY(%s::bigint[])),
want AS (
    SELECT a.customer_id, seg.id AS segment_id
    FROM ({assignment}) AS a(customer_id, model_key) JOIN seg ON seg.model_key = a.model_key
    {scope}
),
have AS (
    SELECT customer_id, segment_id FROM segments_segmentmembership
    WHERE segment_id = ANY(%s::bigint[]) AND exited_at IS NULL {scope_and}
)
SELECT coalesce(w.segment_id, h.segment_id), coalesce(w.customer_id, h.customer_id)
FROM want w FULL JOIN have h ON h.customer_id = w.customer_id AND h.segment_id = w.segment_id
WHERE w.customer_id IS NULL OR h.customer_id IS NULL
"""
# Per live segment: its open memberships, and the customers the model puts there whom an operator excluded.
COUNTS_SQL = """
SELECT s.model_key,
       (SELECT count(*) FROM segments_segmentmembership sm WHERE sm.segment_id = s.id AND sm.exited_at IS NULL),
       (SELECT count(*) FROM segments_segmentexclusion x
        JOIN ({assignment}) AS a(customer_id, model_key) ON a.customer_id = x.customer_id
        WHERE x.segment_id = s.id AND a.model_key = s.model_key)
FROM segments_segment s WHERE s.id = ANY(%s::bigint[])
"""
SIZES_SQL = """
UPDATE segments_segment s SET size = (
    SELECT count(*) FROM segments_segmentmembership sm WHERE sm.segment_id = s.id AND sm.exited_at IS NULL
) WHERE s.id = ANY(%s::bigint[])
"""
# Above this many customers entering or leaving a segment, one full sync of it is cheaper than lookups per customer.
FULL_SYNC_ABOVE = 50_000


def _mismatches(
    segment_ids: list[int], assignment_sql: str, params: tuple[Any, ...], movers_sql: str | None
) -> dict[int, list[int]]:
    """Segment id → the customers entering or leaving it, over everyone or only `movers_sql`'s customers."""
    scope = "" if movers_sql is None else f"WHERE a.customer_id IN ({movers_sql})"
    scope_and = "" if movers_sql is None else f"AND customer_id IN ({movers_sql})"
    sql = MISMATCH_SQL.format(assignment=assignment_sql, scope=scope, scope_and=scope_and)
    movers: dict[int, list[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [segment_ids, *params, segment_ids])
        for segment_id, customer_id in cursor.fetchall():
            movers.setdefault(segment_id, []).append(customer_id)
    return movers


def sync_model_segments(
    prefix: str,
    wanted: list[ModelSegment],
    *,
    at: datetime,
    assignment_sql: str,
    params: tuple[Any, ...] = (),
    movers_sql: str | None = None,
    expected_sizes: Mapping[str, int] | None = None,
) -> dict[str, MembershipChange]:
    """Move the model's segments to what `assignment_sql` says — rows of (customer id, segment key) — in the
    caller's transaction, through `sync_membership` (history rows, segment events, exclusions honoured). Each
    segment is synced for the customers entering or leaving it only (in full when many do); segments of the
    prefix that the model no longer produces are emptied; archived segments are left alone. Returns the changes
    by key, `matched` being the segment's size afterwards.

    A run that knows who moved (`movers_sql`, selecting customer ids, and `expected_sizes`, the model's count
    per key) compares only those customers' memberships, then counts each segment's open memberships: when a
    count differs from the model's, less exclusions (a new or restored segment, memberships changed outside the
    model), everyone is compared and the sizes recounted, in the same call."""
    segments = ensure_segments(prefix, wanted)
    live = {key: segment for key, segment in segments.items() if not segment.is_archived}
    segment_ids = sorted(segment.pk for segment in live.values())
    narrow = movers_sql is not None and expected_sizes is not None
    mismatches = _mismatches(segment_ids, assignment_sql, params, movers_sql if narrow else None)
    moved = _sync_movers(wanted, segments, live, mismatches, at=at)
    if narrow and (drift := _drift(segment_ids, assignment_sql, params, expected_sizes)):
        logger.warning("segments.model_segments_drift", extra={"prefix": prefix, "drift": drift})
        mismatches = _mismatches(segment_ids, assignment_sql, params, None)
        again = _sync_movers(wanted, segments, live, mismatches, at=at)
        moved = {key: (entered + again[key][0], exited + again[key][1]) for key, (entered, exited) in moved.items()}
        with connection.cursor() as cursor:
            cursor.execute(SIZES_SQL, [segment_ids])
    sizes = dict(Segment.objects.filter(pk__in=segment_ids).values_list("model_key", "size"))  # kept by the sync
    finished = timezone.now()
    changes = {key: MembershipChange(sizes[key], entered, exited) for key, (entered, exited) in moved.items()}
    for key, change in changes.items():
        Segment.objects.filter(model_key=key).update(
            status=RecomputeStatus.IDLE, lease_until=None, last_started_at=at, last_finished_at=finished,
            last_counts=change.as_dict(), last_error="",
        )  # fmt: skip
    SegmentSize.objects.bulk_create(
        [SegmentSize(segment=segments[key], at=at, size=change.matched, entered=change.entered, exited=change.exited)
         for key, change in changes.items()]
    )  # fmt: skip
    return changes


def _drift(
    segment_ids: list[int], assignment_sql: str, params: tuple[Any, ...], expected: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """Segments whose open memberships do not number what the model says, less exclusions: key → (have, want).
    After a run that compared only its movers, this is the check that nothing else moved (a new or restored
    segment, memberships changed outside the model)."""
    with connection.cursor() as cursor:
        cursor.execute(COUNTS_SQL.format(assignment=assignment_sql), [*params, segment_ids])
        rows = cursor.fetchall()
    return {
        key: (have, expected.get(key, 0) - excluded)
        for key, have, excluded in rows
        if have != expected.get(key, 0) - excluded
    }


def _sync_movers(
    wanted: list[ModelSegment],
    segments: dict[str, Segment],
    live: dict[str, Segment],
    movers: dict[int, list[int]],
    *,
    at: datetime,
) -> dict[str, tuple[int, int]]:
    """Sync each live segment for its movers; key → (entered, exited)."""
    queries = {spec.key: (spec.members_sql, list(spec.params)) for spec in wanted}
    order = [spec.key for spec in wanted] + sorted(set(segments) - set(queries))  # then the former ones
    moved: dict[str, tuple[int, int]] = {}
    for key in (k for k in order if k in live):
        ids = sorted(movers.get(live[key].pk, ()))
        if not ids:
            moved[key] = (0, 0)
            continue
        sql, sql_params = queries.get(key, (NOBODY, []))
        incremental = len(ids) <= FULL_SYNC_ABOVE
        if incremental:  # the ids drive the join, so the plan stays an index lookup per customer
            sql = f"SELECT x.id FROM unnest(%s::bigint[]) AS u(id) JOIN ({sql}) AS x(id) ON x.id = u.id"  # noqa: S608
            sql_params = [ids, *sql_params]
        change = sync_membership(
            live[key], sql, sql_params, customer_ids=ids if incremental else None,
            entry_reason=MembershipReason.MODEL, exit_reason=MembershipReason.MODEL, at=at,
        )  # fmt: skip
        moved[key] = (change.entered, change.exited)
    return moved
