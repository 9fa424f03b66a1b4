"""The touchpoints API: create (idempotent on the key, field errors), list with filters, detail, cancel, and what
each token's user may see."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.services import create_api_token
from customers.models import MessageChannel
from customers.tests.factories import CommunityGroupFactory, CustomerFactory, UserFactory
from messaging.models import MessageTemplate, Touchpoint, TouchpointSource, TouchpointStatus
from messaging.tests.test_outbox_views import TouchpointFactory, failed

pytestmark = pytest.mark.django_db
S = TouchpointStatus
URL = "/api/v1/touchpoints/"
NOON = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def client_for(user):
    client = APIClient()
    _token, key = create_api_token(name=f"{user.username}-integration", user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def rep_api(rep):
    return client_for(rep)


@pytest.fixture
def at_noon():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def message(customer, key="order:1001:shipped", **fields):
    return {
        "channel": "sms",
        "customer": customer.pk,
        "idempotency_key": key,
        "content": {"text": "您的订单已发货"},
        "kind": "transactional",
        **fields,
    }


# --------------------------------------------------------------------------------------------------- create


def test_create_queues_a_message_from_the_api(api, operator, at_noon):
    customer = CustomerFactory()

    response = api.post(URL, message(customer, source_ref="shop"), format="json")

    touchpoint = Touchpoint.objects.get()
    assert response.status_code == 201
    assert response.data["id"] == touchpoint.pk
    assert (touchpoint.source, touchpoint.source_ref, touchpoint.kind) == (
        TouchpointSource.API,
        "shop",
        "transactional",
    )
    assert (touchpoint.customer_id, touchpoint.created_by_id) == (customer.pk, operator.pk)
    assert response.data["status"] == "scheduled"
    assert response.data["decisions"] == [
        {"at": NOON.astimezone(datetime.UTC).isoformat(), "step": "scheduled", "outcome": "scheduled"}
    ]


def test_a_repeated_idempotency_key_returns_the_first_message_with_200(api):
    customer = CustomerFactory()
    first = api.post(URL, message(customer), format="json")

    again = api.post(URL, message(customer, content={"text": "另一条"}), format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.data["id"] == first.data["id"]
    assert again.data["content"] == {"text": "您的订单已发货"}
    assert Touchpoint.objects.count() == 1


def test_create_with_a_template_and_to_a_group(api):
    template = MessageTemplate.objects.create(name="群公告", channel="wecom", body="大家好")
    group = CommunityGroupFactory()

    response = api.post(
        URL,
        {"channel": "wecom", "group": group.pk, "template": template.pk, "idempotency_key": "g1"},
        format="json",
    )

    assert response.status_code == 201
    assert (response.data["group"], response.data["customer"], response.data["template"]) == (
        group.pk,
        None,
        template.pk,
    )


def test_create_refuses_a_message_without_recipient_or_content_with_field_errors(api):
    response = api.post(URL, {"channel": "sms", "idempotency_key": "k"}, format="json")

    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert set(response.data["errors"]) == {"customer", "content"}
    assert not Touchpoint.objects.exists()


def test_create_refuses_an_unknown_channel_and_template(api):
    customer = CustomerFactory()

    bad_channel = api.post(URL, message(customer, channel="fax"), format="json")
    bad_template = api.post(URL, message(customer, template=999999, content=None), format="json")

    assert list(bad_channel.data["errors"]) == ["channel"]
    assert bad_template.data["errors"] == {"template": ["No message template with id 999999."]}
    assert not Touchpoint.objects.exists()


def test_a_rep_cannot_send_to_another_reps_customer(rep_api, other_rep):
    theirs = CustomerFactory(owner=other_rep.staff)

    response = rep_api.post(URL, message(theirs), format="json")

    assert response.status_code == 400
    assert response.data["errors"] == {"customer": [f"No customer with id {theirs.pk}."]}
    assert not Touchpoint.objects.exists()


def test_a_key_used_for_a_message_the_user_may_not_see_is_a_conflict(rep_api, other_rep):
    TouchpointFactory(customer=CustomerFactory(owner=other_rep.staff), idempotency_key="shared")

    response = rep_api.post(URL, message(CustomerFactory(), key="shared"), format="json")

    assert response.status_code == 409
    assert response.data == {"detail": "This idempotency key is already used.", "code": "idempotency_key_taken"}


def test_an_analyst_cannot_create(client):
    analyst = UserFactory(username="analyst", role=Role.ANALYST)

    response = client_for(analyst).post(URL, message(CustomerFactory()), format="json")

    assert response.status_code == 403
    assert not Touchpoint.objects.exists()


# ----------------------------------------------------------------------------------------------------- read


def test_list_filters_by_status_channel_source_reference_customer_and_time(api, at_noon):
    customer = CustomerFactory()
    wanted = TouchpointFactory(
        customer=customer, status=S.FAILED, channel=MessageChannel.WECOM, source=TouchpointSource.API, source_ref="shop"
    )
    TouchpointFactory(customer=customer, status=S.FAILED, channel=MessageChannel.WECOM, source=TouchpointSource.API)
    TouchpointFactory(status=S.FAILED, channel=MessageChannel.WECOM, source=TouchpointSource.API, source_ref="shop")
    TouchpointFactory(customer=customer, status=S.SENT, channel=MessageChannel.WECOM, source_ref="shop")
    TouchpointFactory(customer=customer, created_at=NOON - datetime.timedelta(days=2), source_ref="shop")
    query = {
        "status": "failed",
        "channel": "wecom",
        "source": "api",
        "source_ref": "shop",
        "customer": customer.pk,
        "since": (NOON - datetime.timedelta(hours=1)).isoformat(),
    }

    response = api.get(URL, query)

    assert response.status_code == 200
    assert [row["id"] for row in response.data["results"]] == [wanted.pk]
    assert "decisions" not in response.data["results"][0]


def test_list_refuses_an_unknown_status(api):
    response = api.get(URL, {"status": "lost"})

    assert response.status_code == 400
    assert list(response.data["errors"]) == ["status"]


def test_a_rep_lists_only_their_own_customers_messages(rep_api, rep, other_rep):
    mine = TouchpointFactory(customer=CustomerFactory(owner=rep.staff))
    TouchpointFactory(customer=CustomerFactory(owner=other_rep.staff))

    response = rep_api.get(URL)

    assert [row["id"] for row in response.data["results"]] == [mine.pk]


def test_the_detail_has_the_status_reason_decisions_provider_code_and_times(api):
    touchpoint = failed(reason="provider_error", code="InvalidPhoneNumber", provider_response={"message": "bad"})

    response = api.get(f"{URL}{touchpoint.pk}/")

    data = response.data
    assert (data["status"], data["reason"], data["provider_code"]) == ("failed", "provider_error", "InvalidPhoneNumber")
    assert [d["step"] for d in data["decisions"]] == ["scheduled", "policy", "provider_error"]
    assert data["decisions"][-1]["code"] == "InvalidPhoneNumber"
    assert data["provider_response"] == {"message": "bad"}
    assert {"created_at", "scheduled_for", "due_at", "sent_at", "delivered_at", "attempts"} <= set(data)


def test_another_reps_message_is_not_found(rep_api, other_rep):
    theirs = TouchpointFactory(customer=CustomerFactory(owner=other_rep.staff))

    assert rep_api.get(f"{URL}{theirs.pk}/").status_code == 404
    assert rep_api.post(f"{URL}{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == S.SCHEDULED


def test_the_list_runs_a_fixed_number_of_queries(api, django_assert_num_queries):
    for _ in range(3):
        TouchpointFactory()
    api.get(URL)  # the token's last use is written once a while; not part of the budget
    with django_assert_num_queries(2):  # the token with its user, the page
        api.get(URL)
    for _ in range(20):
        TouchpointFactory(customer=None, group=CommunityGroupFactory())
    with django_assert_num_queries(2):
        response = api.get(URL)
    assert len(response.data["results"]) == 23


# --------------------------------------------------------------------------------------------------- cancel


def test_cancel_cancels_a_queued_message(api):
    touchpoint = TouchpointFactory(status=S.DEFERRED)

    response = api.post(f"{URL}{touchpoint.pk}/cancel/")

    assert response.status_code == 200
    assert (response.data["status"], response.data["reason"]) == ("cancelled", "cancelled")


def test_cancel_refuses_a_message_already_sent(api):
    touchpoint = TouchpointFactory(status=S.SENT)

    response = api.post(f"{URL}{touchpoint.pk}/cancel/")

    touchpoint.refresh_from_db()
    assert response.status_code == 409
    assert response.data["code"] == "not_queued"
    assert touchpoint.status == S.SENT


def test_the_schema_documents_the_touchpoints_api(api):
    response = api.get("/api/v1/schema/", {"format": "json"})

    paths = response.json()["paths"]
    assert set(paths["/api/v1/touchpoints/"]) == {"get", "post"}
    assert "/api/v1/touchpoints/{id}/cancel/" in paths
