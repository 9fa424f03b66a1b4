"""The development default: every message is written to the log and to ConsoleMessage, readable in the UI.
A repeated idempotency key is stored once, like a provider that deduplicates."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
from django.db import connection

from messaging.backends.base import ChannelBackend, DeliveryResult, Outcome, OutgoingMessage

logger = logging.getLogger("messaging.console")


class ConsoleBackend(ChannelBackend):
    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        rows = [
            {
                "t": message.touchpoint_id,
                "c": message.channel,
                "r": message.recipient,
                "m": dict(message.content),
                "k": message.idempotency_key,
            }
            for message in messages
        ]
        with connection.cursor() as cursor:  # one statement for the batch; a repeated key is stored once
            cursor.execute(
                """
                INSERT INTO messaging_consolemessage (touchpoint_id, channel, recipient, content, idempotency_key,
                                                      created_at)
                SELECT r.t, r.c, r.r, r.m, r.k, now() FROM jsonb_to_recordset(%s::jsonb)
                    AS r(t bigint, c text, r text, m jsonb, k text)
                ON CONFLICT (idempotency_key) DO NOTHING
                """,
                [orjson.dumps(rows).decode()],
            )
        if logger.isEnabledFor(logging.INFO):  # the message itself, readable in `make run`'s output
            for message in messages:
                logger.info(
                    "console.sent %s → %s: %s",
                    message.channel,
                    message.recipient,
                    str(message.content.get("text", ""))[:200],
                    extra={"channel": message.channel, "recipient": message.recipient, "key": message.idempotency_key},
                )
        return [DeliveryResult(Outcome.SENT, provider_message_id=f"console-{m.touchpoint_id}") for m in messages]

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        return self.send_many([message])[0]
