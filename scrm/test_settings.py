"""Test overrides: a fast hasher, the real Postgres and Redis (test database and Redis db 15)."""

import os
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
# Tests use Redis database 15 of whichever server is configured, never the development data in database 0
# (TEST_REDIS_DB picks another, so two test runs on one machine don't flush each other's keys).
_redis = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
os.environ["REDIS_URL"] = urlunsplit(_redis._replace(path=f"/{os.environ.get('TEST_REDIS_DB', '15')}"))
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("WECOM_SANDBOX", "0")  # tests that want the sandbox turn it on themselves

from scrm.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
LANGUAGE_CODE = "en"
