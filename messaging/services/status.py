"""Status reports from providers (receipts, WeCom send results, tracked clicks) move touchpoints forward only."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import TouchpointStatus
from messaging.services.status_events import record_status_events

S = TouchpointStatus
# The order a message moves through once handed to a channel; a report never moves it back.
PROGRESS = [S.AWAITING_CONFIRMATION, S.CONFIRMED, S.SENT, S.DELIVERED, S.READ, S.CLICKED]
FAILURES = (S.FAILED, S.UNDELIVERABLE)
TIMESTAMP_OF = {
    S.CONFIRMED: "confirmed_at",
    S.SENT: "sent_at",
    S.DELIVERED: "delivered_at",
    S.READ: "read_at",
    S.CLICKED: "clicked_at",
}


@dataclass(frozen=True)
class StatusUpdate:
    """What a provider said about one message, found by our id or by the provider's message id (plus the
    recipient when one provider message went to many, like a WeCom mass send)."""

    status: str
    touchpoint_id: int | None = None
    provider_message_id: str = ""
    recipient: str = ""
    provider_code: str = ""
    response: dict[str, Any] | None = None
    at: datetime.datetime | None = None
    idempotency_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _statuses_before(status: str) -> list[str]:
    """Where a report may move a message from. SENDING is included: a fast receipt can arrive before dispatch
    records the send, and dispatch then keeps the receipt's status (services/dispatch.py `_write`)."""
    if status in FAILURES:  # a message can fail until it is known to have arrived
        return [S.SENDING, S.AWAITING_CONFIRMATION, S.CONFIRMED, S.SENT]
    if status in (S.AWAITING_CONFIRMATION, S.CONFIRMED):
        return PROGRESS[: PROGRESS.index(status)]
    return [S.SENDING, *PROGRESS[: PROGRESS.index(status)]]


def apply_status_updates(updates: Sequence[StatusUpdate]) -> int:
    """Apply each update to the touchpoints it names whose status is behind it; returns how many rows moved.
    Idempotent: a repeated or stale report changes nothing. One statement per update, one transaction."""
    moved: list[int] = []
    with transaction.atomic():
        with connection.cursor() as cursor:
            for update in updates:
                if update.status not in PROGRESS and update.status not in FAILURES:
                    raise ValueError(f"not a reportable status: {update.status}")
                if not (update.touchpoint_id or update.provider_message_id or update.idempotency_key):
                    raise ValueError("a status update names a touchpoint, a provider message id or a key")
                at = update.at or timezone.now()
                decision = {"at": at.isoformat(), "step": "status", "outcome": update.status}
                if update.provider_code:
                    decision["code"] = update.provider_code
                timestamp_column = TIMESTAMP_OF.get(update.status)
                cursor.execute(
                    f"""
                    UPDATE messaging_touchpoint SET
                        status = %(status)s,
                        reason = CASE WHEN %(failed)s THEN 'provider_report' ELSE reason END,
                        provider_code = COALESCE(NULLIF(%(code)s, ''), provider_code),
                        provider_response = CASE WHEN %(response)s::jsonb IS NULL THEN provider_response
                                                 ELSE provider_response || %(response)s::jsonb END,
                        decisions = decisions || %(decision)s::jsonb,
                        {f"{timestamp_column} = COALESCE({timestamp_column}, %(at)s)," if timestamp_column else ""}
                        updated_at = now()
                    WHERE status = ANY(%(before)s)
                      AND (id = %(id)s
                           OR (%(key)s <> '' AND idempotency_key = %(key)s)
                           OR (%(msgid)s <> '' AND provider_message_id = %(msgid)s
                               AND (%(recipient)s = '' OR recipient = %(recipient)s)))
                    RETURNING id
                    """,  # noqa: S608 (the column name comes from TIMESTAMP_OF)
                    {
                        "status": update.status,
                        "failed": update.status in FAILURES,
                        "code": update.provider_code,
                        "response": orjson.dumps(update.response).decode() if update.response else None,
                        "decision": orjson.dumps([decision]).decode(),
                        "at": at,
                        "before": _statuses_before(update.status),
                        "id": update.touchpoint_id or 0,
                        "key": update.idempotency_key,
                        "msgid": update.provider_message_id,
                        "recipient": update.recipient,
                    },
                )
                moved.extend(row[0] for row in cursor.fetchall())
        record_status_events(moved)
    return len(moved)
