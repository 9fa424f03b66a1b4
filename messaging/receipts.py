"""Delivery-status callbacks from providers: they move touchpoints forward (never back) through
`apply_status_updates`.

POST /messaging/receipts/sms — the SMS gateway's receipts (see messaging/backends/sms.py), signed with the
gateway's app secret: headers X-Sms-Timestamp, X-Sms-Nonce, X-Sms-Signature = hex HMAC-SHA256 of
"{timestamp}\\n{nonce}\\n{body}"; body a receipt or a list of them (or {"receipts": [...]}), each
{"message_id", "request_id" (our idempotency key), "phone", "status": "DELIVERED"|"FAILED", "error_code",
"report_time"}. A receipt is matched by the gateway's message id, or by the request id when it arrives before
the send's answer was recorded.

POST /messaging/receipts/webhook — our webhook consumers' reports, signed like our requests (X-SCRM-Timestamp,
X-SCRM-Signature = hex HMAC-SHA256 of "{timestamp}.{body}" with the channel secret, or its `receipt_secret`);
body {"updates": [{"idempotency_key", "status": "delivered"|"read"|"clicked"|"failed", "at", "code"}]}.

Answers: 403 for a bad or stale signature (timestamps older than five minutes are refused), 400 with field errors
for a malformed body, otherwise 200 {"updated": n}: ids we do not know are ignored rather than refused, because
providers retry anything but a 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import serializers

from messaging.backends.base import channel_config
from messaging.backends.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, is_valid_signature
from messaging.models import Touchpoint, TouchpointStatus
from messaging.services.status import StatusUpdate, apply_status_updates

SIGNATURE_TOLERANCE = 300  # seconds between a receipt's timestamp and now
MAX_ITEMS = 1000  # receipts in one request


class LowercaseChoiceField(serializers.ChoiceField):
    """Gateways shout ("DELIVERED"); our statuses are lowercase."""

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(data.lower() if isinstance(data, str) else data)


class SmsReceiptInput(serializers.Serializer):
    message_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    request_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    status = LowercaseChoiceField(choices=[TouchpointStatus.DELIVERED, TouchpointStatus.FAILED])
    error_code = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    report_time = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not (attrs["message_id"] or attrs["request_id"]):
            raise serializers.ValidationError({"message_id": gettext_lazy("Give a message id or a request id.")})
        return attrs


class WebhookReceiptInput(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=200)
    status = LowercaseChoiceField(
        choices=[TouchpointStatus.DELIVERED, TouchpointStatus.READ, TouchpointStatus.CLICKED, TouchpointStatus.FAILED]
    )
    at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    code = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


@csrf_exempt
@require_POST
def sms_receipt(request: HttpRequest) -> JsonResponse:
    """Apply the SMS gateway's delivery receipts."""
    secret = str(channel_config("sms").get("app_secret") or "")
    timestamp = request.headers.get("X-Sms-Timestamp", "")
    nonce = request.headers.get("X-Sms-Nonce", "")
    expected = hmac.new(secret.encode(), f"{timestamp}\n{nonce}\n".encode() + request.body, hashlib.sha256).hexdigest()
    signature = request.headers.get("X-Sms-Signature", "").strip().lower()
    if not (secret and nonce and _is_fresh(timestamp) and hmac.compare_digest(expected, signature)):
        return _refused()

    def resolve(receipts: list[dict[str, Any]]) -> list[StatusUpdate]:
        ids = _touchpoint_ids(
            "sms",
            message_ids={r["message_id"] for r in receipts},
            keys={r["request_id"] for r in receipts},
        )
        updates = []
        for receipt in receipts:
            touchpoint_id = ids.get(("msg", receipt["message_id"])) or ids.get(("key", receipt["request_id"]))
            if touchpoint_id:
                updates.append(
                    StatusUpdate(
                        receipt["status"],
                        touchpoint_id=touchpoint_id,
                        provider_code=receipt["error_code"],
                        response={"receipt": _plain(receipt)},
                        at=receipt["report_time"],
                    )
                )
        return updates

    return _apply(request.body, SmsReceiptInput, envelope="receipts", resolve=resolve)


@csrf_exempt
@require_POST
def webhook_receipt(request: HttpRequest) -> JsonResponse:
    """Apply status reports from the consumers of our webhook channel."""
    config = channel_config("webhook")
    secret = str(config.get("receipt_secret") or config.get("secret") or "")
    if not is_valid_signature(
        secret,
        timestamp=request.headers.get(TIMESTAMP_HEADER, ""),
        body=request.body,
        signature=request.headers.get(SIGNATURE_HEADER, ""),
        tolerance=SIGNATURE_TOLERANCE,
    ):
        return _refused()

    def resolve(reports: list[dict[str, Any]]) -> list[StatusUpdate]:
        ids = _touchpoint_ids("webhook", message_ids=set(), keys={r["idempotency_key"] for r in reports})
        return [
            StatusUpdate(
                report["status"],
                touchpoint_id=ids[("key", report["idempotency_key"])],
                provider_code=report["code"],
                response={"report": _plain(report)},
                at=report["at"],
            )
            for report in reports
            if ("key", report["idempotency_key"]) in ids
        ]

    return _apply(request.body, WebhookReceiptInput, envelope="updates", resolve=resolve)


def _apply(
    body: bytes,
    input_class: type[serializers.Serializer],
    *,
    envelope: str,
    resolve: Callable[[list[dict[str, Any]]], list[StatusUpdate]],
) -> JsonResponse:
    try:
        data = json.loads(body)
    except ValueError:
        return _malformed({"non_field_errors": [_("The body is not JSON.")]})
    if isinstance(data, dict):
        data = data.get(envelope, [data])
    if not isinstance(data, list) or not 0 < len(data) <= MAX_ITEMS:
        return _malformed({"non_field_errors": [_("Expected 1 to %(max)d items.") % {"max": MAX_ITEMS}]})
    items = input_class(data=data, many=True)
    if not items.is_valid():
        return _malformed(items.errors)
    return JsonResponse({"updated": apply_status_updates(resolve(list(items.validated_data)))})


def _touchpoint_ids(channel: str, *, message_ids: set[str], keys: set[str]) -> dict[tuple[str, str], int]:
    """One query: {("msg", provider message id) or ("key", idempotency key): touchpoint id} on this channel."""
    message_ids.discard("")
    keys.discard("")
    rows = Touchpoint.objects.filter(channel=channel).filter(
        Q(provider_message_id__in=message_ids) | Q(idempotency_key__in=keys)
    )
    ids: dict[tuple[str, str], int] = {}
    for pk, message_id, key in rows.values_list("id", "provider_message_id", "idempotency_key"):
        if message_id in message_ids:
            ids[("msg", message_id)] = pk
        ids[("key", key)] = pk
    return ids


def _is_fresh(timestamp: str) -> bool:
    return timestamp.isdigit() and abs(time.time() - int(timestamp)) <= SIGNATURE_TOLERANCE


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in item.items()}


def _refused() -> JsonResponse:
    return JsonResponse({"detail": _("Invalid or expired signature."), "code": "invalid_signature"}, status=403)


def _malformed(errors: Any) -> JsonResponse:
    return JsonResponse({"detail": _("Malformed receipt."), "code": "invalid", "errors": errors}, status=400)
