"""The development default: every message is written to the log and to ConsoleMessage, readable in the UI.
A repeated idempotency key is stored once, like a provider that deduplicates."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from messaging.backends.base import ChannelBackend, DeliveryResult, Outcome, OutgoingMessage

logger = logging.getLogger("messaging.console")


class ConsoleBackend(ChannelBackend):
    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        from messaging.models import ConsoleMessage

        ConsoleMessage.objects.bulk_create(
            [
                ConsoleMessage(
                    touchpoint_id=message.touchpoint_id,
                    channel=message.channel,
                    recipient=message.recipient,
                    content=dict(message.content),
                    idempotency_key=message.idempotency_key,
                )
                for message in messages
            ],
            ignore_conflicts=True,
        )
        for message in messages:
            logger.info(
                "console.sent",
                extra={"channel": message.channel, "recipient": message.recipient, "key": message.idempotency_key},
            )
        return [DeliveryResult(Outcome.SENT, provider_message_id=f"console-{m.touchpoint_id}") for m in messages]

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        return self.send_many([message])[0]
