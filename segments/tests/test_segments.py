from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from customers import domain_events
from customers.conditions import RuleError, matching_customers
from customers.models import DomainEvent
from customers.services.ingest import bulk_upsert_orders
from customers.tests.factories import CustomerFactory, OrderFactory, UserFactory
from segments.models import RecomputeStatus, Segment, SegmentKind, SegmentMembership, SegmentSize
from segments.services import segments as service

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
TWO_ORDERS_IN_30_DAYS = {"predicate": "orders_count", "op": "gte", "value": 2, "window": {"last_days": 30}}


def members(segment) -> set[int]:
    return set(
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values_list("customer_id", flat=True)
    )


def segment_events(kind: str, segment) -> list[int]:
    return list(
        DomainEvent.objects.filter(kind=kind, payload__segment_id=segment.pk)
        .order_by("id")
        .values_list("customer_id", flat=True)
    )


def dynamic(rule, name="seg") -> Segment:
    return service.save_segment(None, name=name, rule=rule)


def order(customer, days_ago: float, amount=100, now=NOW):
    return OrderFactory(customer=customer, ordered_at=now - timedelta(days=days_ago), amount=Decimal(amount))


@time_machine.travel(NOW, tick=False)
def test_J43_an_order_that_makes_a_customer_match_enters_them_with_a_segment_entered_event():
    operator = UserFactory(username="op")
    segment = dynamic(TWO_ORDERS_IN_30_DAYS)
    customer = CustomerFactory()
    order(customer, days_ago=5)
    service.recompute_segment(segment)
    assert members(segment) == set()
    row = {"source": "shop", "external_id": "J43", "customer": {"id": customer.pk},
           "ordered_at": NOW.isoformat(), "amount": "80.00"}  # fmt: skip

    bulk_upsert_orders([row], user=operator)
    domain_events.consume_all()  # what the worker does right after the commit

    assert members(segment) == {customer.pk}
    assert segment_events("segment.entered", segment) == [customer.pk]


def test_J44_the_customer_leaves_at_the_first_sweep_after_the_older_order_ages_out():
    customer = CustomerFactory()
    order(customer, days_ago=20)
    order(customer, days_ago=1)
    with time_machine.travel(NOW, tick=False):
        segment = dynamic(TWO_ORDERS_IN_30_DAYS)
        service.recompute_segment(segment)
        assert members(segment) == {customer.pk}

    with time_machine.travel(NOW + timedelta(days=9), tick=False):  # the older order is 29 days old
        service.recompute_segments(time_relative_only=True)
        assert members(segment) == {customer.pk}
    with time_machine.travel(NOW + timedelta(days=10, hours=1), tick=False):  # now 30 days and an hour
        service.recompute_segments(time_relative_only=True)

    assert members(segment) == set()
    episode = SegmentMembership.objects.get(segment=segment, customer=customer)
    assert episode.entered_at == NOW
    assert episode.exited_at == NOW + timedelta(days=10, hours=1)
    assert episode.exit_reason == "no_longer_matching"
    assert segment_events("segment.exited", segment) == [customer.pk]


@time_machine.travel(NOW, tick=False)
def test_J45_a_full_rebuild_yields_exactly_what_evaluating_each_customer_alone_yields():
    customers = [CustomerFactory(city=city) for city in ["上海", "杭州", "上海", "北京", "上海", "杭州"]]
    for n, customer in enumerate(customers):
        for k in range(n % 3):
            order(customer, days_ago=10 * k + 1, amount=300 * (n + 1))
    rule = {"any": [{"all": [TWO_ORDERS_IN_30_DAYS, {"predicate": "attribute", "field": "city", "op": "eq",
                                                     "value": "上海"}]},
                    {"predicate": "orders_sum", "op": "gt", "value": 1500}]}  # fmt: skip
    rebuilt = dynamic(rule, "rebuilt")
    incremental = dynamic(rule, "incremental")

    service.recompute_segment(rebuilt)
    for customer in customers:
        service.update_for_customers([customer.pk])

    alone = {c.pk for c in customers if matching_customers(rule, customer_ids=[c.pk]).exists()}
    assert members(rebuilt) == members(incremental) == alone
    assert 0 < len(alone) < len(customers)


@time_machine.travel(NOW, tick=False)
def test_J46_a_segment_on_another_reads_its_stored_membership_and_rebuilds_follow_dependencies():
    shanghai, hangzhou = CustomerFactory(city="上海"), CustomerFactory(city="杭州")
    base = dynamic({"predicate": "attribute", "field": "city", "op": "in", "value": ["上海", "杭州"]}, "base")
    service.recompute_segment(base)
    derived = dynamic({"all": [{"predicate": "in_segment", "segments": [base.pk]},
                               {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}]},
                      "derived")  # fmt: skip
    Segment.objects.filter(pk=base.pk).update(
        rule={"predicate": "attribute", "field": "city", "op": "eq", "value": "北京"}
    )  # changed, not rebuilt yet
    service.recompute_segment(derived)
    assert members(derived) == {shanghai.pk}  # the stored membership of base, not its new rule

    base.refresh_from_db()
    assert [s.pk for s in service.dependency_order([derived, base])] == [base.pk, derived.pk]
    service.recompute_segments()
    assert members(base) == set()
    assert members(derived) == set()
    assert hangzhou.pk not in members(derived)


def test_J46_a_cycle_is_refused_when_the_rule_is_saved():
    first = dynamic({"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}, "first")
    second = dynamic({"predicate": "in_segment", "segments": [first.pk]}, "second")

    with pytest.raises(RuleError) as refused:
        service.save_segment(first, name="first", rule={"predicate": "in_segment", "segments": [second.pk]})

    assert "depends on itself" in str(refused.value)
    first.refresh_from_db()
    assert first.depends_on == []


@time_machine.travel(NOW, tick=False)
def test_J47_a_static_segment_never_changes_on_recompute():
    listed, other = CustomerFactory(city="上海"), CustomerFactory(city="上海")
    static = service.save_segment(None, name="活动名单", kind=SegmentKind.STATIC)
    service.add_to_static(static, [listed.pk])

    service.recompute_segments()
    assert service.recompute_segment(static) is None

    assert members(static) == {listed.pk}
    assert other.pk not in members(static)


@time_machine.travel(NOW, tick=False)
def test_J47_a_manual_exclusion_persists_across_recomputes_until_cleared():
    excluded, kept = CustomerFactory(city="上海"), CustomerFactory(city="上海")
    segment = dynamic({"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"})
    service.recompute_segment(segment)

    service.exclude(segment, [excluded.pk], reason="投诉过")
    service.recompute_segment(segment)
    service.update_for_customers([excluded.pk])
    assert members(segment) == {kept.pk}
    assert SegmentMembership.objects.get(segment=segment, customer=excluded).exit_reason == "excluded"

    service.clear_exclusions(segment, [excluded.pk])
    assert members(segment) == {kept.pk, excluded.pk}


@time_machine.travel(NOW, tick=False)
def test_J48_rebuilds_never_open_a_second_entry_episode():
    customer = CustomerFactory(city="上海")
    segment = dynamic({"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"})

    for _run in range(3):
        service.recompute_segment(segment)
        service.update_for_customers([customer.pk])

    assert SegmentMembership.objects.filter(segment=segment).count() == 1
    assert segment_events("segment.entered", segment) == [customer.pk]
    assert SegmentSize.objects.filter(segment=segment).count() == 3
    segment.refresh_from_db()
    assert (segment.size, segment.status, segment.last_counts["entered"]) == (1, "idle", 0)


def test_a_recompute_that_crashed_is_retried_once_its_lease_expires():
    customer = CustomerFactory(city="上海")
    segment = dynamic({"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"})
    Segment.objects.filter(pk=segment.pk).update(
        status=RecomputeStatus.CALCULATING, lease_until=timezone.now() + timedelta(minutes=5)
    )
    assert service.recompute_segment(segment) is None  # a live lease: someone else is on it
    assert service.retry_stalled() == []

    Segment.objects.filter(pk=segment.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert service.retry_stalled() == [segment.pk]

    segment.refresh_from_db()
    assert (segment.status, segment.size) == ("idle", 1)
    assert segment.last_duration_ms is not None
    assert members(segment) == {customer.pk}


def test_a_failing_recompute_records_its_error_and_is_not_left_calculating(monkeypatch):
    segment = dynamic({"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"})

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(service, "sync_membership", broken)
    assert service.recompute_segment(segment) is None

    segment.refresh_from_db()
    assert segment.status == "failed"
    assert segment.last_error == "RuntimeError: disk full"
    assert segment.lease_until is None


def test_freezing_a_dynamic_segment_copies_its_members_into_a_static_one():
    customer = CustomerFactory(city="上海")
    segment = dynamic({"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}, "上海客户")
    service.recompute_segment(segment)

    frozen = service.freeze(segment, name="上海客户 11月快照")
    CustomerFactory(city="上海")
    service.recompute_segment(segment)

    assert frozen.kind == "static"
    assert members(frozen) == {customer.pk}
    assert len(members(segment)) == 2
