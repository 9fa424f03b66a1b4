"""An SMS gateway following the protocol in messaging/backends/sms.py, checked with its own implementation of the
signing scheme: it sends each request id once, refuses bad signatures, replayed nonces, invalid numbers and
unknown templates with the gateway's codes, and posts signed delivery receipts back."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from messaging.fakes.base import Answer, FakeHttpServer

PHONE = re.compile(r"^\+?\d{6,15}$")
# HTTP status the gateway answers with each of its error codes.
STATUS_OF_CODE = {
    "InvalidSignature": 401,
    "InvalidTimestamp": 401,
    "InvalidNonce": 401,
    "InvalidAppKey": 401,
    "InvalidRequest": 400,
    "InvalidPhoneNumber": 400,
    "InvalidTemplate": 400,
    "Throttled": 429,
    "InternalError": 500,
}
REQUIRED = ("app_key", "phone", "request_id", "timestamp", "nonce", "signature")


class FakeSmsGateway(FakeHttpServer):
    """POST /sms/send with the signed parameters; answers {"code": "OK", "message_id": "sms-00000001", …}.

    `templates`: the template codes it knows (None: any). `fail_next(status=…, code=…)` answers that code: use
    status 429/500 for throttling and faults, or status 200 with an Aliyun-style error code in the body.
    """

    endpoint = "/sms/send"

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        templates: set[str] | None = None,
        receipt_url: str = "",
        auto_receipt: bool = False,
        **options: Any,
    ) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.templates = templates
        self.receipt_url = receipt_url
        self.auto_receipt = auto_receipt
        self._receipts: queue.Queue[str | None] = queue.Queue()
        super().__init__(**options)

    def reset(self) -> None:
        with self.condition:
            self.messages: dict[str, dict[str, str]] = {}  # message id → what was sent
            self.receipts_posted: list[tuple[str, int]] = []  # (message id, our answer's status)
            self._nonces: set[str] = set()
        super().reset()

    def start(self) -> FakeSmsGateway:
        if self.auto_receipt:
            threading.Thread(target=self._post_receipts, daemon=True).start()
        return super().start()

    def stop(self) -> None:
        self._receipts.put(None)
        super().stop()

    def answer(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        try:
            params = json.loads(body)
        except ValueError:
            params = None
        if not isinstance(params, dict) or not all(isinstance(params.get(name), str) for name in REQUIRED):
            return self._refuse(path, headers, params, "", "InvalidRequest")
        key = params["request_id"]
        code = self._authentication_error(params)
        if code:
            self.reject()
            return self._refuse(path, headers, params, key, code)
        if not PHONE.match(params["phone"]):
            return self._refuse(path, headers, params, key, "InvalidPhoneNumber")
        template = params.get("template_code", "")
        if (self.templates is not None and template not in self.templates) or not (template or params.get("content")):
            return self._refuse(path, headers, params, key, "InvalidTemplate")
        answer, acted, delay = self.act(key, lambda: self._accept(params))
        status = answer.pop("status", 200)
        self.record(path, headers, params, key, status)
        if status != 200 or answer.get("code") != "OK":
            code = answer.get("code") or next((c for c, s in STATUS_OF_CODE.items() if s == status), "InternalError")
            return Answer(status, {"code": code, "message": "injected failure", "request_id": key}, delay=delay)
        if acted and self.auto_receipt:
            self._receipts.put(answer["message_id"])
        return Answer(200, answer, delay=delay)

    def _accept(self, params: Mapping[str, str]) -> dict[str, Any]:
        message_id = f"sms-{len(self.messages) + 1:08d}"
        self.messages[message_id] = dict(params)
        return {"code": "OK", "message_id": message_id, "request_id": params["request_id"]}

    def _refuse(self, path: str, headers: Mapping[str, str], params: Any, key: str, code: str) -> Answer:
        status = STATUS_OF_CODE[code]
        self.record(path, headers, params, key, status)
        return Answer(status, {"code": code, "message": code, "request_id": key})

    def _authentication_error(self, params: Mapping[str, Any]) -> str:
        if params["app_key"] != self.app_key:
            return "InvalidAppKey"
        canonical = "&".join(
            f"{quote(str(name), safe='-_.~')}={quote(str(value), safe='-_.~')}"
            for name, value in sorted(params.items())
            if name != "signature"
        )
        expected = hmac.new(self.app_secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["signature"]):
            return "InvalidSignature"
        if not params["timestamp"].isdigit() or (
            self.max_skew is not None and abs(time.time() - int(params["timestamp"])) > self.max_skew
        ):
            return "InvalidTimestamp"
        with self.condition:
            if params["nonce"] in self._nonces:
                return "InvalidNonce"
            self._nonces.add(params["nonce"])
        return ""

    # Delivery receipts

    def receipt(
        self, message_id: str, *, status: str = "DELIVERED", error_code: str = "", report_time: str = ""
    ) -> tuple[bytes, dict[str, str]]:
        """The gateway's signed receipt for one message: (body, headers), ready to POST to our receipt URL.

        Body: [{"message_id", "request_id", "phone", "status": "DELIVERED"|"FAILED", "error_code",
        "report_time"}]; headers X-Sms-Timestamp, X-Sms-Nonce and X-Sms-Signature, the hex HMAC-SHA256 of
        "{timestamp}\\n{nonce}\\n{body}" keyed with the app secret.
        """
        sent = self.messages.get(message_id, {})
        item = {
            "message_id": message_id,
            "request_id": sent.get("request_id", ""),
            "phone": sent.get("phone", ""),
            "status": status,
            "error_code": error_code,
            "report_time": report_time or datetime.now(UTC).isoformat(timespec="seconds"),
        }
        body = json.dumps([item]).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        signed = f"{timestamp}\n{nonce}\n".encode() + body
        signature = hmac.new(self.app_secret.encode(), signed, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Sms-Timestamp": timestamp,
            "X-Sms-Nonce": nonce,
            "X-Sms-Signature": signature,
        }
        return body, headers

    def post_receipt(self, message_id: str, *, url: str = "", **fields: str) -> tuple[int, dict[str, Any]]:
        """POST a receipt to `url` (default `receipt_url`) over HTTP; returns the status and the JSON answer."""
        body, headers = self.receipt(message_id, **fields)
        request = urllib.request.Request(url or self.receipt_url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a local test URL
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def wait_for_receipts(self, count: int, *, timeout: float) -> bool:
        """Block until `count` automatic receipts were posted (no polling loop); False on timeout."""
        with self.condition:
            return self.condition.wait_for(lambda: len(self.receipts_posted) >= count, timeout=timeout)

    def _post_receipts(self) -> None:
        while (message_id := self._receipts.get()) is not None:
            try:
                status, _answer = self.post_receipt(message_id)
            except (OSError, ValueError):
                status = 0  # like a real gateway, a receipt that cannot be posted is dropped
            with self.condition:
                self.receipts_posted.append((message_id, status))
                self.condition.notify_all()
