"""Bulk order ingest throughput: service layer and API, next to a bare COPY of the same rows, in one run.

    .venv/bin/python bench/ingest.py [--rows 100000] [--batch 10000]

Targets (issue 2): the service layer reaches at least 1/3 of bare COPY's rows/s; a 10,000-row API request
completes in under 1 s. Rows are written under a unique source and deleted afterwards.
"""

import argparse
import json
import random
import time
from datetime import UTC, datetime, timedelta

import _setup  # noqa: F401
from django.db import connection, transaction
from django.test import Client

from accounts.models import Role, User
from accounts.services import create_api_token
from customers.services.ingest import bulk_upsert_orders


def make_rows(n: int, *, source: str, offset: int, rng: random.Random) -> list[dict]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(offset, offset + n):
        price = rng.choice([49, 99, 129, 199, 299])
        quantity = rng.randint(1, 3)
        rows.append({
            "source": source,
            "external_id": f"B{i}",
            "customer": {"unionid": f"bench-{source}-{i // 2}"},  # two orders per customer
            "ordered_at": (start + timedelta(minutes=i)).isoformat(),
            "status": "paid",
            "lines": [{"sku": f"SKU{price}", "quantity": quantity, "unit_price": str(price)}],
        })  # fmt: skip
    return rows


def bare_copy(rows: list[dict]) -> float:
    """COPY the same orders and lines into scratch tables shaped like the real ones (same columns, defaults and
    indexes, no foreign keys): the ceiling for getting these rows into Postgres from Python."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE scratch_order (LIKE customers_order INCLUDING ALL) ON COMMIT DROP")
        cursor.execute("CREATE TEMP TABLE scratch_line (LIKE customers_orderline INCLUDING ALL) ON COMMIT DROP")
        started = time.perf_counter()
        with cursor.copy(
            "COPY scratch_order (id, source, external_id, customer_id, status, ordered_at, amount, refunded_amount,"
            " currency, created_at, updated_at) FROM STDIN"
        ) as copy:
            now = datetime.now(UTC)
            for i, r in enumerate(rows):
                line = r["lines"][0]
                amount = int(line["unit_price"]) * line["quantity"]
                copy.write_row((i, r["source"], r["external_id"], i // 2, r["status"], r["ordered_at"], amount, 0,
                                "CNY", now, now))  # fmt: skip
        with cursor.copy(
            "COPY scratch_line (id, order_id, sku, name, quantity, unit_price, amount) FROM STDIN"
        ) as copy:
            for i, r in enumerate(rows):
                line = r["lines"][0]
                copy.write_row((i, i, line["sku"], "", line["quantity"], line["unit_price"],
                                int(line["unit_price"]) * line["quantity"]))  # fmt: skip
        elapsed = time.perf_counter() - started
    return elapsed


def cleanup(source: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM customers_customer WHERE id IN (SELECT customer_id FROM customers_identity"
            " WHERE kind = 'unionid' AND value LIKE %s)",
            [f"bench-{source}-%"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(7)
    user, _ = User.objects.get_or_create(username="bench-ingest", defaults={"role": Role.ADMIN})
    run = datetime.now(UTC).strftime("%H%M%S")
    service_source, api_source = f"bs{run}", f"ba{run}"

    rows = make_rows(args.rows, source=service_source, offset=0, rng=rng)
    copy_seconds = min(bare_copy(rows) for _ in range(3))
    copy_rate = args.rows / copy_seconds

    try:
        started = time.perf_counter()
        for i in range(0, args.rows, args.batch):
            result = bulk_upsert_orders(rows[i : i + args.batch], user=user)
            assert not result.errors, result.errors[:3]
        service_seconds = time.perf_counter() - started
        service_rate = args.rows / service_seconds

        started = time.perf_counter()
        for i in range(0, args.rows, args.batch):
            result = bulk_upsert_orders(rows[i : i + args.batch], user=user)
            assert result.unchanged == len(rows[i : i + args.batch])
        resend_rate = args.rows / (time.perf_counter() - started)

        _token, key = create_api_token(name="bench", user=user)
        client = Client()
        api_rows = make_rows(args.rows, source=api_source, offset=0, rng=rng)
        latencies = []
        started = time.perf_counter()
        for i in range(0, args.rows, args.batch):
            body = json.dumps({"rows": api_rows[i : i + args.batch]})
            t0 = time.perf_counter()
            response = client.post(
                "/api/v1/orders/bulk/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
            )
            latencies.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.content[:300]
            assert response.json()["created"] == len(api_rows[i : i + args.batch])
        api_rate = args.rows / (time.perf_counter() - started)
    finally:
        cleanup(service_source)
        cleanup(api_source)

    print(f"rows: {args.rows:,} orders with one line each, batches of {args.batch:,}")
    print(f"bare COPY into a temp table   {copy_rate:>10,.0f} rows/s   (baseline)")
    print(f"service bulk_upsert_orders    {service_rate:>10,.0f} rows/s   ratio {service_rate / copy_rate:.2f}"
          f"   (target >= 0.33)")  # fmt: skip
    print(f"service, re-sending the same  {resend_rate:>10,.0f} rows/s   ratio {resend_rate / copy_rate:.2f}")
    print(f"API POST /orders/bulk/        {api_rate:>10,.0f} rows/s   ratio {api_rate / copy_rate:.2f}")
    print(f"API {args.batch:,}-row request: max {max(latencies) * 1000:.0f} ms, "
          f"mean {sum(latencies) / len(latencies) * 1000:.0f} ms   (target < 1000 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
