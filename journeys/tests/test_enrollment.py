"""Enrollment and re-entry (J1-J7)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from customers import domain_events
from customers.models import Consent, ConsentStatus, DomainEvent
from customers.tests.factories import CustomerFactory, UserFactory
from journeys.models import Enrollment, EnrollmentState, Refusal, RefusalReason
from journeys.services.enrollment import Candidate, enroll
from journeys.tests.factories import published, send, wait
from segments.services import segments as segment_service
from tags.models import TagSource
from tags.services import add_tags
from tags.tests.factories import TagFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def enrollments(journey, customer=None):
    rows = Enrollment.objects.filter(journey=journey)
    if customer is not None:
        rows = rows.filter(customer=customer)
    return list(rows.order_by("rotation"))


def refusals(journey, customer):
    return list(Refusal.objects.filter(journey=journey, customer=customer).values_list("reason", flat=True))


@time_machine.travel(NOW, tick=False)
def test_J1_a_trigger_delivered_twice_yields_one_enrollment():
    tag = TagFactory(name="VIP")
    journey = published(trigger={"type": "tag_added", "tag": tag.pk}, reentry={"policy": "every"},
                        steps=[wait("w", days=3)])  # fmt: skip
    customer = CustomerFactory()
    add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)
    event = DomainEvent.objects.get(kind="tag.added", customer_id=customer.pk)

    domain_events.consume_all()
    DomainEvent.objects.filter(pk=event.pk).update(processed_at=None)  # at-least-once: delivered again
    domain_events.consume_all()

    assert len(enrollments(journey, customer)) == 1
    assert refusals(journey, customer) == []


@time_machine.travel(NOW, tick=False)
def test_J2_a_customer_failing_the_entry_filter_at_trigger_time_is_not_enrolled():
    journey = published(entry_filter={"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"})
    shanghai, beijing = CustomerFactory(city="上海"), CustomerFactory(city="北京")

    result = enroll(journey, [Candidate(c.pk, "manual", f"t{c.pk}", NOW) for c in (shanghai, beijing)])

    assert set(result.enrolled) == {shanghai.pk}
    assert enrollments(journey, beijing) == []
    assert refusals(journey, beijing) == [RefusalReason.FILTER_NOT_MATCHED]


@time_machine.travel(NOW, tick=False)
def test_J3_reentry_never_refuses_a_customer_who_finished_and_matches_again(tick):
    journey = published(reentry={"policy": "never"})
    customer = CustomerFactory()
    enroll(journey, [Candidate(customer.pk, "manual", "first", NOW)])
    tick()
    assert enrollments(journey, customer)[0].state == EnrollmentState.COMPLETED

    result = enroll(journey, [Candidate(customer.pk, "manual", "second", NOW)])

    assert result.enrolled == {}
    assert len(enrollments(journey, customer)) == 1
    assert refusals(journey, customer) == [RefusalReason.REENTRY_NOT_ALLOWED]


def test_J4_reentry_after_n_days_counts_from_the_previous_entry_and_keeps_the_first_history(tick):
    journey = published(reentry={"policy": "after_days", "days": 30})
    customer = CustomerFactory()
    with time_machine.travel(NOW, tick=False):
        enroll(journey, [Candidate(customer.pk, "manual", "first", NOW)])
        tick()
    with time_machine.travel(NOW + timedelta(days=29), tick=False):
        early = enroll(journey, [Candidate(customer.pk, "manual", "day29", NOW + timedelta(days=29))])
    with time_machine.travel(NOW + timedelta(days=30, minutes=1), tick=False):
        later = enroll(journey, [Candidate(customer.pk, "manual", "day30", NOW + timedelta(days=30))])
        tick()

    assert early.refused == {customer.pk: RefusalReason.REENTRY_TOO_SOON}
    assert customer.pk in later.enrolled
    first, second = enrollments(journey, customer)
    assert (first.rotation, second.rotation) == (1, 2)
    assert first.step_runs.count() == 1
    assert first.state == EnrollmentState.COMPLETED
    assert second.step_runs.count() == 1


@time_machine.travel(NOW, tick=False)
def test_J5_segment_trigger_every_reentry_enrolls_again_only_after_leaving_and_reentering(tick):
    operator = UserFactory(username="op")
    segment = segment_service.save_segment(None, name="上海", rule={"predicate": "attribute", "field": "city",
                                                                      "op": "eq", "value": "上海"})  # fmt: skip
    journey = published(trigger={"type": "segment_entered", "segment": segment.pk}, reentry={"policy": "every"})
    customer = CustomerFactory(city="上海")

    segment_service.recompute_segment(segment)
    domain_events.consume_all()
    tick()
    for _ in range(3):  # rebuilds that change nothing
        segment_service.recompute_segment(segment)
        domain_events.consume_all()
    assert len(enrollments(journey, customer)) == 1

    customer.city = "北京"
    customer.save()
    segment_service.recompute_segment(segment)
    customer.city = "上海"
    customer.save()
    segment_service.recompute_segment(segment)
    domain_events.consume_all()

    assert [e.rotation for e in enrollments(journey, customer)] == [1, 2]
    del operator


@time_machine.travel(NOW, tick=False)
def test_J6_an_active_customer_is_not_enrolled_again(tick):
    journey = published(reentry={"policy": "every"}, steps=[wait("w", days=2, next="s"), send("s")])
    customer = CustomerFactory()
    enroll(journey, [Candidate(customer.pk, "manual", "first", NOW)])

    result = enroll(journey, [Candidate(customer.pk, "manual", "second", NOW)])

    assert result.refused == {customer.pk: RefusalReason.ALREADY_ACTIVE}
    assert len(enrollments(journey, customer)) == 1


@time_machine.travel(NOW, tick=False)
def test_J6_concurrent_enrollments_due_for_the_same_message_produce_one_touchpoint(tick):
    from messaging.models import Touchpoint

    journey = published(reentry={"policy": "concurrent"},
                        steps=[wait("w", mode="days_at", days=1, at="09:00", next="s"), send("s")])  # fmt: skip
    customer = CustomerFactory()
    enroll(journey, [Candidate(customer.pk, "manual", "first", NOW)])
    enroll(journey, [Candidate(customer.pk, "manual", "second", NOW + timedelta(minutes=5))])
    assert len(enrollments(journey, customer)) == 2

    with time_machine.travel(NOW + timedelta(days=1, hours=2), tick=False):
        tick()

    assert Touchpoint.objects.filter(customer=customer).count() == 1
    assert all(e.state == EnrollmentState.COMPLETED for e in enrollments(journey, customer))


@time_machine.travel(NOW, tick=False)
def test_J7_a_refused_enrollment_records_its_reason_and_shows_it_on_the_customers_page(client):
    from customers.tests.factories import UserFactory as Users

    journey = published(name="欢迎 SOP")
    customer = CustomerFactory()
    Consent.objects.create(customer=customer, channel="sms", status=ConsentStatus.OPTED_OUT)

    result = enroll(journey, [Candidate(customer.pk, "manual", "t1", NOW)])

    assert result.refused == {customer.pk: RefusalReason.OPTED_OUT}
    assert refusals(journey, customer) == [RefusalReason.OPTED_OUT]
    client.force_login(Users(username="operator"))
    page = client.get(f"/customers/{customer.pk}/").content.decode()
    assert "欢迎 SOP" in page
    assert str(RefusalReason.OPTED_OUT.label) in page or "已退订" in page
