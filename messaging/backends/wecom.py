"""The WeCom channel: the welcome message on a new contact, and enterprise mass sends for everything else.

- A message whose context carries a `welcome_code` goes out at once through send_welcome_msg and is SENT.
- Every other message is part of an enterprise mass send: messages with the same sender and the same rendered
  content become one add_msg_template call (chat_type "group" for group touchpoints), which WeCom delivers
  only after the staff member confirms it. They come back AWAITING_CONFIRMATION with the mass send's msgid as
  `provider_message_id`; messaging.wecom.mass_send polls them forward. Recipients WeCom lists in `fail_list` are
  PERMANENT_ERROR, alone: one recipient failing never fails the others.

Idempotency: WeCom has no idempotency header, so the backend remembers, in Redis, each idempotency key it has
handed over (key → msgid, or "welcome") before returning, for `REMEMBER_SECONDS`. Dispatch calls a backend
again for the same touchpoint only after a crash between the send and recording the outcome; the repeat then
answers from memory and creates no second mass send (and spends no second welcome code). What remains is the
window between WeCom's answer and the Redis write (a few milliseconds of one process): a crash exactly there
re-creates the mass send, which the rep then sees twice in WeCom; a welcome code is refused the second time
by WeCom itself (errcode 41051), so a welcome is never delivered twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from django.core.cache import cache

from messaging.backends.base import ChannelBackend, DeliveryResult, Outcome, OutgoingMessage
from messaging.wecom.client import WeComClient, WeComError, WeComRateLimited, message_payload

logger = logging.getLogger("messaging.wecom")

REMEMBER_SECONDS = 7 * 24 * 3600
REMEMBER_PREFIX = "wecom:sent"
WELCOME_MARK = "welcome"
# add_msg_template takes at most 10,000 customers or 2,000 groups a call.
MAX_CUSTOMERS_PER_CALL = 10_000
MAX_GROUPS_PER_CALL = 2_000


def remember_key(idempotency_key: str) -> str:
    return f"{REMEMBER_PREFIX}:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}"


def _fingerprint(content: Mapping[str, Any]) -> str:
    """What makes two rendered messages the same mass send (the context is not sent, so it does not count)."""
    sent = {k: content.get(k) for k in ("format", "text", "card")}
    return json.dumps(sent, sort_keys=True, ensure_ascii=False, default=str)


def _error_result(error: WeComError) -> DeliveryResult:
    outcome = Outcome.TEMPORARY_ERROR if error.is_temporary else Outcome.PERMANENT_ERROR
    response = {"error": str(error), **error.response}
    if isinstance(error, WeComRateLimited):
        response["retry_at"] = error.retry_at.isoformat()
    return DeliveryResult(outcome, provider_code=error.code, response=response)


class WeComBackend(ChannelBackend):
    def __init__(self, *, channel: str, config: Mapping[str, Any]) -> None:
        super().__init__(channel=channel, config=config)
        self._client: WeComClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> WeComClient:
        with self._lock:
            if self._client is None:
                self._client = WeComClient.from_config(self.config)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        return self.send_many([message])[0]

    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """One result per message, in order. Never raises for a provider's failure."""
        results: dict[int, DeliveryResult] = {}
        try:
            remembered = cache.get_many([remember_key(m.idempotency_key) for m in messages])
        except (redis.RedisError, OSError) as error:  # without the memory a repeat could send twice: wait
            logger.warning("wecom.memory_unavailable", extra={"error": str(error)})
            return [DeliveryResult(Outcome.TEMPORARY_ERROR, provider_code="redis_unavailable") for _ in messages]
        groups: dict[tuple[str, bool, str], list[int]] = defaultdict(list)
        for index, message in enumerate(messages):
            earlier = remembered.get(remember_key(message.idempotency_key))
            welcome_code = (message.content.get("context") or {}).get("welcome_code")
            if earlier is not None:
                results[index] = self._remembered(earlier)
            elif welcome_code and not message.is_group:
                results[index] = self._send_welcome(message, str(welcome_code))
            else:
                groups[(message.sender, message.is_group, _fingerprint(message.content))].append(index)
        limited: WeComRateLimited | None = None
        for indexes in groups.values():
            batch = [messages[i] for i in indexes]
            if limited is not None:  # the API's budget is spent for this minute: call nothing more, defer
                batch_results = [_error_result(limited) for _ in batch]
            else:
                batch_results, limited = self._send_mass(batch)
            results.update(zip(indexes, batch_results, strict=True))
        return [results[index] for index in range(len(messages))]

    # ----------------------------------------------------------------------------------------------------------

    @staticmethod
    def _remembered(earlier: str) -> DeliveryResult:
        if earlier == WELCOME_MARK:
            return DeliveryResult(Outcome.SENT, provider_code="0", response={"remembered": True})
        return DeliveryResult(
            Outcome.AWAITING_CONFIRMATION,
            provider_code="0",
            provider_message_id=earlier,
            response={"msgid": earlier, "remembered": True},
        )

    def _send_welcome(self, message: OutgoingMessage, welcome_code: str) -> DeliveryResult:
        text, attachments = message_payload(message.content)
        try:
            answer = self.client.send_welcome_msg(welcome_code, text=text, attachments=attachments)
        except WeComError as error:
            logger.info("wecom.welcome_failed", extra={"touchpoint": message.touchpoint_id, "code": error.code})
            return _error_result(error)
        self._remember({message.idempotency_key: WELCOME_MARK})
        return DeliveryResult(Outcome.SENT, provider_code="0", response=answer)

    def _send_mass(self, batch: Sequence[OutgoingMessage]) -> tuple[list[DeliveryResult], WeComRateLimited | None]:
        """One add_msg_template call per chunk of recipients of the same sender and content; also returns the
        rate limit that stopped it, if one did."""
        first = batch[0]
        chat_type = "group" if first.is_group else "single"
        if chat_type == "group" and not first.sender:
            missing = {"error": "a group mass send needs the sending staff member's WeCom userid"}
            refused = DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="no_sender", response=missing)
            return [_copy(refused) for _ in batch], None
        text, attachments = message_payload(first.content)
        recipients = list(dict.fromkeys(m.recipient for m in batch))  # a repeated recipient is sent to once
        size = MAX_GROUPS_PER_CALL if chat_type == "group" else MAX_CUSTOMERS_PER_CALL
        outcome_of: dict[str, DeliveryResult] = {}
        limited: WeComRateLimited | None = None
        for start in range(0, len(recipients), size):
            chunk = recipients[start : start + size]
            try:
                created = self.client.add_msg_template(
                    chat_type=chat_type,
                    sender=first.sender,
                    external_userids=chunk if chat_type == "single" else (),
                    chat_ids=chunk if chat_type == "group" else (),
                    text=text,
                    attachments=attachments,
                )
            except WeComError as error:
                failed = _error_result(error)
                if isinstance(error, WeComRateLimited):
                    limited = error
                    outcome_of.update(dict.fromkeys(recipients[start:], failed))
                    break
                outcome_of.update(dict.fromkeys(chunk, failed))
                continue
            refused = set(created.fail_list)
            common = {"msgid": created.msgid, "sender": first.sender, "chat_type": chat_type}
            for recipient in chunk:
                if recipient in refused or not created.msgid:
                    outcome_of[recipient] = DeliveryResult(
                        Outcome.PERMANENT_ERROR, provider_code="fail_list", response={**common, "fail_list": True}
                    )
                else:
                    outcome_of[recipient] = DeliveryResult(
                        Outcome.AWAITING_CONFIRMATION,
                        provider_code="0",
                        provider_message_id=created.msgid,
                        response=common,
                    )
            accepted = {r for r in chunk if r not in refused}
            if created.msgid:
                self._remember({m.idempotency_key: created.msgid for m in batch if m.recipient in accepted})
        # Copies, so a caller changing one touchpoint's result cannot change another's.
        return [_copy(outcome_of[m.recipient]) for m in batch], limited

    @staticmethod
    def _remember(values: dict[str, str]) -> None:
        try:
            cache.set_many({remember_key(k): v for k, v in values.items()}, timeout=REMEMBER_SECONDS)
        except (redis.RedisError, OSError) as error:  # sent is sent: report it; only a crash-repeat could repeat
            logger.warning("wecom.remember_failed", extra={"error": str(error), "count": len(values)})


def _copy(result: DeliveryResult) -> DeliveryResult:
    return DeliveryResult(
        result.outcome,
        provider_code=result.provider_code,
        provider_message_id=result.provider_message_id,
        response=dict(result.response),
    )
