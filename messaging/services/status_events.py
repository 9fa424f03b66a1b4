"""`touchpoint.status` domain events, written only while an integration subscribes to them (they would
otherwise double the outbox's traffic for nothing)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from customers.domain_events import kick_after_commit, outbox_insert_sql


def _is_wanted() -> bool:
    try:
        from messaging.integrations import wanted_kinds
    except ImportError:
        return False
    return "touchpoint.status" in wanted_kinds()


def record_status_events(touchpoint_ids: Sequence[int]) -> int:
    """Write one `touchpoint.status` event per touchpoint with its current status, in the caller's transaction."""
    if not touchpoint_ids or not _is_wanted():
        return 0
    payload = """jsonb_build_object('touchpoint_id', id, 'status', status, 'channel', channel, 'reason', reason,
        'source', source, 'source_ref', source_ref, 'idempotency_key', idempotency_key, 'group_id', group_id)"""
    source = """(SELECT id, status, channel, reason, source, source_ref, idempotency_key, group_id,
                        COALESCE(customer_id, 0) AS customer_id FROM messaging_touchpoint) t"""
    with connection.cursor() as cursor:
        cursor.execute(
            outbox_insert_sql(source, "'touchpoint.status'", payload, where="t.id = ANY(%s)"), [list(touchpoint_ids)]
        )
        count = cursor.rowcount
    kick_after_commit()
    return count
