"""The endpoint WeCom calls (企业微信 "接收事件服务器"): URL verification and encrypted, signed event callbacks.

GET  /wecom/callback?msg_signature&timestamp&nonce&echostr   → the decrypted echostr as plain text
POST /wecom/callback?msg_signature&timestamp&nonce           → "success" once the event is recorded

No session and no CSRF: every request proves itself with WeCom's signature, made with the callback token, over
a timestamp we require within five minutes of now. A signature already accepted is a replay: each accepted one is
stored (WeComCallbackReceipt, unique) in the same transaction as the event's effects, so a callback whose
handling failed can be delivered again, and one that succeeded cannot. Refusals are logged with the failed check.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from customers.models import MessageChannel
from messaging.backends import channel_config
from messaging.wecom.callbacks import handle_event, parse_event
from messaging.wecom.crypto import (
    CallbackCrypto,
    CallbackError,
    ConfigurationError,
    MalformedMessageError,
    PaddingError,
)

logger = logging.getLogger("messaging.wecom.callback")

# A wrong key or a garbled body is the sender's mistake (400); everything else is a request we do not trust (403).
_BAD_REQUEST = (MalformedMessageError, PaddingError)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def wecom_callback(request: HttpRequest) -> HttpResponse:
    try:
        crypto = CallbackCrypto.from_config(channel_config(MessageChannel.WECOM))
    except ConfigurationError as error:
        logger.error("wecom.callback_unconfigured", extra={"error": str(error)})
        return HttpResponse("not configured", status=503, content_type="text/plain")
    signature = request.GET.get("msg_signature", "")
    timestamp = request.GET.get("timestamp", "")
    nonce = request.GET.get("nonce", "")
    try:
        if request.method == "GET":
            echo = crypto.verify_url(
                msg_signature=signature, timestamp=timestamp, nonce=nonce, echostr=request.GET.get("echostr", "")
            )
            logger.info("wecom.callback_url_verified")
            return HttpResponse(echo, content_type="text/plain; charset=utf-8")
        inner = crypto.decrypt_message(msg_signature=signature, timestamp=timestamp, nonce=nonce, body=request.body)
        fields = parse_event(inner)
    except CallbackError as error:
        return _refused(error, signature=signature, timestamp=timestamp)
    with transaction.atomic(durable=True):
        if not _accept_once(signature.lower(), int(timestamp)):
            return _refused(None, signature=signature, timestamp=timestamp)
        result = handle_event(fields)
    logger.info(
        "wecom.callback_handled",
        extra={
            "event": fields.get("Event", ""),
            "change_type": fields.get("ChangeType", ""),
            "handled": result.handled,
            "customers_created": len(result.created_customer_ids),
            "customers_changed": len(result.changed_customer_ids),
            "welcome": result.welcome_touchpoint_id,
        },
    )
    return HttpResponse("success", content_type="text/plain")


def _accept_once(signature: str, timestamp: int) -> bool:
    """Store the signature; False if it was already stored (a concurrent twin waits here for the first to end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_wecomcallbackreceipt (msg_signature, timestamp, received_at)
            VALUES (%s, %s, now()) ON CONFLICT (msg_signature) DO NOTHING RETURNING id
            """,
            [signature, timestamp],
        )
        return cursor.fetchone() is not None


def _refused(error: CallbackError | None, *, signature: str, timestamp: str) -> HttpResponse:
    code = error.code if error is not None else "replay"
    logger.warning(
        "wecom.callback_refused",
        extra={"code": code, "detail": str(error or ""), "msg_signature": signature[:64], "timestamp": timestamp[:20]},
    )
    status = 400 if isinstance(error, _BAD_REQUEST) else 403
    return HttpResponse(code, status=status, content_type="text/plain")
