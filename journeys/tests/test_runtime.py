"""Exit and goals (J8-J12), waits and time (J13-J21), branches and experiments (J22-J24)."""

import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from customers import domain_events
from customers.models import Customer
from customers.services.ingest import bulk_record_events, bulk_upsert_orders
from customers.tests.factories import CustomerFactory, UserFactory
from journeys import definition as definitions
from journeys.models import Enrollment, EnrollmentState, ExitReason, StepRun
from journeys.services import lifecycle
from journeys.services.enrollment import Candidate, enroll
from journeys.steps import DefinitionError
from journeys.steps.branches import assign_arm, decide_winner
from journeys.tests.factories import published, send, wait
from messaging.models import Touchpoint, TouchpointStatus
from segments.services import segments as segment_service

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_9PM = datetime.datetime(2026, 11, 23, 21, 0, tzinfo=SHANGHAI)
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
ORDER_GOAL = {"type": "order"}


def enter(journey, *customers, at=None, key="t"):
    at = at or datetime.datetime.now(tz=SHANGHAI)
    return enroll(journey, [Candidate(c.pk, "manual", f"{key}{c.pk}", at) for c in customers], now=at)


def the_enrollment(journey, customer=None):
    rows = Enrollment.objects.filter(journey=journey)
    return rows.get(customer=customer) if customer else rows.get()


def texts(customer):
    return list(Touchpoint.objects.filter(customer=customer).order_by("id").values_list("content__text", flat=True))


def place_order(customer, external_id, at, amount="99.00", user=None):
    row = {"source": "shop", "external_id": external_id, "customer": {"id": customer.pk},
           "ordered_at": at.isoformat(), "amount": amount}  # fmt: skip
    bulk_upsert_orders([row], user=user or UserFactory(username=f"api-{external_id}"))
    domain_events.consume_all()


def record_event(customer, event_type, at, **properties):
    row = {"customer": {"id": customer.pk}, "type": event_type, "occurred_at": at.isoformat(),
           "properties": properties}  # fmt: skip
    bulk_record_events([row], user=UserFactory(username=f"ev-{event_type}-{at.timestamp()}"))
    domain_events.consume_all()


# ------------------------------------------------------------------------------------------------ exit and goals


def test_J8_an_order_while_waiting_exits_at_the_orders_commit_and_nothing_more_goes_out(tick):
    journey = published([send("s1", "一", next="w"), wait("w", days=3, next="s2"), send("s2", "二")],
                        goal=ORDER_GOAL, exit={"policy": "goal"})  # fmt: skip
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, customer)
        tick()
    ordered = MONDAY_10AM + DAY
    with time_machine.travel(ordered, tick=False):
        place_order(customer, "J8", ordered, amount="188.00")
    with time_machine.travel(MONDAY_10AM + 4 * DAY, tick=False):
        tick()

    enrollment = the_enrollment(journey)
    assert (enrollment.state, enrollment.exit_reason) == (EnrollmentState.EXITED, ExitReason.GOAL)
    assert enrollment.ended_at == ordered
    assert enrollment.conversion_amount == Decimal("188.00")
    assert texts(customer) == ["一"]


def test_J9_a_goal_event_from_before_the_enrollment_is_not_its_conversion(tick):
    journey = published([wait("w", days=3)], goal=ORDER_GOAL)
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, customer)
        place_order(customer, "before", MONDAY_10AM - HOUR)  # placed earlier, reported after she entered

    enrollment = the_enrollment(journey)
    assert enrollment.converted_at is None
    assert enrollment.state == EnrollmentState.ACTIVE


def _segment_journey(policy):
    segment = segment_service.save_segment(None, name=f"上海 {policy}", rule={
        "predicate": "attribute", "field": "city", "op": "eq", "value": "上海"})  # fmt: skip
    journey = published([send("s1", "一", next="w"), wait("w", days=1, next="s2"), send("s2", "二")],
                        trigger={"type": "segment_entered", "segment": segment.pk},
                        exit={"policy": policy})  # fmt: skip
    return segment, journey


@pytest.mark.parametrize(("policy", "expected"), [("not_matching", ["一"]), ("end", ["一", "二"])])
def test_J10_leaving_the_trigger_segment_exits_at_the_next_step_boundary_unless_only_at_end(tick, policy, expected):
    customer = CustomerFactory(city="上海")
    with time_machine.travel(MONDAY_10AM, tick=False):
        segment, journey = _segment_journey(policy)
        segment_service.recompute_segment(segment)
        domain_events.consume_all()
        tick()
        customer.city = "北京"
        customer.save()
        segment_service.recompute_segment(segment)
        domain_events.consume_all()
        assert the_enrollment(journey).state == EnrollmentState.ACTIVE  # not before the boundary
    with time_machine.travel(MONDAY_10AM + DAY + HOUR, tick=False):
        tick()

    enrollment = the_enrollment(journey)
    assert texts(customer) == expected
    assert enrollment.exit_reason == (ExitReason.NOT_MATCHING if policy == "not_matching" else ExitReason.END)


def test_J11_a_conversion_is_recorded_once_within_the_window_with_the_orders_amount(tick):
    journey = published([wait("w", days=60)], goal={"type": "order", "window_days": 30}, exit={"policy": "end"})
    early, late = CustomerFactory(), CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, early, late)
    with time_machine.travel(MONDAY_10AM + 2 * DAY, tick=False):
        place_order(early, "first", MONDAY_10AM + 2 * DAY, amount="120.00")
        place_order(early, "second", MONDAY_10AM + 2 * DAY + HOUR, amount="999.00")
    with time_machine.travel(MONDAY_10AM + 31 * DAY, tick=False):
        place_order(late, "too-late", MONDAY_10AM + 31 * DAY)
        journey.draft = {**journey.current_version.definition, "goal": {"type": "order", "min_amount": 500}}
        journey.save()
        lifecycle.publish(journey)  # editing the goal rewrites nothing already recorded

    converted = the_enrollment(journey, early)
    assert converted.converted_at == MONDAY_10AM + 2 * DAY
    assert (converted.conversion_amount, converted.conversion_ref) == (Decimal("120.00"), converted.conversion_ref)
    assert the_enrollment(journey, late).converted_at is None
    assert definitions.goal_window_days({"goal": {"type": "order"}}) == 30
    with pytest.raises(DefinitionError) as refused:
        definitions.validate({"steps": [wait("w", days=1)], "goal": {"type": "order", "window_days": 91}})
    assert refused.value.issues[0][0] == "goal.window_days"


def test_J12_stopping_exits_active_enrollments_and_cancels_queued_messages_but_not_those_handed_over(tick):
    journey = published([send("s1", "一", next="s2"), send("s2", "二")])
    one, two = CustomerFactory(), CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, one, two)
        tick()
        handed = Touchpoint.objects.filter(customer=one).order_by("id").first()
        Touchpoint.objects.filter(pk=handed.pk).update(status=TouchpointStatus.SENDING)  # a worker holds it
        enter_waiting = published([wait("w", days=1, next="s"), send("s", "later")], name="other")
        enter(enter_waiting, one)

        lifecycle.stop(journey)
        lifecycle.stop(enter_waiting)

    assert set(Enrollment.objects.values_list("exit_reason", flat=True)) == {ExitReason.END, ExitReason.JOURNEY_STOPPED}
    assert the_enrollment(enter_waiting, one).exit_reason == ExitReason.JOURNEY_STOPPED
    statuses = dict(Touchpoint.objects.values_list("pk", "status"))
    assert statuses.pop(handed.pk) == TouchpointStatus.SENDING
    assert set(statuses.values()) == {TouchpointStatus.CANCELLED}


# ------------------------------------------------------------------------------------------------ waits and time


def next_run(journey, customer):
    return the_enrollment(journey, customer).next_run_at.astimezone(SHANGHAI)


def test_J13_wait_2_days_resumes_48_hours_after_the_previous_step_completed(tick):
    journey = published([send("s1", next="w"), wait("w", days=2, next="s2"), send("s2")])
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, customer)
    completed = MONDAY_10AM + datetime.timedelta(minutes=7)
    with time_machine.travel(completed, tick=False):
        tick()

    assert next_run(journey, customer) == completed + datetime.timedelta(hours=48)


@pytest.mark.parametrize("entered", [MONDAY_9PM, MONDAY_9PM.replace(hour=8)])
def test_J14_wait_1_day_then_at_0900_resumes_the_next_calendar_day_at_0900(tick, entered):
    journey = published([wait("w", mode="days_at", days=1, at="09:00", next="s"), send("s")])
    customer = CustomerFactory()
    with time_machine.travel(entered, tick=False):
        enter(journey, customer)
        tick()

    assert next_run(journey, customer) == datetime.datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)


@pytest.mark.parametrize(("entered", "resumes"), [
    (datetime.datetime(2026, 11, 28, 16, 0, tzinfo=SHANGHAI), datetime.datetime(2026, 12, 5, 15, 15, tzinfo=SHANGHAI)),
    (datetime.datetime(2026, 11, 27, 16, 0, tzinfo=SHANGHAI), datetime.datetime(2026, 11, 28, 15, 15, tzinfo=SHANGHAI)),
])  # fmt: skip
def test_J15_until_next_saturday_1515(tick, entered, resumes):
    journey = published([wait("w", mode="weekday_at", weekday=5, at="15:15", next="s"), send("s")])
    customer = CustomerFactory()
    with time_machine.travel(entered, tick=False):
        enter(journey, customer)

    assert next_run(journey, customer) == resumes


WEEKDAYS_9_TO_5 = {"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}


@pytest.mark.parametrize(("due", "moved_to"), [
    (datetime.datetime(2026, 11, 25, 18, 0, tzinfo=SHANGHAI), datetime.datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI)),
    (datetime.datetime(2026, 11, 28, 10, 0, tzinfo=SHANGHAI), datetime.datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)),
])  # fmt: skip
def test_J16_a_send_window_moves_the_step_and_later_delays_count_from_the_actual_execution(tick, due, moved_to):
    journey = published([send("s1", window=WEEKDAYS_9_TO_5, next="w"), wait("w", hours=1, next="s2"), send("s2")])
    customer = CustomerFactory()
    with time_machine.travel(due, tick=False):
        enter(journey, customer)
        tick()
        assert next_run(journey, customer) == moved_to
        assert texts(customer) == []
    with time_machine.travel(moved_to + datetime.timedelta(minutes=3), tick=False):
        tick()

    assert len(texts(customer)) == 1
    assert next_run(journey, customer) == moved_to + datetime.timedelta(minutes=63)


def test_J17_quiet_hours_defer_a_journeys_marketing_message_from_2330_to_0800_but_not_a_transactional_one(tick):
    from messaging.services.dispatch import dispatch_due

    marketing = published([send("m", "优惠")], name="marketing")
    transactional = published([send("t", "订单已发货", kind="transactional")], name="transactional")
    customer = CustomerFactory(phone="13800000001")
    with time_machine.travel(datetime.datetime(2026, 11, 23, 23, 30, tzinfo=SHANGHAI), tick=False):
        enter(marketing, customer)
        enter(transactional, customer)
        tick()
        dispatch_due()

    promo = Touchpoint.objects.get(content__text="优惠")
    assert (promo.status, promo.due_at) == (TouchpointStatus.DEFERRED,
                                             datetime.datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI))  # fmt: skip
    assert Touchpoint.objects.get(content__text="订单已发货").status == TouchpointStatus.SENT


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons", "not a zone"])
def test_J18_a_missing_or_invalid_customer_time_zone_uses_the_workspace_zone(tick, zone):
    journey = published([wait("w", mode="days_at", days=1, at="09:00", next="s"), send("s")])
    customer = CustomerFactory(time_zone=zone)
    with time_machine.travel(MONDAY_9PM, tick=False):
        enter(journey, customer)

    assert next_run(journey, customer) == datetime.datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)


def _waiting_for_a_view():
    return published([
        {"id": "w", "type": "wait_event", "event_type": "content_view", "timeout_hours": 72,
         "next": "read", "timeout_next": "nudge"},
        send("read", "看完了"), send("nudge", "提醒"),
    ])  # fmt: skip


def test_J19_the_event_branch_is_taken_as_soon_as_the_event_is_recorded_after_arrival(tick):
    journey = _waiting_for_a_view()
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        record_event(customer, "content_view", MONDAY_10AM - HOUR)  # before she arrived: does not count
        enter(journey, customer)
        tick()
    seen = MONDAY_10AM + 5 * HOUR
    with time_machine.travel(seen, tick=False):
        record_event(customer, "content_view", seen)
        tick()

    assert texts(customer) == ["看完了"]
    run = StepRun.objects.get(step="w")
    assert (run.outcome, run.ran_at) == ("event", seen)


def test_J19_the_timeout_branch_is_taken_exactly_72_hours_after_arrival(tick):
    journey = _waiting_for_a_view()
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        record_event(customer, "content_view", MONDAY_10AM - HOUR)
        enter(journey, customer)
        tick()
    assert next_run(journey, customer) == MONDAY_10AM + 72 * HOUR
    with time_machine.travel(MONDAY_10AM + 72 * HOUR - datetime.timedelta(seconds=1), tick=False):
        tick()
        assert texts(customer) == []
    with time_machine.travel(MONDAY_10AM + 72 * HOUR, tick=False):
        tick()

    assert texts(customer) == ["提醒"]


def test_J20_wait_until_condition_is_passed_at_once_by_a_customer_who_already_satisfies_it(tick):
    rule = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}
    journey = published([{"id": "w", "type": "wait_condition", "rule": rule, "next": "s"}, send("s", "到了")])
    there, elsewhere = CustomerFactory(city="上海"), CustomerFactory(city="北京")
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, there, elsewhere)
        tick()

    assert texts(there) == ["到了"]
    assert texts(elsewhere) == []
    assert next_run(journey, elsewhere) == MONDAY_10AM + HOUR


def test_J21_a_trailing_wait_ends_the_journey_at_its_end_and_sends_nothing(tick):
    journey = published([send("s", "一", next="w"), wait("w", days=1)])
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, customer)
        tick()
        assert the_enrollment(journey).state == EnrollmentState.ACTIVE
    with time_machine.travel(MONDAY_10AM + DAY, tick=False):
        tick()

    enrollment = the_enrollment(journey)
    assert (enrollment.state, enrollment.ended_at) == (EnrollmentState.COMPLETED, MONDAY_10AM + DAY)
    assert texts(customer) == ["一"]


# ------------------------------------------------------------------------------------------ branches, experiments


def test_J22_a_condition_branch_uses_the_data_current_when_she_reaches_it(tick):
    rule = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}
    journey = published([
        wait("w", days=1, next="b"),
        {"id": "b", "type": "branch", "branches": [{"label": "上海", "rule": rule, "next": "sh"}],
         "else_next": "other"},
        send("sh", "上海门店"), send("other", "线上商城"),
    ])  # fmt: skip
    customer = CustomerFactory(city="北京")
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, customer)
        Customer.objects.filter(pk=customer.pk).update(city="上海")  # moved while waiting
    with time_machine.travel(MONDAY_10AM + DAY, tick=False):
        tick()

    assert texts(customer) == ["上海门店"]


def _bulk_customers(count):
    return Customer.objects.bulk_create([Customer(name=f"c{n}") for n in range(count)])


SPLIT = {"id": "ab", "type": "split", "arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}]}


def test_J23_a_50_50_split_of_10000_puts_each_arm_within_48_to_52_percent(tick):
    journey = published([SPLIT])
    customers = _bulk_customers(10_000)
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, *customers)
        tick()

    arms = list(StepRun.objects.filter(step="ab").values_list("detail__arm", flat=True))
    assert len(arms) == 10_000
    assert 4_800 <= arms.count("A") <= 5_200


def test_J23_a_customer_gets_the_same_arm_on_reentry_unless_the_split_changes(tick):
    journey = published([SPLIT], reentry={"policy": "every"})
    customers = _bulk_customers(200)
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, *customers, key="first")
        tick()
        enter(journey, *customers, key="second")
        tick()

    rotations = {}
    for customer, rotation, arm in StepRun.objects.values_list(
        "enrollment__customer_id", "enrollment__rotation", "detail__arm"
    ):
        rotations.setdefault(customer, {})[rotation] = arm
    assert all(arms[1] == arms[2] for arms in rotations.values())
    changed = [{"name": "A", "weight": 20}, {"name": "B", "weight": 80}]
    moved = sum(assign_arm(changed, journey.pk, "ab", c.pk) != rotations[c.pk][1] for c in customers)
    assert moved > 0


def _experiment_journey(test_days=7):
    split = {**SPLIT, "experiment": {"test_days": test_days, "fallback": "A", "confidence": 0.95}}
    return published([split], goal=ORDER_GOAL, exit={"policy": "end"})


@pytest.mark.parametrize(("b_converts", "winner"), [(60, "B"), (12, "A")])
def test_J24_after_the_test_window_newcomers_take_the_better_arm_if_significant_else_the_fallback(tick, b_converts,
                                                                                                  winner):  # fmt: skip
    with time_machine.travel(MONDAY_10AM, tick=False):
        journey = _experiment_journey()
        customers = _bulk_customers(400)
        enter(journey, *customers)
        tick()
    arm_of = dict(StepRun.objects.values_list("enrollment_id", "detail__arm"))
    a_ids = [e for e, arm in arm_of.items() if arm == "A"][:100]
    b_ids = [e for e, arm in arm_of.items() if arm == "B"][:100]
    Enrollment.objects.exclude(pk__in=a_ids + b_ids).delete()
    Enrollment.objects.filter(pk__in=a_ids[:10]).update(converted_at=MONDAY_10AM + DAY)
    Enrollment.objects.filter(pk__in=b_ids[:b_converts]).update(converted_at=MONDAY_10AM + DAY)
    newcomer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM + 8 * DAY, tick=False):
        enter(journey, newcomer)
        tick()

    run = StepRun.objects.get(enrollment__customer=newcomer)
    assert run.detail == {"arm": winner, "winner": True}


def test_J24_the_winner_needs_a_significant_difference():
    assert decide_winner({"A": (100, 10), "B": (100, 60)}, fallback="A") == "B"
    assert decide_winner({"A": (100, 10), "B": (100, 14)}, fallback="A") == "A"
    assert decide_winner({"A": (100, 30), "B": (100, 10)}, fallback="B") == "A"
