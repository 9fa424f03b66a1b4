"""The webhook, SMS gateway and email backends against real local servers (messaging/fakes): signatures, one
delivery per idempotency key (J28), temporary versus permanent errors (J38) and batches where one recipient fails
(J27)."""

import datetime
import socket

import pytest
import time_machine
from django.core import mail

from messaging.backends.base import Outcome, OutgoingMessage
from messaging.backends.email import EmailBackend, message_id_for
from messaging.backends.sms import SmsGatewayBackend, canonical_string, sign_params
from messaging.backends.webhook import WebhookBackend, is_valid_signature, sign
from messaging.fakes import FakeSmsGateway, FakeSmtpServer, FakeWebhookReceiver, spawn

NOON = datetime.datetime(2026, 11, 23, 4, 0, tzinfo=datetime.UTC)
T = Outcome.TEMPORARY_ERROR
P = Outcome.PERMANENT_ERROR


def message(key, recipient="7", *, channel="webhook", content=None, touchpoint_id=1):
    return OutgoingMessage(
        touchpoint_id=touchpoint_id,
        idempotency_key=key,
        channel=channel,
        kind="marketing",
        content=content or {"format": "text", "text": "您好"},
        recipient=recipient,
        customer_id=7,
    )


@pytest.fixture
def receiver():
    with FakeWebhookReceiver(secret="whsec") as server:
        yield server


@pytest.fixture
def webhook(receiver):
    backend = WebhookBackend(channel="webhook", config={"url": receiver.url, "secret": "whsec"})
    yield backend
    backend.close()


@pytest.fixture
def short_timeout(settings):
    settings.MESSAGING_REQUEST_TIMEOUT = 0.2


# Webhook


def test_webhook_posts_the_signed_payload_with_the_idempotency_key(receiver, webhook):
    with time_machine.travel(NOON, tick=False):
        result = webhook.send(message("k1", content={"format": "text", "text": "您好"}, touchpoint_id=42))

    assert (result.outcome, result.provider_code, result.provider_message_id) == (Outcome.SENT, "200", "wh-1")
    [request] = receiver.requests
    assert request.headers["Idempotency-Key"] == "k1"
    assert request.headers["X-SCRM-Timestamp"] == str(int(NOON.timestamp()))
    assert request.body == {
        "id": 42,
        "idempotency_key": "k1",
        "customer_id": 7,
        "channel": "webhook",
        "kind": "marketing",
        "content": {"format": "text", "text": "您好"},
        "sent_at": "2026-11-23T04:00:00+00:00",
    }
    assert receiver.rejected == 0


def test_webhook_called_twice_with_one_key_is_acted_on_once_J28(receiver, webhook):
    first = webhook.send(message("k1"))
    [second] = webhook.send_many([message("k1")])

    assert (first.outcome, second.outcome) == (Outcome.SENT, Outcome.SENT)
    assert first.provider_message_id == second.provider_message_id == "wh-1"
    assert (receiver.seen["k1"], receiver.acted_on["k1"]) == (2, 1)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_webhook_5xx_and_429_are_temporary_J38(receiver, webhook, status):
    receiver.fail_next(status=status)

    result = webhook.send(message("k1"))

    assert (result.outcome, result.provider_code) == (T, str(status))
    assert receiver.acted_on == {}


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_webhook_other_4xx_are_permanent_keeping_the_status_J38(receiver, webhook, status):
    receiver.fail_next(status=status)

    result = webhook.send(message("k1"))

    assert (result.outcome, result.provider_code) == (P, str(status))
    assert receiver.acted_on == {}


def test_webhook_timeout_is_temporary_and_the_retry_is_acted_on_once(short_timeout, receiver):
    backend = WebhookBackend(channel="webhook", config={"url": receiver.url, "secret": "whsec"})
    receiver.delay_next(seconds=5)  # the receiver acts, but its answer comes too late

    timed_out = backend.send(message("k1"))
    retried = backend.send(message("k1"))
    backend.close()

    assert (timed_out.outcome, timed_out.provider_code) == (T, "ReadTimeout")
    assert (retried.outcome, retried.provider_message_id) == (Outcome.SENT, "wh-1")
    assert (receiver.seen["k1"], receiver.acted_on["k1"]) == (2, 1)


def test_webhook_to_a_closed_port_is_temporary(short_timeout):
    with FakeWebhookReceiver(secret="whsec") as gone:
        url = gone.url
    backend = WebhookBackend(channel="webhook", config={"url": url, "secret": "whsec"})

    result = backend.send(message("k1"))
    backend.close()

    assert (result.outcome, result.provider_code) == (T, "ConnectError")


def test_webhook_signed_with_another_secret_is_refused_by_the_receiver(receiver):
    backend = WebhookBackend(channel="webhook", config={"url": receiver.url, "secret": "not-the-secret"})

    result = backend.send(message("k1"))
    backend.close()

    assert (result.outcome, result.provider_code) == (P, "401")
    assert (receiver.rejected, receiver.acted_on) == (1, {})


def test_webhook_without_url_or_secret_fails_permanently_without_a_request(receiver):
    backend = WebhookBackend(channel="webhook", config={"url": receiver.url})

    result = backend.send(message("k1"))

    assert (result.outcome, result.provider_code) == (P, "not_configured")
    assert list(receiver.requests) == []


def test_webhook_batch_keeps_input_order_and_one_permanent_failure_leaves_the_others_J27(receiver, webhook):
    keys = [f"k{n:02}" for n in range(40)]
    receiver.fail_key("k07", status=410)
    receiver.fail_key("k08", status=503)

    results = webhook.send_many([message(key, touchpoint_id=n) for n, key in enumerate(keys)])

    assert [r.outcome for r in results] == [Outcome.SENT] * 7 + [P, T] + [Outcome.SENT] * 31
    assert (results[7].provider_code, results[8].provider_code) == ("410", "503")
    assert {r.provider_message_id for r in results[:7] + results[9:]} == {f"wh-{n}" for n in range(1, 39)}
    assert dict(receiver.seen) == dict.fromkeys(keys, 1)
    assert dict(receiver.acted_on) == {key: 1 for key in keys if key not in {"k07", "k08"}}


def test_webhook_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"id":1}'

    signature = sign("whsec", "1767225600", body)

    assert signature == "9fa2b64bb152dd7a36a743a831dd07fe7a477227cce8abe0378983dfccbd4c0e"
    assert is_valid_signature(
        "whsec", timestamp="1767225600", body=body, signature=signature, tolerance=300, now=1767225700
    )
    assert not is_valid_signature(
        "whsec", timestamp="1767225600", body=body + b" ", signature=signature, tolerance=300, now=1767225700
    )
    assert not is_valid_signature(
        "other", timestamp="1767225600", body=body, signature=signature, tolerance=300, now=1767225700
    )
    assert not is_valid_signature(
        "whsec", timestamp="1767225600", body=body, signature=signature, tolerance=300, now=1767226000
    )  # five minutes and more later: a replay


def test_the_fake_receiver_runs_as_a_separate_process_and_reports_its_counts():
    with spawn("webhook", secret="whsec") as fake:
        backend = WebhookBackend(channel="webhook", config={"url": fake.url, "secret": "whsec"})
        fake.control(action="fail_next", count=1, status=500)
        results = [backend.send(message("a")), backend.send(message("b")), backend.send(message("a"))]
        live = fake.stats()
        backend.close()

    assert [r.outcome for r in results] == [T, Outcome.SENT, Outcome.SENT]
    assert (live["requests"], live["keys_acted_on"], live["injected_failures"]) == (3, 2, 1)
    assert fake.final_stats["seen"] == {"a": 2, "b": 1}
    assert fake.final_stats["keys_acted_on_more_than_once"] == []


def test_webhook_key_that_is_not_ascii_travels_percent_encoded_in_the_header(receiver, webhook):
    result = webhook.send(message("活动:双十一:客户7"))

    [request] = receiver.requests
    assert result.outcome == Outcome.SENT
    assert (
        request.headers["Idempotency-Key"] == "%E6%B4%BB%E5%8A%A8%3A%E5%8F%8C%E5%8D%81%E4%B8%80%3A%E5%AE%A2%E6%88%B77"
    )
    assert dict(receiver.acted_on) == {"活动:双十一:客户7": 1}


# SMS gateway


@pytest.fixture
def gateway():
    with FakeSmsGateway(app_key="app-1", app_secret="smssec", templates={"SMS_1", "SMS_2"}) as server:
        yield server


def sms_backend(gateway, **options):
    config = {"url": gateway.url, "app_key": "app-1", "app_secret": "smssec", "sign_name": "好店", **options}
    return SmsGatewayBackend(channel="sms", config=config)


@pytest.fixture
def sms(gateway):
    backend = sms_backend(gateway, template_code="SMS_1")
    yield backend
    backend.close()


def text(value="您好", **extra):
    return {"format": "text", "text": value, **extra}


def test_sms_request_carries_template_sign_name_and_the_key_as_request_id(gateway, sms):
    content = text("验证码 1234", template_code="SMS_2", template_params={"code": "1234"})

    result = sms.send(message("k1", "+86 138-0000-0001", channel="sms", content=content))

    assert (result.outcome, result.provider_code, result.provider_message_id) == (Outcome.SENT, "OK", "sms-00000001")
    sent = gateway.messages["sms-00000001"]
    assert {name: sent[name] for name in ("app_key", "phone", "sign_name", "template_code", "template_param")} == {
        "app_key": "app-1",
        "phone": "+8613800000001",
        "sign_name": "好店",
        "template_code": "SMS_2",
        "template_param": '{"code":"1234"}',
    }
    assert (sent["content"], sent["request_id"]) == ("验证码 1234", "k1")


def test_sms_template_falls_back_to_the_card_then_the_channel_default(gateway, sms):
    from_card = text("a", card={"template_code": "SMS_2"})

    results = sms.send_many([message("k1", "13800000001", content=from_card), message("k2", "13800000002")])

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    sent = {params["request_id"]: params for params in gateway.messages.values()}
    assert (sent["k1"]["template_code"], sent["k2"]["template_code"]) == ("SMS_2", "SMS_1")
    assert sent["k2"]["template_param"] == '{"text":"您好"}'


def test_sms_called_twice_with_one_key_is_sent_once_J28(gateway, sms):
    first = sms.send(message("k1", "13800000001"))
    second = sms.send(message("k1", "13800000001"))

    assert first.provider_message_id == second.provider_message_id == "sms-00000001"
    assert (gateway.seen["k1"], gateway.acted_on["k1"], len(gateway.messages)) == (2, 1, 1)


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "Throttled"), (500, "InternalError"), (503, ""), (200, "isv.BUSINESS_LIMIT_CONTROL"), (200, "isp.GATEWAY")],
)
def test_sms_throttling_and_gateway_faults_are_temporary_with_the_gateway_code_J38(gateway, sms, status, code):
    gateway.fail_next(status=status, code=code)

    result = sms.send(message("k1", "13800000001"))

    assert (result.outcome, result.provider_code) == (T, code or "InternalError")
    assert gateway.messages == {}


def test_sms_timeout_is_temporary_and_the_retry_is_sent_once(short_timeout, gateway):
    backend = sms_backend(gateway, template_code="SMS_1")
    gateway.delay_next(seconds=5)

    timed_out = backend.send(message("k1", "13800000001"))
    retried = backend.send(message("k1", "13800000001"))
    backend.close()

    assert (timed_out.outcome, timed_out.provider_code) == (T, "ReadTimeout")
    assert (retried.outcome, retried.provider_message_id) == (Outcome.SENT, "sms-00000001")
    assert (gateway.seen["k1"], gateway.acted_on["k1"]) == (2, 1)


@pytest.mark.parametrize(
    ("recipient", "content", "code"),
    [
        ("12ab", text(), "InvalidPhoneNumber"),
        ("13800000001", text(template_code="SMS_404"), "InvalidTemplate"),
    ],
)
def test_sms_invalid_number_or_template_is_permanent_with_the_gateway_code_J38(gateway, sms, recipient, content, code):
    result = sms.send(message("k1", recipient, content=content))

    assert (result.outcome, result.provider_code) == (P, code)
    assert gateway.messages == {}


def test_sms_signed_with_another_secret_is_refused(gateway):
    backend = sms_backend(gateway, app_secret="wrong", template_code="SMS_1")

    result = backend.send(message("k1", "13800000001"))
    backend.close()

    assert (result.outcome, result.provider_code) == (P, "InvalidSignature")
    assert (gateway.rejected, gateway.messages) == (1, {})


def test_sms_batch_keeps_order_and_one_invalid_number_leaves_the_others_J27(gateway, sms):
    phones = ["13800000001", "13800000002", "bad", "13800000004"]

    results = sms.send_many([message(f"k{n}", phone, touchpoint_id=n) for n, phone in enumerate(phones)])

    assert [(r.outcome, r.provider_code) for r in results] == [
        (Outcome.SENT, "OK"),
        (Outcome.SENT, "OK"),
        (P, "InvalidPhoneNumber"),
        (Outcome.SENT, "OK"),
    ]
    assert dict(gateway.seen) == {"k0": 1, "k1": 1, "k3": 1}
    assert sorted(params["phone"] for params in gateway.messages.values()) == [
        "13800000001",
        "13800000002",
        "13800000004",
    ]


def test_sms_signature_covers_the_sorted_percent_encoded_parameters():
    params = {"phone": "+8613800000001", "content": "您好 a&b", "app_key": "k", "signature": "ignored"}

    assert canonical_string(params) == "app_key=k&content=%E6%82%A8%E5%A5%BD%20a%26b&phone=%2B8613800000001"
    assert sign_params("s", params) == sign_params("s", {**params, "signature": "other"})
    assert sign_params("s", params) != sign_params("s", {**params, "phone": "+8613800000002"})


# Email


@pytest.fixture
def smtp():
    with FakeSmtpServer() as server:
        yield server


def email_backend(smtp=None, **options):
    config = {"from_email": "shop@example.com", **options}
    if smtp is not None:
        config |= {"backend": "django.core.mail.backends.smtp.EmailBackend", "host": smtp.host, "port": smtp.port}
    return EmailBackend(channel="email", config=config)


LINK_CARD = {
    "format": "link",
    "subject": "双十一 <特惠>",
    "text": "您好, 活动开始了",
    "card": {"title": "<b>特惠</b>", "description": "全场五折", "url": "https://shop.example.com/s?a=1&b=2"},
}


def test_email_goes_through_django_mail_with_a_message_id_from_the_key():
    result = email_backend().send(message("k1", "fang@example.com", channel="email", content=LINK_CARD))

    [sent] = mail.outbox
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, message_id_for("k1", domain="example.com"))
    assert (sent.subject, sent.from_email, sent.to) == ("双十一 <特惠>", "shop@example.com", ["fang@example.com"])
    assert sent.body == "您好, 活动开始了\n\nhttps://shop.example.com/s?a=1&b=2"
    assert sent.extra_headers["Message-ID"] == result.provider_message_id
    [(html, mimetype)] = sent.alternatives
    assert mimetype == "text/html"
    assert '<a href="https://shop.example.com/s?a=1&amp;b=2"><strong>&lt;b&gt;特惠&lt;/b&gt;</strong></a>' in html


def test_a_text_email_has_no_html_part_and_a_subject_without_line_breaks():
    content = {"format": "text", "subject": "第一行\n Bcc: x@evil.example", "text": "正文"}

    email_backend().send(message("k1", "fang@example.com", channel="email", content=content))

    [sent] = mail.outbox
    assert (sent.subject, sent.alternatives) == ("第一行 Bcc: x@evil.example", [])


def test_email_without_an_address_fails_permanently_and_sends_nothing():
    result = email_backend().send(message("k1", "", channel="email"))

    assert (result.outcome, result.provider_code, mail.outbox) == (P, "no_email", [])


def test_email_batch_over_smtp_uses_one_connection_in_input_order(smtp):
    addresses = [f"c{n}@example.com" for n in range(5)]

    results = email_backend(smtp).send_many([message(f"k{n}", a, channel="email") for n, a in enumerate(addresses)])

    assert [r.outcome for r in results] == [Outcome.SENT] * 5
    assert [received.recipients for received in smtp.received] == [(address,) for address in addresses]
    assert [received.message_id for received in smtp.received] == [r.provider_message_id for r in results]
    assert smtp.connections == 1


def test_email_sent_twice_with_one_key_reaches_the_mailbox_once_J28(smtp):
    backend = email_backend(smtp)

    backend.send(message("k1", "fang@example.com", channel="email", content=LINK_CARD))
    backend.send(message("k1", "fang@example.com", channel="email", content=LINK_CARD))

    message_id = message_id_for("k1", domain="example.com")
    assert (len(smtp.received), smtp.seen[message_id], smtp.acted_on[message_id]) == (2, 2, 1)
    [delivered] = smtp.delivered
    assert delivered.message["Subject"] == "双十一 <特惠>"
    assert delivered.message.get_body(("html",)) is not None


def test_email_refused_recipient_is_permanent_with_the_smtp_code_and_the_batch_goes_on_J27(smtp):
    smtp.refuse("gone@example.com", code=550)
    smtp.refuse("full@example.com", code=452, text="4.2.2 Mailbox full")
    addresses = ["a@example.com", "gone@example.com", "full@example.com", "b@example.com"]

    results = email_backend(smtp).send_many([message(f"k{n}", a, channel="email") for n, a in enumerate(addresses)])

    assert [(r.outcome, r.provider_code) for r in results] == [
        (Outcome.SENT, "250"),
        (P, "550"),
        (T, "452"),
        (Outcome.SENT, "250"),
    ]
    assert [received.recipients for received in smtp.received] == [("a@example.com",), ("b@example.com",)]
    assert smtp.connections == 1


@pytest.mark.parametrize(("code", "outcome"), [(451, T), (554, P)])
def test_email_refused_data_keeps_the_smtp_code_J38(smtp, code, outcome):
    smtp.fail_next_data(code=code, text="refused")

    results = email_backend(smtp).send_many(
        [message("k1", "a@example.com", channel="email"), message("k2", "b@example.com", channel="email")]
    )

    assert [(r.outcome, r.provider_code) for r in results] == [(outcome, str(code)), (Outcome.SENT, "250")]
    assert [received.recipients for received in smtp.received] == [("b@example.com",)]


def test_email_to_an_unreachable_server_is_temporary(smtp):
    backend = email_backend(smtp)
    smtp.stop()

    result = backend.send(message("k1", "a@example.com", channel="email"))

    assert (result.outcome, result.provider_code) == (T, "ConnectionRefusedError")


def test_email_to_a_server_that_never_answers_times_out_as_temporary(settings):
    settings.MESSAGING_REQUEST_TIMEOUT = 0.2
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections (backlog), never greets
        backend = EmailBackend(
            channel="email",
            config={
                "backend": "django.core.mail.backends.smtp.EmailBackend",
                "host": "127.0.0.1",
                "port": silent.getsockname()[1],
            },
        )

        result = backend.send(message("k1", "a@example.com", channel="email"))

    assert (result.outcome, result.provider_code) == (T, "SMTPServerDisconnected")  # how smtplib reports it
    assert result.response == {"error": "Connection unexpectedly closed: timed out"}
