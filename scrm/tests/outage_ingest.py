"""Steady API ingest for the Redis outage test, run as a separate process:

    python -m scrm.tests.outage_ingest --token KEY --seconds 40 --rate 20

Posts one order a tick for a new customer each, through the real API stack (Django's test client, no server),
and prints one JSON line: how many were sent, how many failed, and the slowest request in ms.
"""

import argparse
import json
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.test_settings")

import django

django.setup()

from rest_framework.test import APIClient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rate", type=float, default=20)
    args = parser.parse_args()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {args.token}")
    sent, failures, slowest = 0, [], 0.0
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        tick = time.monotonic()
        row = {"source": "pos", "external_id": f"OUT-{sent}", "customer": {"unionid": f"outage-{sent}"},
               "ordered_at": "2026-11-20T10:00:00+08:00", "amount": "300.00"}  # fmt: skip
        try:
            response = client.post("/api/v1/orders/", row, format="json")
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.content[:200]!r}")
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        slowest = max(slowest, time.monotonic() - tick)
        sent += 1
        time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - tick)))
    print(json.dumps({"sent": sent, "failed": len(failures), "failures": failures[:5], "slowest_ms": slowest * 1000}))


if __name__ == "__main__":
    main()
