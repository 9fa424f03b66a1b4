"""The WeCom sandbox, end to end: the page's actions drive the fake WeCom and POST real, encrypted callbacks over
HTTP to a live server; the welcome goes out through the WeCom backend to the fake once; a mass send waits for the
staff member's confirmation, and after it the poller delivers it. Only operators, only in sandbox mode."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from accounts.models import Role
from customers.models import Customer, GroupMembership, Identity, Relationship
from customers.tasks import consume_domain_events
from customers.tests.factories import ChannelFactory, UserFactory
from messaging import tasks as messaging_tasks
from messaging.models import Touchpoint, TouchpointStatus
from messaging.services.dispatch import dispatch_due
from messaging.wecom.callback_tasks import fetch_contact, send_welcome, sync_group_chat
from messaging.wecom.fake import FakeWeCom
from scrm.testing import free_port

S = TouchpointStatus
TOKEN = "sandboxtoken"
KEY = "SCRMsandboxEncodingAESKeyForDemos0123456789"
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
WELCOME_API = "externalcontact/send_welcome_msg"
live = pytest.mark.django_db(transaction=True)


@pytest.fixture
def daytime():
    """Outside quiet hours; ticking, because the fake and the live server keep real clocks of their own."""
    with time_machine.travel(MONDAY_10AM, tick=True):
        yield


@pytest.fixture
def fake(settings):
    with FakeWeCom(corp_id="wwfakecorp", secret="fake-secret") as server:
        settings.WECOM_SANDBOX = True
        settings.MESSAGING_BACKENDS = {"wecom": "messaging.backends.wecom.WeComBackend"}
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**server.config(), "token": TOKEN, "encoding_aes_key": KEY},
        }
        yield server


@pytest.fixture
def platform(fake, live_server, settings, monkeypatch):
    """The fake WeCom calling back the live server; the welcome worker runs each queued welcome at once, the
    other after-commit kicks (profile fetch, domain events, dispatch) stay off the broker."""
    settings.WECOM_SANDBOX_SITE_URL = live_server.url
    monkeypatch.setattr(send_welcome, "apply_async", lambda args, **options: send_welcome.apply(args=args))
    for task in (fetch_contact, sync_group_chat, consume_domain_events, messaging_tasks.dispatch):
        monkeypatch.setattr(task, "apply_async", lambda *args, **kwargs: None)
    return fake


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def act(client, action, **data):
    return client.post(reverse("wecom-sandbox-action", args=[action]), data)


def flashed(response):
    """The message this action flashed (earlier actions' messages, never displayed, come before it)."""
    return [str(message) for message in response.wsgi_request._messages][-1]


def add_contact(client, **data):
    response = act(client, "contact-added", **{"userid": "zhangsan", "name": "Lily", **data})
    assert response.status_code == 302
    return Identity.objects.get(kind="wecom").value


# --------------------------------------------------------------------------------------------- end to end


@live
def test_a_simulated_add_creates_the_customer_and_the_fake_receives_one_welcome(platform, operator_client):
    channel = ChannelFactory(code="store-01")

    external_userid = add_contact(operator_client, state="store-01")
    dispatch_due()  # the regular dispatch afterwards finds nothing left to send

    customer = Customer.objects.get()
    relationship = Relationship.objects.get()
    assert (customer.source_channel_id, customer.owner.wecom_userid) == (channel.pk, "zhangsan")
    assert (relationship.state, relationship.status) == ("store-01", "active")
    assert [(w["external_userid"], w["text"]["content"]) for w in platform.welcomes] == [
        (external_userid, Touchpoint.objects.get().content["text"])
    ]
    assert len(platform.calls_to(WELCOME_API)) == 1
    welcome = Touchpoint.objects.get()
    assert (welcome.status, welcome.customer_id, welcome.source_ref) == (S.SENT, customer.pk, "wecom:welcome")


@live
def test_a_mass_send_waits_for_the_confirmation_and_is_delivered_after_the_poll(platform, operator_client, daytime):
    external_userid = add_contact(operator_client)
    customer = Customer.objects.get()

    act(operator_client, "mass-send", customers=[customer.pk], text="春季新品到店")
    dispatch_due()  # the worker hands it to WeCom
    touchpoint = Touchpoint.objects.exclude(source_ref="wecom:welcome").get()
    assert touchpoint.status == S.AWAITING_CONFIRMATION
    msgid = touchpoint.provider_message_id

    act(operator_client, "confirm", msgid=msgid)
    touchpoint.refresh_from_db()
    assert touchpoint.status == S.AWAITING_CONFIRMATION  # WeCom delivered it; we learn it from the poller
    polled = act(operator_client, "poll")

    touchpoint.refresh_from_db()
    assert touchpoint.status == S.DELIVERED
    assert flashed(polled) == "Polled 1 mass sends: 2 status changes, 0 errors."
    assert platform.mass_sends[msgid].sender == "zhangsan"
    assert platform.deliveries[external_userid] == 2  # the welcome and the mass send


@live
def test_a_customer_deleting_the_staff_member_ends_the_relationship(platform, operator_client):
    external_userid = add_contact(operator_client)

    act(operator_client, "customer-deleted-staff", userid="zhangsan", external_userid=external_userid)

    assert Relationship.objects.get().status == "deleted_by_customer"
    assert external_userid not in platform.follows["zhangsan"]  # the platform forgot the pair too


@live
def test_a_customer_joining_a_group_becomes_a_member(platform, operator_client):
    external_userid = add_contact(operator_client)

    act(operator_client, "group-joined", chat_id="wrGroup01", owner="zhangsan", external_userid=external_userid)

    assert external_userid in platform.groups["wrGroup01"]["members"]
    membership = GroupMembership.objects.get()
    assert (membership.group.chat_id, membership.customer_id, membership.left_at) == (
        "wrGroup01", Customer.objects.get().pk, None)  # fmt: skip


@live
def test_the_page_shows_what_the_fake_received(platform, operator_client):
    external_userid = add_contact(operator_client)

    page = operator_client.get(reverse("wecom-sandbox"))
    flow = operator_client.get(reverse("wecom-sandbox"), headers={"HX-Request": "true"})

    assert [w["external_userid"] for w in page.context["fake"]["welcomes"]] == [external_userid]
    assert [c["external_userid"] for c in page.context["contacts"]] == [external_userid]
    assert flow.templates[0].name == "messaging/wecom/sandbox_flow.html"
    assert [t.status for t in flow.context["touchpoints"]] == [S.SENT]


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.django_db
def test_a_fake_that_is_not_running_is_reported_and_nothing_is_created(fake, operator_client, settings):
    settings.MESSAGING_CHANNELS = {
        **settings.MESSAGING_CHANNELS,
        "wecom": {**settings.MESSAGING_CHANNELS["wecom"], "api_base": f"http://127.0.0.1:{free_port()}"},
    }

    response = act(operator_client, "contact-added", userid="zhangsan")

    assert response.status_code == 302
    assert flashed(response).startswith("The fake WeCom at http://127.0.0.1:")
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_the_sandbox_is_not_found_when_sandbox_mode_is_off(fake, operator_client, settings):
    settings.WECOM_SANDBOX = False

    page = operator_client.get(reverse("wecom-sandbox"))
    action = act(operator_client, "contact-added", userid="zhangsan")

    assert (page.status_code, action.status_code) == (404, 404)
    assert fake.calls == []
    assert fake.contacts == {}


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.SALES, Role.ANALYST])
def test_only_operators_and_admins_may_play_the_platform(fake, client, role):
    client.force_login(UserFactory(username="someone", role=role))

    page = client.get(reverse("wecom-sandbox"))
    action = act(client, "contact-added", userid="zhangsan")

    assert (page.status_code, action.status_code) == (403, 403)
    assert fake.contacts == {}
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_confirming_a_mass_send_that_is_not_pending_is_not_found(fake, operator_client):
    response = act(operator_client, "confirm", msgid="msg-unknown")

    assert response.status_code == 404
