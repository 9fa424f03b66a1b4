"""Touchpoints in bulk for dispatch tests (scheduling 100,000 one by one would take the test minutes)."""

import datetime

from django.db import connection


def queue_many(
    count: int,
    *,
    customer_id: int,
    source_ref: str,
    due_at: datetime.datetime,
    key_prefix: str,
    kind: str = "transactional",
    step: datetime.timedelta = datetime.timedelta(0),
    channel: str = "sms",
) -> None:
    """`count` scheduled touchpoints in one statement, the n-th due at `due_at + n * step`."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_touchpoint (customer_id, channel, sender, context, content, rendered, recipient,
                counted_in, kind, source, source_ref, priority, on_cap, idempotency_key, status, reason,
                provider_code, provider_message_id, provider_response, decisions, attempts, max_attempts,
                scheduled_for, due_at, created_at, updated_at)
            SELECT %(customer)s, %(channel)s, '', '{}', '{"text": "hi"}', '{}', '', '[]', %(kind)s, 'journey',
                   %(lane)s, 0, 'skip', %(prefix)s || n, 'scheduled', '', '', '', '{}', '[]', 0, 5,
                   %(due)s + n * %(step)s, %(due)s + n * %(step)s, %(due)s, %(due)s
            FROM generate_series(1, %(count)s) AS n
            """,
            {
                "customer": customer_id,
                "channel": channel,
                "kind": kind,
                "lane": source_ref,
                "prefix": key_prefix,
                "due": due_at,
                "step": step,
                "count": count,
            },
        )
