"""Incremental RFM runs (the nightly run): they read only the orders of customers whose orders changed or crossed
the window's edges, and must give exactly what a full run gives."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import override_settings

from accounts.tests.factories import UserFactory
from customers import domain_events
from customers.models import Customer, DomainEvent, Order
from customers.services.ingest import bulk_upsert_orders, delete_order
from customers.services.merge import merge_customers, undo_merge
from customers.tests.factories import CustomerFactory, OrderFactory
from segments.models import CustomerRfm, LayeringSettings, RfmRecheck, SegmentMembership
from segments.services.layers import recompute_layers, recompute_rfm

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 on 20 November in Asia/Shanghai
AMOUNTS = [Decimal(50), Decimal(100), Decimal(100), Decimal(200), Decimal(500)]  # ties on purpose


def rfm_rows() -> list[tuple]:
    """Every stored row, with the time it was last written: a run that finds nothing to change writes nothing."""
    return sorted(
        CustomerRfm.objects.values_list(
            "customer_id", "last_purchase_on", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_class",
            "computed_at",
        )
    )  # fmt: skip


def open_memberships() -> list[tuple]:
    rows = SegmentMembership.objects.filter(segment__model_key__startswith="rfm:", exited_at__isnull=True)
    return sorted(rows.values_list("segment__model_key", "customer_id"))


def random_book(rng: random.Random, customers: int = 40) -> list:
    """Customers with 0 to 6 orders over the last 420 days (the window is 365): tied amounts and dates, some
    refunded, partly refunded or pending, some lapsed, some who never bought."""
    people = [CustomerFactory() for _ in range(customers)]
    for k, person in enumerate(people[:4]):  # orders about to leave the window on the nights tested
        OrderFactory(customer=person, ordered_at=NOW - timedelta(days=362 + k), amount=rng.choice(AMOUNTS))
    for person in people:
        for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
            amount = rng.choice(AMOUNTS)
            status = rng.choice(["paid"] * 6 + ["completed", "refunded", "partially_refunded", "pending"])
            refunded = {"refunded": amount, "partially_refunded": amount / 2}.get(status, Decimal(0))
            OrderFactory(customer=person, ordered_at=NOW - timedelta(days=rng.randint(0, 420), hours=rng.randint(0, 9)),
                         amount=amount, status=status, refunded_amount=refunded)  # fmt: skip
    return people


def order_row(customer, external_id: str, at: datetime, amount: Decimal, **more) -> dict:
    return {"source": "shop", "external_id": external_id, "customer": {"id": customer.pk},
            "ordered_at": at.isoformat(), "amount": str(amount), **more}  # fmt: skip


def a_days_changes(rng: random.Random, people: list, day: datetime) -> None:
    """What a day brings, through the services (each writes its domain events), then consumed as a worker would:
    new orders, a late order dated months back, a refund, a deleted order, a merge, a merge undone, a customer."""
    operator = UserFactory()
    buyers = rng.sample(people, 8)
    rows = [order_row(p, f"new-{day:%j}-{k}", day - timedelta(hours=k), rng.choice(AMOUNTS)) for k, p in
            enumerate(buyers[:5])]  # fmt: skip
    rows.append(order_row(buyers[5], f"late-{day:%j}", day - timedelta(days=200), Decimal(500)))
    existing = Order.objects.filter(status="paid", customer__merged_into__isnull=True).order_by("?")
    refunded, deleted = existing[:2]
    rows.append(order_row(refunded.customer, refunded.external_id, refunded.ordered_at, refunded.amount,
                          source=refunded.source, status="refunded", refunded_amount=str(refunded.amount)))  # fmt: skip
    result = bulk_upsert_orders(rows, user=operator)
    assert not result.errors, result.errors
    delete_order(deleted)
    current = Customer.objects.filter(pk__in=[p.pk for p in people[8:]], merged_into__isnull=True).exclude(
        pk__in=[b.pk for b in buyers]
    )
    survivor, merged = rng.sample(sorted(current, key=lambda c: c.pk), 2)
    merge = merge_customers(survivor, merged)
    if rng.random() < 0.5:
        undo_merge(merge)
    CustomerFactory()  # a new customer who has not bought: no row yet
    domain_events.consume_all()


@pytest.mark.parametrize("method", ["quantile", "thresholds"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_incremental_run_gives_exactly_what_a_full_run_gives(seed, method):
    rng = random.Random(seed)
    layering = LayeringSettings.load()
    layering.rfm_method = method
    layering.save()
    with time_machine.travel(NOW, tick=False):
        people = random_book(rng)
        assert recompute_rfm().full
    for night in (1, 2, 4):  # a missed night: the edges cover both days
        day = NOW + timedelta(days=night)
        with time_machine.travel(day, tick=False):
            a_days_changes(rng, people, day)
            assert RfmRecheck.objects.exists()
            incremental = recompute_rfm(incremental=True)
            assert not incremental.full
            assert not RfmRecheck.objects.exists()
            rows, members = rfm_rows(), open_memberships()

            check = recompute_rfm()  # a full run on the same data and date

            assert check.full
            assert check.transitions == 0
            assert rfm_rows() == rows  # nothing left to change: not one row rewritten
            assert open_memberships() == members
            assert check.counts == incremental.counts


@time_machine.travel(NOW, tick=False)
def test_an_order_written_without_its_event_waits_for_the_weekly_full_run():
    customer = CustomerFactory()
    OrderFactory(customer=customer, ordered_at=NOW - timedelta(days=30), amount=Decimal(100))
    recompute_rfm()
    OrderFactory(customer=customer, ordered_at=NOW - timedelta(days=20), amount=Decimal(100))  # no domain event

    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        assert not recompute_rfm(incremental=True).full
    assert CustomerRfm.objects.get(customer=customer).frequency == 1  # not seen: nothing said it changed

    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        weekly = recompute_rfm(incremental=True)
    assert weekly.full
    assert CustomerRfm.objects.get(customer=customer).frequency == 2


@time_machine.travel(NOW, tick=False)
def test_an_order_leaving_the_window_is_seen_by_the_next_incremental_run():
    customer = CustomerFactory()
    OrderFactory(customer=customer, ordered_at=NOW - timedelta(days=364), amount=Decimal(100))
    recompute_rfm()
    assert CustomerRfm.objects.get(customer=customer).rfm_class != "no_purchase"

    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        assert not recompute_rfm(incremental=True).full

    row = CustomerRfm.objects.get(customer=customer)
    assert (row.frequency, row.monetary, row.rfm_class) == (0, 0, "no_purchase")


@override_settings(RFM_FULL_RECOMPUTE_DAYS=7)
def test_a_run_is_full_when_it_cannot_build_on_the_previous_one():
    with time_machine.travel(NOW, tick=False):
        CustomerFactory()
        assert recompute_rfm(incremental=True).full  # no previous run
        assert not recompute_rfm(incremental=True).full
        assert recompute_rfm(incremental=False).full  # asked for
    with time_machine.travel(NOW + timedelta(days=8), tick=False):
        assert recompute_rfm(incremental=True).full  # a week since the last full run
    with time_machine.travel(NOW + timedelta(days=9), tick=False):
        assert not recompute_rfm(incremental=True).full
        assert recompute_rfm(incremental=True, as_of=(NOW + timedelta(days=2)).date()).full  # a date going back
        layering = LayeringSettings.load()
        layering.rfm_window_days = 180
        layering.save()
        assert recompute_rfm(incremental=True).full  # other parameters


@time_machine.travel(NOW, tick=False)
def test_the_nightly_task_runs_incrementally_and_the_button_in_full():
    CustomerFactory()
    assert recompute_layers(["rfm"])["rfm"]["full"] is True
    assert recompute_layers(["rfm"], incremental=True)["rfm"]["full"] is False


@time_machine.travel(NOW, tick=False)
def test_order_and_merge_events_leave_rechecks_for_both_customers_and_a_run_takes_them():
    survivor, merged, other = CustomerFactory(), CustomerFactory(), CustomerFactory()
    OrderFactory(customer=merged, ordered_at=NOW - timedelta(days=3))
    recompute_rfm()
    bulk_upsert_orders([order_row(other, "x1", NOW, Decimal(80))], user=UserFactory())
    merge = merge_customers(survivor, merged)
    domain_events.consume_all()
    assert set(RfmRecheck.objects.values_list("customer_id", flat=True)) == {other.pk, survivor.pk, merged.pk}

    recompute_rfm(incremental=True)
    assert not RfmRecheck.objects.exists()
    assert not CustomerRfm.objects.filter(customer=merged).exists()
    assert CustomerRfm.objects.get(customer=survivor).frequency == 1

    undo_merge(merge)
    domain_events.consume_all()
    assert set(RfmRecheck.objects.values_list("customer_id", flat=True)) == {survivor.pk, merged.pk}
    recompute_rfm(incremental=True)
    assert CustomerRfm.objects.get(customer=merged).frequency == 1
    assert CustomerRfm.objects.get(customer=survivor).frequency == 0


def test_deleting_an_order_through_the_api_tells_the_consumers(client):
    operator = UserFactory(role="operator")
    order = OrderFactory()
    client.force_login(operator)

    response = client.delete(f"/api/v1/orders/{order.pk}/")

    assert response.status_code == 204
    event = DomainEvent.objects.get(kind="order.updated")
    assert (event.customer_id, event.payload) == (order.customer_id, {"order_id": order.pk, "deleted": True})
    domain_events.consume_all()
    assert list(RfmRecheck.objects.values_list("customer_id", flat=True)) == [order.customer_id]
