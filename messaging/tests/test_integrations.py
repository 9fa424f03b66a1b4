"""Event subscriptions: queueing deliveries from domain events, signed sending, retries, replay, leases."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.db import connection, connections, transaction
from django.utils import timezone

from customers import domain_events
from customers.models import DomainEvent
from customers.tests.factories import CustomerFactory, StaffFactory
from messaging import integrations
from messaging.integrations import queueing, sending
from messaging.integrations_tasks import send_deliveries
from messaging.models import Delivery, Subscription
from scrm.testing import free_port

SECRET = "s3cret-for-the-tests-0123456789"
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ the fake receiver


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections when a sender posts with 8 threads at once
    daemon_threads = True


class Receiver:
    """An integrator's endpoint on 127.0.0.1: records every request and answers with the queued answers, then
    with `default`. It checks nothing itself; tests verify signatures the way an integrator would."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[tuple[int, bytes]] = []
        self.default: tuple[int, bytes] = (200, b'{"ok": true}')
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status, answer = receiver.answers.pop(0) if receiver.answers else receiver.default
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def delivery_ids(self) -> list[int]:
        return [int(headers["x-scrm-delivery"]) for headers, _body in self.requests]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture(autouse=True)
def _consumer(monkeypatch):
    """Only our consumer on the outbox (MessagingConfig.ready() registers it in the project), and no kicks."""
    monkeypatch.setattr(domain_events, "_CONSUMERS", {})
    integrations.ready()
    monkeypatch.setattr(queueing, "kick_sender", lambda: True)
    monkeypatch.setattr(sending, "_jitter", lambda: 0.5)  # retry delays exactly 10, 20, 40 … s


def subscribe(url: str, kinds=("tag.added",), **options) -> Subscription:
    subscription, _secret = integrations.create_subscription(
        name="ERP", url=url, kinds=list(kinds), secret=SECRET, **options
    )
    return subscription


def pending_delivery(subscription: Subscription, key: str = "de:1", kind: str = "tag.added", **fields) -> Delivery:
    payload = {"id": key, "kind": kind, "occurred_at": "2026-11-02T09:00:00.000000Z", "customer": None, "data": {}}
    return Delivery.objects.create(
        subscription=subscription, event_key=key, kind=kind, payload=payload, next_attempt_at=NOW, **fields
    )


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """What an integrator does: HMAC-SHA256 over f"{timestamp}.{body}", compared in constant time."""
    expected = hmac.new(secret.encode(), f"{headers['x-scrm-timestamp']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), headers["x-scrm-signature"])


# ---------------------------------------------------------------------------------------------------- queueing


@pytest.mark.django_db
def test_a_domain_event_becomes_a_delivery_with_a_stable_document_and_a_customer_snapshot():
    staff = StaffFactory()
    customer = CustomerFactory(name="王芳", phone="13800000000", email="wf@example.com", city="杭州", owner=staff)
    subscription = subscribe("http://127.0.0.1:1/hooks", kinds=["tag.added", "tag.removed"])
    domain_events.record("tag.added", [customer.pk], [{"tag_id": 7, "source": "manual"}])
    event = DomainEvent.objects.get()

    domain_events.consume_all()

    delivery = Delivery.objects.get()
    assert (delivery.subscription, delivery.event_key, delivery.kind, delivery.status, delivery.attempts) == (
        subscription, f"de:{event.pk}", "tag.added", "pending", 0
    )  # fmt: skip
    snapshot = {"id": customer.pk, "name": "王芳", "phone": "13800000000", "email": "wf@example.com",
                "city": "杭州", "owner_id": staff.pk, "merged_into_id": None}  # fmt: skip
    assert delivery.payload == {
        "id": f"de:{event.pk}",
        "kind": "tag.added",
        "occurred_at": integrations.iso_utc(event.occurred_at),
        "customer": snapshot,
        "data": {"tag_id": 7, "source": "manual"},
    }


@pytest.mark.django_db
def test_a_domain_event_handled_twice_yields_one_delivery_per_subscription():
    customer = CustomerFactory()
    first, second = subscribe("http://127.0.0.1:1/a"), subscribe("http://127.0.0.1:1/b")
    domain_events.record("tag.added", [customer.pk], [{"tag_id": 1}])
    events = list(DomainEvent.objects.all())

    queued = [integrations.queue_deliveries(events), integrations.queue_deliveries(events)]

    assert queued == [2, 0]
    assert sorted(Delivery.objects.values_list("subscription_id", "event_key")) == [
        (first.pk, f"de:{events[0].pk}"), (second.pk, f"de:{events[0].pk}")
    ]  # fmt: skip


@pytest.mark.django_db
def test_only_the_kinds_a_subscription_wants_are_queued_for_it():
    customer = CustomerFactory()
    tags_only = subscribe("http://127.0.0.1:1/a", kinds=["tag.added"])
    orders_only = subscribe("http://127.0.0.1:1/b", kinds=["order.placed", "segment.entered"])
    domain_events.record("tag.added", [customer.pk])
    domain_events.record("order.placed", [customer.pk], [{"order_id": 3}])
    domain_events.record("order.updated", [customer.pk])  # not a kind integrations can subscribe to
    domain_events.record("segment.entered", [customer.pk], [{"segment_id": 5}])

    domain_events.consume_all()

    assert sorted(Delivery.objects.values_list("subscription_id", "kind")) == sorted([
        (tags_only.pk, "tag.added"), (orders_only.pk, "order.placed"), (orders_only.pk, "segment.entered")
    ])  # fmt: skip


@pytest.mark.django_db
def test_an_inactive_subscription_gets_nothing_queued_nor_sent(receiver):
    customer = CustomerFactory()
    subscription = subscribe(receiver.url, is_active=False)
    waiting = pending_delivery(subscribe(receiver.url, is_active=True), key="de:99")
    integrations.update_subscription(waiting.subscription, is_active=False)  # switched off with a row pending
    domain_events.record("tag.added", [customer.pk])

    domain_events.consume_all()
    with time_machine.travel(NOW, tick=False):
        report = integrations.send_due()

    assert Delivery.objects.filter(subscription=subscription).count() == 0
    assert report.claimed == 0
    assert receiver.requests == []
    assert Delivery.objects.get(pk=waiting.pk).status == "pending"


@pytest.mark.django_db
def test_a_touchpoint_status_event_for_a_group_has_no_customer():
    subscription = subscribe("http://127.0.0.1:1/a", kinds=["touchpoint.status"])
    domain_events.record("touchpoint.status", [0], [{"touchpoint_id": 4, "status": "sent"}])

    domain_events.consume_all()

    delivery = Delivery.objects.get(subscription=subscription)
    assert (delivery.payload["customer"], delivery.payload["data"]) == (None, {"touchpoint_id": 4, "status": "sent"})


@pytest.mark.django_db
def test_queueing_kicks_the_sender_once_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    kicks = []
    monkeypatch.setattr(queueing, "kick_sender", lambda: kicks.append(1))
    customer = CustomerFactory()
    subscribe("http://127.0.0.1:1/a")
    domain_events.record("tag.added", [customer.pk, CustomerFactory().pk])
    events = list(DomainEvent.objects.all())

    with django_capture_on_commit_callbacks(execute=True):
        integrations.queue_deliveries(events[:1])
        integrations.queue_deliveries(events[1:])
    with django_capture_on_commit_callbacks(execute=True):
        integrations.queue_deliveries(events)  # nothing new: no kick

    assert kicks == [1]


@pytest.mark.django_db
def test_wanted_kinds_are_those_of_active_subscriptions_and_follow_changes():
    subscribe("http://127.0.0.1:1/a", kinds=["tag.added", "touchpoint.status"])
    off = subscribe("http://127.0.0.1:1/b", kinds=["order.placed"], is_active=False)
    before = integrations.wanted_kinds()

    integrations.update_subscription(off, is_active=True)

    assert before == frozenset({"tag.added", "touchpoint.status"})
    assert integrations.wanted_kinds() == frozenset({"tag.added", "touchpoint.status", "order.placed"})


# ----------------------------------------------------------------------------------------------------- sending


@pytest.mark.django_db
def test_a_delivery_is_posted_signed_over_its_timestamp_and_body(receiver):
    delivery = pending_delivery(subscribe(receiver.url), key="de:41")

    with time_machine.travel(NOW, tick=False):
        report = integrations.send_due()

    [(headers, body)] = receiver.requests
    assert (report.claimed, report.delivered) == (1, 1)
    assert verify(headers, body)
    assert not verify(headers, body, secret="another-secret-0123456789")
    assert (headers["x-scrm-event"], headers["x-scrm-delivery"], headers["x-scrm-timestamp"]) == (
        "tag.added", str(delivery.pk), str(int(NOW.timestamp()))
    )  # fmt: skip
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == delivery.payload
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status, delivery.response_body) == (
        "delivered", 1, 200, '{"ok": true}'
    )  # fmt: skip
    assert (delivery.delivered_at, delivery.lease_token) == (NOW, None)


@pytest.mark.django_db
def test_a_failing_receiver_is_retried_with_exponential_backoff_then_the_delivery_fails(receiver):
    receiver.default = (500, b"x" * 3000)
    delivery = pending_delivery(subscribe(receiver.url))
    waits = []

    at = NOW
    for _attempt in range(sending.MAX_ATTEMPTS):
        with time_machine.travel(at, tick=False):
            assert integrations.send_due().claimed == 1
            assert integrations.send_due().claimed == 0  # not due again before its backoff ends
        delivery.refresh_from_db()
        waits.append((delivery.next_attempt_at - at).total_seconds())
        at = delivery.next_attempt_at

    assert waits == [10, 20, 40, 80, 160, 320, 640, 0]
    assert len(receiver.requests) == sending.MAX_ATTEMPTS == 8
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 8, 500)
    assert delivery.response_body == "x" * 2000
    with time_machine.travel(at + timedelta(days=1), tick=False):
        assert integrations.send_due().claimed == 0


@pytest.mark.django_db
def test_a_receiver_that_answers_after_failures_gets_the_delivery_delivered(receiver):
    receiver.answers = [(503, b"busy"), (429, b"slow down")]
    delivery = pending_delivery(subscribe(receiver.url))

    for at in (NOW, NOW + timedelta(seconds=10), NOW + timedelta(seconds=30)):
        with time_machine.travel(at, tick=False):
            integrations.send_due()

    delivery.refresh_from_db()
    assert [headers["x-scrm-delivery"] for headers, _body in receiver.requests] == [str(delivery.pk)] * 3
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 3, 200)


@pytest.mark.django_db
def test_an_unreachable_receiver_is_a_retried_failure_without_a_status():
    delivery = pending_delivery(subscribe(f"http://127.0.0.1:{free_port()}/hooks"))

    with time_machine.travel(NOW, tick=False):
        report = integrations.send_due()

    delivery.refresh_from_db()
    assert report.retried == 1
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, None)
    assert delivery.response_body.startswith("ConnectError")
    assert delivery.next_attempt_at == NOW + timedelta(seconds=10)


# ------------------------------------------------------------------------------------------- replay and test


@pytest.mark.django_db
def test_replay_sends_the_event_again_as_a_new_delivery_and_keeps_the_original(receiver):
    delivery = pending_delivery(subscribe(receiver.url), key="de:7")
    with time_machine.travel(NOW, tick=False):
        integrations.send_due()

        first = integrations.replay_delivery(delivery)
        integrations.send_due()
        second = integrations.replay_delivery(first)
        integrations.send_due()

    assert (first.event_key, second.event_key) == ("de:7~r1", "de:7~r2")
    assert receiver.delivery_ids() == [delivery.pk, first.pk, second.pk]
    assert len({body for _headers, body in receiver.requests}) == 1  # the same document, the same `id`
    assert list(Delivery.objects.order_by("id").values_list("status", flat=True)) == ["delivered"] * 3


@pytest.mark.django_db
def test_replay_is_refused_while_pending_or_when_the_subscription_is_off(receiver):
    subscription = subscribe(receiver.url)
    pending = pending_delivery(subscription, key="de:1")
    done = pending_delivery(subscription, key="de:2", status="failed")
    integrations.update_subscription(subscription, is_active=False)

    with pytest.raises(integrations.DeliveryError) as still_pending:
        integrations.replay_delivery(pending)
    with pytest.raises(integrations.DeliveryError) as switched_off:
        integrations.replay_delivery(done)

    assert (still_pending.value.code, switched_off.value.code) == ("delivery_pending", "subscription_inactive")
    assert Delivery.objects.count() == 2


@pytest.mark.django_db
def test_a_test_event_is_sent_at_once_even_to_an_inactive_subscription_and_not_retried(receiver):
    subscription = subscribe(receiver.url, is_active=False)
    receiver.answers = [(200, b"pong"), (401, b"bad signature")]

    with time_machine.travel(NOW, tick=False):
        answered = integrations.send_test_event(subscription)
        refused = integrations.send_test_event(subscription)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        assert integrations.send_due().claimed == 0

    assert (answered.kind, answered.status, answered.response_status, answered.response_body) == (
        "subscription.test", "delivered", 200, "pong"
    )  # fmt: skip
    assert (refused.status, refused.attempts, refused.response_status) == ("failed", 1, 401)
    [(headers, body), _second] = receiver.requests
    assert verify(headers, body)
    assert json.loads(body)["data"] == {"subscription_id": subscription.pk, "name": "ERP"}


# ------------------------------------------------------------------------------------------------ concurrency


@pytest.mark.django_db
def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_ends():
    delivery = pending_delivery(subscribe("http://127.0.0.1:1/hooks"))
    with time_machine.travel(NOW, tick=False):
        first = uuid.uuid4()
        [claimed] = integrations.claim(token=first)
        assert integrations.claim(token=uuid.uuid4()) == []
    lease_end = NOW + timedelta(seconds=sending.LEASE_SECONDS)
    with time_machine.travel(lease_end, tick=False):
        [reclaimed] = integrations.claim(token=uuid.uuid4())
        # The first worker comes back late: its answer is not recorded over the new claimer's lease.
        sending._record([claimed], [sending._Answer(200, "late")], first)

    delivery.refresh_from_db()
    assert (claimed.attempts, reclaimed.attempts) == (1, 2)
    assert (delivery.status, delivery.response_body) == ("pending", "")


@pytest.mark.django_db
def test_a_sender_that_ran_out_of_its_lease_hands_the_rows_back_unsent(receiver, monkeypatch):
    delivery = pending_delivery(subscribe(receiver.url))
    monkeypatch.setattr(sending, "LEASE_SECONDS", 1)  # shorter than one request could take

    with time_machine.travel(NOW, tick=False):
        report = integrations.send_due()

    delivery.refresh_from_db()
    assert (report.claimed, report.released) == (1, 1)
    assert receiver.requests == []
    assert (delivery.status, delivery.attempts, delivery.lease_token, delivery.next_attempt_at) == (
        "pending", 0, None, NOW
    )  # fmt: skip


@pytest.mark.django_db
def test_a_lost_last_attempt_fails_the_delivery_when_its_lease_ends():
    delivery = pending_delivery(subscribe("http://127.0.0.1:1/hooks"), attempts=sending.MAX_ATTEMPTS)

    with time_machine.travel(NOW, tick=False):
        assert integrations.send_due().claimed == 0

    delivery.refresh_from_db()
    assert delivery.status == "failed"


@pytest.mark.django_db(transaction=True)
def test_a_row_another_worker_is_claiming_is_skipped_not_waited_for(receiver):
    subscription = subscribe(receiver.url)
    locked, free = pending_delivery(subscription, key="de:1"), pending_delivery(subscription, key="de:2")
    holding, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        with transaction.atomic():  # its claim statement, stopped between locking the row and committing
            list(Delivery.objects.select_for_update().filter(pk=locked.pk))
            holding.set()
            release.wait(10)
        connections.close_all()

    thread = threading.Thread(target=other_worker)
    thread.start()
    holding.wait(10)
    with time_machine.travel(NOW, tick=False):
        report = integrations.send_due()
    release.set()
    thread.join()

    assert report.claimed == 1
    assert receiver.delivery_ids() == [free.pk]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_senders_never_send_the_same_delivery(receiver, monkeypatch):
    monkeypatch.setattr(sending, "BATCH_SIZE", 20)
    subscription = subscribe(receiver.url)
    rows = [Delivery(subscription=subscription, event_key=f"de:{n}", kind="tag.added", payload={"id": f"de:{n}"},
                     next_attempt_at=timezone.now()) for n in range(300)]  # fmt: skip
    Delivery.objects.bulk_create(rows)
    start = threading.Barrier(2)
    reports = []

    def sender() -> None:
        start.wait(10)
        while (report := integrations.send_due(limit=20)).claimed:
            reports.append(report)
        connections.close_all()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sent = receiver.delivery_ids()
    assert len(sent) == len(set(sent)) == 300
    assert sum(report.delivered for report in reports) == 300
    assert Delivery.objects.filter(status="delivered", attempts=1).count() == 300
    assert connection.is_usable()


@pytest.mark.django_db
def test_the_task_sends_every_due_delivery(receiver):
    subscription = subscribe(receiver.url)
    rows = [pending_delivery(subscription, key=f"de:{n}") for n in range(3)]

    with time_machine.travel(NOW, tick=False):
        sent = send_deliveries()

    assert sent == 3
    assert sorted(receiver.delivery_ids()) == [row.pk for row in rows]
