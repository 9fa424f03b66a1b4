"""The contact policy at dispatch: quiet hours, frequency caps, priorities, rate limits and fair claiming
(J17, J29 to J34 of ../shared/specs/journeys.md)."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from customers.tests.factories import CustomerFactory
from messaging.models import CapAction, ContactCounter, FrequencyCap, RateLimit, Touchpoint, TouchpointStatus
from messaging.services import policy
from messaging.services.dispatch import dispatch_due
from messaging.services.scheduling import schedule_touchpoint
from messaging.tests.factories import queue_many

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
S = TouchpointStatus
MS = datetime.timedelta(milliseconds=1)


def sms(customer, key, **options):
    options.setdefault("content", {"text": "hi"})
    return schedule_touchpoint(channel="sms", customer=customer, idempotency_key=key, **options)


def status_of(key):
    touchpoint = Touchpoint.objects.get(idempotency_key=key)
    return touchpoint.status, touchpoint.reason


@pytest.fixture
def customer():
    return CustomerFactory(phone="13800000001")


# ------------------------------------------------------------------------------------------------- quiet hours


def test_quiet_hours_crossing_midnight_defer_marketing_from_2330_to_0800_but_not_transactional_J17(customer):
    with time_machine.travel(datetime.datetime(2026, 11, 23, 23, 30, tzinfo=SHANGHAI), tick=False):
        sms(customer, "promo")
        sms(customer, "receipt", kind="transactional")
        dispatch_due()

    promo = Touchpoint.objects.get(idempotency_key="promo")
    assert (promo.status, promo.reason) == (S.DEFERRED, "quiet_hours")
    assert promo.due_at == datetime.datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI)
    assert status_of("receipt") == (S.SENT, "")


def test_quiet_hours_follow_the_customers_own_time_zone():
    in_london = CustomerFactory(phone="13800000002", time_zone="Europe/London")
    with time_machine.travel(datetime.datetime(2026, 11, 23, 23, 30, tzinfo=SHANGHAI), tick=False):  # 15:30 there
        sms(in_london, "london")
        dispatch_due()

    assert status_of("london") == (S.SENT, "")


def test_an_unknown_time_zone_falls_back_to_the_workspace_zone_J18():
    assert policy.zone("Mars/Olympus") == ZoneInfo("Asia/Shanghai")
    assert policy.zone("") == ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("clock", "expected_end"),
    [
        (datetime.time(21, 0), datetime.datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI)),
        (datetime.time(0, 30), datetime.datetime(2026, 11, 23, 8, 0, tzinfo=SHANGHAI)),
        (datetime.time(7, 59), datetime.datetime(2026, 11, 23, 8, 0, tzinfo=SHANGHAI)),
        (datetime.time(8, 0), None),
        (datetime.time(20, 59), None),
    ],
)
def test_quiet_hours_window_edges(clock, expected_end):
    now = datetime.datetime.combine(datetime.date(2026, 11, 23), clock, tzinfo=SHANGHAI)

    end = policy.quiet_hours_end(now, SHANGHAI, datetime.time(21, 0), datetime.time(8, 0))

    assert end == expected_end


# ---------------------------------------------------------------------------------------------- frequency caps


@pytest.fixture
def two_a_day():
    return FrequencyCap.objects.create(channel="", period="day", limit=2)


def test_a_third_marketing_touch_in_a_day_across_journeys_and_campaigns_is_capped_J29(customer, two_a_day):
    with time_machine.travel(MONDAY_10AM, tick=False) as traveller:
        sms(customer, "journey-a", source_ref="journey:1")
        dispatch_due()
        traveller.shift(datetime.timedelta(hours=1))
        schedule_touchpoint(
            channel="email",
            customer=customer,
            idempotency_key="campaign",
            content={"text": "hi", "subject": "Hi"},
            source="campaign",
        )
        customer.email = "a@example.com"
        customer.save()
        dispatch_due()
        traveller.shift(datetime.timedelta(hours=1))
        sms(customer, "journey-b", source_ref="journey:2")
        dispatch_due()

    assert status_of("journey-a") == (S.SENT, "")
    assert status_of("campaign") == (S.SENT, "")
    assert status_of("journey-b") == (S.CAPPED, "frequency_cap")
    assert ContactCounter.objects.get(customer_id=customer.pk, scope="all").count == 2


def test_transactional_messages_bypass_caps_J32(customer, two_a_day):
    with time_machine.travel(MONDAY_10AM, tick=False):
        for n in range(3):
            sms(customer, f"receipt-{n}", kind="transactional")
        dispatch_due()

    assert Touchpoint.objects.filter(status=S.SENT).count() == 3


def test_cap_policy_skip_defer_and_defer_with_expiry_J30(customer):
    FrequencyCap.objects.create(channel="", period="day", limit=1)
    with time_machine.travel(MONDAY_10AM, tick=False):
        sms(customer, "first")
        dispatch_due()
        sms(customer, "skip", on_cap=CapAction.SKIP)
        sms(customer, "defer", on_cap=CapAction.DEFER)
        sms(customer, "expire", on_cap=CapAction.DEFER_EXPIRE, expires_at=MONDAY_10AM + datetime.timedelta(hours=48))
        soon = MONDAY_10AM + datetime.timedelta(hours=6)
        sms(customer, "expire-soon", on_cap=CapAction.DEFER_EXPIRE, expires_at=soon)
        dispatch_due()

    tomorrow = datetime.datetime(2026, 11, 24, 0, 0, tzinfo=SHANGHAI)  # the next allowed period, not N later
    assert status_of("skip") == (S.CAPPED, "frequency_cap")
    assert status_of("defer") == (S.DEFERRED, "frequency_cap")
    assert Touchpoint.objects.get(idempotency_key="defer").due_at == tomorrow
    assert status_of("expire") == (S.DEFERRED, "frequency_cap")
    assert status_of("expire-soon") == (S.UNDELIVERABLE, "cap_expired")


def test_a_deferred_message_that_stays_capped_past_its_expiry_becomes_undeliverable_J30(customer):
    FrequencyCap.objects.create(channel="", period="day", limit=1)
    expiry = MONDAY_10AM + datetime.timedelta(hours=48)
    with time_machine.travel(MONDAY_10AM, tick=False) as traveller:
        sms(customer, "expire", on_cap=CapAction.DEFER_EXPIRE, expires_at=expiry, due_at=MONDAY_10AM)
        sms(customer, "hog", kind="marketing", priority=5)
        dispatch_due()  # the hog wins today's slot
        for day in range(1, 3):  # a higher-priority message takes each following day's slot first
            traveller.move_to(MONDAY_10AM + datetime.timedelta(days=day))
            sms(customer, f"hog-{day}", priority=5, due_at=MONDAY_10AM + datetime.timedelta(days=day, minutes=-1))
            dispatch_due()

    assert status_of("expire") == (S.UNDELIVERABLE, "cap_expired")


def test_the_higher_priority_journey_wins_the_last_slot_then_the_earlier_due_then_the_lower_id_J31(customer):
    FrequencyCap.objects.create(channel="", period="day", limit=1)
    with time_machine.travel(MONDAY_10AM, tick=False):
        sms(customer, "low", source_ref="journey:1", priority=1)
        sms(customer, "high", source_ref="journey:2", priority=9)
        dispatch_due()
        other = CustomerFactory(phone="13800000009")
        sms(other, "later-due", due_at=MONDAY_10AM - datetime.timedelta(minutes=1), source_ref="journey:4")
        sms(other, "earlier-due", due_at=MONDAY_10AM - datetime.timedelta(minutes=2), source_ref="journey:3")
        dispatch_due()

    assert status_of("high") == (S.SENT, "")
    assert status_of("low") == (S.CAPPED, "frequency_cap")
    assert status_of("earlier-due") == (S.SENT, "")
    assert status_of("later-due") == (S.CAPPED, "frequency_cap")


def test_a_failed_send_gives_its_cap_slot_back(customer, scripted):
    from messaging.backends import Outcome

    FrequencyCap.objects.create(channel="", period="day", limit=1)
    scripted.script[customer.phone] = [(Outcome.PERMANENT_ERROR, "400"), (Outcome.SENT, "200")]
    with time_machine.travel(MONDAY_10AM, tick=False):
        sms(customer, "fails")
        dispatch_due()
        sms(customer, "next")
        dispatch_due()

    assert status_of("fails")[0] == S.FAILED
    assert status_of("next") == (S.SENT, "")


def test_wecom_mass_messages_respect_the_monthly_receipt_budget(customer, scripted):
    from customers.models import Identity
    from messaging.models import ContactPolicy

    Identity.objects.create(customer=customer, kind="wecom", value="wmEXT1")
    ContactPolicy.objects.update_or_create(pk=1, defaults={"wecom_monthly_receipts": 2})
    with time_machine.travel(MONDAY_10AM, tick=False):
        for n in range(3):
            schedule_touchpoint(channel="wecom", customer=customer, idempotency_key=f"w{n}", content={"text": "hi"})
        dispatch_due()

    assert [status_of(f"w{n}") for n in range(3)] == [
        (S.SENT, ""),
        (S.SENT, ""),
        (S.CAPPED, "wecom_monthly_budget"),
    ]


# ------------------------------------------------------------------------------------------------- rate limits


def test_a_rate_limit_of_600_a_minute_sends_10000_in_about_17_minutes_in_due_order_none_dropped_J33(customer):
    RateLimit.objects.create(channel="sms", per_minute=600)
    queue_many(10_000, customer_id=customer.pk, source_ref="campaign:1", due_at=MONDAY_10AM, key_prefix="r", step=MS)
    minutes = 0
    with time_machine.travel(MONDAY_10AM + datetime.timedelta(seconds=30), tick=False) as traveller:
        while Touchpoint.objects.exclude(status=S.SENT).exists():
            while dispatch_due().progressed:
                pass
            minutes += 1
            traveller.shift(datetime.timedelta(minutes=1))
            assert minutes < 30

    sent = list(Touchpoint.objects.order_by("sent_at", "scheduled_for").values_list("scheduled_for", "sent_at"))
    per_minute = {}
    for _due, sent_at in sent:
        per_minute[sent_at] = per_minute.get(sent_at, 0) + 1
    assert minutes == 17
    assert len(sent) == 10_000
    assert max(per_minute.values()) == 600
    assert [due for due, _ in sent] == sorted(due for due, _ in sent)  # in due order


# ---------------------------------------------------------------------------------------------- fair claiming


def test_100000_due_touchpoints_of_one_journey_do_not_hold_back_another_journeys_welcome_J34(customer, settings):
    settings.MESSAGING_BATCH_SIZE = 500
    queue_many(100_000, customer_id=customer.pk, source_ref="journey:big", due_at=MONDAY_10AM, key_prefix="big")
    with time_machine.travel(MONDAY_10AM + datetime.timedelta(minutes=5), tick=False):
        sms(customer, "welcome", source_ref="journey:welcome", kind="transactional")

        report = dispatch_due()

    assert report.claimed == 500
    assert status_of("welcome") == (S.SENT, "")
