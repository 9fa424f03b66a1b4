import gc
from decimal import Decimal

import pytest

from customers.models import Customer, Event, Identity, Order, OrderLine, Transfer
from customers.services import ingest
from customers.services.ingest import TooManyRows, bulk_record_events, bulk_upsert_customers, bulk_upsert_orders
from customers.tests.factories import (
    ChannelFactory,
    CustomerFactory,
    IdentityFactory,
    ProductFactory,
    StaffFactory,
    sales_rep,
)

pytestmark = pytest.mark.django_db


def order_row(n: int, **overrides):
    row = {
        "source": "youzan",
        "external_id": f"E{n}",
        "customer": {"unionid": f"u{n % 7}"},
        "ordered_at": "2026-11-01T10:00:00+08:00",
        "lines": [{"sku": "MASK", "quantity": 2, "unit_price": "49.50"}],
    }
    row.update(overrides)
    return row


def test_orders_land_with_lines_amounts_and_new_customers(operator):
    ProductFactory(sku="MASK", name="补水面膜")

    result = bulk_upsert_orders([order_row(n) for n in range(20)], user=operator)

    assert (result.created, result.updated, result.unchanged, result.errors) == (20, 0, 0, [])
    assert Order.objects.count() == 20
    assert Customer.objects.count() == 7  # seven distinct unionids
    order = Order.objects.get(external_id="E3")
    assert order.amount == Decimal("99.00")
    line = OrderLine.objects.get(order=order)
    assert (line.name, line.quantity, line.amount, line.product.sku) == ("补水面膜", 2, Decimal("99.00"), "MASK")
    assert result.ids[3] == order.pk


def test_a_bulk_write_pauses_the_garbage_collector_and_leaves_it_as_it_was(operator, monkeypatch):
    during, check_size = [], ingest._check_size

    def checked(rows):
        during.append(gc.isenabled())
        check_size(rows)

    monkeypatch.setattr(ingest, "_check_size", checked)
    rows = [{"source": "shop", "external_id": "G1", "customer": {"phone": "13800000001"},
             "ordered_at": "2026-11-20T10:00:00+08:00", "amount": "10"}]  # fmt: skip

    bulk_upsert_orders(rows, user=operator)
    assert gc.isenabled()
    gc.disable()
    try:
        bulk_upsert_orders(rows, user=operator)
        assert not gc.isenabled()  # not turned on by a write that found it off
    finally:
        gc.enable()
    with pytest.raises(TooManyRows):
        bulk_upsert_orders([{}] * 10_001, user=operator)
    assert during == [False, False, False]
    assert gc.isenabled()  # back on after a refused batch


def test_resending_orders_changes_nothing(operator):
    rows = [order_row(n) for n in range(10)]
    bulk_upsert_orders(rows, user=operator)
    before = list(Order.objects.order_by("pk").values_list("pk", "updated_at"))

    again = bulk_upsert_orders(rows, user=operator)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 10)
    assert list(Order.objects.order_by("pk").values_list("pk", "updated_at")) == before
    assert again.ids == [pk for pk, _ in before]


def test_resent_order_with_new_status_is_updated_not_duplicated(operator):
    bulk_upsert_orders([order_row(1, amount="99")], user=operator)

    result = bulk_upsert_orders([order_row(1, amount="99", status="refunded")], user=operator)

    assert (result.created, result.updated) == (0, 1)
    order = Order.objects.get()
    assert (order.status, order.refunded_amount) == ("refunded", Decimal("99.00"))


def test_bad_rows_are_reported_and_good_rows_land(operator):
    rows = [
        order_row(0),
        order_row(1, ordered_at="yesterday"),
        order_row(2, customer={}),
        order_row(3, amount="-5", lines=[]),
        order_row(4, channel="nope"),
        order_row(5, refunded_amount="500"),
        "not an object",
        order_row(7),
    ]

    result = bulk_upsert_orders(rows, user=operator)

    assert result.created == 2
    assert sorted(Order.objects.values_list("external_id", flat=True)) == ["E0", "E7"]
    assert [(e.index, e.field) for e in result.errors] == [
        (1, "ordered_at"),
        (2, "customer"),
        (3, "amount"),
        (4, "channel"),
        (5, "refunded_amount"),
        (6, "row"),
    ]
    assert "yesterday" in result.errors[0].message
    assert result.ids[1] is None
    assert result.ids[7] is not None


def test_a_bad_row_creates_no_customer(operator):
    result = bulk_upsert_orders([order_row(1, ordered_at="bad", customer={"unionid": "ghost"})], user=operator)

    assert result.errors
    assert not Identity.objects.filter(value="ghost").exists()
    assert Customer.objects.count() == 0


def test_the_same_order_twice_in_one_request_keeps_the_later(operator):
    rows = [order_row(1, amount="10", lines=[]), order_row(1, amount="20", lines=[])]

    result = bulk_upsert_orders(rows, user=operator)

    assert Order.objects.get().amount == Decimal("20.00")
    assert result.ids[0] == result.ids[1]


def test_shop_id_identity_is_namespaced_by_the_order_source(operator):
    bulk_upsert_orders([order_row(1, customer={"shop_id": "B1"})], user=operator)
    bulk_upsert_orders([order_row(2, source="tmall", customer={"shop_id": "B1"})], user=operator)

    assert Customer.objects.count() == 2
    assert set(Identity.objects.values_list("namespace", "value")) == {("youzan", "B1"), ("tmall", "B1")}


def test_rows_sharing_an_identity_become_one_customer(operator):
    rows = [
        order_row(1, customer={"phone": "138 0013 8000", "unionid": "U1"}),
        order_row(2, customer={"unionid": "U1"}),
        order_row(3, customer={"phone": "+8613800138000"}),
    ]

    bulk_upsert_orders(rows, user=operator)

    customer = Customer.objects.get()
    assert customer.phone == "13800138000"
    assert customer.orders.count() == 3


def test_identities_of_two_customers_in_one_row_are_refused(operator):
    IdentityFactory(kind="unionid", value="A")
    IdentityFactory(kind="unionid", value="B")
    IdentityFactory.reset_sequence()
    a = Identity.objects.get(value="A").customer

    result = bulk_upsert_orders(
        [
            order_row(1, customer={"unionid": "A", "phone": "1"}),
            order_row(2, customer={"unionid": "A", "wecom": "wmB"}),
            order_row(3, customer={"wecom": "wmB", "unionid": "B"}),
        ],
        user=operator,
    )

    assert {e.index for e in result.errors} == {0, 1, 2}  # linked through A and wmB
    assert "merge them first" in result.errors[0].message
    assert not Order.objects.exists()
    assert a.orders.count() == 0


def test_a_rep_cannot_write_onto_another_reps_customer():
    rep = sales_rep("rep1")
    other = CustomerFactory(owner=StaffFactory())
    IdentityFactory(customer=other, kind="unionid", value="theirs")

    result = bulk_upsert_orders(
        [
            order_row(1, customer={"unionid": "theirs"}),
            order_row(2, customer={"id": other.pk}),
            order_row(3, customer={"unionid": "new"}),
        ],
        user=rep,
    )

    assert [(e.index, e.message) for e in result.errors] == [(0, "Customer not found."), (1, "Customer not found.")]
    created = Customer.objects.get(identities__value="new")
    assert created.owner == rep.staff


def test_too_many_rows_is_refused_whole(operator, settings):
    settings.BULK_MAX_ROWS = 3
    with pytest.raises(TooManyRows):
        bulk_upsert_orders([order_row(n) for n in range(4)], user=operator)
    assert Order.objects.count() == 0


def test_orders_move_last_seen_forward(operator):
    bulk_upsert_orders([order_row(1, ordered_at="2030-06-01T00:00:00+08:00")], user=operator)
    assert Customer.objects.get().last_seen_at.year == 2030


def test_events_are_recorded_once_even_when_resent(operator):
    ChannelFactory(code="mp")
    rows = [
        {"customer": {"unionid": "U1"}, "type": "content_view", "occurred_at": "2026-11-01T10:00:00+08:00",
         "properties": {"topic": "成分"}, "channel": "mp"},
        {"customer": {"unionid": "U1"}, "type": "share", "occurred_at": "2026-11-01T11:00:00+08:00",
         "source": "mp", "external_id": "S1"},
    ]  # fmt: skip

    first = bulk_record_events(rows, user=operator)
    second = bulk_record_events(rows, user=operator)

    assert (first.created, second.created, second.unchanged) == (2, 0, 2)
    assert first.ids == second.ids
    assert Event.objects.count() == 2
    view = Event.objects.get(type="content_view")
    assert (view.properties, view.channel.code) == ({"topic": "成分"}, "mp")


def test_event_errors_name_the_field(operator):
    result = bulk_record_events(
        [{"customer": {"unionid": "U"}, "type": "", "occurred_at": "2026-01-01", "properties": [1]}], user=operator
    )
    assert [(e.field, e.message) for e in result.errors] == [
        ("properties", "Expected an object."),
        ("type", "This field is required."),
    ]


def test_customers_upsert_matches_by_identity_and_changes_only_given_fields(operator):
    first = bulk_upsert_customers(
        [{"unionid": "U1", "name": "王芳", "city": "杭州", "attributes": {"skin": "油性"}}], user=operator
    )
    second = bulk_upsert_customers(
        [{"unionid": "U1", "phone": "13900000000", "attributes": {"kids": 2}}], user=operator
    )

    customer = Customer.objects.get()
    assert (first.created, second.updated) == (1, 1)
    assert (customer.name, customer.city, customer.phone) == ("王芳", "杭州", "13900000000")
    assert customer.attributes == {"skin": "油性", "kids": 2}
    assert set(customer.identities.values_list("kind", flat=True)) == {"unionid", "phone"}


def test_customers_upsert_is_idempotent(operator):
    rows = [{"unionid": f"U{n}", "name": f"客户{n}", "gender": "female"} for n in range(5)]
    bulk_upsert_customers(rows, user=operator)

    again = bulk_upsert_customers(rows, user=operator)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 5)
    assert Customer.objects.count() == 5


def test_customer_owner_change_is_recorded_as_a_transfer(operator):
    first, second = StaffFactory(wecom_userid="zhang"), StaffFactory(wecom_userid="li")
    bulk_upsert_customers([{"unionid": "U1", "owner": "zhang"}], user=operator)
    bulk_upsert_customers([{"unionid": "U1", "owner": second.pk}], user=operator)

    transfers = list(Transfer.objects.order_by("pk").values_list("from_staff", "to_staff", "kind"))
    assert transfers == [(None, first.pk, "assigned"), (first.pk, second.pk, "on_job")]


def test_customer_row_errors(operator):
    result = bulk_upsert_customers(
        [{"name": "无身份"}, {"unionid": "U", "gender": "x", "birthday": "soon", "time_zone": "Mars/Base"}],
        user=operator,
    )
    assert [(e.index, e.field) for e in result.errors] == [(0, "id"), (1, "birthday"), (1, "gender"),
                                                           (1, "time_zone")]  # fmt: skip
    assert Customer.objects.count() == 0
