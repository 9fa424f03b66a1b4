from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.services import create_api_token, revoke_api_token
from customers.models import Customer, Order
from customers.tests.factories import (
    CommunityGroupFactory,
    CustomerFactory,
    EventFactory,
    GroupMembershipFactory,
    IdentityFactory,
    OrderFactory,
    RelationshipFactory,
    StaffFactory,
    UserFactory,
    sales_rep,
)

pytestmark = pytest.mark.django_db


def test_requests_without_a_valid_token_are_refused(operator):
    token, key = create_api_token(name="shop", user=operator)
    client = APIClient()

    assert client.get("/api/v1/customers/").status_code in (401, 403)
    client.credentials(HTTP_AUTHORIZATION="Bearer nope")
    assert client.get("/api/v1/customers/").json()["code"] == "authentication_failed"
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/customers/").status_code == 200
    revoke_api_token(token)
    assert client.get("/api/v1/customers/").status_code == 401


def test_customer_list_is_cursor_paginated_in_a_fixed_number_of_queries(api, django_assert_num_queries):
    CustomerFactory.create_batch(120, owner=StaffFactory())
    api.get("/api/v1/customers/")  # the token's last_used_at is refreshed at most once a minute
    with django_assert_num_queries(2):  # token, page
        first = api.get("/api/v1/customers/").json()
    with django_assert_num_queries(2):
        second = api.get(first["next"]).json()

    assert len(first["results"]) == 50
    assert first["results"][0]["id"] > second["results"][0]["id"]
    assert "count" not in first


def test_customer_search_matches_identity_values(api):
    target = CustomerFactory(name="陈静")
    IdentityFactory(customer=target, kind="wecom", value="wmABC")
    CustomerFactory(name="其他")

    found = api.get("/api/v1/customers/", {"search": "wmABC"}).json()["results"]

    assert [c["id"] for c in found] == [target.pk]


def test_customer_detail_includes_identities_and_relationships(api, django_assert_max_num_queries):
    customer = CustomerFactory()
    IdentityFactory(customer=customer)
    RelationshipFactory(customer=customer, state="store-sh-01")
    api.get("/api/v1/customers/")

    with django_assert_max_num_queries(5):
        body = api.get(f"/api/v1/customers/{customer.pk}/").json()

    assert body["identities"][0]["kind"] == "unionid"
    assert body["relationships"][0]["state"] == "store-sh-01"


def test_create_customer_then_post_again_updates(api):
    created = api.post("/api/v1/customers/", {"unionid": "U1", "name": "林"}, format="json")
    again = api.post("/api/v1/customers/", {"unionid": "U1", "city": "成都"}, format="json")

    assert (created.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == created.json()["id"]
    assert (again.json()["name"], again.json()["city"]) == ("林", "成都")


def test_invalid_customer_gets_field_errors(api):
    response = api.post("/api/v1/customers/", {"unionid": "U1", "birthday": "someday"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"birthday": ["Expected a date like 1990-05-01, got 'someday'."]}
    assert not Customer.objects.exists()


def test_patch_changes_only_given_fields(api):
    customer = CustomerFactory(name="周", city="上海")

    response = api.patch(f"/api/v1/customers/{customer.pk}/", {"city": "北京"}, format="json")

    assert response.status_code == 200
    customer.refresh_from_db()
    assert (customer.name, customer.city) == ("周", "北京")


def test_bulk_orders_report_row_errors_and_land_good_rows(api):
    rows = [
        {"source": "youzan", "external_id": "1", "customer": {"unionid": "U"}, "ordered_at": "2026-11-01T10:00:00",
         "amount": "10"},
        {"source": "youzan", "external_id": "2", "customer": {"unionid": "U"}, "ordered_at": "2026-11-01T10:00:00",
         "amount": "ten"},
    ]  # fmt: skip

    response = api.post("/api/v1/orders/bulk/", {"rows": rows}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["failed"]) == (1, 1)
    assert body["errors"] == [{"index": 1, "field": "amount", "message": "Expected a number, got 'ten'."}]
    assert body["ids"][1] is None
    assert Order.objects.get().amount == Decimal("10.00")


def test_bulk_with_only_bad_rows_is_a_400_and_envelope_errors_are_clear(api, settings):
    assert api.post("/api/v1/orders/bulk/", {"rows": [{}]}, format="json").status_code == 400
    assert api.post("/api/v1/orders/bulk/", {"rows": "x"}, format="json").json()["errors"] == {
        "rows": ["Send a list of rows, or an object with a `rows` list."]
    }
    settings.BULK_MAX_ROWS = 2
    response = api.post("/api/v1/events/bulk/", [{}, {}, {}], format="json")
    assert response.json()["errors"] == {"rows": ["At most 2 rows per request (got 3)."]}


def test_single_order_create_and_update_go_through_the_upsert(api):
    body = {
        "source": "pos",
        "external_id": "P1",
        "customer": {"phone": "13800000000"},
        "ordered_at": "2026-11-01T10:00:00+08:00",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": "5"}],
    }

    created = api.post("/api/v1/orders/", body, format="json")
    updated = api.put(f"/api/v1/orders/{created.json()['id']}/", {**body, "status": "refunded"}, format="json")

    assert created.status_code == 201
    assert created.json()["amount"] == "10.00"
    assert updated.json()["status"] == "refunded"
    assert updated.json()["refunded_amount"] == "10.00"
    assert Order.objects.count() == 1


def test_events_are_created_and_listed(api):
    customer = CustomerFactory()
    body = {"customer": {"id": customer.pk}, "type": "content_view", "occurred_at": "2026-11-01T10:00:00+08:00",
            "properties": {"title": "成分安全指南"}}  # fmt: skip

    first = api.post("/api/v1/events/", body, format="json")
    second = api.post("/api/v1/events/", body, format="json")
    listed = api.get("/api/v1/events/", {"customer": customer.pk}).json()["results"]

    assert (first.status_code, second.status_code) == (201, 200)
    assert [e["properties"]["title"] for e in listed] == ["成分安全指南"]


def test_merge_and_undo_over_the_api(api):
    survivor, merged = CustomerFactory(), CustomerFactory()
    OrderFactory(customer=merged)

    merge = api.post(f"/api/v1/customers/{survivor.pk}/merge/", {"other": merged.pk}, format="json")
    assert merge.status_code == 201
    assert survivor.orders.count() == 1
    assert api.get(f"/api/v1/customers/{merged.pk}/").status_code == 404

    undo = api.post(f"/api/v1/merges/{merge.json()['id']}/undo/")
    assert undo.status_code == 200
    assert merged.orders.count() == 1


def test_transfer_over_the_api(api):
    old, new = StaffFactory(), StaffFactory()
    customers = CustomerFactory.create_batch(3, owner=old)

    response = api.post(
        "/api/v1/customers/transfer/", {"customers": [c.pk for c in customers], "to_staff": new.pk}, format="json"
    )

    assert response.json() == {"transferred": 3}
    assert Customer.objects.filter(owner=new).count() == 3


def test_analyst_reads_but_cannot_write():
    analyst = UserFactory(username="ana", role=Role.ANALYST)
    client = APIClient()
    client.force_authenticate(analyst)
    CustomerFactory()

    assert client.get("/api/v1/customers/").status_code == 200
    assert client.post("/api/v1/customers/", {"unionid": "U"}, format="json").status_code == 403
    assert client.post("/api/v1/channels/", {"code": "x", "name": "x"}, format="json").status_code == 403
    assert not Customer.objects.filter(identities__value="U").exists()


def test_sales_rep_cannot_change_reference_data_or_transfer():
    rep = sales_rep("rep9")
    client = APIClient()
    client.force_authenticate(rep)

    assert client.post("/api/v1/products/", {"sku": "A", "name": "A"}, format="json").status_code == 403
    mine = CustomerFactory(owner=rep.staff)
    response = client.post("/api/v1/customers/transfer/", {"customers": [mine.pk], "to_staff": rep.staff.pk},
                           format="json")  # fmt: skip
    assert response.status_code == 404


def test_group_members_only_show_visible_customers():
    rep = sales_rep("rep8")
    mine, theirs = CustomerFactory(owner=rep.staff), CustomerFactory(owner=StaffFactory())
    group = CommunityGroupFactory()
    GroupMembershipFactory(group=group, customer=mine)
    GroupMembershipFactory(group=group, customer=theirs)
    client = APIClient()
    client.force_authenticate(rep)

    members = client.get(f"/api/v1/groups/{group.pk}/members/").json()["results"]

    assert [m["customer"] for m in members] == [mine.pk]


def test_openapi_schema_and_docs_are_served_offline(api):
    schema = api.get("/api/v1/schema/")
    docs = api.get("/api/v1/docs/")

    assert schema.status_code == 200
    assert b"/api/v1/orders/bulk/" in schema.content
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def test_event_factory_is_visible_in_customer_trail(api):
    event = EventFactory()
    assert api.get("/api/v1/events/").json()["results"][0]["id"] == event.pk


def test_malformed_json_is_a_clear_400(api):
    response = api.generic("POST", "/api/v1/orders/bulk/", '{"rows": [', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert response.json()["detail"].startswith("JSON parse error")


def test_transfer_a_departed_reps_whole_book(api):
    departed, heir = StaffFactory(is_active=False), StaffFactory()
    CustomerFactory.create_batch(4, owner=departed)
    other = CustomerFactory(owner=StaffFactory())

    response = api.post(
        "/api/v1/customers/transfer/",
        {"from_staff": departed.pk, "to_staff": heir.pk, "kind": "departed", "reason": "离职交接"},
        format="json",
    )

    assert response.json() == {"transferred": 4}
    assert Customer.objects.filter(owner=heir).count() == 4
    other.refresh_from_db()
    assert other.owner != heir


def test_transfer_needs_exactly_one_scope(api):
    response = api.post("/api/v1/customers/transfer/", {"to_staff": StaffFactory().pk}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"non_field_errors": ["Give either `customers` or `from_staff`."]}
