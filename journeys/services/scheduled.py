"""Triggers driven by the calendar: birthdays, dates in attributes, products' consumption cycles (the
repurchase reminder) and the weekly plans and day-by-day rhythms of community groups."""

from __future__ import annotations

import datetime
import logging
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from journeys import timing
from journeys.definition import DATE_TRIGGERS, GROUP_TRIGGERS
from journeys.models import Journey, JourneyStatus
from journeys.services.enrollment import Candidate, EnrollResult, enroll

logger = logging.getLogger(__name__)

# Order statuses that count as a purchase for the consumption cycle.
PURCHASED = ("paid", "shipped", "completed")


def _active(trigger_types: Any) -> list[Journey]:
    return list(
        Journey.objects.filter(status=JourneyStatus.ACTIVE, current_version__isnull=False)
        .filter(current_version__definition__trigger__type__in=list(trigger_types))
        .select_related("current_version")
    )


def enroll_date_triggered(*, now: datetime.datetime | None = None) -> dict[int, int]:
    """Enroll everyone whose date has come, for every active date-triggered journey. Safe to run often: each
    occurrence (a birthday's year, a purchase) enrolls once. Today is the workspace's; yesterday is caught up."""
    now = now or timezone.now()
    enrolled = {}
    for journey in _active(DATE_TRIGGERS):
        with transaction.atomic():
            result = enroll_due_dates(journey, now=now)
        enrolled[journey.pk] = len(result.enrolled)
    return enrolled


def _days(trigger: dict[str, Any], now: datetime.datetime, tz: ZoneInfo) -> list[datetime.date]:
    local = now.astimezone(tz)
    days = [local.date() - datetime.timedelta(days=1)]
    if local.time() >= timing.parse_clock(trigger.get("at") or "00:00"):
        days.append(local.date())
    return days


def enroll_due_dates(journey: Journey, *, now: datetime.datetime) -> EnrollResult:
    trigger = journey.current_version.definition["trigger"]
    tz = ZoneInfo(settings.TIME_ZONE)
    candidates: list[Candidate] = []
    for day in _days(trigger, now, tz):
        candidates += _candidates(trigger, day)
    return enroll(journey, [Candidate(c, trigger["type"], key, now, ctx) for c, key, ctx in candidates], now=now)


def _candidates(trigger: dict[str, Any], day: datetime.date) -> list[tuple[int, str, dict[str, Any]]]:
    kind = trigger["type"]
    with connection.cursor() as cursor:
        if kind == "birthday":
            target = day + datetime.timedelta(days=trigger.get("days_before") or 0)
            cursor.execute(
                """SELECT id FROM customers_customer WHERE merged_into_id IS NULL AND birthday IS NOT NULL
                   AND extract(month FROM birthday) = %s AND extract(day FROM birthday) = %s""",
                [target.month, target.day],
            )
            return [(row[0], f"birthday:{target.year}", {"birthday": target.isoformat()}) for row in cursor.fetchall()]
        if kind == "date_attribute":
            target = day - datetime.timedelta(days=trigger.get("offset_days") or 0)
            cursor.execute(
                """SELECT id FROM customers_customer WHERE merged_into_id IS NULL
                   AND attributes ->> %s ~ '^\\d{4}-\\d{2}-\\d{2}' AND left(attributes ->> %s, 10) = %s""",
                [trigger["attribute"], trigger["attribute"], target.isoformat()],
            )
            key = f"date:{trigger['attribute']}:{target.isoformat()}"
            return [(row[0], key, {"date": target.isoformat()}) for row in cursor.fetchall()]
        return _cycle_candidates(cursor, trigger, day)


def _cycle_candidates(cursor: Any, trigger: dict[str, Any], day: datetime.date) -> list[tuple[int, str, dict]]:
    """Customers whose last purchase of a product with a consumption cycle was `cycle - days_before` days
    before `day`: one query over the recent orders of those products."""
    days_before = trigger.get("days_before") or 0
    cursor.execute(
        """
        WITH last AS (
            SELECT o.customer_id, p.id AS product_id, p.sku, p.name, p.consumption_cycle_days AS cycle,
                   max((o.ordered_at AT TIME ZONE %(tz)s)::date) AS bought_on
            FROM customers_order o
            JOIN customers_orderline l ON l.order_id = o.id
            JOIN customers_product p ON p.id = l.product_id
            WHERE p.consumption_cycle_days > 0 AND (%(sku)s = '' OR p.sku = %(sku)s)
              AND o.status = ANY(%(statuses)s)
              AND o.ordered_at >= %(since)s
            GROUP BY 1, 2, 3, 4, 5
        )
        SELECT customer_id, product_id, sku, name, bought_on FROM last
        WHERE bought_on + cycle - %(before)s = %(day)s
        """,
        {
            "tz": settings.TIME_ZONE, "sku": trigger.get("product") or "", "statuses": list(PURCHASED),
            "since": datetime.datetime.combine(day - datetime.timedelta(days=_max_cycle() + 2), datetime.time.min,
                                               tzinfo=datetime.UTC),
            "before": days_before, "day": day,
        },
    )  # fmt: skip
    return [
        (customer, f"cycle:{product}:{bought_on.isoformat()}", {"product": sku, "product_name": name,
                                                                  "bought_on": bought_on.isoformat()})
        for customer, product, sku, name, bought_on in cursor.fetchall()
    ]  # fmt: skip


def _max_cycle() -> int:
    from django.db.models import Max

    from customers.models import Product

    return Product.objects.aggregate(m=Max("consumption_cycle_days"))["m"] or 0


# ------------------------------------------------------------------------------------------------- group plans


def run_group_plans(*, now: datetime.datetime | None = None) -> int:
    """Queue the group messages whose slot came since the last run, for every active group journey: a weekly plan
    (weekday + time) for all groups of a type, or a rhythm by day since each group was created. Each message's
    key is (journey, plan item, group, day), so a rerun queues nothing twice."""
    now = now or timezone.now()
    queued = 0
    for journey in _active(GROUP_TRIGGERS):
        with transaction.atomic():
            locked = Journey.objects.select_for_update(skip_locked=True).filter(pk=journey.pk).first()
            if locked is None:
                continue
            since = locked.group_cursor or max(journey.current_version.published_at, now - datetime.timedelta(hours=1))
            queued += _queue_group_slots(locked, since, now)
            locked.group_cursor = now
            locked.save(update_fields=["group_cursor"])
    return queued


def _queue_group_slots(journey: Journey, since: datetime.datetime, now: datetime.datetime) -> int:
    from customers.models import CommunityGroup
    from messaging.models import MessageTemplate, TouchpointSource
    from messaging.services.scheduling import schedule_touchpoint

    trigger = journey.current_version.definition["trigger"]
    tz = ZoneInfo(settings.TIME_ZONE)
    groups = CommunityGroup.objects.filter(group_type=trigger["group_type"], dismissed_at__isnull=True)
    queued = 0
    for group in groups.only("id", "created_at", "owner_id"):
        for index, item in enumerate(trigger["plan"]):
            for slot in _slots(trigger["type"], item, group.created_at, since, now, tz):
                template = MessageTemplate.objects.filter(pk=item["template"]).first() if item.get("template") else None
                touchpoint = schedule_touchpoint(
                    channel=item.get("channel") or "wecom",
                    idempotency_key=f"journey:{journey.pk}:plan{index}:g{group.pk}:{slot.date().isoformat()}",
                    group=group.pk, template=template, content=None if template else {"text": item["text"]},
                    due_at=slot, source=TouchpointSource.JOURNEY, source_ref=journey.source_ref,
                    priority=journey.priority, sender_staff=group.owner, context={"journey": journey.name},
                )  # fmt: skip
                queued += int(touchpoint.is_new)
    return queued


def _slots(kind: str, item: dict[str, Any], created_at: datetime.datetime, since: datetime.datetime,
           now: datetime.datetime, tz: ZoneInfo) -> list[datetime.datetime]:  # fmt: skip
    """The plan item's moments in (since, now]."""
    at = timing.parse_clock(item["at"])
    if kind == "group_rhythm":
        day = created_at.astimezone(tz).date() + datetime.timedelta(days=item["day"] - 1)
        slot = datetime.datetime.combine(day, at, tzinfo=tz)
        return [slot] if since < slot <= now and slot >= created_at else []
    slots = []
    day = since.astimezone(tz).date()
    while day <= now.astimezone(tz).date():
        if day.weekday() == item["weekday"]:
            slot = datetime.datetime.combine(day, at, tzinfo=tz)
            if since < slot <= now:
                slots.append(slot)
        day += datetime.timedelta(days=1)
    return slots
