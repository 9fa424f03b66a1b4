"""A webhook consumer that checks our signature the way messaging/backends/webhook.py documents it (an
independent implementation, so a signing bug fails the tests) and acts on each idempotency key once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from messaging.fakes.base import Answer, FakeHttpServer


class FakeWebhookReceiver(FakeHttpServer):
    """POST / with X-SCRM-Timestamp, X-SCRM-Signature and Idempotency-Key; answers {"id": "wh-N"}.

    401 for a missing or wrong signature or a stale timestamp, 400 for a body that is not our payload or whose
    idempotency key differs from the header's, then whatever failure a test injected, else 200.
    """

    endpoint = "/hooks/scrm"

    def __init__(self, *, secret: str, **options: Any) -> None:
        self.secret = secret
        super().__init__(**options)

    def answer(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        key = headers.get("Idempotency-Key", "")
        if not self._is_authentic(headers, body):
            self.reject()
            self.record(path, headers, None, key, 401)
            return Answer(401, {"error": "invalid signature"})
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if (
            not key
            or not isinstance(payload, dict)
            or key not in {payload.get("idempotency_key"), quote(str(payload.get("idempotency_key")), safe="")}
        ):
            self.record(path, headers, payload, key, 400)
            return Answer(400, {"error": "idempotency key missing or not the payload's"})
        key = payload["idempotency_key"]  # counted by the raw key, whatever the header's encoding
        answer, _acted, delay = self.act(key, lambda: {"id": f"wh-{len(self.acted_on) + 1}"})
        status = answer.pop("status", 200)
        self.record(path, headers, payload, key, status)
        if status != 200:
            extra = {"Retry-After": "1"} if status == 429 else {}
            return Answer(status, {"error": answer.get("code") or "injected failure"}, extra, delay)
        return Answer(200, answer, delay=delay)

    def _is_authentic(self, headers: Mapping[str, str], body: bytes) -> bool:
        timestamp = headers.get("X-SCRM-Timestamp", "")
        signature = headers.get("X-SCRM-Signature", "")
        if not timestamp.isdigit() or not signature:
            return False
        if self.max_skew is not None and abs(time.time() - int(timestamp)) > self.max_skew:
            return False
        expected = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def receipt(self, key: str, status: str, *, at: str = "", code: str = "") -> tuple[bytes, dict[str, str]]:
        """A signed status report for /messaging/receipts/webhook, as a consumer would send it: (body, headers)."""
        update = {
            "idempotency_key": key,
            "status": status,
            **({"at": at} if at else {}),
            **({"code": code} if code else {}),
        }
        body = json.dumps({"updates": [update]}).encode()
        timestamp = str(int(time.time()))
        signature = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "X-SCRM-Timestamp": timestamp, "X-SCRM-Signature": signature}
