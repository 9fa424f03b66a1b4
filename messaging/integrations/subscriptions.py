"""Subscriptions: the event kinds integrations may subscribe to, validation, the subscriptions' writes, and
`wanted_kinds()` (which writers ask whether an event is worth writing at all)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from messaging.models import Subscription

logger = logging.getLogger(__name__)

EVENT_KINDS: tuple[str, ...] = (
    "customer.created", "customer.updated", "customer.merged", "order.placed", "order.refunded", "event.recorded",
    "tag.added", "tag.removed", "segment.entered", "segment.exited", "touchpoint.status", "task.due", "task.done",
)  # fmt: skip
TEST_KIND = "subscription.test"  # "send test event": sent once, at once, whatever the subscription's kinds
REPLAY_MARK = "~r"

WANTED_KINDS_KEY = "messaging:subscriptions:wanted-kinds"
WANTED_KINDS_SECONDS = 5


class DeliveryError(Exception):
    """A refused operator action; `code` is stable for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------------------------- validation

_http_url = URLValidator(schemes=["http", "https"])


def validate_url(url: str) -> None:
    _http_url(url)


def validate_kinds(kinds: Any) -> None:
    if not isinstance(kinds, list | tuple) or not kinds:
        raise ValidationError(_("Choose at least one event kind."), code="no_kinds")
    if unknown := sorted({str(kind) for kind in kinds} - set(EVENT_KINDS)):
        raise ValidationError(_("Unknown event kinds: %(kinds)s.") % {"kinds": ", ".join(unknown)}, code="unknown_kind")


def validate_secret(secret: str) -> None:
    if secret and len(secret) < 16:
        raise ValidationError(_("A signing secret needs at least 16 characters."), code="short_secret")


# ---------------------------------------------------------------------------------------------- subscriptions


def wanted_kinds() -> frozenset[str]:
    """The kinds some active subscription wants, at most WANTED_KINDS_SECONDS stale (writers ask it whether an
    event is worth writing at all). Shared through the cache, so a change is seen at once by every process."""
    try:
        cached = cache.get(WANTED_KINDS_KEY)
    except RedisError:
        cached = None
    if cached is not None:
        return frozenset(cached)
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT jsonb_array_elements_text(kinds) FROM messaging_subscription WHERE is_active")
        kinds = frozenset(row[0] for row in cursor.fetchall())
    try:
        cache.set(WANTED_KINDS_KEY, sorted(kinds), WANTED_KINDS_SECONDS)
    except RedisError:
        logger.warning("subscriptions.cache_unavailable")
    return kinds


def _forget_wanted_kinds() -> None:
    try:
        cache.delete(WANTED_KINDS_KEY)
    except RedisError:
        logger.warning("subscriptions.cache_unavailable")  # the entry expires within seconds anyway


def _changed() -> None:
    # Now for this transaction's readers, and again after commit for everyone who cached the old value meanwhile.
    _forget_wanted_kinds()
    transaction.on_commit(_forget_wanted_kinds)


def create_subscription(
    *, name: str, url: str, kinds: Iterable[str], is_active: bool = True, secret: str = ""
) -> tuple[Subscription, str]:
    """Create a subscription; returns it with its signing secret (generated when not given), to show once."""
    secret = secret or secrets.token_hex(32)
    with transaction.atomic():
        subscription = Subscription.objects.create(
            name=name, url=url, kinds=sorted(set(kinds)), is_active=is_active, secret=secret
        )
        _changed()
    return subscription, secret


def update_subscription(
    subscription: Subscription,
    *,
    name: str | None = None,
    url: str | None = None,
    kinds: Iterable[str] | None = None,
    is_active: bool | None = None,
    secret: str | None = None,
) -> Subscription:
    """Change the fields given (an empty secret keeps the current one); deliveries already queued keep their
    payloads and are signed with the secret current when they are sent."""
    changes: dict[str, Any] = {"name": name, "url": url, "is_active": is_active, "secret": secret or None,
                               "kinds": sorted(set(kinds)) if kinds is not None else None}  # fmt: skip
    changed = [field_name for field_name, value in changes.items() if value is not None]
    if not changed:
        return subscription
    with transaction.atomic():
        for field_name in changed:
            setattr(subscription, field_name, changes[field_name])
        subscription.save(update_fields=changed)
        _changed()
    return subscription


def rotate_secret(subscription: Subscription) -> str:
    """Give the subscription a new signing secret (returned, to show once); pending deliveries use it."""
    update_subscription(subscription, secret=secrets.token_hex(32))
    return subscription.secret


def delete_subscription(subscription: Subscription) -> None:
    """Delete the subscription with its deliveries."""
    with transaction.atomic():
        subscription.delete()
        _changed()
