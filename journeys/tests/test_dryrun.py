"""The dry run: who would enter a draft now, how many reach each step, and a sample's paths with times and notes,
with nothing written or sent."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import Consent, ConsentStatus, DomainEvent
from customers.tests.factories import CommunityGroupFactory, CustomerFactory, GroupMembershipFactory
from journeys.models import Enrollment, Journey, Refusal, StepRun
from journeys.services.dryrun import DryRun, PlannedStep, dry_run
from journeys.services.enrollment import Candidate, enroll
from journeys.steps import DefinitionError
from journeys.steps.branches import assign_arm
from journeys.tests.factories import published, send, wait
from messaging.models import ContactPolicy, Touchpoint
from segments.models import SegmentKind
from segments.services import segments as segment_service
from tags.models import TagSource
from tags.services import add_tags
from tags.tests.factories import TagFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
MONDAY_2130 = datetime.datetime(2026, 11, 23, 21, 30, tzinfo=SHANGHAI)
MONDAY_0700 = datetime.datetime(2026, 11, 23, 7, 0, tzinfo=SHANGHAI)
IN_SHANGHAI = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}
ARMS = [{"name": "A", "weight": 50, "next": "a"}, {"name": "B", "weight": 50, "next": "b"}]


def draft(steps, **definition) -> Journey:
    return Journey.objects.create(name="草稿", draft={"trigger": {"type": "manual"}, "steps": steps, **definition})


def branching_steps(vip_tag) -> list[dict]:
    return [
        send("s1", next="br"),
        {"id": "br", "type": "branch", "else_next": "split",
         "branches": [{"label": "VIP", "rule": {"predicate": "has_tag", "tags": [vip_tag.pk]}, "next": "vip"}]},
        send("vip", "VIP 专享"),
        {"id": "split", "type": "split", "arms": ARMS},
        send("a", "A 文案"),
        send("b", "B 文案"),
    ]  # fmt: skip


def steps_of(path) -> list[tuple[str, datetime.datetime, str]]:
    return [(step.step_id, step.at, step.note) for step in path.steps]


@time_machine.travel(MONDAY_2130, tick=False)
def test_counts_who_would_enter_and_how_many_reach_each_step_through_branches_and_splits():
    vip = TagFactory(name="VIP")
    first, second, third = CustomerFactory(city="上海"), CustomerFactory(city="上海"), CustomerFactory(city="上海")
    CustomerFactory(city="北京")
    CustomerFactory(city="上海", merged_into=first)
    add_tags([first.pk], [vip.pk], source=TagSource.MANUAL)
    journey = draft(branching_steps(vip), entry_filter=IN_SHANGHAI)

    result = dry_run(journey)

    assert result.entering == 3
    assert result.step_counts == {"s1": 3, "br": 3, "vip": 1, "split": 2, "a": 1, "b": 1}
    assert [path.customer_id for path in result.sample] == [first.pk, second.pk, third.pk]
    assert [(step.step_id, step.note) for step in result.sample[0].steps] == [
        ("s1", "quiet hours: moved to 08:00"), ("br", "branch VIP"), ("vip", "quiet hours: moved to 08:00"),
    ]  # fmt: skip
    arm = assign_arm(ARMS, journey.pk, "split", second.pk)
    assert [(step.step_id, step.note) for step in result.sample[1].steps] == [
        ("s1", "quiet hours: moved to 08:00"), ("br", "no branch matched: else"), ("split", f"arm {arm}"),
        (arm.lower(), "quiet hours: moved to 08:00"),
    ]  # fmt: skip


@time_machine.travel(MONDAY_2130, tick=False)
def test_split_totals_are_proportional_to_the_weights():
    for _index in range(10):
        CustomerFactory()
    arms = [{"name": "A", "weight": 70, "next": "a"}, {"name": "B", "weight": 30, "next": "b"}]
    journey = draft([{"id": "split", "type": "split", "arms": arms}, send("a"), send("b")])

    result = dry_run(journey, sample_size=0)

    assert result == DryRun(entering=10, step_counts={"split": 10, "a": 7, "b": 3}, sample=[], on_trigger=True)


@time_machine.travel(MONDAY_2130, tick=False)
def test_sample_times_follow_each_step_in_the_customers_zone_with_the_assumptions_noted():
    shanghai = CustomerFactory(name="小美")
    london = CustomerFactory(name="Amy", time_zone="Europe/London")
    journey = draft([
        send("s1", next="w1"),
        wait("w1", mode="days_at", days=1, at="09:00", next="we"),
        {"id": "we", "type": "wait_event", "event_type": "content_view", "timeout_hours": 72, "next": "offer",
         "timeout_next": "s2"},
        send("offer", "优惠"),
        send("s2", "交易通知", kind="transactional"),
    ])  # fmt: skip

    result = dry_run(journey)

    assert result.entering == 2
    assert result.step_counts == {"s1": 2, "w1": 2, "we": 2, "offer": 0, "s2": 2}
    assert (result.sample[0].customer_id, result.sample[0].customer_name) == (shanghai.pk, "小美")
    tuesday_9 = datetime.datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)
    assert steps_of(result.sample[0]) == [
        ("s1", MONDAY_2130, "quiet hours: moved to 08:00"),
        ("w1", tuesday_9, ""),
        ("we", tuesday_9 + datetime.timedelta(hours=72), "assumes no event: timeout"),
        ("s2", tuesday_9 + datetime.timedelta(hours=72), ""),
    ]
    london_9 = datetime.datetime(2026, 11, 24, 9, 0, tzinfo=LONDON)  # 13:30 in London: no quiet hours
    assert result.sample[1].customer_id == london.pk
    assert steps_of(result.sample[1]) == [
        ("s1", MONDAY_2130, ""),
        ("w1", london_9, ""),
        ("we", london_9 + datetime.timedelta(hours=72), "assumes no event: timeout"),
        ("s2", london_9 + datetime.timedelta(hours=72), ""),
    ]
    assert result.sample[0].steps[1] == PlannedStep("w1", "Wait 1 day(s), then at 09:00", tuesday_9, "")


@time_machine.travel(MONDAY_2130, tick=False)
def test_a_wait_until_a_condition_passes_who_matches_now_and_times_out_the_others():
    shanghai, beijing = CustomerFactory(city="上海"), CustomerFactory(city="北京")
    journey = draft([
        {"id": "wc", "type": "wait_condition", "rule": IN_SHANGHAI, "timeout_hours": 24, "next": "yes",
         "timeout_next": "no"},
        send("yes", "上海"),
        send("no", "其他", kind="transactional"),
    ])  # fmt: skip

    result = dry_run(journey)

    assert result.step_counts == {"wc": 2, "yes": 1, "no": 1}
    assert steps_of(result.sample[0]) == [
        ("wc", MONDAY_2130, "condition met now"), ("yes", MONDAY_2130, "quiet hours: moved to 08:00")
    ]  # fmt: skip
    assert result.sample[1].customer_id == beijing.pk
    timeout = MONDAY_2130 + datetime.timedelta(hours=24)
    assert steps_of(result.sample[1]) == [
        ("wc", timeout, "assumes the condition is not met: timeout"), ("no", timeout, "")
    ]  # fmt: skip
    assert shanghai.pk == result.sample[0].customer_id


@time_machine.travel(MONDAY_2130, tick=False)
def test_notes_say_who_opted_out_who_is_in_the_group_already_and_quiet_hours_follow_the_policy():
    ContactPolicy.objects.create(pk=1, quiet_start=datetime.time(22, 0), quiet_end=datetime.time(7, 30))
    group = CommunityGroupFactory(name="新人福利群")
    member, opted_out = CustomerFactory(), CustomerFactory()
    GroupMembershipFactory(group=group, customer=member)
    Consent.objects.create(customer=opted_out, channel="sms", status=ConsentStatus.OPTED_OUT)
    journey = draft([
        send("s1", next="w"),
        wait("w", hours=1, next="inv"),
        {"id": "inv", "type": "invite_group", "group": group.pk, "text": "欢迎入群"},
    ])  # fmt: skip

    result = dry_run(journey)

    assert result.entering == 2  # opted out of SMS only: the invitation goes out on WeCom
    assert steps_of(result.sample[0]) == [
        ("s1", MONDAY_2130, ""),
        ("w", MONDAY_2130 + datetime.timedelta(hours=1), ""),
        ("inv", MONDAY_2130 + datetime.timedelta(hours=1), "already in the group: no invitation"),
    ]
    assert steps_of(result.sample[1]) == [
        ("s1", MONDAY_2130, "opted out of SMS: not sent"),
        ("w", MONDAY_2130 + datetime.timedelta(hours=1), ""),
        ("inv", MONDAY_2130 + datetime.timedelta(hours=1), "quiet hours: moved to 07:30"),
    ]


@time_machine.travel(MONDAY_2130, tick=False)
def test_customers_opted_out_of_every_channel_of_the_journey_would_not_enter():
    reachable, opted_out = CustomerFactory(), CustomerFactory()
    Consent.objects.create(customer=opted_out, channel="sms", status=ConsentStatus.OPTED_OUT)

    result = dry_run(draft([send("s1")]))

    assert result.entering == 1
    assert [path.customer_id for path in result.sample] == [reachable.pk]


@time_machine.travel(MONDAY_2130, tick=False)
def test_a_segment_trigger_counts_the_segments_current_members_narrowed_by_the_entry_filter():
    inside, left, elsewhere = CustomerFactory(city="上海"), CustomerFactory(city="上海"), CustomerFactory(city="北京")
    CustomerFactory(city="上海")
    segment = segment_service.save_segment(None, name="名单", kind=SegmentKind.STATIC)
    segment_service.add_to_static(segment, [inside.pk, left.pk, elsewhere.pk])
    segment_service.remove_from_static(segment, [left.pk])
    journey = draft([send("s1")], trigger={"type": "segment_entered", "segment": segment.pk},
                    entry_filter=IN_SHANGHAI)  # fmt: skip

    result = dry_run(journey)

    assert result.entering == 1
    assert [path.customer_id for path in result.sample] == [inside.pk]


@time_machine.travel(MONDAY_0700, tick=False)
def test_a_birthday_trigger_counts_who_is_due_today_and_enters_them_at_the_triggers_time():
    today = CustomerFactory(birthday=datetime.date(1990, 11, 23))
    CustomerFactory(birthday=datetime.date(1990, 11, 24))
    CustomerFactory(birthday=None)
    journey = draft([send("s1", kind="transactional")], trigger={"type": "birthday", "days_before": 0, "at": "09:00"})

    result = dry_run(journey)

    assert result.entering == 1
    assert steps_of(result.sample[0]) == [("s1", datetime.datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI), "")]
    assert result.sample[0].customer_id == today.pk


@time_machine.travel(MONDAY_2130, tick=False)
def test_the_reentry_policy_leaves_out_who_is_in_the_journey_or_may_not_come_back():
    active, finished, fresh = CustomerFactory(), CustomerFactory(), CustomerFactory()
    journey = published([wait("w", days=3)], reentry={"policy": "after_days", "days": 30})
    enroll(journey, [Candidate(c.pk, "manual", f"t{c.pk}", MONDAY_2130) for c in (active, finished)])
    Enrollment.objects.filter(journey=journey, customer=finished).update(state="completed", next_run_at=None)

    assert dry_run(journey).entering == 1  # the active one and the one who entered under 30 days ago

    journey.draft = {**journey.draft, "reentry": {"policy": "concurrent"}}
    assert dry_run(journey).entering == 3
    journey.draft = {**journey.draft, "reentry": {"policy": "every"}}
    assert dry_run(journey).entering == 2
    assert [path.customer_id for path in dry_run(journey).sample] == [finished.pk, fresh.pk]


@time_machine.travel(MONDAY_2130, tick=False)
def test_a_dry_run_writes_nothing_and_sends_nothing():
    vip = TagFactory(name="VIP")
    for _index in range(3):
        CustomerFactory()
    journey = draft(branching_steps(vip))
    before = DomainEvent.objects.count()

    with CaptureQueriesContext(connection) as queries:
        result = dry_run(journey)

    assert result.entering == 3
    statements = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    writes = [sql for sql in statements if sql.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    assert (Enrollment.objects.count(), StepRun.objects.count(), Touchpoint.objects.count()) == (0, 0, 0)
    assert (Refusal.objects.count(), ContactPolicy.objects.count(), DomainEvent.objects.count()) == (0, 0, before)


@time_machine.travel(MONDAY_2130, tick=False)
def test_the_number_of_queries_does_not_grow_with_the_customers(django_assert_max_num_queries):
    vip = TagFactory(name="VIP")
    journey = draft(branching_steps(vip))
    for _index in range(3):
        CustomerFactory()
    with CaptureQueriesContext(connection) as few:
        dry_run(journey)
    for _index in range(30):
        CustomerFactory()

    with django_assert_max_num_queries(len(few.captured_queries)):
        result = dry_run(journey, sample_size=30)

    assert result.entering == 33


def test_an_invalid_draft_raises_a_definition_error_listing_the_problems():
    journey = draft([send("s1", next="nowhere")])

    with pytest.raises(DefinitionError) as raised:
        dry_run(journey)

    assert [issue["path"] for issue in raised.value.as_list()] == ["steps[0]"]


def test_a_group_plan_enrolls_no_customers():
    CustomerFactory()
    plan = [{"weekday": 0, "at": "20:00", "text": "周一知识分享"}]
    journey = draft([], trigger={"type": "group_weekly", "group_type": "customer", "plan": plan})

    assert dry_run(journey) == DryRun(entering=0, step_counts={}, sample=[])
