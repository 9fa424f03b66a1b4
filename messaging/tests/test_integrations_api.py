"""Event subscriptions through the API (api/v1/subscriptions/, api/v1/deliveries/) and the pages (integrations/…)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.services import create_api_token
from customers.tests.factories import UserFactory
from messaging import integrations
from messaging.integrations import queueing
from messaging.models import Delivery, Subscription
from messaging.tests.test_integrations import SECRET, Receiver, pending_delivery, subscribe, verify

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_kicks(monkeypatch):
    monkeypatch.setattr(queueing, "kick_sender", lambda: True)


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def client_for(user) -> APIClient:
    client = APIClient()
    _token, key = create_api_token(name=f"{user.username}-token", user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# ------------------------------------------------------------------------------------------------ API: writes


def test_creating_a_subscription_generates_a_secret_shown_only_in_the_answer(api):
    answer = api.post(
        "/api/v1/subscriptions/",
        {"name": "ERP", "url": "https://erp.example.com/hooks", "kinds": ["tag.removed", "tag.added", "tag.added"]},
        format="json",
    )

    subscription = Subscription.objects.get()
    assert answer.status_code == 201
    assert answer.json() == {
        "id": subscription.pk, "name": "ERP", "url": "https://erp.example.com/hooks",
        "kinds": ["tag.added", "tag.removed"], "is_active": True,
        "created_at": answer.json()["created_at"], "secret": subscription.secret,
    }  # fmt: skip
    assert len(subscription.secret) == 64
    assert "secret" not in api.get(f"/api/v1/subscriptions/{subscription.pk}/").json()
    assert "secret" not in api.get("/api/v1/subscriptions/").json()["results"][0]


def test_a_given_secret_is_kept(api):
    answer = api.post(
        "/api/v1/subscriptions/",
        {"name": "ERP", "url": "http://10.0.0.5/hooks", "kinds": ["order.placed"], "secret": SECRET},
        format="json",
    )

    assert answer.status_code == 201
    assert (answer.json()["secret"], Subscription.objects.get().secret) == (SECRET, SECRET)


def test_invalid_subscriptions_are_refused_with_errors_by_field(api):
    answer = api.post(
        "/api/v1/subscriptions/",
        {"name": "", "url": "ftp://erp.example.com/", "kinds": ["tag.added", "customer.deleted"], "secret": "short"},
        format="json",
    )
    empty_kinds = api.post(
        "/api/v1/subscriptions/", {"name": "ERP", "url": "https://e.example.com/", "kinds": []}, format="json"
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "detail": "Invalid input.",
        "code": "invalid",
        "errors": {
            "name": ["This field may not be blank."],
            "url": ["Enter a valid URL."],
            "kinds": ["Unknown event kinds: customer.deleted."],
            "secret": ["A signing secret needs at least 16 characters."],
        },
    }
    assert (empty_kinds.status_code, empty_kinds.json()["errors"]) == (
        400,
        {"kinds": ["Choose at least one event kind."]},
    )
    assert Subscription.objects.count() == 0


def test_a_subscription_is_changed_in_part_and_its_secret_kept(api):
    subscription = subscribe("https://erp.example.com/hooks")

    answer = api.patch(
        f"/api/v1/subscriptions/{subscription.pk}/", {"kinds": ["segment.entered"], "is_active": False}, format="json"
    )
    refused = api.patch(f"/api/v1/subscriptions/{subscription.pk}/", {"url": "not a url"}, format="json")

    subscription.refresh_from_db()
    assert answer.status_code == 200
    assert (answer.json()["kinds"], answer.json()["is_active"]) == (["segment.entered"], False)
    assert (refused.status_code, refused.json()["errors"]) == (400, {"url": ["Enter a valid URL."]})
    assert (subscription.url, subscription.secret, subscription.kinds) == (
        "https://erp.example.com/hooks", SECRET, ["segment.entered"]
    )  # fmt: skip


def test_rotating_the_secret_answers_the_new_one_once(api):
    subscription = subscribe("https://erp.example.com/hooks")

    answer = api.post(f"/api/v1/subscriptions/{subscription.pk}/rotate-secret/")

    subscription.refresh_from_db()
    assert answer.status_code == 200
    assert answer.json() == {"secret": subscription.secret}
    assert subscription.secret != SECRET


def test_deleting_a_subscription_deletes_its_deliveries(api):
    subscription = subscribe("https://erp.example.com/hooks")
    pending_delivery(subscription)

    answer = api.delete(f"/api/v1/subscriptions/{subscription.pk}/")

    assert answer.status_code == 204
    assert (Subscription.objects.count(), Delivery.objects.count()) == (0, 0)


# --------------------------------------------------------------------------------------- API: deliveries


def test_deliveries_are_listed_newest_first_and_filtered_by_subscription_status_and_kind(api):
    erp, crm = subscribe("https://erp.example.com/"), subscribe("https://crm.example.com/")
    first = pending_delivery(erp, key="de:1")
    failed = pending_delivery(erp, key="de:2", kind="order.placed", status="failed", response_status=500)
    other = pending_delivery(crm, key="de:1")

    def ids(query: str) -> list[int]:
        answer = api.get(f"/api/v1/deliveries/{query}")
        assert answer.status_code == 200
        return [row["id"] for row in answer.json()["results"]]

    assert ids("") == [other.pk, failed.pk, first.pk]
    assert ids(f"?subscription={erp.pk}") == [failed.pk, first.pk]
    assert ids("?status=failed") == [failed.pk]
    assert ids("?kind=tag.added") == [other.pk, first.pk]
    assert api.get("/api/v1/deliveries/?status=lost").status_code == 400
    assert api.get(f"/api/v1/deliveries/{failed.pk}/").json()["response_status"] == 500


def test_replaying_a_delivery_queues_a_new_one_and_a_pending_one_is_refused(api):
    subscription = subscribe("https://erp.example.com/")
    done = pending_delivery(subscription, key="de:5", status="delivered")
    pending = pending_delivery(subscription, key="de:6")

    answer = api.post(f"/api/v1/deliveries/{done.pk}/replay/")
    refused = api.post(f"/api/v1/deliveries/{pending.pk}/replay/")

    replay = Delivery.objects.get(event_key="de:5~r1")
    assert answer.status_code == 202
    assert (answer.json()["id"], answer.json()["status"], answer.json()["payload"]) == (
        replay.pk, "pending", done.payload
    )  # fmt: skip
    assert refused.status_code == 409
    assert refused.json() == {
        "detail": "This delivery is still being sent; wait for its outcome.", "code": "delivery_pending"
    }  # fmt: skip
    assert Delivery.objects.count() == 3


def test_sending_a_test_event_answers_the_receivers_response(api, receiver):
    subscription = subscribe(receiver.url)
    receiver.answers = [(202, b"accepted")]

    with time_machine.travel(NOW, tick=False):
        answer = api.post(f"/api/v1/subscriptions/{subscription.pk}/test/")

    [(headers, body)] = receiver.requests
    assert answer.status_code == 200
    assert {key: answer.json()[key] for key in ("kind", "status", "attempts", "response_status", "response_body")} == {
        "kind": "subscription.test", "status": "delivered", "attempts": 1, "response_status": 202,
        "response_body": "accepted",
    }  # fmt: skip
    assert verify(headers, body)


# ------------------------------------------------------------------------------------------- API: who may


@pytest.mark.parametrize("role", [Role.SALES, Role.ANALYST])
def test_reps_and_analysts_find_no_subscriptions_nor_deliveries(role):
    subscription = subscribe("https://erp.example.com/")
    delivery = pending_delivery(subscription, status="failed")
    client = client_for(UserFactory(username="someone", role=role))

    answers = [
        client.get("/api/v1/subscriptions/"),
        client.get(f"/api/v1/subscriptions/{subscription.pk}/"),
        client.post("/api/v1/subscriptions/", {"name": "x", "url": "https://x.example.com/", "kinds": ["tag.added"]},
                    format="json"),
        client.post(f"/api/v1/subscriptions/{subscription.pk}/test/"),
        client.get("/api/v1/deliveries/"),
        client.post(f"/api/v1/deliveries/{delivery.pk}/replay/"),
    ]  # fmt: skip

    assert [answer.status_code for answer in answers] == [404] * 6
    assert (Subscription.objects.count(), Delivery.objects.count()) == (1, 1)


def test_an_admins_token_may_manage_subscriptions_and_anonymous_callers_may_not():
    admin_client = client_for(UserFactory(username="boss", role=Role.ADMIN))

    assert admin_client.get("/api/v1/subscriptions/").status_code == 200
    assert APIClient().get("/api/v1/subscriptions/").status_code == 401


# ---------------------------------------------------------------------------------------------------- pages


@pytest.fixture
def browser(client, operator):
    client.force_login(operator)
    return client


def test_the_list_page_shows_subscriptions_with_their_pending_and_failed_counts(browser, django_assert_num_queries):
    subscription = subscribe("https://erp.example.com/hooks")
    pending_delivery(subscription, key="de:1")
    pending_delivery(subscription, key="de:2", status="failed")
    subscribe("https://crm.example.com/hooks")

    with django_assert_num_queries(3):  # session, user, subscriptions with their counts
        page = browser.get(reverse("subscription-list"))

    assert page.status_code == 200
    assert page.content.decode().count('data-testid="subscription-row"') == 2
    assert [(s.pk, s.pending, s.failed) for s in page.context["subscriptions"] if s.pk == subscription.pk] == [
        (subscription.pk, 1, 1)
    ]


def test_creating_on_the_page_shows_the_generated_secret_once(browser):
    page = browser.post(
        reverse("subscription-create"),
        {"name": "ERP", "url": "https://erp.example.com/hooks", "kinds": ["tag.added", "order.placed"],
         "is_active": "on", "secret": ""},
    )  # fmt: skip

    subscription = Subscription.objects.get()
    assert page.status_code == 200
    assert page.context["new_secret"] == subscription.secret
    assert subscription.secret in page.content.decode()
    assert subscription.kinds == ["order.placed", "tag.added"]
    assert (
        subscription.secret not in browser.get(reverse("subscription-detail", args=[subscription.pk])).content.decode()
    )


def test_the_form_page_shows_field_errors_and_creates_nothing(browser):
    page = browser.post(reverse("subscription-create"), {"name": "ERP", "url": "javascript:alert(1)", "secret": "x"})

    assert page.status_code == 200
    assert set(page.context["form"].errors) == {"url", "kinds", "secret"}
    assert Subscription.objects.count() == 0


def test_editing_on_the_page_keeps_the_secret_when_left_empty(browser):
    subscription = subscribe("https://erp.example.com/hooks")
    form = browser.get(reverse("subscription-edit", args=[subscription.pk]))

    page = browser.post(
        reverse("subscription-edit", args=[subscription.pk]),
        {"name": "ERP 2", "url": "https://erp.example.com/v2", "kinds": ["customer.created"], "secret": ""},
    )

    subscription.refresh_from_db()
    assert form.status_code == 200
    assert 'value="tag.added"' in form.content.decode()
    assert form.context["form"].initial["kinds"] == ["tag.added"]
    assert SECRET not in form.content.decode()
    assert page.status_code == 302
    assert (subscription.name, subscription.url, subscription.kinds, subscription.is_active, subscription.secret) == (
        "ERP 2", "https://erp.example.com/v2", ["customer.created"], False, SECRET
    )  # fmt: skip


def test_the_detail_page_lists_deliveries_with_their_answers_and_filters_them_for_htmx(browser):
    subscription = subscribe("https://erp.example.com/hooks")
    pending_delivery(subscription, key="de:1", status="delivered", response_status=200, response_body="thanks")
    failed = pending_delivery(subscription, key="de:2", status="failed", response_status=500, response_body="boom")

    page = browser.get(reverse("subscription-detail", args=[subscription.pk]))
    fragment = browser.get(
        reverse("subscription-detail", args=[subscription.pk]), {"status": "failed"}, HTTP_HX_REQUEST="true"
    )

    html = page.content.decode()
    assert page.status_code == 200
    assert ("thanks" in html, "boom" in html) == (True, True)
    assert [row.pk for row in fragment.context["deliveries"]] == [failed.pk]
    assert "<html" not in fragment.content.decode()
    assert json.loads(fragment.context["deliveries"][0].payload_text) == failed.payload


def test_replaying_on_the_page_answers_the_new_row_for_htmx(browser):
    subscription = subscribe("https://erp.example.com/hooks")
    failed = pending_delivery(subscription, key="de:2", status="failed")

    row = browser.post(reverse("subscription-replay", args=[failed.pk]), HTTP_HX_REQUEST="true")
    refused = browser.post(reverse("subscription-replay", args=[row.context["delivery"].pk]), HTTP_HX_REQUEST="true")

    replay = Delivery.objects.get(event_key="de:2~r1")
    assert row.status_code == 200
    assert f'data-delivery="{replay.pk}"' in row.content.decode()
    assert (refused.status_code, refused["HX-Retarget"]) == (200, "#delivery-alert")
    assert "still being sent" in refused.content.decode()
    assert Delivery.objects.count() == 2


def test_the_test_button_sends_now_and_answers_the_row(browser, receiver):
    subscription = subscribe(receiver.url)

    row = browser.post(reverse("subscription-test", args=[subscription.pk]), HTTP_HX_REQUEST="true")

    assert row.status_code == 200
    assert row.context["delivery"].status == "delivered"
    assert len(receiver.requests) == 1


def test_pages_do_not_exist_for_reps(client, rep):
    subscription = subscribe("https://erp.example.com/hooks")
    delivery = pending_delivery(subscription, status="failed")
    client.force_login(rep)

    answers = [
        client.get(reverse("subscription-list")),
        client.get(reverse("subscription-create")),
        client.get(reverse("subscription-detail", args=[subscription.pk])),
        client.get(reverse("subscription-edit", args=[subscription.pk])),
        client.post(reverse("subscription-test", args=[subscription.pk])),
        client.post(reverse("subscription-rotate-secret", args=[subscription.pk])),
        client.post(reverse("subscription-delete", args=[subscription.pk])),
        client.post(reverse("subscription-replay", args=[delivery.pk])),
    ]

    assert [answer.status_code for answer in answers] == [404] * 8
    assert (Subscription.objects.get().secret, Delivery.objects.count()) == (SECRET, 1)


def test_deleting_on_the_page_removes_the_subscription(browser):
    subscription = subscribe("https://erp.example.com/hooks")

    page = browser.post(reverse("subscription-delete", args=[subscription.pk]))

    assert (page.status_code, page["Location"]) == (302, reverse("subscription-list"))
    assert Subscription.objects.count() == 0


def test_wanted_kinds_follow_api_changes(api):
    created = api.post(
        "/api/v1/subscriptions/", {"name": "ERP", "url": "https://e.example.com/", "kinds": ["task.due"]}, format="json"
    )
    before = integrations.wanted_kinds()

    api.patch(f"/api/v1/subscriptions/{created.json()['id']}/", {"is_active": False}, format="json")

    assert (before, integrations.wanted_kinds()) == (frozenset({"task.due"}), frozenset())
