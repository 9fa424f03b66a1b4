"""What steps do: tags, static segments, tasks, attributes, other journeys, group invitations, WeCom confirmation,
exits; failures stay with the failing customer; merged customers leave."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from customers import domain_events
from customers.models import Customer
from customers.services.merge import merge_customers
from customers.tests.factories import CommunityGroupFactory, CustomerFactory, GroupMembershipFactory, StaffFactory
from journeys.models import Enrollment, EnrollmentState, ExitReason, StepRun, Task
from journeys.services import runtime
from journeys.services.enrollment import Candidate, enroll
from journeys.tests.factories import published, send
from messaging.models import Touchpoint, TouchpointStatus
from segments.models import SegmentKind, SegmentMembership
from segments.services import segments as segment_service
from tags.models import CustomerTag
from tags.tests.factories import TagFactory

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
HOUR = datetime.timedelta(hours=1)


def enter(journey, *customers, at=MONDAY_10AM):
    return enroll(journey, [Candidate(c.pk, "manual", f"k{c.pk}", at) for c in customers], now=at)


@time_machine.travel(MONDAY_10AM, tick=False)
def test_tag_segment_task_and_attribute_steps_act_through_their_apps(tick):
    tag = TagFactory(name="已入旅程")
    static = segment_service.save_segment(None, name="名单", kind=SegmentKind.STATIC)
    journey = published([
        {"id": "t", "type": "add_tag", "tag": tag.pk, "next": "l"},
        {"id": "l", "type": "add_to_segment", "segment": static.pk, "next": "a"},
        {"id": "a", "type": "update_attribute", "attribute": "sop_stage", "value": "welcomed", "next": "k"},
        {"id": "k", "type": "task", "title": "电话回访", "script": "问问她用得怎么样", "due_hours": 24},
    ])  # fmt: skip
    rep = StaffFactory()
    customer = CustomerFactory(owner=rep)
    enter(journey, customer)

    assert tick() == 4
    assert CustomerTag.objects.filter(customer=customer, tag=tag, source="journey").exists()
    assert SegmentMembership.objects.filter(segment=static, customer=customer, exited_at__isnull=True).exists()
    assert Customer.objects.get(pk=customer.pk).attributes["sop_stage"] == "welcomed"
    task = Task.objects.get()
    assert (task.assignee, task.title, task.due_at, task.journey) == (rep, "电话回访", MONDAY_10AM + 24 * HOUR, journey)


@time_machine.travel(MONDAY_10AM, tick=False)
def test_enter_another_journey_applies_that_journeys_own_policies(tick):
    target = published([send("s", "二")], name="target", reentry={"policy": "never"})
    journey = published([{"id": "j", "type": "enter_journey", "journey": target.pk}], reentry={"policy": "every"})
    customer = CustomerFactory()
    enter(journey, customer)
    tick()
    enroll(journey, [Candidate(customer.pk, "manual", "again", MONDAY_10AM)], now=MONDAY_10AM)
    tick()

    assert Enrollment.objects.filter(journey=target).count() == 1
    assert list(StepRun.objects.filter(step="j").order_by("id").values_list("outcome", flat=True)) == [
        "entered", "refused"]  # fmt: skip


@time_machine.travel(MONDAY_10AM, tick=False)
def test_a_group_invitation_goes_to_those_not_in_the_group_with_the_join_link(tick):
    group = CommunityGroupFactory(name="新人福利群")
    journey = published([{"id": "i", "type": "invite_group", "group": group.pk, "channel": "wecom",
                          "text": "邀请您加入新人福利群", "join_url": "https://example.com/join"}])  # fmt: skip
    outside, member = CustomerFactory(), CustomerFactory()
    GroupMembershipFactory(group=group, customer=member)
    enter(journey, outside, member)
    tick()

    invitation = Touchpoint.objects.get()
    assert invitation.customer == outside
    assert invitation.content["card"]["url"] == "https://example.com/join"
    outcomes = dict(StepRun.objects.values_list("enrollment__customer_id", "outcome"))
    assert outcomes == {outside.pk: "invited", member.pk: "already_member"}


def test_a_wecom_send_waits_for_the_reps_confirmation_and_times_out_to_its_branch(tick):
    journey = published([
        send("s", "您好", channel="wecom", wait_confirmation=True, confirmation_timeout_hours=24, next="ok",
             timeout_next="nudge"),
        send("ok", "已确认", channel="sms"), send("nudge", "请确认", channel="sms"),
    ])  # fmt: skip
    confirmed, ignored = CustomerFactory(), CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        enter(journey, confirmed, ignored)
        tick()
        assert Enrollment.objects.filter(step="s", state=EnrollmentState.ACTIVE).count() == 2
        Touchpoint.objects.filter(customer=confirmed).update(status=TouchpointStatus.CONFIRMED)
    with time_machine.travel(MONDAY_10AM + HOUR, tick=False):
        tick()
    with time_machine.travel(MONDAY_10AM + 24 * HOUR, tick=False):
        tick()

    assert list(Touchpoint.objects.filter(channel="sms").order_by("customer_id").values_list(
        "customer_id", "content__text")) == [(confirmed.pk, "已确认"), (ignored.pk, "请确认")]  # fmt: skip


@time_machine.travel(MONDAY_10AM, tick=False)
def test_the_exit_step_ends_the_run_with_its_reason(tick):
    journey = published([send("s", next="x"), {"id": "x", "type": "exit"}])
    customer = CustomerFactory()
    enter(journey, customer)
    tick()

    enrollment = Enrollment.objects.get()
    assert (enrollment.state, enrollment.exit_reason) == (EnrollmentState.EXITED, ExitReason.EXIT_STEP)


def test_a_step_failing_for_one_customer_backs_off_for_her_alone_and_ends_her_run_after_5_attempts(tick, monkeypatch):
    from journeys.steps import actions

    journey = published([{"id": "a", "type": "update_attribute", "attribute": "x", "value": 1}])
    good, bad = CustomerFactory(), CustomerFactory()
    real = actions.UpdateAttribute.run

    def flaky(self, params, batch, ctx):
        if any(e.customer_id == bad.pk for e in batch):
            raise RuntimeError("boom")
        return real(self, params, batch, ctx)

    monkeypatch.setattr(actions.UpdateAttribute, "run", flaky)
    with time_machine.travel(MONDAY_10AM, tick=False) as clock:
        enter(journey, good, bad)
        tick()
        assert Enrollment.objects.get(customer=good).state == EnrollmentState.COMPLETED
        failing = Enrollment.objects.get(customer=bad)
        assert (failing.attempts, failing.next_run_at) == (1, MONDAY_10AM + datetime.timedelta(minutes=2))
        for _ in range(4):
            clock.shift(datetime.timedelta(minutes=20))
            runtime.advance_due()

    failing.refresh_from_db()
    assert (failing.state, failing.exit_reason, failing.attempts) == (EnrollmentState.EXITED, ExitReason.ERROR, 5)
    assert "boom" in failing.last_error


@time_machine.travel(MONDAY_10AM, tick=False)
def test_a_merged_customers_active_runs_end(tick):
    journey = published([send("s", next="w"), {"id": "w", "type": "wait", "days": 3}])
    survivor, merged = CustomerFactory(), CustomerFactory()
    enter(journey, merged)
    tick()

    merge_customers(survivor, merged)
    domain_events.consume_all()

    enrollment = Enrollment.objects.get()
    assert (enrollment.customer_id, enrollment.exit_reason) == (merged.pk, ExitReason.MERGED)


def test_a_message_with_a_variable_messages_cannot_read_is_refused_before_publishing():
    from journeys.definition import validate
    from journeys.steps import DefinitionError

    with pytest.raises(DefinitionError) as refused:
        validate({"steps": [send("s", "您好 {{ customer.password }}")]})

    assert [path for path, _message in refused.value.issues] == ["steps[0].text"]


def test_a_send_window_ending_before_it_starts_is_reported_whatever_else_is_wrong():
    from journeys.definition import validate
    from journeys.steps import DefinitionError

    bad_channel = {**send("a", next="b"), "channel": "pigeon"}
    window = {"weekdays": [0], "start": "17:00", "end": "09:00"}
    with pytest.raises(DefinitionError) as refused:
        validate({"steps": [bad_channel, send("b", window=window)]})

    assert [path for path, _message in refused.value.issues] == ["steps[0].channel", "steps[1].window.end"]


@time_machine.travel(MONDAY_10AM, tick=False)
def test_the_outbox_names_a_journeys_messages_by_the_journey(tick, client):
    from customers.tests.factories import UserFactory

    journey = published([send("s", "您好")], name="欢迎 SOP")
    customer = CustomerFactory()
    enter(journey, customer)
    tick()
    client.force_login(UserFactory(username="operator"))

    page = client.get("/messaging/outbox/").content.decode()

    assert "欢迎 SOP" in page
    assert f"journey:{journey.pk}<" not in page
