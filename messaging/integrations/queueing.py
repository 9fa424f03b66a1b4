"""Queueing deliveries: the domain-event consumer that turns events into Delivery rows, the sender's kick, replays
and test events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.domain_events import register_consumer
from customers.models import DomainEvent
from messaging.integrations import sending
from messaging.integrations.subscriptions import EVENT_KINDS, REPLAY_MARK, TEST_KIND, DeliveryError
from messaging.models import Delivery, DeliveryStatus, Subscription

logger = logging.getLogger(__name__)

_QUEUE_SQL = """
    INSERT INTO messaging_delivery (subscription_id, event_key, kind, payload, status, attempts, next_attempt_at,
                                    response_body, created_at)
    SELECT s.id, 'de:' || e.id, e.kind,
        jsonb_build_object(
            'id', 'de:' || e.id,
            'kind', e.kind,
            'occurred_at', to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'customer', CASE
                WHEN e.customer_id = 0 THEN NULL
                WHEN c.id IS NULL THEN jsonb_build_object('id', e.customer_id)
                ELSE jsonb_build_object('id', c.id, 'name', c.name, 'phone', c.phone, 'email', c.email,
                                        'city', c.city, 'owner_id', c.owner_id, 'merged_into_id', c.merged_into_id)
            END,
            'data', e.payload),
        'pending', 0, %(now)s, '', %(now)s
    FROM customers_domainevent e
    JOIN messaging_subscription s ON s.is_active AND s.kinds ? e.kind
    LEFT JOIN customers_customer c ON c.id = e.customer_id
    WHERE e.id = ANY(%(ids)s)
    ORDER BY e.id, s.id
    ON CONFLICT (subscription_id, event_key) DO NOTHING
"""


def queue_deliveries(events: Sequence[DomainEvent]) -> int:
    """Queue one delivery per (active subscription wanting its kind, event); returns how many were new. Set-based
    and idempotent (the event key is unique per subscription). The customer snapshot is the customer as of
    queueing (moments after the event), not a historical record."""
    ids = [event.pk for event in events if event.kind in EVENT_KINDS]
    if not ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_QUEUE_SQL, {"ids": ids, "now": timezone.now()})
        queued = cursor.rowcount
    if queued:
        kick_after_commit()
    return queued


def ready() -> None:
    """Register the consumer that queues deliveries (called from MessagingConfig.ready())."""
    register_consumer("messaging.subscriptions", EVENT_KINDS, queue_deliveries)


def kick_sender() -> bool:
    """Ask a worker to send now; a broker that is down leaves it to the beat tick."""
    from messaging.integrations_tasks import send_deliveries
    from scrm.celery import send_quietly

    return send_quietly(send_deliveries)


def kick_after_commit() -> None:
    """Kick the sender once the current transaction commits (once per transaction)."""
    from scrm.celery import on_commit_once

    on_commit_once(kick_sender)


# ----------------------------------------------------------------------------------------- replay and test


def replay_delivery(delivery: Delivery) -> Delivery:
    """Queue the delivery's event again as a new row (event_key f"{original}~r{n}", same payload); the original
    keeps its record. Refused while it is pending or its subscription is switched off. Locks the original."""
    root_key = delivery.event_key.split(REPLAY_MARK)[0]
    with transaction.atomic():
        # Every replay of an event locks the same (root) row, so replay numbers never collide.
        root = Delivery.objects.filter(subscription_id=delivery.subscription_id, event_key=root_key)
        root.select_for_update().first()
        delivery.refresh_from_db()
        if delivery.status == DeliveryStatus.PENDING:
            raise DeliveryError("delivery_pending", _("This delivery is still being sent; wait for its outcome."))
        if not Subscription.objects.filter(pk=delivery.subscription_id, is_active=True).exists():
            raise DeliveryError("subscription_inactive", _("The subscription is switched off."))
        replays = Delivery.objects.filter(
            subscription_id=delivery.subscription_id, event_key__startswith=root_key + REPLAY_MARK
        ).count()
        replay = Delivery.objects.create(
            subscription_id=delivery.subscription_id,
            event_key=f"{root_key}{REPLAY_MARK}{replays + 1}",
            kind=delivery.kind,
            payload=delivery.payload,
        )
        kick_after_commit()
    logger.info("subscriptions.replayed", extra={"delivery": delivery.pk, "replay": replay.pk})
    return replay


def send_test_event(subscription: Subscription) -> Delivery:
    """Send a `subscription.test` event to the subscription now (even when switched off) and return the delivery
    with the receiver's answer. One attempt, no retry."""
    now = timezone.now()
    key = f"test:{uuid.uuid4().hex}"
    delivery = Delivery.objects.create(
        subscription=subscription,
        event_key=key,
        kind=TEST_KIND,
        payload={
            "id": key,
            "kind": TEST_KIND,
            "occurred_at": iso_utc(now),
            "customer": None,
            "data": {"subscription_id": subscription.pk, "name": subscription.name},
        },
        next_attempt_at=now,
    )
    sending.send_due(ids=[delivery.pk])
    delivery.refresh_from_db()
    return delivery


def iso_utc(moment: datetime) -> str:
    """The payloads' timestamp format (the same as the SQL above writes)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
