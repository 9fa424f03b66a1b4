"""Calendar triggers: birthdays, dates in attributes, consumption cycles; group weekly plans and rhythms."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from customers.tests.factories import (
    CommunityGroupFactory,
    CustomerFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    StaffFactory,
)
from journeys.models import Enrollment
from journeys.services.scheduled import enroll_date_triggered, run_group_plans
from journeys.tests.factories import published, send
from messaging.models import Touchpoint

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)


def enrolled(journey):
    return sorted(Enrollment.objects.filter(journey=journey).values_list("customer_id", flat=True))


def test_a_birthday_journey_enrolls_on_the_day_after_its_hour_once_per_year():
    journey = published([send("gift", "生日快乐")], trigger={"type": "birthday", "at": "09:00"},
                        reentry={"policy": "after_days", "days": 300})  # fmt: skip
    today = CustomerFactory(birthday=datetime.date(1990, 11, 23))
    CustomerFactory(birthday=datetime.date(1990, 11, 24))
    with time_machine.travel(MONDAY_10AM.replace(hour=8), tick=False):
        enroll_date_triggered()
        assert enrolled(journey) == []  # before 09:00
    with time_machine.travel(MONDAY_10AM, tick=False):
        enroll_date_triggered()
        enroll_date_triggered()

    assert enrolled(journey) == [today.pk]
    assert Enrollment.objects.get().trigger_key == "birthday:2026"


def test_a_date_attribute_trigger_enrolls_n_days_after_the_date():
    journey = published(trigger={"type": "date_attribute", "attribute": "member_since", "offset_days": 365})
    anniversary = CustomerFactory(attributes={"member_since": "2025-11-23"})
    CustomerFactory(attributes={"member_since": "2025-11-20"})
    CustomerFactory(attributes={"member_since": "not a date"})
    with time_machine.travel(MONDAY_10AM, tick=False):
        enroll_date_triggered()

    assert enrolled(journey) == [anniversary.pk]


def test_the_repurchase_reminder_enrolls_when_the_consumption_cycle_since_the_last_purchase_is_due(tick):
    journey = published([send("remind", "{{ customer.name }}，您的{{ product_name }}快用完啦")],
                        trigger={"type": "consumption_cycle", "days_before": 3, "at": "10:00"},
                        reentry={"policy": "every"})  # fmt: skip
    mask = ProductFactory(sku="MASK", name="补水面膜", consumption_cycle_days=30)
    due, bought_again, too_early = CustomerFactory(), CustomerFactory(), CustomerFactory()
    for customer, days_ago in ((due, 27), (bought_again, 27), (bought_again, 5), (too_early, 20)):
        order = OrderFactory(customer=customer, ordered_at=MONDAY_10AM - datetime.timedelta(days=days_ago))
        OrderLineFactory(order=order, product=mask, sku="MASK")
    with time_machine.travel(MONDAY_10AM, tick=False):
        enroll_date_triggered()
        enroll_date_triggered()
        tick()

    assert enrolled(journey) == [due.pk]
    enrollment = Enrollment.objects.get()
    assert enrollment.context["product_name"] == "补水面膜"
    assert enrollment.trigger_key == f"cycle:{mask.pk}:2026-10-27"
    assert Touchpoint.objects.get().context["product_name"] == "补水面膜"


def test_a_weekly_group_plan_queues_each_slot_once_for_every_group_of_the_type():
    plan = [{"weekday": 0, "at": "20:00", "text": "周一知识分享"}, {"weekday": 2, "at": "20:00", "text": "周三答疑"}]
    with time_machine.travel(MONDAY_10AM, tick=False):
        journey = published(trigger={"type": "group_weekly", "group_type": "customer", "plan": plan})
        owner = StaffFactory()
        groups = [CommunityGroupFactory(group_type="customer", owner=owner) for _ in range(2)]
        CommunityGroupFactory(group_type="internal")
        run_group_plans()
    with time_machine.travel(MONDAY_10AM.replace(hour=20, minute=1), tick=False):
        run_group_plans()
        run_group_plans()

    sent = sorted(Touchpoint.objects.values_list("group_id", "content__text", "source_ref"))
    assert sent == sorted((g.pk, "周一知识分享", f"journey:{journey.pk}") for g in groups)
    assert {t.due_at for t in Touchpoint.objects.all()} == {MONDAY_10AM.replace(hour=20)}


def test_a_new_group_rhythm_counts_days_from_the_groups_creation():
    plan = [{"day": day, "at": "20:00", "text": f"第{day}天种草"} for day in range(1, 6)]
    plan.append({"day": 6, "at": "20:00", "text": "第6天转化"})
    with time_machine.travel(MONDAY_10AM, tick=False):
        published(trigger={"type": "group_rhythm", "group_type": "customer", "plan": plan})
        CommunityGroupFactory(group_type="customer", created_at=MONDAY_10AM - datetime.timedelta(days=5))
        run_group_plans()
    with time_machine.travel(MONDAY_10AM.replace(hour=21), tick=False):
        run_group_plans()

    assert list(Touchpoint.objects.values_list("content__text", flat=True)) == ["第6天转化"]
