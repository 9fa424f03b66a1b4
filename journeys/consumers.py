"""The journeys' domain-event consumer: triggers enroll, goals convert (and exit) at event time, recorded events
wake customers waiting for them, merged customers leave. Idempotent: a batch replayed after a crash finds its
trigger keys used, its conversions recorded and its wake-ups done."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.utils import timezone

from customers.models import DomainEvent, DomainEventKind
from journeys.definition import EVENT_TRIGGERS
from journeys.models import Enrollment, EnrollmentState, Journey, JourneyStatus
from journeys.services.enrollment import Candidate, enroll

ADD_CONTACT_CHANGES = ("add_external_contact", "add_half_external_contact")
KINDS = (
    DomainEventKind.CUSTOMER_CREATED, DomainEventKind.CUSTOMER_UPDATED, DomainEventKind.CUSTOMER_MERGED,
    DomainEventKind.TAG_ADDED, DomainEventKind.TAG_REMOVED, DomainEventKind.EVENT_RECORDED,
    DomainEventKind.ORDER_PLACED, DomainEventKind.ORDER_REFUNDED, "segment.entered", "segment.exited",
)  # fmt: skip
TRIGGER_KINDS = {
    "customer_added": (DomainEventKind.CUSTOMER_CREATED, DomainEventKind.CUSTOMER_UPDATED),
    "tag_added": (DomainEventKind.TAG_ADDED,),
    "tag_removed": (DomainEventKind.TAG_REMOVED,),
    "segment_entered": ("segment.entered",),
    "segment_exited": ("segment.exited",),
    "event": (DomainEventKind.EVENT_RECORDED,),
    "order_placed": (DomainEventKind.ORDER_PLACED,),
    "order_refunded": (DomainEventKind.ORDER_REFUNDED,),
}


def handle_events(events: list[DomainEvent]) -> None:
    orders = _orders(events)
    recorded = _recorded_events(events)
    enrolled = _enroll_triggered(events, orders, recorded)
    if enrolled:
        # Their first steps run here, in this transaction, instead of waiting for a worker's turn: a welcome or an
        # order's thank-you is queued within the commit that records the trigger (a step that waits just waits).
        from journeys.services.runtime import advance_due

        advance_due(ids=enrolled, batch_size=len(enrolled))
    _record_goals(events, orders, recorded)
    _wake_waiting(recorded)
    _end_merged(events)


# ------------------------------------------------------------------------------------------------------ triggers


def _enroll_triggered(events: list[DomainEvent], orders: Mapping[int, Any], recorded: Mapping[int, Any]) -> list[int]:
    """Enroll the customers these events trigger into every matching active journey; the new enrollments' ids."""
    enrolled: list[int] = []
    journeys = list(
        Journey.objects.filter(status=JourneyStatus.ACTIVE, current_version__isnull=False)
        .select_related("current_version")
        .filter(current_version__definition__trigger__type__in=list(EVENT_TRIGGERS))
    )
    for journey in journeys:
        trigger = journey.current_version.definition["trigger"]
        kinds = TRIGGER_KINDS[trigger["type"]]
        candidates = [
            Candidate(e.customer_id, trigger["type"], f"de:{e.pk}", e.occurred_at, _context(e))
            for e in events
            if e.kind in kinds and _matches(trigger, e, orders, recorded)
        ]
        if candidates:
            enrolled.extend(enroll(journey, candidates).enrolled.values())
    return enrolled


def _matches(trigger: Mapping[str, Any], event: DomainEvent, orders: Mapping[int, Any], recorded: Mapping) -> bool:
    kind, payload = trigger["type"], event.payload or {}
    if kind == "customer_added":
        return event.kind == DomainEventKind.CUSTOMER_CREATED or payload.get("change") in ADD_CONTACT_CHANGES
    if kind in ("tag_added", "tag_removed"):
        return payload.get("tag_id") == trigger.get("tag")
    if kind in ("segment_entered", "segment_exited"):
        return payload.get("segment_id") == trigger.get("segment")
    if kind == "event":
        found = recorded.get(payload.get("event_id"))
        return found is not None and _event_matches(found, trigger.get("event_type"), trigger.get("properties"))
    if kind == "order_placed":
        order = orders.get(payload.get("order_id"))
        return order is not None and _order_matches(order, trigger)
    return kind == "order_refunded"


def _context(event: DomainEvent) -> dict[str, Any]:
    payload = event.payload or {}
    return {key: payload[key] for key in ("order_id", "event_id", "tag_id", "segment_id") if key in payload}


def _event_matches(event: Any, event_type: str | None, properties: Mapping[str, Any] | None) -> bool:
    if event.type != event_type:
        return False
    return all(event.properties.get(key) == value for key, value in (properties or {}).items())


def _order_matches(order: Any, filters: Mapping[str, Any]) -> bool:
    if filters.get("min_amount") not in (None, "") and order.amount < Decimal(str(filters["min_amount"])):
        return False
    if filters.get("product") and filters["product"] not in order.skus:
        return False
    return not (filters.get("category") and filters["category"] not in order.categories)


def _orders(events: list[DomainEvent]) -> dict[int, Any]:
    """Orders of order events, with their SKUs and categories (two queries for the batch)."""
    from customers.models import Order, OrderLine

    ids = {e.payload.get("order_id") for e in events if e.kind == DomainEventKind.ORDER_PLACED and e.payload}
    ids.discard(None)
    if not ids:
        return {}
    orders = {o.pk: o for o in Order.objects.filter(pk__in=ids).only("id", "amount", "ordered_at", "customer_id")}
    for order in orders.values():
        order.skus, order.categories = set(), set()
    for order_id, sku, product_sku, category in OrderLine.objects.filter(order_id__in=ids).values_list(
        "order_id", "sku", "product__sku", "product__category"
    ):
        order = orders[order_id]
        order.skus |= {s for s in (sku, product_sku) if s}
        if category:
            order.categories.add(category)
    return orders


def _recorded_events(events: list[DomainEvent]) -> dict[int, Any]:
    from customers.models import Event

    ids = {e.payload.get("event_id") for e in events if e.kind == DomainEventKind.EVENT_RECORDED and e.payload}
    ids.discard(None)
    if not ids:
        return {}
    return {e.pk: e for e in Event.objects.filter(pk__in=ids).only("id", "customer_id", "type", "occurred_at",
                                                                        "properties")}  # fmt: skip


# --------------------------------------------------------------------------------------------------------- goals


def _record_goals(events: list[DomainEvent], orders: Mapping[int, Any], recorded: Mapping[int, Any]) -> None:
    """Conversions at event time, once per enrollment, within its goal window, never from before it entered
    (J8, J9, J11); the goal exit policy exits her at once and cancels her queued messages."""
    from journeys.services.exits import convert

    happenings: list[tuple[int, str, datetime.datetime, Any]] = [
        (o.customer_id, "order", o.ordered_at, o) for o in orders.values()
    ] + [(e.customer_id, "event", e.occurred_at, e) for e in recorded.values()]
    if not happenings:
        return
    customers = {h[0] for h in happenings}
    candidates = (
        Enrollment.objects.filter(customer_id__in=customers, converted_at__isnull=True)
        .filter(Q(version__definition__goal__type="order") | Q(version__definition__goal__type="event"))
        .select_related("version", "journey")
    )
    by_customer: dict[int, list[Enrollment]] = defaultdict(list)
    for enrollment in candidates:
        by_customer[enrollment.customer_id].append(enrollment)
    for customer_id, kind, at, thing in sorted(happenings, key=lambda h: h[2]):
        for enrollment in by_customer.get(customer_id, []):
            goal = enrollment.version.definition.get("goal") or {}
            if enrollment.converted_at or goal.get("type") != kind:
                continue
            if not (enrollment.entered_at < at and (enrollment.goal_until is None or at <= enrollment.goal_until)):
                continue
            if kind == "order" and not _order_matches(thing, goal):
                continue
            if kind == "event" and not _event_matches(thing, goal.get("event_type"), goal.get("properties")):
                continue
            amount = thing.amount if kind == "order" else None
            if convert(enrollment, at=at, amount=amount, ref=f"{kind}:{thing.pk}"):
                enrollment.converted_at = at


def name_journeys(refs: list[str]) -> dict[str, Any]:
    """The outbox's names of journey sources ("journey:12" → the journey's name): one query for a page."""
    from messaging.sources import SourceName

    ids = {ref: int(ref.partition(":")[2]) for ref in refs if ref.partition(":")[2].isdigit()}
    names = dict(Journey.objects.filter(pk__in=set(ids.values())).values_list("pk", "name"))
    return {ref: SourceName(names[pk]) for ref, pk in ids.items() if pk in names}


# ------------------------------------------------------------------------------------------------ waits, merges


def _wake_waiting(recorded: Mapping[int, Any]) -> None:
    """Customers waiting for an event that was just recorded are looked at now (J19: at once, not at the
    timeout). The step itself checks the event came after she arrived."""
    if not recorded:
        return
    now = timezone.now()
    pairs = {(e.customer_id, e.type) for e in recorded.values()}
    woken = 0
    for event_type in {t for _c, t in pairs}:
        customers = [c for c, t in pairs if t == event_type]
        woken += Enrollment.objects.filter(
            state=EnrollmentState.ACTIVE, customer_id__in=customers, wait__event_type=event_type, next_run_at__gt=now
        ).update(next_run_at=now)
    if woken:
        from journeys.services.runtime import kick_after_commit

        kick_after_commit()


def _end_merged(events: list[DomainEvent]) -> None:
    from journeys.models import ExitReason
    from journeys.services.exits import exit_enrollments

    merged = [e.payload.get("merged_id") for e in events if e.kind == DomainEventKind.CUSTOMER_MERGED and e.payload]
    if merged := [m for m in merged if m]:
        exit_enrollments(Enrollment.objects.filter(customer_id__in=merged), reason=ExitReason.MERGED)
