import pytest

from customers.demo import seed_demo
from customers.models import Consent
from messaging.demo import seed_messaging_demo
from messaging.models import ConsoleMessage, MessageTemplate, Touchpoint

pytestmark = pytest.mark.django_db


def test_the_demo_has_templates_and_a_dispatched_campaign_with_its_suppressed_opt_outs():
    seed_demo(customers=300, seed=42, progress=lambda _: None)

    summary = seed_messaging_demo()
    seed_messaging_demo()  # running it again queues and sends nothing twice

    assert MessageTemplate.objects.count() == 3
    assert Touchpoint.objects.count() == 60
    opted_out = Consent.objects.filter(
        channel="sms", status="opted_out", customer__touchpoints__isnull=False
    ).count()  # the demo's three "TD" replies and the seeded data's own
    assert opted_out >= 3
    assert Touchpoint.objects.filter(status="suppressed", reason="opted_out").count() == opted_out
    assert Touchpoint.objects.filter(status="sent").count() == ConsoleMessage.objects.count() == 60 - opted_out
    assert "60 touchpoints dispatched" in summary
