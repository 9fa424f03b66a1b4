"""The welcome message's fast path: a new contact's `WelcomeCode` is good for one message within 20 seconds.

The add-contact callback schedules the welcome touchpoint in its own transaction and, the moment that commits
and before any other after-commit work, hands it to a worker on the `messaging.welcome` queue (kept free of bulk
dispatch work) — or, when the broker cannot be reached, dispatches it right here in the request. Either way it
goes through the ordinary dispatch pipeline, which records every attempt and WeCom's error code on the
touchpoint, and the touchpoint belongs to the customer, so it shows in their message history. If neither path
runs (a worker that died), the touchpoint is still due and the regular dispatch picks it up before it expires.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from customers.models import MessageChannel, Staff
from messaging.backends import channel_config
from messaging.models import CLAIMABLE_STATUSES, MessageTemplate, Touchpoint, TouchpointKind, TouchpointSource

logger = logging.getLogger("messaging.wecom.welcome")

WELCOME_QUEUE = "messaging.welcome"
WELCOME_SECONDS = 20  # WeCom accepts a welcome code for 20 seconds after the add
SOURCE_REF = "wecom:welcome"


def default_welcome_text() -> str:
    with translation.override(settings.LANGUAGE_CODE):
        return _("Hello, thank you for adding me! Just send me a message whenever I can help.")


def welcome_message(config: dict[str, Any]) -> tuple[MessageTemplate | None, dict[str, Any] | None]:
    """The welcome's template (ChannelConfig options["welcome_template_id"]) or, without one, its text
    (options["welcome_text"], else the default)."""
    template_id = config.get("welcome_template_id")
    template = MessageTemplate.objects.filter(pk=template_id).first() if str(template_id or "").isdigit() else None
    if template is not None:
        return template, None
    return None, {"format": "text", "text": str(config.get("welcome_text") or default_welcome_text())}


def schedule_welcome(*, customer_id: int, staff_id: int, welcome_code: str) -> Touchpoint:
    """The welcome touchpoint for this code (one per code, however often the callback comes), sent first thing
    after the caller's transaction commits. Call inside that transaction."""
    # Registered before anything else in this transaction registers its own after-commit work (scheduling's
    # dispatch kick, domain events, profile fetch), so the welcome leaves first; filled in once scheduled.
    pending: list[int] = []
    transaction.on_commit(lambda: pending and send_welcome_now(pending[0]))
    template, content = welcome_message(channel_config(MessageChannel.WECOM))
    from messaging.services.scheduling import schedule_touchpoint

    touchpoint = schedule_touchpoint(
        channel=MessageChannel.WECOM,
        customer=customer_id,
        sender_staff=Staff.objects.get(pk=staff_id),
        kind=TouchpointKind.TRANSACTIONAL,
        source=TouchpointSource.SYSTEM,
        source_ref=SOURCE_REF,
        idempotency_key=f"wecom-welcome:{welcome_code}",
        template=template,
        content=content,
        context={"welcome_code": welcome_code},
        expires_at=timezone.now() + datetime.timedelta(seconds=WELCOME_SECONDS),
    )
    if touchpoint.status in CLAIMABLE_STATUSES:  # a repeated callback finds it sent already: nothing to do
        pending.append(touchpoint.pk)
    return touchpoint


def send_welcome_now(touchpoint_id: int) -> None:
    """After commit: queue the welcome on its own queue; with the broker unreachable, dispatch it inline (the
    20-second window leaves no time to wait for a sweep). Never raises: the request has already committed."""
    from messaging.wecom.callback_tasks import send_welcome

    try:
        send_welcome.apply_async(
            args=[touchpoint_id],
            queue=WELCOME_QUEUE,
            expires=timezone.now() + datetime.timedelta(seconds=WELCOME_SECONDS),
            retry=False,
        )
        return
    except Exception as error:  # kombu/redis raise many kinds; any of them means "not queued"
        logger.warning("wecom.welcome_broker_down", extra={"touchpoint": touchpoint_id, "error": str(error)})
    try:
        dispatch_welcome(touchpoint_id)
    except Exception:
        # The row is still due: the regular dispatch tries again while the code is valid.
        logger.exception("wecom.welcome_inline_failed", extra={"touchpoint": touchpoint_id})


def dispatch_welcome(touchpoint_id: int) -> str:
    """Dispatch one welcome touchpoint now if it is still queued; returns its status afterwards."""
    from messaging.services.dispatch import dispatch_touchpoints

    dispatch_touchpoints([touchpoint_id])
    status = Touchpoint.objects.filter(pk=touchpoint_id).values_list("status", flat=True).first() or ""
    logger.info("wecom.welcome_dispatched", extra={"touchpoint": touchpoint_id, "status": status})
    return status
