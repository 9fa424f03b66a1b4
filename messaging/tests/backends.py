"""A scripted channel backend for dispatch tests: outcomes per recipient, every call recorded."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from messaging.backends import ChannelBackend, DeliveryResult, Outcome, OutgoingMessage


class ScriptedBackend(ChannelBackend):
    """`script[recipient]` is a list of outcomes used one per call (the last repeats); the default is SENT.
    `delivered` counts each idempotency key once, like a provider that deduplicates."""

    script: ClassVar[dict[str, list[tuple[Outcome, str]]]] = {}
    calls: ClassVar[list[OutgoingMessage]] = []
    delivered: ClassVar[dict[str, int]] = defaultdict(int)

    @classmethod
    def reset(cls) -> None:
        cls.script = {}
        cls.calls = []
        cls.delivered = defaultdict(int)

    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        results = []
        for message in messages:
            type(self).calls.append(message)
            plan = type(self).script.get(message.recipient) or [(Outcome.SENT, "200")]
            outcome, code = plan.pop(0) if len(plan) > 1 else plan[0]
            if outcome in (Outcome.SENT, Outcome.DELIVERED):
                type(self).delivered[message.idempotency_key] = 1
            results.append(DeliveryResult(outcome, provider_code=code, provider_message_id=f"m{message.touchpoint_id}"))
        return results
