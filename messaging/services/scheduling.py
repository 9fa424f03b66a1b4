"""The only way other apps send: schedule a touchpoint (idempotent on its key) or cancel queued ones."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from customers.models import CommunityGroup, Customer, MessageChannel, Staff
from messaging.models import (
    CapAction,
    MessageTemplate,
    Touchpoint,
    TouchpointKind,
    TouchpointSource,
    TouchpointStatus,
)
from messaging.services.status_events import record_status_events

logger = logging.getLogger(__name__)


class InvalidTouchpoint(ValueError):
    """A touchpoint that cannot be scheduled; `errors` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def schedule_touchpoint(
    *,
    channel: str,
    idempotency_key: str,
    customer: Customer | int | None = None,
    group: CommunityGroup | int | None = None,
    template: MessageTemplate | None = None,
    content: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    due_at: datetime.datetime | None = None,
    kind: str = TouchpointKind.MARKETING,
    source: str = TouchpointSource.MANUAL,
    source_ref: str = "",
    priority: int = 0,
    on_cap: str = CapAction.SKIP,
    expires_at: datetime.datetime | None = None,
    sender_staff: Staff | None = None,
    sender: str = "",
    max_attempts: int | None = None,
    created_by: Any = None,
) -> Touchpoint:
    """Queue one message. Idempotent: a second call with the same key returns the first touchpoint unchanged (its
    `is_new` is False). Joins the caller's transaction; dispatch is kicked once it commits."""
    touchpoint = build_touchpoint(
        channel=channel, idempotency_key=idempotency_key, customer=customer, group=group, template=template,
        content=content, context=context, due_at=due_at, kind=kind, source=source, source_ref=source_ref,
        priority=priority, on_cap=on_cap, expires_at=expires_at, sender_staff=sender_staff, sender=sender,
        max_attempts=max_attempts, created_by=created_by,
    )  # fmt: skip
    try:
        with transaction.atomic():
            touchpoint.save(force_insert=True)
    except IntegrityError:
        existing = Touchpoint.objects.filter(idempotency_key=idempotency_key).first()
        if existing is None:  # the conflict was something else (a missing customer…)
            raise
        existing.is_new = False
        return existing
    touchpoint.is_new = True  # tells callers (the API's 201 or 200) whether this call queued it
    if touchpoint.due_at <= timezone.now() + datetime.timedelta(seconds=1):
        kick_dispatch_after_commit()
    return touchpoint


def schedule_touchpoints(touchpoints: list[Touchpoint]) -> list[Touchpoint]:
    """Queue many messages built with `build_touchpoint`, in three statements: the same guarantees as
    `schedule_touchpoint` one by one (a key already queued returns that touchpoint with `is_new` False), for
    callers that queue a batch (a journey step for 500 customers)."""
    if not touchpoints:
        return []
    keys = [t.idempotency_key for t in touchpoints]
    existing = set(Touchpoint.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))
    Touchpoint.objects.bulk_create([t for t in touchpoints if t.idempotency_key not in existing],
                                   ignore_conflicts=True)  # fmt: skip
    by_key = {t.idempotency_key: t for t in Touchpoint.objects.filter(idempotency_key__in=keys)}
    queued = []
    for touchpoint in touchpoints:
        stored = by_key[touchpoint.idempotency_key]
        stored.is_new = touchpoint.idempotency_key not in existing
        queued.append(stored)
    if any(t.is_new and t.due_at <= timezone.now() + datetime.timedelta(seconds=1) for t in queued):
        kick_dispatch_after_commit()
    return queued


def build_touchpoint(
    *,
    channel: str,
    idempotency_key: str,
    customer: Customer | int | None = None,
    group: CommunityGroup | int | None = None,
    template: MessageTemplate | None = None,
    content: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    due_at: datetime.datetime | None = None,
    kind: str = TouchpointKind.MARKETING,
    source: str = TouchpointSource.MANUAL,
    source_ref: str = "",
    priority: int = 0,
    on_cap: str = CapAction.SKIP,
    expires_at: datetime.datetime | None = None,
    sender_staff: Staff | None = None,
    sender: str = "",
    max_attempts: int | None = None,
    created_by: Any = None,
) -> Touchpoint:
    """A checked, unsaved touchpoint (InvalidTouchpoint lists what is wrong)."""
    errors: dict[str, str] = {}
    if channel not in MessageChannel.values:
        errors["channel"] = f"unknown channel {channel!r}"
    if not idempotency_key or len(idempotency_key) > 200:
        errors["idempotency_key"] = "required, at most 200 characters"
    if (customer is None) == (group is None):
        errors["customer"] = "give a customer or a community group, not both"
    if template is None and not (content and (content.get("text") or content.get("card"))):
        errors["content"] = "give a template or content with text or a card"
    if kind not in TouchpointKind.values:
        errors["kind"] = f"unknown kind {kind!r}"
    if source not in TouchpointSource.values:
        errors["source"] = f"unknown source {source!r}"
    if on_cap not in CapAction.values:
        errors["on_cap"] = f"unknown cap action {on_cap!r}"
    if errors:
        raise InvalidTouchpoint(errors)
    due = due_at or timezone.now()
    touchpoint = Touchpoint(
        customer_id=customer.pk if isinstance(customer, Customer) else customer,
        group_id=group.pk if isinstance(group, CommunityGroup) else group,
        channel=channel,
        sender_staff=sender_staff,
        sender=sender,
        template=template,
        content=dict(content or {}),
        context=dict(context or {}),
        kind=kind,
        source=source,
        source_ref=(source_ref or source)[:64],
        priority=priority,
        on_cap=on_cap,
        idempotency_key=idempotency_key,
        scheduled_for=due,
        due_at=due,
        expires_at=expires_at,
        max_attempts=max_attempts or settings.MESSAGING_MAX_ATTEMPTS,
        created_by=created_by,
        decisions=[{"at": timezone.now().isoformat(), "step": "scheduled", "outcome": "scheduled"}],
    )
    touchpoint.created_at = touchpoint.updated_at = timezone.now()
    return touchpoint


def cancel_touchpoints(
    *,
    ids: list[int] | None = None,
    source_ref: str | None = None,
    customers: list[int] | None = None,
    reason: str = "cancelled",
) -> int:
    """Cancel queued touchpoints matching all the given filters; one a worker has already handed to a channel
    (or holds right now) is left alone. Returns how many were cancelled."""
    if ids is None and source_ref is None and customers is None:
        raise ValueError("cancel_touchpoints needs at least one filter")
    rows = Touchpoint.objects.filter(status__in=[TouchpointStatus.SCHEDULED, TouchpointStatus.DEFERRED])
    if ids is not None:
        rows = rows.filter(id__in=ids)
    if source_ref is not None:
        rows = rows.filter(source_ref=source_ref)
    if customers is not None:
        rows = rows.filter(customer_id__in=customers)
    with transaction.atomic():
        cancelled = list(
            rows.select_for_update(skip_locked=True).values_list("id", flat=True)
        )  # a row being dispatched right now is locked: it is no longer only queued
        Touchpoint.objects.filter(id__in=cancelled).update(
            status=TouchpointStatus.CANCELLED, reason=reason[:64], updated_at=timezone.now()
        )
        record_status_events(cancelled)
    return len(cancelled)


def hold_touchpoints(*, source_ref: str) -> int:
    """Hold the queued messages of a source (a paused journey): dispatch leaves them until released. One a worker
    holds right now is left to finish. Returns how many were held."""
    rows = Touchpoint.objects.filter(
        source_ref=source_ref, status__in=[TouchpointStatus.SCHEDULED, TouchpointStatus.DEFERRED]
    )
    with transaction.atomic():
        held = list(rows.select_for_update(skip_locked=True).values_list("id", flat=True))
        Touchpoint.objects.filter(id__in=held).update(status=TouchpointStatus.HELD, updated_at=timezone.now())
    return len(held)


def release_touchpoints(
    *, source_ref: str, expire_before: datetime.datetime | None, cancel: bool = False
) -> tuple[int, int]:
    """Release held messages: those scheduled before `expire_before` expire instead of going out late, the others
    are queued again (or, with `cancel`, all are cancelled). Returns (queued, expired or cancelled)."""
    held = Touchpoint.objects.filter(source_ref=source_ref, status=TouchpointStatus.HELD)
    now = timezone.now()
    with transaction.atomic():
        if cancel:
            ids = list(held.values_list("id", flat=True))
            Touchpoint.objects.filter(id__in=ids).update(
                status=TouchpointStatus.CANCELLED, reason="source stopped", updated_at=now
            )
            record_status_events(ids)
            return 0, len(ids)
        stale = held.filter(scheduled_for__lt=expire_before) if expire_before else held.none()
        expired = list(stale.values_list("id", flat=True))
        Touchpoint.objects.filter(id__in=expired).update(
            status=TouchpointStatus.EXPIRED, reason="overdue after pause", updated_at=now
        )
        record_status_events(expired)
        queued = held.exclude(id__in=expired).update(status=TouchpointStatus.SCHEDULED, updated_at=now)
    if queued:
        kick_dispatch_after_commit()
    return queued, len(expired)


_last_kick = 0.0


def kick_dispatch_after_commit() -> None:
    """Ask the workers to dispatch once the current transaction commits (at most a few times a second per
    process; the beat tick dispatches anyway)."""
    global _last_kick
    if time.monotonic() - _last_kick < 0.2:
        return
    _last_kick = time.monotonic()
    transaction.on_commit(_kick)


def _kick() -> None:
    from messaging.tasks import dispatch
    from scrm.celery import send_quietly

    send_quietly(dispatch)
