import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


@pytest.fixture(autouse=True)
def _empty_cache():
    """Tests share Redis database 15: start each from an empty cache."""
    cache.clear()


# People and clients most test modules need (a module may still define its own under the same name).


@pytest.fixture
def operator():
    from accounts.models import Role
    from customers.tests.factories import UserFactory

    return UserFactory(username="op", role=Role.OPERATOR)


@pytest.fixture
def api(operator):
    """An integration's API token acting as the operator."""
    from rest_framework.test import APIClient

    from accounts.services import create_api_token

    client = APIClient()
    _token, key = create_api_token(name="shop", user=operator)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def rep():
    from customers.tests.factories import sales_rep

    return sales_rep("rep_me")


@pytest.fixture
def other_rep():
    from customers.tests.factories import sales_rep

    return sales_rep("rep_other")
