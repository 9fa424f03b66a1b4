"""Model segments: one stored segment per class or stage of a layering model ("rfm:important_value",
"aipl:interest", "lifecycle:vip", "ladder:5"), created on first use and kept by the model's recompute in one
statement for all of them, so every move writes a history row and a `segment.entered` / `segment.exited` event."""

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

from customers import domain_events
from customers.conditions.sets import refresh_statistics
from customers.domain_events import outbox_insert_sql
from segments.models import MembershipReason, RecomputeStatus, Segment, SegmentKind, SegmentSize
from segments.services.membership import MembershipChange, lock_segment

logger = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x5E62  # (namespace, model) advisory locks: one recompute of a model at a time
MODEL_LOCKS = {"rfm": 1, "aipl": 2, "lifecycle": 3, "ladder": 4}


@dataclass(frozen=True)
class ModelSegment:
    """A class or stage of a model: its segment key, its name and description (translatable)."""

    key: str
    name: Promise | str
    description: Promise | str


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


# One statement moves all the model's segments: the customers whose open memberships differ from what the model
# says, less the operators' exclusions (a class or stage change, a new customer, a merge, an exclusion, a new or
# former segment) — one hash full join — enter or leave, with their history rows and segment events. A run that
# knows who may have moved narrows both sides to them: the movers are read first, then their assignment by
# primary key, then their segment (joining the segments first made a lookup per customer and segment).
APPLY_SQL = """
WITH {movers}
seg AS MATERIALIZED (SELECT id, model_key FROM segments_segment WHERE id = ANY(%(segments)s::bigint[])),
assigned AS MATERIALIZED ({assigned}),
want AS (
    SELECT a.customer_id, seg.id AS segment_id FROM assigned a JOIN seg ON seg.model_key = a.model_key
    WHERE NOT EXISTS (SELECT 1 FROM segments_segmentexclusion x
                      WHERE x.segment_id = seg.id AND x.customer_id = a.customer_id)
),
have AS (
    SELECT customer_id, segment_id FROM segments_segmentmembership
    WHERE segment_id = ANY(%(segments)s::bigint[]) AND exited_at IS NULL {scope}
),
diff AS MATERIALIZED (
    SELECT coalesce(w.segment_id, h.segment_id) AS segment_id, coalesce(w.customer_id, h.customer_id) AS customer_id,
           h.customer_id IS NULL AS enters
    FROM want w FULL JOIN have h ON h.customer_id = w.customer_id AND h.segment_id = w.segment_id
    WHERE w.customer_id IS NULL OR h.customer_id IS NULL
    ORDER BY 1, 2  -- entries, exits and their events written in index order, not hash order
),
ins AS (
    INSERT INTO segments_segmentmembership (segment_id, customer_id, entered_at, entry_reason, exit_reason)
    SELECT segment_id, customer_id, %(at)s, %(reason)s, '' FROM diff WHERE enters
    ON CONFLICT (segment_id, customer_id) WHERE exited_at IS NULL DO NOTHING
    RETURNING segment_id, customer_id
),
outs AS (
    UPDATE segments_segmentmembership sm SET exited_at = %(at)s,
        exit_reason = CASE WHEN EXISTS (SELECT 1 FROM segments_segmentexclusion x
                                        WHERE x.segment_id = sm.segment_id AND x.customer_id = sm.customer_id)
                           THEN %(excluded)s ELSE %(reason)s END
    FROM diff WHERE NOT diff.enters AND sm.segment_id = diff.segment_id AND sm.customer_id = diff.customer_id
                AND sm.exited_at IS NULL
    RETURNING sm.segment_id, sm.customer_id
),
ev_in AS ({entered_events}),
ev_out AS ({exited_events})
SELECT segment_id, count(*) FILTER (WHERE entered), count(*) FILTER (WHERE NOT entered)
FROM (SELECT segment_id, TRUE AS entered FROM ins UNION ALL SELECT segment_id, FALSE FROM outs) AS moved
GROUP BY segment_id
"""
EVERYONE = "SELECT customer_id, model_key FROM ({assignment}) AS a(customer_id, model_key)"
MOVERS = "movers AS MATERIALIZED (SELECT DISTINCT customer_id FROM ({movers}) AS m(customer_id)),"
KNOWN = "known AS MATERIALIZED (SELECT customer_id, model_key FROM ({known}) AS k(customer_id, model_key)),"
# Each mover's assignment by its key (OFFSET 0 keeps the lookup a lookup): a plain join hashed the whole model's
# table, a million rows, for 27,000 movers (0.4 s instead of 0.06 s). `{looked_up}`: the movers to look up.
MOVERS_ASSIGNED = """SELECT a.customer_id, a.model_key
    FROM {looked_up} m, LATERAL (SELECT * FROM ({assignment}) AS a(customer_id, model_key)
                                 WHERE a.customer_id = m.customer_id OFFSET 0) AS a"""
# The movers whose assignment the caller had at hand, and the others' looked up.
KNOWN_ASSIGNED = "SELECT customer_id, model_key FROM known UNION ALL {others}"
NOT_KNOWN = "(SELECT customer_id FROM movers EXCEPT SELECT customer_id FROM known)"
MOVERS_SCOPE = "AND customer_id IN (SELECT customer_id FROM movers)"
SEGMENT_PAYLOAD = "jsonb_build_object('segment_id', segment_id)"
# Per live segment: its open memberships, and the customers the model puts there whom an operator excluded. The
# memberships are counted in one grouped scan that workers share (0.1 s at a million members; a count per segment
# took 0.2-0.4 s).
COUNTS_SQL = """
WITH open AS (
    SELECT segment_id, count(*) AS n FROM segments_segmentmembership
    WHERE segment_id = ANY(%(segments)s::bigint[]) AND exited_at IS NULL GROUP BY segment_id
)
SELECT s.model_key, coalesce(o.n, 0),
       (SELECT count(*) FROM segments_segmentexclusion x
        JOIN ({assignment}) AS a(customer_id, model_key) ON a.customer_id = x.customer_id
        WHERE x.segment_id = s.id AND a.model_key = s.model_key)
FROM segments_segment s LEFT JOIN open o ON o.segment_id = s.id WHERE s.id = ANY(%(segments)s::bigint[])
"""
SIZES_SQL = """
UPDATE segments_segment s SET size = s.size + d.entered - d.exited
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS d(id, entered, exited) WHERE s.id = d.id
"""
RECOUNT_SQL = """
UPDATE segments_segment s SET size = (
    SELECT count(*) FROM segments_segmentmembership sm WHERE sm.segment_id = s.id AND sm.exited_at IS NULL
) WHERE s.id = ANY(%s::bigint[])
"""


def _apply(
    segment_ids: list[int],
    assignment_sql: str,
    params: Mapping[str, Any],
    movers_sql: str | None,
    *,
    at: datetime,
    members: int = 0,
    known_assignment_sql: str | None = None,
) -> dict[int, tuple[int, int]]:
    """Move the segments to the assignment, over everyone or only `movers_sql`'s customers, under the segments'
    locks (their other writers wait); segment id → (entered, exited). Sizes follow. `members`: how many the model
    assigns in all (for a narrow run's choice to refresh the statistics). `known_assignment_sql`: the assignment
    of those movers the caller has it at hand for; the others' rows are looked up by key."""
    narrow = movers_sql is not None
    if not narrow:
        movers, assigned = "", EVERYONE.format(assignment=assignment_sql)
    elif known_assignment_sql is None:
        movers = MOVERS.format(movers=movers_sql)
        assigned = MOVERS_ASSIGNED.format(looked_up="movers", assignment=assignment_sql)
    else:
        movers = MOVERS.format(movers=movers_sql) + KNOWN.format(known=known_assignment_sql)
        assigned = KNOWN_ASSIGNED.format(others=MOVERS_ASSIGNED.format(looked_up=NOT_KNOWN, assignment=assignment_sql))
    sql = APPLY_SQL.format(
        movers=movers,
        assigned=assigned,
        scope=MOVERS_SCOPE if narrow else "",
        entered_events=outbox_insert_sql("ins", "'segment.entered'", SEGMENT_PAYLOAD, at_sql="%(at)s"),
        exited_events=outbox_insert_sql("outs", "'segment.exited'", SEGMENT_PAYLOAD, at_sql="%(at)s"),
    )
    with connection.cursor() as cursor:
        for segment_id in segment_ids:  # ascending, like every writer taking several
            lock_segment(segment_id)
        cursor.execute(sql, {**params, "segments": segment_ids, "at": at, "reason": MembershipReason.MODEL.value,
                             "excluded": MembershipReason.EXCLUDED.value})  # fmt: skip
        moved = {segment_id: (entered, exited) for segment_id, entered, exited in cursor.fetchall()}
        if moved:
            cursor.execute(SIZES_SQL, [list(moved), [e for e, _x in moved.values()], [x for _e, x in moved.values()]])
            total = sum(e + x for e, x in moved.values())
            # A nightly run moving a few percent of the model's members leaves the statistics as good as they were
            # (ANALYZE of the membership table: 0.2 s a night): a run moving a tenth of them, the share of changed
            # rows at which autovacuum analyzes a table by default, or comparing everyone (a first run, drift)
            # refreshes them. A night at a million customers moves about 50,000 (entries and exits).
            if not narrow or total * 10 > members:
                refresh_statistics("segments_segmentmembership", total)
            domain_events.kick_after_commit()
    return moved


def sync_model_segments(
    prefix: str,
    wanted: list[ModelSegment],
    *,
    at: datetime,
    assignment_sql: str,
    params: Mapping[str, Any] | None = None,
    movers_sql: str | None = None,
    known_assignment_sql: str | None = None,
    expected_sizes: Mapping[str, int] | None = None,
) -> dict[str, MembershipChange]:
    """Move the model's segments to what `assignment_sql` says — rows of (customer id, segment key), its named
    `params` — in the caller's transaction, in one statement writing history rows and segment events, operators'
    exclusions honoured. Segments of the prefix that the model no longer produces are emptied; archived segments
    are left alone. Returns the changes by key, `matched` being the segment's size afterwards.

    A run that knows who moved (`movers_sql`, selecting customer ids, and `expected_sizes`, the model's count
    per key) compares only those customers' memberships (their assignment read one customer at a time: a table
    keyed by customer, as the models' are; `known_assignment_sql` gives those the caller has at hand),
    then counts each segment's open memberships: when a
    count differs from the model's, less exclusions (a new or restored segment, memberships changed outside the
    model), everyone is compared and the sizes recounted, in the same call."""
    params = params or {}
    segments = ensure_segments(prefix, wanted)
    live = {segment.pk: key for key, segment in segments.items() if not segment.is_archived}
    segment_ids = sorted(live)
    narrow = movers_sql is not None and expected_sizes is not None
    members = sum(expected_sizes.values()) if expected_sizes else 0
    moved = _apply(segment_ids, assignment_sql, params, movers_sql if narrow else None, at=at, members=members,
                   known_assignment_sql=known_assignment_sql)  # fmt: skip
    if narrow and (drift := _drift(segment_ids, assignment_sql, params, expected_sizes)):
        logger.warning("segments.model_segments_drift", extra={"prefix": prefix, "drift": drift})
        again = _apply(segment_ids, assignment_sql, params, None, at=at)
        moved = {pk: tuple(a + b for a, b in zip(moved.get(pk, (0, 0)), again.get(pk, (0, 0)), strict=True))
                 for pk in {*moved, *again}}  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(RECOUNT_SQL, [segment_ids])
    sizes = dict(Segment.objects.filter(pk__in=segment_ids).values_list("pk", "size"))
    finished = timezone.now()
    changes = {live[pk]: MembershipChange(sizes[pk], *moved.get(pk, (0, 0))) for pk in segment_ids}
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
    segment_ids: list[int], assignment_sql: str, params: Mapping[str, Any], expected: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """Segments whose open memberships do not number what the model says, less exclusions: key → (have, want).
    After a run that compared only its movers, this is the check that nothing else moved (a new or restored
    segment, memberships changed outside the model)."""
    with connection.cursor() as cursor:
        cursor.execute(COUNTS_SQL.format(assignment=assignment_sql), {**params, "segments": segment_ids})
        rows = cursor.fetchall()
    return {
        key: (have, expected.get(key, 0) - excluded)
        for key, have, excluded in rows
        if have != expected.get(key, 0) - excluded
    }
