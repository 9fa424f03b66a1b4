import threading

import pytest
from django.db import connection
from django.db.models import Count

from customers.models import Customer, Order
from customers.services.ingest import bulk_upsert_orders
from customers.tests.factories import UserFactory


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_batches_with_the_same_new_person_create_one_customer():
    user = UserFactory(username="op")
    barrier = threading.Barrier(2)
    failures = []

    def send(batch: str) -> None:
        try:
            barrier.wait(timeout=10)
            rows = [
                {"source": "youzan", "external_id": f"{batch}-{n}", "customer": {"unionid": f"shared-{n}"},
                 "ordered_at": "2026-11-01T10:00:00+08:00", "amount": "10"}
                for n in range(200)
            ]  # fmt: skip
            result = bulk_upsert_orders(rows, user=user)
            assert not result.errors
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert Customer.objects.count() == 200
    assert Order.objects.count() == 400
    assert set(Customer.objects.annotate(n=Count("orders")).values_list("n", flat=True)) == {2}
