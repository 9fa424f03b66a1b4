"""Redis (the broker) stops for 30 s under a steady API ingest: no write fails, no domain event is lost, and the
backlog drains within 60 s of Redis returning (the beat sweep and the after-commit kicks catch up)."""

import json
import subprocess
import sys
import time

import pytest

from accounts.services import create_api_token
from customers.models import DomainEvent, Order
from customers.tests.factories import UserFactory
from scrm.testing import ROOT, DedicatedRedis, celery_broker, celery_worker, process_env
from tags import services
from tags.models import CustomerTag
from tags.tests.factories import TagFactory

OUTAGE_SECONDS = 30


@pytest.mark.django_db(transaction=True)
def test_writes_survive_a_broker_outage_and_the_backlog_drains_after_it():
    redis = DedicatedRedis()
    redis.start()
    env = process_env(REDIS_URL=redis.url, ALLOWED_HOSTS="testserver")
    tag = TagFactory(name="已购")
    services.save_rule(tag, {"predicate": "orders_count", "op": "gte", "value": 1})
    _token, key = create_api_token(name="pos", user=UserFactory(username="op"))
    try:
        with celery_broker(redis.url), celery_worker(beat=True, env=env, name="outage"):
            ingest = subprocess.Popen(
                [sys.executable, "-m", "scrm.tests.outage_ingest", "--token", key, "--seconds", "42", "--rate", "20"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            time.sleep(6)
            redis.stop()
            time.sleep(OUTAGE_SECONDS)
            redis.start()
            back_at = time.monotonic()
            output, _ = ingest.communicate(timeout=60)
            report = json.loads(output.strip().splitlines()[-1])
            while DomainEvent.objects.filter(processed_at__isnull=True).exists() or (
                CustomerTag.objects.filter(tag=tag).count() < Order.objects.count()
            ):
                assert time.monotonic() - back_at < 60, "the backlog did not drain within 60 s"
                time.sleep(0.2)
            drained_after = time.monotonic() - back_at
    finally:
        redis.stop()

    orders = Order.objects.count()
    assert report["failed"] == 0, report["failures"]
    assert orders == report["sent"] > 500
    assert DomainEvent.objects.filter(kind="order.placed").count() == orders
    assert CustomerTag.objects.filter(tag=tag, source="rule").count() == orders
    assert drained_after < 60
    print(f"outage: {orders} orders, slowest write {report['slowest_ms']:.0f} ms, drained in {drained_after:.1f} s")
