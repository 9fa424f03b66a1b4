"""Editing and versions (J39-J42)."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from customers.tests.factories import CustomerFactory
from journeys.models import Enrollment, JourneyStatus, StepRun
from journeys.services import lifecycle
from journeys.services.enrollment import Candidate, enroll
from journeys.steps import DefinitionError
from journeys.tests.factories import published, send, wait
from messaging.models import Touchpoint, TouchpointStatus
from messaging.services.dispatch import dispatch_due

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
DAY = datetime.timedelta(days=1)


def enter(journey, customer, at):
    return enroll(journey, [Candidate(customer.pk, "manual", f"k{customer.pk}", at)], now=at)


def edit(journey, steps):
    journey.draft = {**journey.current_version.definition, "steps": steps, "start": steps[0]["id"]}
    journey.save()


def texts(customer):
    return list(Touchpoint.objects.filter(customer=customer).order_by("id").values_list("content__text", flat=True))


V1 = [wait("w", days=2, next="s"), send("s", "v1")]


def test_J39_publishing_v2_leaves_in_flight_enrollments_on_v1_and_new_ones_use_v2(tick):
    early, late = CustomerFactory(), CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        journey = published(V1)
        enter(journey, early, MONDAY_10AM)
        edit(journey, [wait("w", days=2, next="s"), send("s", "v2")])
        v2 = lifecycle.publish(journey)
        enter(journey, late, MONDAY_10AM)
    with time_machine.travel(MONDAY_10AM + 3 * DAY, tick=False):
        tick()

    assert (texts(early), texts(late)) == (["v1"], ["v2"])
    assert Enrollment.objects.get(customer=late).version == v2
    assert Enrollment.objects.get(customer=early).version.number == 1


@pytest.mark.parametrize(("restart", "resumes"), [(False, MONDAY_10AM + 3 * DAY), (True, MONDAY_10AM + DAY + 3 * DAY)])
def test_J40_a_migration_maps_v1_steps_to_v2_and_time_already_waited_counts_unless_restarted(restart, resumes):
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        journey = published(V1)
        enter(journey, customer, MONDAY_10AM)
    with time_machine.travel(MONDAY_10AM + DAY, tick=False):
        edit(journey, [wait("pause", days=3, next="s"), send("s", "v2")])
        v2 = lifecycle.publish(journey, migration={"map": {"w": "pause"}, "restart_waits": restart})

    enrollment = Enrollment.objects.get(customer=customer)
    assert (enrollment.version, enrollment.step) == (v2, "pause")
    assert enrollment.next_run_at == resumes


def test_J41_removing_a_step_where_customers_wait_is_refused_unless_redirected_or_left_on_the_old_version(tick):
    waiting = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        journey = published(V1)
        enter(journey, waiting, MONDAY_10AM)
        edit(journey, [send("s", "v2")])  # the wait "w" is gone

        with pytest.raises(DefinitionError) as refused:
            lifecycle.publish(journey, migration={"map": {}})
        assert refused.value.issues[0][0] == "migration.map.w"
        assert journey.versions.count() == 1

        lifecycle.publish(journey, migration={"map": {}, "unmapped": "finish_on_old"})
        assert Enrollment.objects.get(customer=waiting).version.number == 1
        edit(journey, [send("s", "v3")])
        lifecycle.publish(journey, migration={"map": {"w": "s"}})
        tick()

    enrollment = Enrollment.objects.get(customer=waiting)
    assert (enrollment.version.number, enrollment.state) == (3, "completed")
    assert texts(waiting) == ["v3"]


def test_J42_a_paused_journey_sends_nothing_and_on_resume_overdue_messages_expire(tick):
    customer = CustomerFactory(phone="13800000001")
    with time_machine.travel(datetime.datetime(2026, 11, 23, 23, 0, tzinfo=SHANGHAI), tick=False):
        journey = published([send("night", "晚安", next="w"), wait("w", days=1, next="s"), send("s", "次日")],
                            lateness_limit_hours=24)  # fmt: skip
        enter(journey, customer, datetime.datetime(2026, 11, 23, 23, 0, tzinfo=SHANGHAI))
        tick()
        dispatch_due()  # quiet hours: deferred to 08:00
        assert Touchpoint.objects.get().status == TouchpointStatus.DEFERRED
        lifecycle.pause(journey)
    with time_machine.travel(datetime.datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI), tick=False):
        assert tick() == 0
        dispatch_due()
        assert Touchpoint.objects.get().status == TouchpointStatus.HELD
    with time_machine.travel(datetime.datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI), tick=False):
        journey.refresh_from_db()
        lifecycle.resume(journey)
        tick()
        dispatch_due()

    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE
    expired = [(TouchpointStatus.EXPIRED, "overdue after pause")]
    assert list(Touchpoint.objects.values_list("status", "reason")) == expired
    assert StepRun.objects.get(step="s").outcome == "expired"


def test_a_step_mapped_to_none_keeps_its_customers_on_their_version():
    customer = CustomerFactory()
    with time_machine.travel(MONDAY_10AM, tick=False):
        journey = published(V1)
        enter(journey, customer, MONDAY_10AM)
        edit(journey, [wait("w", days=5, next="s"), send("s", "v2")])
        lifecycle.publish(journey, migration={"map": {"w": None}})

    assert Enrollment.objects.get(customer=customer).version.number == 1
