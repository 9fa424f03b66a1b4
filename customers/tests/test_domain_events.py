import time

import pytest
from django.db import transaction
from kombu.exceptions import OperationalError

from customers import domain_events
from customers.models import DomainEvent
from customers.services.ingest import bulk_record_events, bulk_upsert_customers, bulk_upsert_orders
from customers.services.merge import merge_customers
from customers.services.transfer import transfer_customers
from customers.tasks import consume_domain_events
from customers.tests.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db


def order_row(external_id="E1", **overrides):
    return {
        "source": "youzan",
        "external_id": external_id,
        "customer": {"unionid": "u1"},
        "ordered_at": "2026-11-01T10:00:00+08:00",
        "amount": "300.00",
        **overrides,
    }


def kinds() -> list[str]:
    return list(DomainEvent.objects.order_by("id").values_list("kind", flat=True))


@pytest.fixture
def handled(monkeypatch):
    """A consumer that records what it was given, registered for the test only."""
    seen: list[tuple[int, str, int]] = []
    monkeypatch.setattr(domain_events, "_CONSUMERS", {})
    domain_events.register_consumer("test", {"*"}, lambda events: seen.extend((e.pk, e.kind, e.customer_id)
                                                                             for e in events))  # fmt: skip
    return seen


def test_a_new_order_records_customer_created_and_order_placed_in_its_transaction(operator):
    bulk_upsert_orders([order_row()], user=operator)

    assert kinds() == ["customer.created", "order.placed"]
    placed = DomainEvent.objects.get(kind="order.placed")
    assert placed.payload["amount"] == 300.0
    assert placed.processed_at is None


def test_a_write_that_rolls_back_leaves_no_event(operator):
    def write_then_fail():
        with transaction.atomic():
            bulk_upsert_orders([order_row()], user=operator)
            raise RuntimeError("the caller failed after the write")

    with pytest.raises(RuntimeError):
        write_then_fail()

    assert kinds() == []


def test_resending_an_order_records_nothing_and_refunding_it_records_order_refunded(operator):
    bulk_upsert_orders([order_row()], user=operator)
    bulk_upsert_orders([order_row()], user=operator)
    bulk_upsert_orders([order_row(status="refunded")], user=operator)

    assert kinds() == ["customer.created", "order.placed", "order.refunded"]


def test_behaviour_profile_changes_merges_and_transfers_record_events(operator):
    customer, twin = CustomerFactory(), CustomerFactory()
    bulk_record_events(
        [{"customer": {"id": customer.pk}, "type": "content_view", "occurred_at": "2026-11-01T10:00:00+08:00"}],
        user=operator,
    )
    bulk_upsert_customers([{"id": customer.pk, "city": "杭州"}], user=operator)
    bulk_upsert_customers([{"id": customer.pk, "city": "杭州"}], user=operator)  # unchanged: no event
    merge_customers(customer, twin)
    transfer_customers([customer.pk], to_staff=StaffFactory())

    assert kinds() == ["event.recorded", "customer.updated", "customer.merged", "customer.updated"]
    assert set(DomainEvent.objects.values_list("customer_id", flat=True)) == {customer.pk}


def test_consumers_get_each_event_once_in_id_order(handled):
    first, second = CustomerFactory(), CustomerFactory()
    domain_events.record("order.placed", [first.pk, second.pk, first.pk])

    assert domain_events.consume_all() == 3
    assert domain_events.consume_all() == 0

    assert [kind for _pk, kind, _c in handled] == ["order.placed"] * 3
    mine = [pk for pk, _kind, customer_id in handled if customer_id == first.pk]
    assert mine == sorted(mine)
    assert domain_events.pending_count() == 0


def test_a_failing_consumer_holds_back_only_its_event_and_records_the_error(monkeypatch):
    good, bad = CustomerFactory(), CustomerFactory()
    handled: list[int] = []

    def consumer(events):
        for event in events:
            if event.customer_id == bad.pk:
                raise ValueError("cannot handle this one")
        handled.extend(e.customer_id for e in events)

    monkeypatch.setattr(domain_events, "_CONSUMERS", {})
    domain_events.register_consumer("test", {"order.placed"}, consumer)
    domain_events.record("order.placed", [good.pk, bad.pk])

    domain_events.consume_all()

    assert handled == [good.pk]
    failed = DomainEvent.objects.get(customer_id=bad.pk)
    assert (failed.processed_at, failed.attempts) == (None, 1)
    assert failed.last_error == "ValueError: cannot handle this one"
    assert failed.retry_at is not None
    assert DomainEvent.objects.get(customer_id=good.pk).processed_at is not None


def test_a_write_kicks_the_consumers_once_after_commit(django_capture_on_commit_callbacks, monkeypatch, operator):
    sent = []
    monkeypatch.setattr(consume_domain_events, "apply_async", lambda **kwargs: sent.append(kwargs))

    with django_capture_on_commit_callbacks(execute=True):
        bulk_upsert_orders([order_row("E1"), order_row("E2", customer={"unionid": "u2"})], user=operator)

    assert len(sent) == 1


def test_a_broker_that_is_down_does_not_fail_the_write(django_capture_on_commit_callbacks, monkeypatch, operator):
    def broker_down(**kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(consume_domain_events, "apply_async", broker_down)
    monkeypatch.setattr(domain_events, "_broker_down_until", 0.0)

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        result = bulk_upsert_orders([order_row()], user=operator)

    assert result.created == 1
    assert time.monotonic() - started < 1
    assert domain_events.pending_count() == 2  # left for the sweep
