"""J43 with the real moving parts: an order through the API, a Celery worker, the segment-entered event."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import create_api_token
from customers.models import DomainEvent
from customers.tests.factories import CustomerFactory, OrderFactory, UserFactory
from scrm.testing import DedicatedRedis, celery_broker, celery_worker, process_env
from segments.models import SegmentMembership
from segments.services import segments as service


@pytest.mark.django_db(transaction=True)
def test_J43_an_order_through_the_api_enters_the_customer_within_seconds_of_the_commit():
    redis = DedicatedRedis()
    redis.start()
    customer = CustomerFactory()
    OrderFactory(customer=customer, ordered_at=timezone.now() - timedelta(days=3), amount=Decimal(99))
    segment = service.save_segment(
        None, name="30天复购", rule={"predicate": "orders_count", "op": "gte", "value": 2, "window": {"last_days": 30}}
    )
    service.recompute_segment(segment)
    client = APIClient()
    _token, key = create_api_token(name="shop", user=UserFactory(username="op"))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    try:
        with celery_broker(redis.url), celery_worker(name="j43", env=process_env(REDIS_URL=redis.url)):
            response = client.post(
                "/api/v1/orders/",
                {"source": "shop", "external_id": "J43", "customer": {"id": customer.pk},
                 "ordered_at": timezone.now().isoformat(), "amount": "120.00"},
                format="json",
            )  # fmt: skip
            committed = time.monotonic()
            assert response.status_code == 201, response.content
            while not SegmentMembership.objects.filter(segment=segment, customer=customer).exists():
                assert time.monotonic() - committed < 10, "not entered within 10 s"
                time.sleep(0.05)
            latency = time.monotonic() - committed
    finally:
        redis.stop()

    assert latency < 5
    entered = DomainEvent.objects.get(kind="segment.entered", customer_id=customer.pk)
    assert entered.payload == {"segment_id": segment.pk}
