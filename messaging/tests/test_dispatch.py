"""Dispatch through the service API: claims, leases, results, retries and the rules J25 to J38 of
../shared/specs/journeys.md that messaging owns."""

import datetime
import threading
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, connections

from customers.models import Consent, ConsentStatus, MessageChannel
from customers.tests.factories import CustomerFactory
from messaging.backends import Outcome
from messaging.models import ConsoleMessage, Touchpoint, TouchpointStatus
from messaging.services.dispatch import dispatch_due, dispatch_touchpoints
from messaging.services.scheduling import InvalidTouchpoint, cancel_touchpoints, schedule_touchpoint
from messaging.tests.factories import queue_many

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
S = TouchpointStatus


def sms(customer, key, **options):
    options.setdefault("content", {"text": "您好 {{ customer.name }}"})
    return schedule_touchpoint(channel=MessageChannel.SMS, customer=customer, idempotency_key=key, **options)


@pytest.fixture
def at_10am():
    with time_machine.travel(MONDAY_10AM, tick=False) as traveller:
        yield traveller


@pytest.fixture
def customer():
    return CustomerFactory(name="王芳", phone="13800000001")


def test_a_due_touchpoint_is_rendered_and_sent_through_the_console_backend(at_10am, customer):
    touchpoint = sms(customer, "k1")

    report = dispatch_due()

    touchpoint.refresh_from_db()
    assert report.claimed == 1
    assert touchpoint.status == S.SENT
    assert touchpoint.rendered["text"] == "您好 王芳"
    assert touchpoint.content["text"] == "您好 {{ customer.name }}"  # the source stays for a retry to render again
    assert touchpoint.recipient == "13800000001"
    assert touchpoint.attempts == 1
    assert [d["step"] for d in touchpoint.decisions] == ["scheduled", "policy", "send"]
    message = ConsoleMessage.objects.get()
    assert (message.recipient, message.content["text"], message.idempotency_key) == ("13800000001", "您好 王芳", "k1")


def test_a_touchpoint_due_later_waits(at_10am, customer):
    sms(customer, "later", due_at=MONDAY_10AM + datetime.timedelta(minutes=5))

    assert dispatch_due().claimed == 0
    at_10am.shift(datetime.timedelta(minutes=5))
    assert dispatch_due().claimed == 1


def test_scheduling_twice_with_one_key_gives_one_touchpoint_J26(at_10am, customer):
    first = sms(customer, "journey:1:step:2:enrollment:3")
    second = sms(customer, "journey:1:step:2:enrollment:3", content={"text": "other"})

    assert second.pk == first.pk
    assert (first.is_new, second.is_new) == (True, False)
    assert Touchpoint.objects.count() == 1


def test_scheduling_refuses_bad_input_with_field_errors(customer):
    with pytest.raises(InvalidTouchpoint) as refused:
        schedule_touchpoint(channel="fax", customer=customer, idempotency_key="", content={})

    assert set(refused.value.errors) == {"channel", "idempotency_key", "content"}
    assert Touchpoint.objects.count() == 0


def test_a_claim_whose_worker_died_is_claimed_again_when_its_lease_expires_and_sent_once_J26(
    at_10am, customer, settings, scripted
):
    settings.MESSAGING_LEASE_SECONDS = 5
    touchpoint = sms(customer, "lease")
    with connection.cursor() as cursor:  # a worker claims the row, hands it to the channel, then dies
        cursor.execute(
            "UPDATE messaging_touchpoint SET status='sending', due_at=%s, lease_token=gen_random_uuid()",
            [MONDAY_10AM + datetime.timedelta(seconds=5)],
        )
    scripted.delivered["lease"] = 1

    assert dispatch_due().claimed == 0  # the lease still holds
    at_10am.shift(datetime.timedelta(seconds=5))
    report = dispatch_due()

    touchpoint.refresh_from_db()
    assert report.claimed == 1
    assert touchpoint.status == S.SENT
    assert [call.idempotency_key for call in scripted.calls] == ["lease"]
    assert dict(scripted.delivered) == {"lease": 1}


@pytest.mark.django_db(transaction=True)
def test_two_workers_dispatching_concurrently_send_each_of_10000_touchpoints_once_J25(at_10am):
    customer = CustomerFactory(phone="13800000002")
    queue_many(10_000, customer_id=customer.pk, source_ref="journey:1", due_at=MONDAY_10AM, key_prefix="k")
    totals = []

    def worker():
        try:
            claimed = 0
            while (report := dispatch_due()).claimed:
                claimed += report.claimed
            totals.append(claimed)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(totals) == 10_000
    assert Touchpoint.objects.filter(status=S.SENT, attempts=1).count() == 10_000
    assert ConsoleMessage.objects.count() == 10_000


def test_one_recipient_failing_permanently_never_resends_the_others_J27(at_10am, scripted):
    customers = [CustomerFactory(phone=f"1380000001{n}") for n in range(3)]
    scripted.script["13800000011"] = [(Outcome.PERMANENT_ERROR, "invalid_number")]
    for n, customer in enumerate(customers):
        sms(customer, f"batch-{n}", source_ref="campaign:7")

    dispatch_due()
    at_10am.shift(datetime.timedelta(hours=2))
    dispatch_due()

    statuses = dict(Touchpoint.objects.values_list("idempotency_key", "status"))
    assert statuses == {"batch-0": S.SENT, "batch-1": S.FAILED, "batch-2": S.SENT}
    assert sorted(call.idempotency_key for call in scripted.calls) == ["batch-0", "batch-1", "batch-2"]
    assert Touchpoint.objects.get(idempotency_key="batch-1").provider_code == "invalid_number"


def test_the_console_backend_called_twice_with_one_key_delivers_once_J28(customer):
    from messaging.backends import OutgoingMessage, backend_for

    touchpoint = sms(customer, "once")
    message = OutgoingMessage(touchpoint.pk, "once", "sms", "marketing", {"text": "hi"}, "13800000001")
    backend_for("sms").send_many([message])
    backend_for("sms").send_many([message])

    assert ConsoleMessage.objects.filter(idempotency_key="once").count() == 1


def test_temporary_errors_retry_with_backoff_up_to_the_limit_J38(at_10am, customer, settings, scripted):
    settings.MESSAGING_RETRY_BASE_SECONDS = 10
    scripted.script[customer.phone] = [(Outcome.TEMPORARY_ERROR, "503")]
    touchpoint = sms(customer, "flaky", max_attempts=3)

    dispatch_due()
    touchpoint.refresh_from_db()
    first_retry = touchpoint.due_at - MONDAY_10AM
    assert (touchpoint.status, touchpoint.reason, touchpoint.attempts) == (S.SCHEDULED, "retry", 1)
    assert datetime.timedelta(seconds=5) <= first_retry <= datetime.timedelta(seconds=15)
    assert dispatch_due().claimed == 0  # not before its backoff

    at_10am.shift(datetime.timedelta(seconds=15))
    dispatch_due()
    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.attempts) == (S.SCHEDULED, 2)
    assert datetime.timedelta(seconds=10) <= touchpoint.due_at - (MONDAY_10AM + datetime.timedelta(seconds=15))

    at_10am.shift(datetime.timedelta(seconds=30))
    dispatch_due()
    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.reason, touchpoint.attempts) == (S.FAILED, "retries_exhausted", 3)
    assert touchpoint.provider_code == "503"
    assert len(scripted.calls) == 3


def test_a_permanent_error_does_not_retry_and_keeps_the_providers_code_J38(at_10am, customer, scripted):
    scripted.script[customer.phone] = [(Outcome.PERMANENT_ERROR, "400")]
    touchpoint = sms(customer, "bad")

    dispatch_due()
    at_10am.shift(datetime.timedelta(hours=1))
    dispatch_due()

    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.reason, touchpoint.provider_code, touchpoint.attempts) == (
        S.FAILED,
        "provider_error",
        "400",
        1,
    )
    assert len(scripted.calls) == 1


def test_a_message_past_its_expiry_is_not_sent(at_10am, customer, scripted):
    touchpoint = sms(customer, "late", expires_at=MONDAY_10AM + datetime.timedelta(minutes=1))
    at_10am.shift(datetime.timedelta(minutes=2))

    dispatch_due()

    touchpoint.refresh_from_db()
    assert touchpoint.status == S.EXPIRED
    assert scripted.calls == []


def test_an_opt_out_recorded_after_queueing_suppresses_the_touchpoint_J36(at_10am, customer, scripted):
    touchpoint = sms(customer, "queued")
    Consent.objects.create(customer=customer, channel="sms", status=ConsentStatus.OPTED_OUT, reason="TD")

    dispatch_due()

    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.reason) == (S.SUPPRESSED, "opted_out")
    assert scripted.calls == []


def test_an_opt_out_on_one_channel_suppresses_only_that_channel_J35(at_10am, customer, scripted):
    Consent.objects.create(customer=customer, channel="sms", status=ConsentStatus.OPTED_OUT)
    customer.email = "wang@example.com"
    customer.save()
    on_sms = sms(customer, "sms")
    on_email = schedule_touchpoint(
        channel="email", customer=customer, idempotency_key="email", content={"text": "hi", "subject": "Hi"}
    )

    dispatch_due()

    on_sms.refresh_from_db()
    on_email.refresh_from_db()
    assert (on_sms.status, on_email.status) == (S.SUPPRESSED, S.SENT), on_email.decisions


def test_transactional_messages_never_bypass_an_opt_out_J32(at_10am, customer, scripted):
    Consent.objects.create(customer=customer, channel="sms", status=ConsentStatus.OPTED_OUT)
    touchpoint = sms(customer, "receipt", kind="transactional")

    dispatch_due()

    touchpoint.refresh_from_db()
    assert touchpoint.status == S.SUPPRESSED
    assert scripted.calls == []


def test_a_customer_without_an_address_on_the_channel_is_undeliverable(at_10am, scripted):
    touchpoint = sms(CustomerFactory(phone=""), "nophone")

    dispatch_due()

    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.reason) == (S.UNDELIVERABLE, "no_address")


def test_a_template_that_fails_to_render_fails_the_touchpoint_and_sends_nothing_J37(at_10am, customer, scripted):
    touchpoint = sms(customer, "broken", content={"text": "{{ coupon_code }} 到账"})

    dispatch_due()

    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.reason) == (S.FAILED, "render_error")
    assert "coupon_code" in touchpoint.decisions[-1]["detail"]
    assert scripted.calls == []


def test_a_missing_variable_with_a_declared_default_renders_the_default_J37(at_10am, scripted):
    touchpoint = sms(
        CustomerFactory(name="", phone="13800000003"),
        "default",
        content={"text": "{{ customer.name }}，您好", "defaults": {"customer.name": "亲爱的顾客"}},
    )

    dispatch_due()

    touchpoint.refresh_from_db()
    assert touchpoint.status == S.SENT
    assert scripted.calls[0].content["text"] == "亲爱的顾客，您好"


def test_cancelling_stops_queued_touchpoints_but_not_sent_ones(at_10am, customer, scripted):
    sent = sms(customer, "sent", source_ref="journey:9")
    dispatch_due()
    queued = sms(customer, "queued", source_ref="journey:9", due_at=MONDAY_10AM + datetime.timedelta(hours=1))

    assert cancel_touchpoints(source_ref="journey:9", reason="journey stopped") == 1

    at_10am.shift(datetime.timedelta(hours=2))
    dispatch_due()
    sent.refresh_from_db()
    queued.refresh_from_db()
    assert (sent.status, queued.status, queued.reason) == (S.SENT, S.CANCELLED, "journey stopped")
    assert len(scripted.calls) == 1


def test_dispatching_named_touchpoints_sends_just_those(at_10am, customer, scripted):
    welcome = sms(customer, "welcome", source_ref="wecom:welcome")
    other = sms(customer, "other", source_ref="campaign:1")

    report = dispatch_touchpoints([welcome.pk])

    welcome.refresh_from_db()
    other.refresh_from_db()
    assert report.claimed == 1
    assert (welcome.status, other.status) == (S.SENT, S.SCHEDULED)
