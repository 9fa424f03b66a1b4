from collections import Counter

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, F, Sum

from customers.demo import seed_demo
from customers.models import Customer, Order, OrderLine, Relationship

pytestmark = pytest.mark.django_db


def fingerprint() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
                SELECT concat_ws(',', id, name, gender, birthday, city, phone, owner_id, attributes::text) AS x
                FROM customers_customer
                UNION ALL SELECT concat_ws(',', id, customer_id, source, amount, status) FROM customers_order
                UNION ALL SELECT concat_ws(',', id, customer_id, type, properties::text) FROM customers_event
            ) rows
            """
        )
        return cursor.fetchone()[0]


def test_same_size_and_seed_give_the_same_data_and_another_seed_differs():
    seed_demo(customers=300, seed=7, progress=lambda _: None)
    first = fingerprint()
    seed_demo(customers=300, seed=7, progress=lambda _: None)
    again = fingerprint()
    seed_demo(customers=300, seed=8, progress=lambda _: None)

    assert first == again
    assert fingerprint() != first


def test_demo_data_is_realistic_and_consistent():
    counts = seed_demo(customers=500, seed=42, progress=lambda _: None)

    assert counts["customer"] == 500
    assert 3 * 500 < counts["order"] < 7 * 500
    assert 6 * 500 < counts["event"] < 14 * 500
    per_customer = Counter(Customer.objects.annotate(n=Count("orders")).values_list("n", flat=True))
    assert per_customer[0] > 100  # many never buy
    assert per_customer[1] > 80  # many buy once
    assert max(per_customer) >= 10  # some buy often
    # Every order's amount is the sum of its lines; refunds never exceed the amount.
    mismatched = Order.objects.annotate(lines_total=Sum("lines__amount")).exclude(amount=F("lines_total"))
    assert not mismatched.exists()
    assert Order.objects.filter(status="refunded").exclude(refunded_amount=F("amount")).count() == 0
    assert OrderLine.objects.filter(product__isnull=True).count() == 0
    # Every WeCom pair has the customer's external_userid; names are Chinese.
    without_wecom = Relationship.objects.exclude(customer__identities__kind="wecom")
    assert not without_wecom.exists()
    assert all("\u4e00" <= name[0] <= "\u9fff" for name in Customer.objects.values_list("name", flat=True)[:50])
    # Constraints are back: a duplicate identity is refused.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'identity_unique'")
        assert cursor.fetchone()[0] == 1


def test_sequences_continue_after_the_seed():
    seed_demo(customers=50, seed=1, progress=lambda _: None)

    created = Customer.objects.create(name="新客户")

    assert created.pk == 51


def test_command_refuses_a_database_with_customers_unless_forced():
    seed_demo(customers=20, seed=1, progress=lambda _: None)

    with pytest.raises(CommandError, match="--force"):
        call_command("seed_demo", customers=30)
    call_command("seed_demo", customers=30, force=True)

    assert Customer.objects.count() == 30
