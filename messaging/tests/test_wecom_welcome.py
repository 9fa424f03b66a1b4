"""The welcome fast path: an add-contact callback with a WelcomeCode makes one welcome touchpoint, sent first after
commit on its own queue (or inline when the broker is down), whatever the number of deliveries."""

import base64
import datetime
import json
import logging

import pytest
import redis
import time_machine
from django.conf import settings as django_settings
from kombu.exceptions import OperationalError

from customers.models import Customer, Staff
from customers.tasks import consume_domain_events
from messaging import tasks as messaging_tasks
from messaging.models import ChannelConfig, ConsoleMessage, MessageTemplate, Touchpoint, TouchpointStatus
from messaging.tests.test_wecom_callbacks import AT, CORP, KEY, TOKEN, added, deliver
from messaging.wecom.callback_tasks import fetch_contact, send_welcome
from messaging.wecom.welcome import WELCOME_QUEUE, default_welcome_text

pytestmark = [pytest.mark.django_db, pytest.mark.urls("messaging.wecom.callback_urls")]


@pytest.fixture(autouse=True)
def wecom(settings):
    settings.MESSAGING_BACKENDS = {}  # the console backend, the default
    settings.MESSAGING_CHANNELS = {
        **settings.MESSAGING_CHANNELS,
        "wecom": {"corp_id": CORP, "token": TOKEN, "encoding_aes_key": KEY, "secret": ""},
    }


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(AT, tick=False) as traveller:
        yield traveller


@pytest.fixture
def broker():
    """The test Redis the Celery broker uses, with the welcome queue emptied before and after."""
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.delete(WELCOME_QUEUE)
    yield client
    client.delete(WELCOME_QUEUE)
    client.close()


@pytest.fixture
def broker_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(send_welcome, "apply_async", refuse)


@pytest.fixture
def quiet_follow_ups(monkeypatch):
    """Keep the profile fetch and the other after-commit kicks off the broker."""
    monkeypatch.setattr(fetch_contact, "apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr(consume_domain_events, "apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr(messaging_tasks.dispatch, "apply_async", lambda *args, **kwargs: None)


def queued_welcomes(broker):
    """(task name, args, queue) of each message waiting on the welcome queue."""
    queued = []
    for raw in broker.lrange(WELCOME_QUEUE, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        queued.append((message["headers"]["task"], args, message["properties"]["delivery_info"]["routing_key"]))
    return queued


def test_a_new_contact_with_a_welcome_code_gets_one_transactional_welcome_touchpoint(
    client, broker, quiet_follow_ups, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))

    touchpoint = Touchpoint.objects.get()
    customer, staff = Customer.objects.get(), Staff.objects.get()
    assert (touchpoint.customer_id, touchpoint.sender_staff_id, touchpoint.channel) == (customer.pk, staff.pk, "wecom")
    assert (touchpoint.kind, touchpoint.source, touchpoint.source_ref) == ("transactional", "system", "wecom:welcome")
    assert touchpoint.idempotency_key == "wecom-welcome:WELCOME_1"
    assert touchpoint.context == {"welcome_code": "WELCOME_1"}
    assert touchpoint.content == {"format": "text", "text": default_welcome_text()}
    assert touchpoint.template_id is None
    assert touchpoint.expires_at == AT + datetime.timedelta(seconds=20)
    assert list(customer.touchpoints.all()) == [touchpoint]  # part of the customer's message history
    assert queued_welcomes(broker) == [("messaging.wecom_callbacks.send_welcome", [touchpoint.pk], WELCOME_QUEUE)]


def test_the_welcome_worker_dispatches_it_through_the_console_backend(
    client, broker, quiet_follow_ups, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))
    ((_name, args, _queue),) = queued_welcomes(broker)

    status = send_welcome.apply(args=args).get()

    touchpoint = Touchpoint.objects.get()
    assert (status, touchpoint.status, touchpoint.attempts) == ("sent", TouchpointStatus.SENT, 1)
    assert [d["step"] for d in touchpoint.decisions] == ["scheduled", "policy", "send"]
    message = ConsoleMessage.objects.get()
    assert (message.touchpoint_id, message.channel, message.recipient) == (touchpoint.pk, "wecom", "wmNEW")
    assert (message.content["text"], message.content["context"]) == (
        default_welcome_text(), {"welcome_code": "WELCOME_1"})  # fmt: skip


def test_with_the_broker_down_the_welcome_is_dispatched_inline_before_the_answer(
    client, broker_down, quiet_follow_ups, django_capture_on_commit_callbacks, caplog
):
    with (
        caplog.at_level(logging.WARNING, logger="messaging.wecom.welcome"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))

    touchpoint = Touchpoint.objects.get()
    assert touchpoint.status == TouchpointStatus.SENT
    assert list(ConsoleMessage.objects.values_list("recipient", "idempotency_key")) == [
        ("wmNEW", "wecom-welcome:WELCOME_1")
    ]
    assert [r.message for r in caplog.records if r.name == "messaging.wecom.welcome"] == ["wecom.welcome_broker_down"]


def test_the_same_callback_delivered_twice_sends_one_welcome(
    client, broker_down, quiet_follow_ups, django_capture_on_commit_callbacks
):
    for _delivery in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))

    assert list(Touchpoint.objects.values_list("idempotency_key", "status", "attempts")) == [
        ("wecom-welcome:WELCOME_1", "sent", 1)
    ]
    assert ConsoleMessage.objects.count() == 1


def test_a_repeated_delivery_queues_no_second_send_once_the_welcome_went_out(
    client, broker, quiet_follow_ups, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))
    ((_name, args, _queue),) = queued_welcomes(broker)
    send_welcome.apply(args=args)
    broker.delete(WELCOME_QUEUE)

    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))

    assert queued_welcomes(broker) == []
    assert Touchpoint.objects.count() == 1


def test_the_welcome_leaves_before_any_other_after_commit_work(client, monkeypatch, django_capture_on_commit_callbacks):
    order: list[str] = []
    monkeypatch.setattr(send_welcome, "apply_async", lambda *a, **kw: order.append("welcome"))
    monkeypatch.setattr(fetch_contact, "apply_async", lambda *a, **kw: order.append("profile fetch"))
    monkeypatch.setattr(consume_domain_events, "apply_async", lambda *a, **kw: order.append("domain events"))
    monkeypatch.setattr(messaging_tasks.dispatch, "apply_async", lambda *a, **kw: order.append("dispatch"))

    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))

    assert order[0] == "welcome"
    assert order.index("profile fetch") > 0
    assert set(order) <= {"welcome", "profile fetch", "domain events", "dispatch"}


def test_a_welcome_not_sent_within_twenty_seconds_expires_unsent(
    client, broker, quiet_follow_ups, frozen, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))
    ((_name, args, _queue),) = queued_welcomes(broker)
    frozen.shift(datetime.timedelta(seconds=20))

    send_welcome.apply(args=args)

    touchpoint = Touchpoint.objects.get()
    assert (touchpoint.status, touchpoint.reason) == (TouchpointStatus.EXPIRED, "expired")
    assert ConsoleMessage.objects.count() == 0


def test_the_configured_welcome_template_is_used(client, broker, quiet_follow_ups):
    template = MessageTemplate.objects.create(name="欢迎语", channel="wecom", body="您好 {{ customer.name }}")
    ChannelConfig.objects.create(channel="wecom", options={"welcome_template_id": template.pk})

    deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))

    touchpoint = Touchpoint.objects.get()
    assert (touchpoint.template_id, touchpoint.content) == (template.pk, {})


def test_the_configured_welcome_text_replaces_the_default(client, broker, quiet_follow_ups):
    ChannelConfig.objects.create(channel="wecom", options={"welcome_text": "欢迎加入！"})

    deliver(client, added("lisi", "wmNEW", welcome="WELCOME_1"))

    assert Touchpoint.objects.get().content == {"format": "text", "text": "欢迎加入！"}


def test_an_add_without_a_welcome_code_schedules_nothing(client):
    deliver(client, added("lisi", "wmNEW"))

    assert Touchpoint.objects.count() == 0


def test_a_half_add_with_a_welcome_code_is_welcomed_too(client, broker, quiet_follow_ups):
    deliver(client, added("lisi", "wmNEW", welcome="WELCOME_H", half=True))

    assert Touchpoint.objects.get().idempotency_key == "wecom-welcome:WELCOME_H"


def test_the_welcome_reaches_wecom_through_its_backend_within_the_window(
    client, settings, broker_down, quiet_follow_ups, django_capture_on_commit_callbacks
):
    from messaging.wecom.fake import FakeWeCom

    with FakeWeCom(corp_id=CORP) as fake:
        code = fake.issue_welcome_code("lisi", "wmNEW")
        settings.MESSAGING_BACKENDS = {"wecom": "messaging.backends.wecom.WeComBackend"}
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**settings.MESSAGING_CHANNELS["wecom"], **fake.config()},
        }

        with django_capture_on_commit_callbacks(execute=True):
            deliver(client, added("lisi", "wmNEW", welcome=code))
        with django_capture_on_commit_callbacks(execute=True):
            deliver(client, added("lisi", "wmNEW", welcome=code))

        assert [(w["welcome_code"], w["external_userid"]) for w in fake.welcomes] == [(code, "wmNEW")]
        assert len(fake.calls_to("externalcontact/send_welcome_msg")) == 1
    assert Touchpoint.objects.get().status == TouchpointStatus.SENT
