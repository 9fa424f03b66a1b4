"""What operators do by hand from the messaging pages: retry failed messages, save a channel's settings and send
a channel a test message. Callers check visibility and roles first (messaging.selectors); these only write."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import Customer
from messaging.backends.base import reset_backends
from messaging.models import ChannelConfig, Touchpoint, TouchpointKind, TouchpointSource, TouchpointStatus
from messaging.secrets import decrypt, encrypt
from messaging.services.dispatch import dispatch_touchpoints
from messaging.services.scheduling import kick_dispatch_after_commit, schedule_touchpoint
from messaging.services.status_events import record_status_events

S = TouchpointStatus
# Final states a person may send again: the message never reached the channel. Suppressed (an opt-out) and
# cancelled ones are not retried, and nothing handed over is ever sent twice.
RETRYABLE_STATUSES = (S.FAILED, S.EXPIRED, S.UNDELIVERABLE, S.CAPPED)
MANUAL_RETRY = "manual_retry"
TEST_SOURCE_REF = "channel-test"
MAX_SMALLINT = 32767


class NotRetryable(Exception):
    """The touchpoint is not in a state that can be retried (`status` is what it is in)."""

    code = "not_retryable"

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def retry_touchpoint(touchpoint: Touchpoint, *, by: Any = None) -> Touchpoint:
    """Queue a failed, expired, undeliverable or capped touchpoint again, due now, with a fresh attempt budget;
    its history stays (a `manual_retry` decision is appended). Takes the row's lock, so two clicks retry it once.
    Raises NotRetryable otherwise. Returns the touchpoint as it is now."""
    with transaction.atomic(durable=True):
        status = (
            Touchpoint.objects.select_for_update().filter(pk=touchpoint.pk).values_list("status", flat=True).first()
        )
        if status not in RETRYABLE_STATUSES:
            raise NotRetryable(status or "")
        _requeue([touchpoint.pk], by=by)
    touchpoint.refresh_from_db()
    return touchpoint


def retry_touchpoints(touchpoints: QuerySet[Touchpoint], *, by: Any = None) -> int:
    """Queue every retryable touchpoint of `touchpoints` again, as `retry_touchpoint` does, in two statements
    whatever their number: lock them in id order (skipping rows another writer holds right now), then requeue
    them. Returns how many were queued."""
    with transaction.atomic(durable=True):
        ids = list(
            touchpoints.filter(status__in=RETRYABLE_STATUSES)
            .order_by("pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)
        )
        return len(_requeue(ids, by=by))


def _requeue(ids: list[int], *, by: Any) -> list[int]:
    """Requeue these locked rows (still retryable) in one statement; kicks dispatch after commit."""
    if not ids:
        return []
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_touchpoint t SET
                status = 'scheduled',
                reason = %(reason)s,
                due_at = %(now)s,
                lease_token = NULL,
                max_attempts = LEAST(t.attempts + %(budget)s, %(max)s),
                expires_at = CASE WHEN t.expires_at <= %(now)s THEN NULL ELSE t.expires_at END,
                decisions = t.decisions || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                    'at', %(at)s::text, 'step', %(reason)s::text, 'outcome', 'scheduled', 'by', %(by)s::text,
                    'previous', t.status, 'previous_reason', NULLIF(t.reason, ''),
                    'expiry_cleared', CASE WHEN t.expires_at <= %(now)s THEN true END))),
                updated_at = %(now)s
            WHERE t.id = ANY(%(ids)s) AND t.status = ANY(%(retryable)s)
            RETURNING t.id
            """,
            {
                "reason": MANUAL_RETRY,
                "now": now,
                "at": now.isoformat(),
                "budget": settings.MESSAGING_MAX_ATTEMPTS,
                "max": MAX_SMALLINT,
                "by": getattr(by, "username", None),
                "ids": ids,
                "retryable": list(RETRYABLE_STATUSES),
            },
        )
        requeued = [row[0] for row in cursor.fetchall()]
    record_status_events(requeued)
    if requeued:
        kick_dispatch_after_commit()
    return requeued


# ------------------------------------------------------------------------------------------ channel settings


def stored_secret_names(config: ChannelConfig | None) -> set[str]:
    """The names of the secrets stored for a channel (never their values)."""
    if config is None or not config.secrets:
        return set()
    return set(decrypt(config.secrets))


def save_channel_config(
    *,
    channel: str,
    options: Mapping[str, Any],
    secrets: Mapping[str, str],
    clear_secrets: Collection[str] = (),
) -> ChannelConfig:
    """Store a channel's options (an empty value removes the option; options not named are kept) and secrets
    (encrypted; an empty or missing value keeps the stored secret, a name in `clear_secrets` removes it). Written
    under the channel row's lock; this process's backends are rebuilt from it once it commits."""
    with transaction.atomic(durable=True):
        ChannelConfig.objects.bulk_create([ChannelConfig(channel=channel)], ignore_conflicts=True)
        config = ChannelConfig.objects.select_for_update().get(channel=channel)
        merged = {**config.options, **options}
        config.options = {key: value for key, value in merged.items() if value not in (None, "")}
        stored = decrypt(config.secrets) if config.secrets else {}
        for name in clear_secrets:
            stored.pop(name, None)
        stored.update({name: value for name, value in secrets.items() if value})
        config.secrets = encrypt(stored) if stored else ""
        config.save()
    reset_backends()
    return config


def send_test_message(*, channel: str, customer: Customer, by: Any = None) -> Touchpoint:
    """Send `customer` a transactional test message on `channel` through the whole pipeline (contact policy,
    rendering, the channel's backend, the record), under a key of its own, and return the touchpoint as dispatch
    left it. If a worker claims it first the touchpoint comes back still sending; the outbox shows the rest."""
    text = _("Test message from SCRM: the %(channel)s channel works.") % {"channel": channel}
    touchpoint = schedule_touchpoint(
        channel=channel,
        customer=customer,
        idempotency_key=f"test:{channel}:{uuid.uuid4().hex}",
        content={"format": "text", "text": text, "subject": _("SCRM test message")},
        kind=TouchpointKind.TRANSACTIONAL,
        source=TouchpointSource.MANUAL,
        source_ref=TEST_SOURCE_REF,
        created_by=by,
    )
    dispatch_touchpoints([touchpoint.pk])
    touchpoint.refresh_from_db()
    return touchpoint
