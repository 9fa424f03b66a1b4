"""An order through the API, a real Celery worker, and the auto-tag rule's tag on the customer."""

import time

import pytest
from rest_framework.test import APIClient

from accounts.services import create_api_token
from customers.models import DomainEvent
from customers.tests.factories import UserFactory
from scrm.testing import DedicatedRedis, celery_broker, celery_worker, process_env
from tags import services
from tags.models import CustomerTag, TagRule
from tags.tests.factories import TagFactory


def wait_for(condition, seconds: float = 30) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def redis_server():
    server = DedicatedRedis()
    server.start()
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_an_order_through_the_api_gets_the_rules_tag_from_a_real_worker(redis_server):
    tag = TagFactory(name="高价值")
    client = APIClient()
    _token, key = create_api_token(name="shop", user=UserFactory(username="op"))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    with celery_broker(redis_server.url), celery_worker(name="e2e", env=process_env(REDIS_URL=redis_server.url)):
        rule = services.save_rule(tag, {"predicate": "orders_sum", "op": "gte", "value": 1000})
        wait_for(lambda: TagRule.objects.get(pk=rule.pk).last_run_at is not None)  # the full run after saving
        response = client.post(
            "/api/v1/orders/",
            {"source": "youzan", "external_id": "T-1", "customer": {"phone": "13800000001"},
             "ordered_at": "2026-11-20T10:00:00+08:00", "amount": "1288.00"},
            format="json",
        )  # fmt: skip
        assert response.status_code == 201, response.content
        customer_id = response.json()["customer"]
        wait_for(lambda: CustomerTag.objects.filter(customer_id=customer_id, tag=tag, source="rule").exists())

    placed = DomainEvent.objects.get(kind="order.placed", customer_id=customer_id)
    assert placed.processed_at is not None
    added = DomainEvent.objects.get(kind="tag.added", customer_id=customer_id)
    assert added.payload == {"tag_id": tag.pk, "source": "rule"}
