"""A worker killed with SIGKILL in the middle of 5,000 webhook touchpoints: its claims are taken again when their
lease expires and nothing is sent twice by our side; the receiver sees some keys twice (the ones in flight when the
worker died) and acts on each key once."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from messaging.fakes import FakeWebhookReceiver
from messaging.models import Touchpoint
from messaging.tests.factories import queue_many
from scrm.testing import ROOT, DedicatedRedis, process_env

COUNT = 5_000
SECRET = "fault-secret"


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """A worker with beat inside (the dispatch tick), in its own process group so SIGKILL takes all of it."""
    command = [
        sys.executable, "-m", "celery", "-A", "scrm", "worker", "--pool", "solo", "--beat", "--without-gossip",
        "--without-mingle", "--loglevel", "WARNING", "--hostname", f"fault-{time.monotonic_ns()}@%h",
        "--schedule", os.path.join(env["BEAT_DIR"], f"beat-{time.monotonic_ns()}"),
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_killing_a_worker_mid_run_sends_every_touchpoint_exactly_once(tmp_path):
    customer = CustomerFactory(name="王芳")
    queue_many(COUNT, customer_id=customer.pk, source_ref="campaign:fault", due_at=timezone.now(), key_prefix="f-",
               channel="webhook")  # fmt: skip
    redis = DedicatedRedis()
    redis.start()
    receiver = FakeWebhookReceiver(secret=SECRET).start()
    env = process_env(
        REDIS_URL=redis.url,
        BEAT_DIR=str(tmp_path),
        LOG_LEVEL="WARNING",
        MESSAGING_LEASE_SECONDS="3",
        MESSAGING_WEBHOOK_BACKEND="messaging.backends.webhook.WebhookBackend",
        WEBHOOK_CHANNEL_URL=receiver.url,
        WEBHOOK_CHANNEL_SECRET=SECRET,
    )
    workers = []
    try:
        workers.append(start_worker(env))
        wait_for(lambda: receiver.stats()["keys_acted_on"] >= COUNT // 4, timeout=60, what="a quarter to be sent")
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait(timeout=10)
        killed_at = receiver.stats()["keys_acted_on"]
        in_flight = Touchpoint.objects.filter(status="sending").count()

        workers.append(start_worker(env))
        wait_for(
            lambda: not Touchpoint.objects.exclude(status="sent").exists(), timeout=120, what="every touchpoint sent"
        )
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=20)
        receiver.stop()
        redis.stop()

    stats = receiver.stats()
    assert COUNT // 4 <= killed_at < COUNT, "the worker was killed mid-run"
    assert in_flight > 0, "the dead worker left claimed rows behind"
    assert Touchpoint.objects.filter(status="sent").count() == COUNT
    assert Touchpoint.objects.filter(sent_at__isnull=False).count() == COUNT
    assert stats["keys_acted_on"] == COUNT
    assert stats["keys_seen"] == COUNT
    assert stats["keys_acted_on_more_than_once"] == []
    print(
        f"fault: killed after {killed_at} acted on, {in_flight} rows in flight, "
        f"{stats['keys_seen_more_than_once']} keys seen twice, 0 acted on twice"
    )
