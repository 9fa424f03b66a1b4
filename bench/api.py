"""Customer list and detail latency through the whole API stack (auth, selectors, serializers).

    DATABASE_URL=postgres://…/scrm_seed1m .venv/bin/python bench/api.py [--requests 300]

Run against a database seeded with `manage.py seed_demo --customers 1000000`. Targets (issue 2): a 50-row list
page p50 <= 25 ms with at most 3 queries whatever the page depth; customer detail p99 <= 50 ms. Baseline in the
same run: the bare SQL of one keyset page (`SELECT … WHERE id < $1 ORDER BY id DESC LIMIT 50`).
"""

import argparse
import base64
import random
import time
from urllib.parse import quote

import _setup
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Role, User
from accounts.services import create_api_token
from customers.models import Customer, Staff


def cursor_at(position: int) -> str:
    return quote(base64.b64encode(f"p={position}".encode()).decode())


def timed_get(client: Client, url: str, headers: dict) -> tuple[float, int, int]:
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = client.get(url, **headers)
        elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, (url, response.status_code, response.content[:200])
    return elapsed, len(queries), response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(3)
    total = Customer.objects.count()
    max_id = Customer.objects.order_by("-id").values_list("id", flat=True).first() or 0
    print(f"customers: {total:,}")

    operator, _ = User.objects.get_or_create(username="bench-api", defaults={"role": Role.OPERATOR})
    _t, operator_key = create_api_token(name="bench-api", user=operator)
    rep_staff = Staff.objects.filter(owned_customers__isnull=False).order_by("pk").first()
    rep, _ = User.objects.get_or_create(username="bench-api-rep", defaults={"role": Role.SALES})
    if rep_staff.user_id is None:
        rep_staff.user = rep
        rep_staff.save(update_fields=["user"])
    rep_user = rep_staff.user
    _t, rep_key = create_api_token(name="bench-api-rep", user=rep_user)
    client = Client()

    def header(key: str) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    client.get("/api/v1/customers/", **header(operator_key))  # warm up (and the token's last_used_at)
    client.get("/api/v1/customers/", **header(rep_key))

    # Baseline: the bare keyset query for one page.
    bare = []
    with connection.cursor() as cursor:
        for _ in range(args.requests):
            position = rng.randint(1, max_id)
            started = time.perf_counter()
            cursor.execute(
                "SELECT * FROM customers_customer WHERE merged_into_id IS NULL AND id < %s ORDER BY id DESC LIMIT 50",
                [position],
            )
            cursor.fetchall()
            bare.append((time.perf_counter() - started) * 1000)
    print(f"bare SQL keyset page            {_setup.summary(bare)}")

    for label, key, depths in (
        ("operator list, first page     ", operator_key, [None]),
        ("operator list, random depth   ", operator_key, "random"),
        ("rep list (own book), 1st page ", rep_key, [None]),
        ("rep list (own book), random   ", rep_key, "random"),
    ):
        latencies, query_counts = [], set()
        for _ in range(args.requests):
            url = "/api/v1/customers/"
            if depths == "random":
                url += f"?cursor={cursor_at(rng.randint(1, max_id))}"
            elapsed, queries, _response = timed_get(client, url, header(key))
            latencies.append(elapsed)
            query_counts.add(queries)
            reset_queries()
        print(f"{label}  {_setup.summary(latencies)}  queries {sorted(query_counts)}")

    ids = list(Customer.objects.filter(pk__in=[rng.randint(1, max_id) for _ in range(args.requests * 2)])
               .values_list("pk", flat=True)[: args.requests])  # fmt: skip
    latencies, query_counts = [], set()
    for pk in ids:
        elapsed, queries, _response = timed_get(client, f"/api/v1/customers/{pk}/", header(operator_key))
        latencies.append(elapsed)
        query_counts.add(queries)
    print(f"customer detail                 {_setup.summary(latencies)}  queries {sorted(query_counts)}")
    print("targets: list p50 <= 25 ms with <= 3 queries at any depth; detail p99 <= 50 ms")


if __name__ == "__main__":
    main()
