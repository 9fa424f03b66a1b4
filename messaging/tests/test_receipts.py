"""Delivery receipts from the SMS gateway and from webhook consumers: signed, forward-only, tolerant of ids we
do not know."""

import datetime
import json
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from messaging.backends.sms import sign_receipt
from messaging.backends.webhook import sign
from messaging.fakes import FakeSmsGateway, FakeWebhookReceiver
from messaging.models import Touchpoint, TouchpointStatus
from messaging.services.dispatch import dispatch_due
from messaging.services.scheduling import schedule_touchpoint

pytestmark = pytest.mark.django_db
S = TouchpointStatus
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
SMS_URL = "/messaging/receipts/sms"
WEBHOOK_URL = "/messaging/receipts/webhook"


@pytest.fixture(autouse=True)
def at_10am():
    with time_machine.travel(MONDAY_10AM, tick=False) as traveller:
        yield traveller


@pytest.fixture
def gateway():
    with FakeSmsGateway(app_key="app-1", app_secret="smssec") as server:
        yield server


@pytest.fixture
def receiver():
    with FakeWebhookReceiver(secret="whsec") as server:
        yield server


@pytest.fixture(autouse=True)
def channels(settings, gateway, receiver):
    settings.MESSAGING_BACKENDS = {
        "sms": "messaging.backends.sms.SmsGatewayBackend",
        "webhook": "messaging.backends.webhook.WebhookBackend",
    }
    settings.MESSAGING_CHANNELS = {
        "sms": {"url": gateway.url, "app_key": "app-1", "app_secret": "smssec", "sign_name": "好店"},
        "webhook": {"url": receiver.url, "secret": "whsec"},
    }


@pytest.fixture
def customer():
    return CustomerFactory(name="王芳", phone="13800000001")


def touchpoint(key, *, channel="sms", status=S.SENT, message_id=""):
    return Touchpoint.objects.create(
        customer=CustomerFactory(),
        channel=channel,
        idempotency_key=key,
        status=status,
        provider_message_id=message_id,
        scheduled_for=timezone.now(),
        due_at=timezone.now(),
    )


def post(client, url, body_and_headers):
    body, headers = body_and_headers
    return client.post(url, body, content_type="application/json", headers=headers)


def test_a_dispatched_sms_is_marked_delivered_by_the_gateways_receipt(client, gateway, customer):
    sent = schedule_touchpoint(channel="sms", customer=customer, idempotency_key="k1", content={"text": "您好"})
    dispatch_due()
    sent.refresh_from_db()

    response = post(client, SMS_URL, gateway.receipt(sent.provider_message_id, report_time="2026-11-23 10:00:05"))

    sent.refresh_from_db()
    assert (response.status_code, response.json()) == (200, {"updated": 1})
    assert (sent.status, sent.provider_message_id) == (S.DELIVERED, "sms-00000001")
    assert sent.delivered_at == MONDAY_10AM + datetime.timedelta(seconds=5)  # the gateway's local time
    assert sent.provider_response["receipt"]["status"] == "delivered"
    assert gateway.acted_on == {"k1": 1}


def test_a_gateway_posting_receipts_by_itself_over_http_marks_the_sms_delivered(live_server, settings, customer):
    with FakeSmsGateway(
        app_key="app-1", app_secret="smssec", receipt_url=live_server.url + SMS_URL, auto_receipt=True
    ) as gateway:
        settings.MESSAGING_CHANNELS = {"sms": {"url": gateway.url, "app_key": "app-1", "app_secret": "smssec"}}
        sent = schedule_touchpoint(channel="sms", customer=customer, idempotency_key="k1", content={"text": "您好"})
        dispatch_due()
        assert gateway.wait_for_receipts(1, timeout=10)

    sent.refresh_from_db()
    assert gateway.receipts_posted == [("sms-00000001", 200)]
    assert sent.status == S.DELIVERED


def test_a_dispatched_webhook_touchpoint_reaches_the_receiver_once_and_its_report_is_applied(
    client, receiver, customer
):
    sent = schedule_touchpoint(channel="webhook", customer=customer, idempotency_key="k1", content={"text": "您好"})
    dispatch_due()
    sent.refresh_from_db()

    response = post(client, WEBHOOK_URL, receiver.receipt("k1", "read"))

    sent.refresh_from_db()
    [request] = receiver.requests
    assert (request.body["customer_id"], request.body["content"]["text"]) == (customer.pk, "您好")
    assert (response.json(), sent.status, sent.provider_message_id) == ({"updated": 1}, S.READ, "wh-1")
    assert receiver.acted_on == {"k1": 1}


def test_a_receipt_arriving_before_the_message_id_was_recorded_is_matched_by_request_id(client, gateway):
    sent = touchpoint("k1")
    gateway.messages["sms-00000009"] = {"request_id": "k1", "phone": "13800000001"}

    response = post(client, SMS_URL, gateway.receipt("sms-00000009"))

    sent.refresh_from_db()
    assert (response.json(), sent.status) == ({"updated": 1}, S.DELIVERED)


def test_a_failed_sms_receipt_fails_the_touchpoint_with_the_gateways_code(client, gateway):
    sent = touchpoint("k1", message_id="sms-1")

    response = post(client, SMS_URL, gateway.receipt("sms-1", status="FAILED", error_code="MK:0001"))

    sent.refresh_from_db()
    assert (response.json(), sent.status, sent.provider_code) == ({"updated": 1}, S.FAILED, "MK:0001")


def test_receipts_never_move_a_touchpoint_back(client, gateway, receiver):
    delivered = touchpoint("k1", status=S.DELIVERED, message_id="sms-1")
    clicked = touchpoint("k2", channel="webhook", status=S.CLICKED)

    late_failure = post(client, SMS_URL, gateway.receipt("sms-1", status="FAILED", error_code="UNDELIV"))
    late_read = post(client, WEBHOOK_URL, receiver.receipt("k2", "read"))

    delivered.refresh_from_db()
    clicked.refresh_from_db()
    assert (late_failure.json(), late_read.json()) == ({"updated": 0}, {"updated": 0})
    assert (delivered.status, delivered.provider_code, clicked.status) == (S.DELIVERED, "", S.CLICKED)


def test_webhook_reports_move_a_touchpoint_to_delivered_read_and_clicked(client, receiver, at_10am):
    sent = touchpoint("k1", channel="webhook")

    answers = []
    for status in ("delivered", "read", "clicked"):
        at_10am.shift(datetime.timedelta(minutes=1))
        answers.append(post(client, WEBHOOK_URL, receiver.receipt("k1", status)).json())

    sent.refresh_from_db()
    assert answers == [{"updated": 1}] * 3
    assert sent.status == S.CLICKED
    assert [sent.delivered_at, sent.read_at, sent.clicked_at] == [
        MONDAY_10AM + datetime.timedelta(minutes=n) for n in (1, 2, 3)
    ]


def test_a_webhook_report_can_batch_updates_with_their_own_times(client, receiver):
    first, second = touchpoint("k1", channel="webhook"), touchpoint("k2", channel="webhook")
    body = json.dumps(
        {
            "updates": [
                {"idempotency_key": "k1", "status": "DELIVERED", "at": "2026-11-23T01:59:00Z"},
                {"idempotency_key": "k2", "status": "failed", "code": "mailbox_gone"},
            ]
        }
    ).encode()

    response = post(client, WEBHOOK_URL, (body, signed_webhook_headers(body, secret="whsec")))

    first.refresh_from_db()
    second.refresh_from_db()
    assert response.json() == {"updated": 2}
    assert (first.status, first.delivered_at) == (S.DELIVERED, MONDAY_10AM - datetime.timedelta(minutes=1))
    assert (second.status, second.provider_code) == (S.FAILED, "mailbox_gone")


def signed_webhook_headers(body, *, secret):
    timestamp = str(int(MONDAY_10AM.timestamp()))
    return {"X-SCRM-Timestamp": timestamp, "X-SCRM-Signature": sign(secret, timestamp, body)}


def test_unknown_ids_are_acknowledged_with_a_count_of_zero(client, gateway, receiver):
    sms_touchpoint = touchpoint("sms-key", message_id="sms-1")

    unknown_sms = post(client, SMS_URL, gateway.receipt("sms-404"))
    other_channel = post(client, WEBHOOK_URL, receiver.receipt("sms-key", "delivered"))

    sms_touchpoint.refresh_from_db()
    assert (unknown_sms.status_code, unknown_sms.json()) == (200, {"updated": 0})
    assert (other_channel.status_code, other_channel.json()) == (200, {"updated": 0})
    assert sms_touchpoint.status == S.SENT


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body, headers: (body, {**headers, "X-Sms-Signature": "0" * 64}), id="wrong signature"),
        pytest.param(lambda body, headers: (body.replace(b"DELIVERED", b"FAILED"), headers), id="changed body"),
        pytest.param(lambda body, headers: (body, {**headers, "X-Sms-Nonce": "other"}), id="changed nonce"),
        pytest.param(
            lambda body, headers: (body, {k: v for k, v in headers.items() if k != "X-Sms-Signature"}), id="unsigned"
        ),
    ],
)
def test_an_sms_receipt_with_a_bad_signature_is_refused_and_changes_nothing(client, gateway, tamper):
    sent = touchpoint("k1", message_id="sms-1")

    response = post(client, SMS_URL, tamper(*gateway.receipt("sms-1")))

    sent.refresh_from_db()
    assert (response.status_code, response.json()["code"], sent.status) == (403, "invalid_signature", S.SENT)


def test_a_receipt_signed_more_than_five_minutes_ago_is_refused(client, gateway, receiver, at_10am):
    sent = touchpoint("k1", channel="webhook")
    sms_sent = touchpoint("k2", message_id="sms-1")
    webhook_receipt, sms_receipt = receiver.receipt("k1", "delivered"), gateway.receipt("sms-1")
    at_10am.shift(datetime.timedelta(minutes=5, seconds=1))

    responses = [post(client, WEBHOOK_URL, webhook_receipt), post(client, SMS_URL, sms_receipt)]

    sent.refresh_from_db()
    sms_sent.refresh_from_db()
    assert [r.status_code for r in responses] == [403, 403]
    assert (sent.status, sms_sent.status) == (S.SENT, S.SENT)


def test_a_webhook_report_signed_with_another_secret_is_refused(client):
    sent = touchpoint("k1", channel="webhook")
    body = json.dumps({"updates": [{"idempotency_key": "k1", "status": "read"}]}).encode()

    response = post(client, WEBHOOK_URL, (body, signed_webhook_headers(body, secret="guess")))

    sent.refresh_from_db()
    assert (response.status_code, sent.status) == (403, S.SENT)


def test_a_malformed_report_is_400_with_field_errors(client):
    sent = touchpoint("k1", channel="webhook")
    body = json.dumps({"updates": [{"idempotency_key": "k1", "status": "read"}, {"status": "opened"}]}).encode()

    response = post(client, WEBHOOK_URL, (body, signed_webhook_headers(body, secret="whsec")))

    sent.refresh_from_db()
    assert response.status_code == 400
    assert response.json()["errors"] == {  # by the failing item's index
        "1": {"idempotency_key": ["This field is required."], "status": ['"opened" is not a valid choice.']},
    }
    assert sent.status == S.SENT  # nothing of a malformed request is applied


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (b"not json", {"non_field_errors": ["The body is not JSON."]}),
        (b"[]", {"non_field_errors": ["Expected 1 to 1000 items."]}),
        (b'[{"status": "DELIVERED"}]', {"0": {"message_id": ["Give a message id or a request id."]}}),
    ],
)
def test_a_malformed_sms_receipt_is_400(client, body, errors):
    headers = {"X-Sms-Timestamp": str(int(MONDAY_10AM.timestamp())), "X-Sms-Nonce": "n1"}
    headers["X-Sms-Signature"] = sign_receipt("smssec", timestamp=headers["X-Sms-Timestamp"], nonce="n1", body=body)

    response = post(client, SMS_URL, (body, headers))

    assert (response.status_code, response.json()["errors"]) == (400, errors)


def test_receipts_refuse_everything_while_the_channel_has_no_secret(client, settings, gateway):
    settings.MESSAGING_CHANNELS = {}
    touchpoint("k1", message_id="sms-1")

    response = post(client, SMS_URL, gateway.receipt("sms-1"))

    assert response.status_code == 403
    assert Touchpoint.objects.get().status == S.SENT


def test_receipt_endpoints_answer_only_post(client):
    assert [
        client.get(reverse(name)).status_code for name in ("messaging-receipt-sms", "messaging-receipt-webhook")
    ] == [
        405,
        405,
    ]
