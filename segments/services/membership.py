"""Stored segment membership: one set-based statement moves a segment to a new member set, writing the history
rows (entered_at / exited_at) and the `segment.entered` / `segment.exited` domain events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from customers import domain_events
from customers.conditions.sets import materialize, refresh_statistics
from customers.domain_events import outbox_insert_sql
from segments.models import MembershipReason, Segment

LOCK_NAMESPACE = 0x5E61
_SEGMENT_PAYLOAD = "jsonb_build_object('segment_id', (SELECT segment FROM p))"


@dataclass(frozen=True)
class MembershipChange:
    matched: int
    entered: int
    exited: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lock_segment(segment_id: int) -> None:
    """Serialize writers of one segment's membership until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, segment_id])


def queryset_sql(members: QuerySet) -> tuple[str, list[Any]]:
    """The SQL of a Customer queryset, selecting only ids."""
    sql, params = members.order_by().values("pk").query.sql_with_params()
    return sql, list(params)


def sync_membership(
    segment: Segment,
    members_sql: str,
    params: list[Any],
    *,
    customer_ids: Iterable[int] | None = None,
    entry_reason: str = MembershipReason.RULE,
    exit_reason: str = MembershipReason.NO_LONGER_MATCHING,
    honour_exclusions: bool = True,
    at: datetime | None = None,
) -> MembershipChange:
    """Make the segment's open memberships equal `members_sql` (a query yielding customer ids), over everyone or
    only `customer_ids`, as of `at` (default now). Members excluded by hand stay out (and are taken out). Runs
    in the caller's transaction under the segment's lock; the same member set twice changes nothing (no new
    episode, no event)."""
    ids = None if customer_ids is None else sorted(set(customer_ids))
    scope = "AND sm.customer_id IN (SELECT unnest(ids) FROM p)" if ids is not None else ""
    excluded = (
        "EXISTS (SELECT 1 FROM segments_segmentexclusion x WHERE x.segment_id = (SELECT segment FROM p) "
        "AND x.customer_id = {alias})"
        if honour_exclusions
        else "FALSE"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        lock_segment(segment.pk)
        if ids is None:  # over everyone: the members on their own, with parallel workers
            members_sql, params = f"SELECT * FROM {materialize(members_sql, params)}", []  # noqa: S608
        sql = f"""
            WITH m(id) AS MATERIALIZED ({members_sql}),
            p AS (SELECT %s::bigint AS segment, %s::text AS entry, %s::text AS exit, %s::bigint[] AS ids,
                  %s::timestamptz AS at),
            cur AS MATERIALIZED (
                SELECT sm.customer_id FROM segments_segmentmembership sm
                WHERE sm.segment_id = (SELECT segment FROM p) AND sm.exited_at IS NULL {scope}
            ),
            -- The diff as a FULL JOIN (hash or merge join only): NOT EXISTS let stale estimates pick a nested loop.
            diff AS MATERIALIZED (
                SELECT m.id AS gained, cur.customer_id AS lapsed FROM m FULL JOIN cur ON cur.customer_id = m.id
                WHERE m.id IS NULL OR cur.customer_id IS NULL
            ),
            ins AS (
                INSERT INTO segments_segmentmembership (segment_id, customer_id, entered_at, entry_reason, exit_reason)
                SELECT (SELECT segment FROM p), gained, (SELECT at FROM p), (SELECT entry FROM p), '' FROM diff
                WHERE gained IS NOT NULL AND NOT {excluded.format(alias="gained")}
                ON CONFLICT (segment_id, customer_id) WHERE exited_at IS NULL DO NOTHING
                RETURNING customer_id
            ),
            outs AS (
                UPDATE segments_segmentmembership sm SET exited_at = (SELECT at FROM p),
                    exit_reason = CASE WHEN {excluded.format(alias="sm.customer_id")} THEN 'excluded'
                                       ELSE (SELECT exit FROM p) END
                WHERE sm.segment_id = (SELECT segment FROM p) AND sm.exited_at IS NULL
                  AND sm.customer_id IN (
                      SELECT lapsed FROM diff WHERE lapsed IS NOT NULL
                      UNION ALL
                      SELECT cur.customer_id FROM cur WHERE {excluded.format(alias="cur.customer_id")}
                  )
                RETURNING sm.customer_id
            ),
            ev_in AS ({outbox_insert_sql("ins", "'segment.entered'", _SEGMENT_PAYLOAD, at_sql="(SELECT at FROM p)")}),
            ev_out AS ({outbox_insert_sql("outs", "'segment.exited'", _SEGMENT_PAYLOAD, at_sql="(SELECT at FROM p)")})
            SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM ins), (SELECT count(*) FROM outs)
        """  # noqa: S608 - module constants and Django's own SQL only
        cursor.execute(sql, [*params, segment.pk, entry_reason, exit_reason, ids, at or timezone.now()])
        matched, entered, exited = cursor.fetchone()
        refresh_statistics("segments_segmentmembership", entered + exited)
        if entered or exited:
            Segment.objects.filter(pk=segment.pk).update(size=F("size") + entered - exited)
            domain_events.kick_after_commit()
    return MembershipChange(matched, entered, exited)
