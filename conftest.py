import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


@pytest.fixture(autouse=True)
def _empty_cache():
    """Tests share Redis database 15: start each from an empty cache."""
    cache.clear()
