"""Incremental RFM runs (the nightly run): they read only the orders of customers whose orders changed or crossed
the window's edges, and must give exactly what a full run gives."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from accounts.tests.factories import UserFactory
from customers import domain_events
from customers.conditions.predicates import COUNTED_STATUSES
from customers.models import Customer, DomainEvent, Order
from customers.services.ingest import bulk_upsert_orders, delete_order
from customers.services.merge import merge_customers, undo_merge
from customers.tests.factories import CustomerFactory, OrderFactory
from segments.models import CustomerRfm, LayeringSettings, RfmRecheck, SegmentMembership
from segments.services.layers import recompute_layers, recompute_rfm
from segments.services.layers.rfm import parameters, recheck

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


def oracle() -> dict[int, tuple]:
    """RFM worked out in Python from the orders, straight from the definitions: every current customer with a
    counted purchase before the end of the window gets the last one's date, and the count and net spend within
    it; buyers in the window are scored (percent_rank cut at the quintiles, or the operator's bounds: recency in
    days at most, count and spend at least) and classed by the high cuts; everyone else is no_purchase."""
    layering = LayeringSettings.load()
    p = parameters(layering)
    start, end = p.window()
    values = {c.pk: (None, 0, Decimal(0)) for c in Customer.objects.filter(merged_into__isnull=True)}
    orders = Order.objects.filter(status__in=COUNTED_STATUSES, ordered_at__lt=end, customer_id__in=list(values))
    for order in orders:
        last, frequency, monetary = values[order.customer_id]
        day = timezone.localdate(order.ordered_at)
        if order.ordered_at >= start:
            frequency, monetary = frequency + 1, monetary + order.amount - order.refunded_amount
        values[order.customer_id] = (max(last or day, day), frequency, monetary)
    buyers = {pk: v for pk, v in values.items() if v[1] > 0}

    def score(dim: int, value) -> int:
        if p.method == "thresholds":
            bounds = p.thresholds["rfm"[dim]]
            if dim == 0:
                return next((5 - k for k, days in enumerate(bounds) if (p.as_of - value).days <= days), 1)
            return next((5 - k for k, bound in enumerate(bounds) if value >= bound), 1)
        lower = sum(1 for other in buyers.values() if other[dim] < value)
        rank = lower / max(len(buyers) - 1, 1)
        return 1 + sum(1 for cut in (0.2, 0.4, 0.6, 0.8) if rank >= cut)

    result = {}
    for pk, (last, frequency, monetary) in values.items():
        if frequency == 0:
            result[pk] = (last, 0, monetary, None, None, None, "no_purchase")
            continue
        r, f, m = score(0, last), score(1, frequency), score(2, monetary)
        high = {dim: s >= p.high_from[dim] for dim, s in zip("rfm", (r, f, m), strict=True)}
        name = ("important_" if high["m"] else "general_") + (
            ("value" if high["f"] else "develop") if high["r"] else ("keep" if high["f"] else "retain")
        )
        result[pk] = (last, frequency, monetary, r, f, m, name)
    return result


def stored_value_counts_are_the_rows() -> bool:
    """The counts per value a quantile run leaves for the next one are those of the stored rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH counted AS (
                SELECT GROUPING(last_purchase_on, frequency, monetary) AS dims, last_purchase_on, frequency,
                       monetary, count(*)::integer AS n
                FROM segments_customerrfm WHERE frequency > 0
                GROUP BY GROUPING SETS ((last_purchase_on), (frequency), (monetary))
            ), kept AS (
                SELECT v.dims, u.last_purchase_on, u.frequency, u.monetary, u.n FROM segments_rfmvaluecount v,
                    unnest(v.last_purchase_on, v.frequency, v.monetary, v.n) AS u(last_purchase_on, frequency,
                                                                                   monetary, n)
            )
            (SELECT * FROM counted EXCEPT ALL SELECT * FROM kept)
            UNION ALL (SELECT * FROM kept EXCEPT ALL SELECT * FROM counted)
            """
        )
        return not cursor.fetchall()


def stored() -> dict[int, tuple]:
    return {
        row[0]: row[1:]
        for row in CustomerRfm.objects.values_list(
            "customer_id", "last_purchase_on", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_class"
        )
    }  # fmt: skip


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
    if method == "thresholds":  # fractional counts: "at least 2.5 orders" is 3 of them
        layering.rfm_thresholds = {"f": [4.5, 3, 2.5, 1.2]}
    layering.save()
    with time_machine.travel(NOW, tick=False):
        people = random_book(rng)
        assert recompute_rfm().full
        assert stored() == oracle()
        assert method == "thresholds" or stored_value_counts_are_the_rows()
    for night in (1, 2, 4):  # a missed night: the edges cover both days
        day = NOW + timedelta(days=night)
        with time_machine.travel(day, tick=False):
            a_days_changes(rng, people, day)
            assert RfmRecheck.objects.exists()
            incremental = recompute_rfm(incremental=True)
            assert not incremental.full
            assert not RfmRecheck.objects.exists()
            assert stored() == oracle()
            assert method == "thresholds" or stored_value_counts_are_the_rows()
            rows, members = rfm_rows(), open_memberships()

            check = recompute_rfm()  # a full run on the same data and date

            assert check.full
            assert check.transitions == 0
            assert rfm_rows() == rows  # nothing left to change: not one row rewritten
            assert open_memberships() == members
            assert check.counts == incremental.counts


@time_machine.travel(NOW, tick=False)
def test_a_full_run_puts_back_rows_changed_outside_it_and_follows_new_class_cuts():
    rng = random.Random(7)
    random_book(rng)
    recompute_rfm()
    rows = list(CustomerRfm.objects.filter(frequency__gt=1).order_by("customer_id")[:3])
    CustomerRfm.objects.filter(pk=rows[0].pk).update(frequency=F("frequency") + 5)  # values
    CustomerRfm.objects.filter(pk=rows[1].pk).update(r_score=6 - F("r_score"))  # a score
    CustomerRfm.objects.filter(pk=rows[2].pk).update(rfm_class="important_value" if rows[2].rfm_class ==
                                                     "general_retain" else "general_retain")  # fmt: skip
    CustomerRfm.objects.filter(frequency=0).order_by("customer_id")[:1].get().delete()  # a row missing

    run = recompute_rfm()

    assert stored() == oracle()
    assert run.transitions == 2  # the class put back, and the missing row's no_purchase
    layering = LayeringSettings.load()
    layering.rfm_high_from = {"r": 5, "f": 5, "m": 5}  # the same scores, other classes
    layering.save()
    before = stored()

    run = recompute_rfm(incremental=True)

    assert run.full
    assert stored() == oracle()
    changed = [pk for pk, row in stored().items() if row != before[pk]]
    assert changed
    assert all(stored()[pk][:6] == before[pk][:6] for pk in changed)  # scores as they were
    assert run.transitions == len(changed)


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


@time_machine.travel(NOW, tick=False)
def test_a_rechecked_customer_whose_class_stays_keeps_her_membership(monkeypatch):
    from segments.services.layers import model_segments

    random_book(random.Random(5))
    recompute_rfm()
    buyer = CustomerRfm.objects.filter(frequency__gt=0).order_by("customer_id").first().customer_id
    memberships = SegmentMembership.objects.filter(customer_id=buyer, segment__model_key__startswith="rfm:")
    episode = memberships.get(exited_at__isnull=True)
    recheck([buyer])  # what the consumer of an order or merge event leaves
    compared = []
    original = model_segments._apply
    monkeypatch.setattr(model_segments, "_apply", lambda *args, **kw: compared.append(args[3]) or original(*args, **kw))

    run = recompute_rfm(incremental=True)

    assert not run.full
    assert [scope is not None for scope in compared] == [True]  # no drift, so no second pass over everyone
    assert list(memberships) == [episode]  # the same episode, still open: no exit and re-entry
