"""`/healthz`: database, Redis and a Celery worker, as JSON; 503 when any is down."""

import logging
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


def _check_celery() -> None:
    from scrm.celery import app

    replies = app.control.ping(timeout=1.0, limit=1)  # return at the first worker that answers
    if not replies:
        raise RuntimeError("no worker answered a ping within 1 s")


CHECKS = {"database": _check_database, "redis": _check_redis, "celery": _check_celery}


@never_cache
def healthz(request):
    report, healthy = {}, True
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
        except Exception as exc:
            healthy = False
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            logger.warning("healthz.failed", extra={"check": name, "error": str(exc)})
        else:
            report[name] = {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}
    return JsonResponse({"ok": healthy, "checks": report}, status=200 if healthy else 503)
