"""Nothing twice, nothing lost, and the contact policy, seen from journeys (J25, J26, J29-J31); the messaging app's
tests prove the same rules at the touchpoint level (J25-J38)."""

import datetime
import threading
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connections

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from journeys.models import Enrollment, EnrollmentState, StepRun
from journeys.services import runtime
from journeys.services.enrollment import Candidate, enroll
from journeys.tests.factories import published, send
from messaging.models import CapAction, FrequencyCap, Touchpoint, TouchpointStatus
from messaging.services.dispatch import dispatch_due
from messaging.services.scheduling import schedule_touchpoint

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
S = TouchpointStatus


def enter(journey, *customers, at=MONDAY_10AM):
    return enroll(journey, [Candidate(c.pk, "manual", f"k{c.pk}", at) for c in customers], now=at)


@pytest.mark.django_db(transaction=True)
def test_J25_two_workers_ticking_concurrently_over_10000_due_enrollments_run_each_step_once():
    journey = published([send("s", "您好")])
    customers = Customer.objects.bulk_create([Customer(name=f"c{n}") for n in range(10_000)])
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, *customers)
        totals = []

        def worker():
            try:
                runs = 0
                while (result := runtime.advance_due()).claimed:
                    runs += result.step_runs
                totals.append(runs)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sum(totals) == 10_000
    assert StepRun.objects.count() == 10_000
    assert Touchpoint.objects.count() == 10_000
    assert Enrollment.objects.filter(state=EnrollmentState.COMPLETED).count() == 10_000


@pytest.mark.django_db
def test_J26_a_worker_killed_after_creating_the_touchpoint_causes_no_second_one_on_retry(tick):
    journey = published([send("s", "您好")])
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, customer)
        enrollment = Enrollment.objects.get()
        # The killed worker's run committed its touchpoint (same key: journey, step, recipient, due) but not the
        # step run: the enrollment is still due at the send step.
        key = f"journey:{journey.pk}:s:c{customer.pk}:{int(enrollment.next_run_at.timestamp())}"
        schedule_touchpoint(channel="sms", customer=customer, idempotency_key=key, content={"text": "您好"})

        tick()

    assert Touchpoint.objects.count() == 1
    run = StepRun.objects.get()
    assert run.touchpoint_id == Touchpoint.objects.get().pk
    assert run.detail["new"] is False


@pytest.fixture
def two_a_day(db):
    return FrequencyCap.objects.create(channel="", period="day", limit=2)


@pytest.mark.django_db
def test_J29_a_third_marketing_touch_in_a_day_across_journeys_and_campaigns_is_capped(tick, two_a_day):
    first, second = published([send("a", "一")], name="A"), published([send("b", "二")], name="B")
    customer = CustomerFactory(phone="13800000001")
    with time_machine.travel(MONDAY_10AM, tick=False) as clock:
        schedule_touchpoint(channel="sms", customer=customer, idempotency_key="campaign", content={"text": "活动"},
                            source="campaign")  # fmt: skip
        dispatch_due()
        clock.shift(datetime.timedelta(hours=1))
        enter(first, customer, at=MONDAY_10AM + datetime.timedelta(hours=1))
        tick()
        dispatch_due()
        clock.shift(datetime.timedelta(hours=1))
        enter(second, customer, at=MONDAY_10AM + datetime.timedelta(hours=2))
        tick()
        dispatch_due()

    statuses = dict(Touchpoint.objects.values_list("content__text", "status"))
    assert statuses == {"活动": S.SENT, "一": S.SENT, "二": S.CAPPED}
    assert Touchpoint.objects.get(content__text="二").reason == "frequency_cap"


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "status", "due"), [
    (CapAction.SKIP, S.CAPPED, None),
    (CapAction.DEFER, S.DEFERRED, datetime.datetime(2026, 11, 24, 0, 0, tzinfo=SHANGHAI)),
    (CapAction.DEFER_EXPIRE, S.DEFERRED, datetime.datetime(2026, 11, 24, 0, 0, tzinfo=SHANGHAI)),
])  # fmt: skip
def test_J30_the_journeys_cap_policy_skips_or_defers_and_the_enrollment_still_advances(tick, action, status, due):
    FrequencyCap.objects.create(channel="", period="day", limit=1)
    journey = published([send("s1", "一", next="s2"), send("s2", "二")], cap_action=action, cap_expiry_hours=48)
    customer = CustomerFactory(phone="13800000001")
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, customer)
        tick()
        dispatch_due()

    second = Touchpoint.objects.get(content__text="二")
    assert (second.status, second.on_cap) == (status, action)
    if due:
        assert second.due_at == due
    if action == CapAction.DEFER_EXPIRE:
        assert second.expires_at == MONDAY_10AM + datetime.timedelta(hours=48)
    assert Enrollment.objects.get().state == EnrollmentState.COMPLETED


@pytest.mark.django_db
def test_J30_a_deferred_journey_message_still_capped_after_48_hours_becomes_undeliverable(tick):
    FrequencyCap.objects.create(channel="", period="day", limit=1)
    journey = published([send("s", "二")], cap_action=CapAction.DEFER_EXPIRE, cap_expiry_hours=48)
    hog = published([send("h", "先")], name="hog", priority=9)
    customer = CustomerFactory(phone="13800000001")
    with time_machine.travel(MONDAY_10AM, tick=False) as clock:
        enter(hog, customer)
        enter(journey, customer)
        tick()
        dispatch_due()
        for day in (1, 2):
            clock.move_to(MONDAY_10AM + datetime.timedelta(days=day))
            due = MONDAY_10AM + datetime.timedelta(days=day, minutes=-1)
            schedule_touchpoint(channel="sms", customer=customer, idempotency_key=f"hog{day}", priority=9,
                                content={"text": "先"}, due_at=due)  # fmt: skip
            dispatch_due()

    assert Touchpoint.objects.get(content__text="二").status == S.UNDELIVERABLE


@pytest.mark.django_db
def test_J31_the_higher_priority_journey_wins_the_last_slot(tick):
    FrequencyCap.objects.create(channel="", period="day", limit=1)
    low = published([send("l", "低")], name="low", priority=1)
    high = published([send("h", "高")], name="high", priority=9)
    customer = CustomerFactory(phone="13800000001")
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(low, customer)
        enter(high, customer)
        tick()
        dispatch_due()

    statuses = dict(Touchpoint.objects.values_list("content__text", "status"))
    assert statuses == {"高": S.SENT, "低": S.CAPPED}
