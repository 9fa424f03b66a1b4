import pytest

from customers.demo import DEMO_STEPS
from customers.tests.factories import CustomerFactory
from journeys.models import Enrollment, Journey, JourneyStatus

pytestmark = pytest.mark.django_db


def test_the_demo_publishes_sops_and_takes_customers_through_the_welcome_journey_with_conversions():
    CustomerFactory.create_batch(50)

    DEMO_STEPS["journeys"]()
    DEMO_STEPS["journeys"]()  # a second run changes nothing

    statuses = dict(Journey.objects.values_list("template_code", "status"))
    assert statuses == {"welcome": JourneyStatus.ACTIVE, "repurchase": JourneyStatus.ACTIVE,
                        "group_weekly": JourneyStatus.ACTIVE, "birthday": JourneyStatus.DRAFT}  # fmt: skip
    welcome = Enrollment.objects.filter(journey__template_code="welcome")
    assert welcome.count() == 50
    assert welcome.filter(state="completed").count() == 50
    assert welcome.filter(converted_at__isnull=False).count() == 40
