"""SMS through a generic HTTP gateway, signed like the Aliyun/Tencent-style gateways.

Configuration (settings.MESSAGING_CHANNELS["sms"] or the channel settings page): `url`, `app_key`, `app_secret`,
`sign_name` (the approved signature shown in front of the text), optional `template_code` (the default
template), `temporary_codes` (comma-separated gateway codes to retry besides the built-in ones) and
`concurrency`.

Request (one per message)::

    POST {url}
    Content-Type: application/json

    {"app_key": "…", "phone": "+8613800000000", "sign_name": "…", "template_code": "SMS_1",
     "template_param": "{\"text\":\"…\"}", "content": "…", "request_id": "<idempotency key>",
     "timestamp": "1767225600", "nonce": "<32 hex>", "signature": "<hex>"}

Every value is a string. `signature` is the hex HMAC-SHA256, keyed with `app_secret`, of the canonical string:
the other parameters sorted by name and joined as `name=value` pairs with `&`, names and values percent-encoded
as in RFC 3986 (`urllib.parse.quote(value, safe="-_.~")`). `timestamp` (Unix seconds) and a fresh `nonce` per
request let the gateway refuse replays. `request_id` is the touchpoint's idempotency key: the gateway sends a
request id once and answers a repeat with the first answer, so a retry after a lost answer is not a second SMS.
The template comes from content["template_code"], content["card"]["template_code"] or the `template_code`
option; its parameters from content["template_params"] (or {"text": the rendered text}).

Answers: `{"code": "OK", "message_id": "…", "request_id": "…"}` is sent, with the gateway's message id (delivery
receipts name it). Otherwise `{"code": "…", "message": "…"}`: HTTP 429 or 5xx, a timeout, a refused connection or a
throttling/system code (`Throttled`, `InternalError`, `ServiceUnavailable`, `isv.BUSINESS_LIMIT_CONTROL`,
`isp.*`) is temporary; any other code (`InvalidPhoneNumber`, `InvalidTemplate`, `InvalidSignature`, …) is
permanent and kept as the provider code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from messaging.backends.base import DeliveryResult, Outcome, OutgoingMessage
from messaging.backends.http import result_of_error
from messaging.backends.webhook import ConcurrentHttpBackend

OK = "OK"
TEMPORARY_CODES = frozenset(
    {"Throttled", "InternalError", "ServiceUnavailable", "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"}
)


def canonical_string(params: Mapping[str, str]) -> str:
    """The signed text: every parameter but `signature`, sorted by name, RFC 3986-encoded, joined with `&`."""
    return "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
        for name, value in sorted(params.items())
        if name != "signature"
    )


def sign_params(secret: str, params: Mapping[str, str]) -> str:
    return hmac.new(secret.encode(), canonical_string(params).encode(), hashlib.sha256).hexdigest()


def sign_receipt(secret: str, *, timestamp: str, nonce: str, body: bytes) -> str:
    """A delivery receipt's signature: hex HMAC-SHA256 of "{timestamp}\\n{nonce}\\n{body}" with the app secret."""
    return hmac.new(secret.encode(), f"{timestamp}\n{nonce}\n".encode() + body, hashlib.sha256).hexdigest()


class SmsGatewayBackend(ConcurrentHttpBackend):
    """Sends each message as one signed gateway request, several at once."""

    def __init__(self, *, channel: str, config: Mapping[str, Any]) -> None:
        super().__init__(channel=channel, config=config)
        self.url = str(config.get("url") or "")
        self.app_key = str(config.get("app_key") or "")
        self.app_secret = str(config.get("app_secret") or "")
        self.sign_name = str(config.get("sign_name") or "")
        self.template_code = str(config.get("template_code") or "")
        extra = {code.strip() for code in str(config.get("temporary_codes") or "").split(",") if code.strip()}
        self.temporary_codes = TEMPORARY_CODES | extra

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        if not (self.url and self.app_key and self.app_secret):
            return DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="not_configured")
        phone = "".join(message.recipient.split()).replace("-", "")
        if not phone:
            return DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="no_phone")
        params = self.params_of(message, phone=phone)
        params["signature"] = sign_params(self.app_secret, params)
        try:
            response = self.http.post(self.url, json=params)
        except httpx.HTTPError as error:
            return result_of_error(error)
        except httpx.InvalidURL as error:
            return DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="invalid_url", response={"error": str(error)})
        return self.result_of(response)

    def params_of(self, message: OutgoingMessage, *, phone: str) -> dict[str, str]:
        content = message.content
        card = content.get("card") or {}
        template_params = content.get("template_params") or card.get("template_params")
        if template_params is None:
            template_params = {"text": content.get("text", "")}
        return {
            "app_key": self.app_key,
            "phone": phone,
            "sign_name": self.sign_name,
            "template_code": str(content.get("template_code") or card.get("template_code") or self.template_code),
            "template_param": json.dumps(template_params, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
            "content": str(content.get("text", "")),
            "request_id": message.idempotency_key,
            "timestamp": str(int(time.time())),
            "nonce": secrets.token_hex(16),
        }

    def result_of(self, response: httpx.Response) -> DeliveryResult:
        """Sort the gateway's answer by HTTP status and its own code (see the module docstring)."""
        try:
            body = response.json()
        except ValueError:
            body = {"body": response.text[:1000]}
        if not isinstance(body, dict):
            body = {"body": body}
        code = str(body.get("code") or "")
        if response.is_success and code.upper() == OK:
            return DeliveryResult(
                Outcome.SENT, provider_code=OK, provider_message_id=str(body.get("message_id") or ""), response=body
            )
        is_temporary = (
            response.status_code == 429
            or response.status_code >= 500
            or code in self.temporary_codes
            or code.startswith("isp.")  # the platform's own faults, Aliyun-style
        )
        return DeliveryResult(
            Outcome.TEMPORARY_ERROR if is_temporary else Outcome.PERMANENT_ERROR,
            provider_code=code or str(response.status_code),
            response=body,
        )
