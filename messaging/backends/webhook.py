"""The signed webhook channel: each touchpoint is POSTed as JSON to the configured URL.

Request (one per touchpoint)::

    POST {config["url"]}
    Content-Type: application/json
    X-SCRM-Timestamp: 1767225600                      (Unix seconds)
    X-SCRM-Signature: <hex HMAC-SHA256(secret, f"{timestamp}.{body}")>
    Idempotency-Key: <the touchpoint's idempotency key; percent-encoded if not printable ASCII>

    {"id": 42, "idempotency_key": "…", "customer_id": 7, "channel": "webhook", "kind": "marketing",
     "content": {…rendered content…}, "sent_at": "2026-01-01T00:00:00+00:00"}

A retry carries the same idempotency key (and a fresh timestamp and signature), so the receiver acts on each key
once. A 2xx answer is sent (the body's "id" or "message_id", if any, is kept as the provider message id); 429, 5xx,
timeouts and refused connections are retried; any other status is permanent with that status as the code.
Receivers report delivered/read/clicked back to /messaging/receipts/webhook, signed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
from django.utils import timezone

from messaging.backends.base import ChannelBackend, DeliveryResult, Outcome, OutgoingMessage
from messaging.backends.http import make_client, result_of_error, result_of_response

TIMESTAMP_HEADER = "X-SCRM-Timestamp"
SIGNATURE_HEADER = "X-SCRM-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Requests in flight at once per backend instance. Measured on the 2-core machine against the fake in another
# process: 8 gave ~550 touchpoints/s, 12 and 16 less (httpx's per-request CPU under the GIL is the limit, not the
# receiver); few enough not to flood a slow receiver.
DEFAULT_CONCURRENCY = 8


def sign(secret: str, timestamp: str | int, body: bytes | str) -> str:
    """The hex HMAC-SHA256 of f"{timestamp}.{body}" under `secret` (our webhooks and webhook receipts)."""
    payload = body if isinstance(body, bytes) else body.encode()
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()


def is_valid_signature(
    secret: str, *, timestamp: str, body: bytes, signature: str, tolerance: float, now: float | None = None
) -> bool:
    """True when `signature` signs `body` at `timestamp` and the timestamp is within `tolerance` seconds of now
    (an old request replayed later is refused)."""
    if not secret or not timestamp or not signature:
        return False
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower())


class ConcurrentHttpBackend(ChannelBackend):
    """A backend sending one HTTP request per message, `concurrency` at once, over one pooled client (shared by
    the SMS gateway backend). Subclasses implement `send`; `send_many` keeps the input order."""

    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, *, channel: str, config: Mapping[str, Any]) -> None:
        super().__init__(channel=channel, config=config)
        self.concurrency = int(config.get("concurrency") or self.default_concurrency)
        self._lock = threading.Lock()
        self._pid = 0
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Results in input order; each message succeeds or fails on its own."""
        if len(messages) <= 1:
            return [self.send(message) for message in messages]
        _client, pool = self._connections()
        return list(pool.map(self.send, messages))

    def close(self) -> None:
        with self._lock:
            client, pool = self._client, self._pool
            self._client = self._pool = None
        # Outside the lock: requests still in flight finish (they hold the client they started with).
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()

    @property
    def http(self) -> httpx.Client:
        return self._connections()[0]

    def _connections(self) -> tuple[httpx.Client, ThreadPoolExecutor]:
        with self._lock:
            # Neither a client's sockets nor a pool's threads survive a fork (Celery prefork): make them anew in
            # the child.
            if self._client is None or self._pool is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._client = make_client()
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=self.channel)
            return self._client, self._pool


class WebhookBackend(ConcurrentHttpBackend):
    """POSTs each message to config["url"], signed with config["secret"]."""

    def __init__(self, *, channel: str, config: Mapping[str, Any]) -> None:
        super().__init__(channel=channel, config=config)
        self.url = str(config.get("url") or "")
        self.secret = str(config.get("secret") or "")

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        if not self.url or not self.secret:
            # Permanent, so a misconfigured channel shows up in the dead letters at once instead of after retries.
            return DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="not_configured")
        try:
            body = json.dumps(payload_of(message), separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as error:
            return DeliveryResult(
                Outcome.PERMANENT_ERROR, provider_code="unserializable", response={"error": str(error)}
            )
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            IDEMPOTENCY_HEADER: header_value(message.idempotency_key),
        }
        try:
            response = self.http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return result_of_error(error)
        except httpx.InvalidURL as error:
            return DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="invalid_url", response={"error": str(error)})
        return result_of_response(response, message_id=_message_id_of(response))


def header_value(key: str) -> str:
    """The key as an HTTP header: as is when printable ASCII, else percent-encoded (UTF-8); the body has it raw."""
    return key if key.isascii() and key.isprintable() else quote(key, safe="")


def payload_of(message: OutgoingMessage) -> dict[str, Any]:
    return {
        "id": message.touchpoint_id,
        "idempotency_key": message.idempotency_key,
        "customer_id": message.customer_id,
        "channel": message.channel,
        "kind": message.kind,
        "content": dict(message.content),
        "sent_at": timezone.now().isoformat(),
    }


def _message_id_of(response: httpx.Response) -> str:
    if not response.is_success:
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return str(body.get("id") or body.get("message_id") or "")
