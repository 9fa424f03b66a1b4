"""Bulk order ingest throughput: service layer and API, next to a bare COPY of the same rows, in one run.

    .venv/bin/python bench/ingest.py [--rows 100000] [--batch 10000]

Targets (issue 2): the service layer reaches at least 1/3 of bare COPY's rows/s; a 10,000-row API request
completes in under 1 s. Scenarios: orders of customers we already know (the steady state of a shop sync) and
orders that bring new customers (two orders each), one stream and two concurrent streams. Rows are written
under unique sources and deleted afterwards.

A second reference, the floor: COPY of the same rows straight into the real tables (orders, their lines and an
`order.placed` event each), with their indexes and foreign keys, for customers that exist, rolled back. No
parsing, no customer lookup, no upsert: what writing these rows costs any service, before its own work.
"""

import argparse
import json
import multiprocessing
import random
import time
from datetime import UTC, datetime, timedelta

import _setup  # noqa: F401
from django.db import connection, transaction
from django.test import Client

from accounts.models import Role, User
from accounts.services import create_api_token
from customers.services.ingest import bulk_upsert_customers, bulk_upsert_orders


def make_rows(n: int, *, source: str, people: str, rng: random.Random) -> list[dict]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        price = rng.choice([49, 99, 129, 199, 299])
        rows.append({
            "source": source,
            "external_id": f"B{i}",
            "customer": {"unionid": f"bench-{people}-{i // 2}"},  # two orders per customer
            "ordered_at": (start + timedelta(minutes=i)).isoformat(),
            "status": "paid",
            "lines": [{"sku": f"SKU{price}", "quantity": rng.randint(1, 3), "unit_price": str(price)}],
        })  # fmt: skip
    return rows


def copy_orders(cursor, rows: list[dict], *, orders: str, lines: str, ids: list[int], customers: list[int]) -> None:
    """COPY the rows' orders (ids `ids`, two orders per customer of `customers`) and their lines into the tables
    `orders` and `lines`; the lines' own ids come from their table's default."""
    now = datetime.now(UTC)
    with cursor.copy(
        f"COPY {orders} (id, source, external_id, customer_id, status, ordered_at, amount, refunded_amount, currency,"
        " created_at, updated_at) FROM STDIN"
    ) as copy:
        for i, r in enumerate(rows):
            amount = int(r["lines"][0]["unit_price"]) * r["lines"][0]["quantity"]
            copy.write_row((ids[i], r["source"], r["external_id"], customers[i // 2], r["status"], r["ordered_at"],
                            amount, 0, "CNY", now, now))  # fmt: skip
    with cursor.copy(f"COPY {lines} (order_id, sku, name, quantity, unit_price, amount) FROM STDIN") as copy:
        for i, r in enumerate(rows):
            line = r["lines"][0]
            amount = int(line["unit_price"]) * line["quantity"]
            copy.write_row((ids[i], line["sku"], "", line["quantity"], line["unit_price"], amount))


def bare_copy(rows: list[dict]) -> float:
    """COPY the same orders and lines into scratch tables shaped like the real ones (same columns, defaults and
    indexes, no foreign keys): the ceiling for getting these rows into Postgres from Python."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE scratch_order (LIKE customers_order INCLUDING ALL) ON COMMIT DROP")
        cursor.execute("CREATE TEMP TABLE scratch_line (LIKE customers_orderline INCLUDING ALL) ON COMMIT DROP")
        started = time.perf_counter()
        ids = list(range(len(rows)))
        copy_orders(cursor, rows, orders="scratch_order", lines="scratch_line", ids=ids, customers=ids)
        return time.perf_counter() - started


def real_copy(rows: list[dict], customer_ids: list[int]) -> float:
    """COPY the same orders, their lines and an `order.placed` event each into the real tables, for existing
    customers (two orders each), then roll back: the floor under any service that writes these rows."""
    with transaction.atomic(), connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("SELECT nextval('customers_order_id_seq') FROM generate_series(1, %s)", [len(rows)])
        ids = [row[0] for row in cursor.fetchall()]
        copy_orders(cursor, rows, orders="customers_order", lines="customers_orderline", ids=ids,
                    customers=customer_ids)  # fmt: skip
        now = datetime.now(UTC)
        with cursor.copy(
            "COPY customers_domainevent (kind, customer_id, payload, occurred_at, attempts, last_error) FROM STDIN"
        ) as copy:
            for i, r in enumerate(rows):
                amount = int(r["lines"][0]["unit_price"]) * r["lines"][0]["quantity"]
                payload = {"order_id": ids[i], "status": r["status"], "amount": amount, "refunded_amount": 0}
                copy.write_row(("order.placed", customer_ids[i // 2], json.dumps(payload), now, 0, ""))
        seconds = time.perf_counter() - started
        transaction.set_rollback(True)
    return seconds


def customer_ids(people: str) -> list[int]:
    """The customers made by known_customers, in the order of their unionids' numbers."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT customer_id FROM customers_identity WHERE kind = 'unionid' AND value LIKE %s"
            " ORDER BY split_part(value, '-', 3)::int",
            [f"bench-{people}-%"],
        )
        return [row[0] for row in cursor.fetchall()]


def service_run(rows: list[dict], batch: int, username: str) -> float:
    user = User.objects.get(username=username)
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        result = bulk_upsert_orders(rows[i : i + batch], user=user)
        assert not result.errors, result.errors[:3]
    return time.perf_counter() - started


def _stream(args: tuple) -> float:
    connection.close()  # a forked process opens its own connection
    return service_run(*args)


def two_streams(rows: list[dict], batch: int, username: str) -> float:
    half = len(rows) // 2
    connection.close()
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_stream, [(rows[:half], batch, username), (rows[half:], batch, username)])
    return time.perf_counter() - started


def known_customers(people: str, n: int, user: User) -> None:
    ids = [{"unionid": f"bench-{people}-{i}"} for i in range(n // 2 + 1)]
    for i in range(0, len(ids), 10_000):
        bulk_upsert_customers(ids[i : i + 10_000], user=user)


def cleanup(people: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT customer_id FROM customers_identity WHERE kind = 'unionid' AND value LIKE %s", [f"bench-{people}-%"]
        )
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "DELETE FROM customers_orderline WHERE order_id IN"
            " (SELECT id FROM customers_order WHERE customer_id = ANY(%s))",
            [ids],
        )
        for table in ("customers_order", "customers_identity", "customers_transfer"):
            cursor.execute(f"DELETE FROM {table} WHERE customer_id = ANY(%s)", [ids])
        cursor.execute("DELETE FROM customers_customer WHERE id = ANY(%s)", [ids])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(7)
    user, _ = User.objects.get_or_create(username="bench-ingest", defaults={"role": Role.ADMIN})
    run = datetime.now(UTC).strftime("%H%M%S")
    n, batch = args.rows, args.batch

    copy_rate = n / min(bare_copy(make_rows(n, source="x", people="x", rng=rng)) for _ in range(3))
    results: list[tuple[str, float]] = []
    people_used = [f"f{run}"]
    try:
        for label, people, streams in (
            ("known customers, 1 stream", f"k{run}", 1),
            ("known customers, 2 streams", f"k2{run}", 2),
            ("new customers, 1 stream", f"n{run}", 1),
        ):
            people_used.append(people)
            rows = make_rows(n, source=f"s{people}", people=people, rng=rng)
            if label.startswith("known"):
                known_customers(people, n, user)
            seconds = (
                two_streams(rows, batch, user.username) if streams == 2 else service_run(rows, batch, user.username)
            )
            results.append((f"service, {label}", n / seconds))
            if streams == 1 and label.startswith("known"):
                started = time.perf_counter()
                service_run(rows, batch, user.username)
                results.append(("service, re-sending the same rows", n / (time.perf_counter() - started)))

        _token, key = create_api_token(name="bench", user=user)
        client = Client()
        people = f"a{run}"
        people_used.append(people)
        api_rows = make_rows(n, source=f"s{people}", people=people, rng=rng)
        known_customers(people, n, user)
        warm = json.dumps({"rows": make_rows(10, source=f"w{people}", people=people, rng=rng)})
        client.post("/api/v1/orders/bulk/", warm, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")
        latencies = []
        started = time.perf_counter()
        for i in range(0, n, batch):
            body = json.dumps({"rows": api_rows[i : i + batch]})
            t0 = time.perf_counter()
            response = client.post(
                "/api/v1/orders/bulk/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
            )
            latencies.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.content[:300]
        results.append(("API POST /orders/bulk/, known customers", n / (time.perf_counter() - started)))
        # Last, so the dead rows its rollbacks leave behind slow none of the runs above.
        known_customers(f"f{run}", n, user)
        floor_rows = make_rows(n, source=f"sf{run}", people=f"f{run}", rng=rng)
        floor_rate = n / min(real_copy(floor_rows, customer_ids(f"f{run}")) for _ in range(3))
    finally:
        for people in people_used:
            cleanup(people)

    print(f"rows: {n:,} orders with one line each, batches of {batch:,}")
    print(f"{'bare COPY into tables shaped like orders and lines':<52}{copy_rate:>10,.0f} rows/s   (baseline)")
    print(f"{'COPY into the real tables, with events (the floor)':<52}{floor_rate:>10,.0f} rows/s   "
          f"ratio {floor_rate / copy_rate:.2f}")  # fmt: skip
    for label, rate in results:
        print(f"{label:<52}{rate:>10,.0f} rows/s   ratio {rate / copy_rate:.2f}   of the floor {rate / floor_rate:.2f}")
    print("target: service ratio >= 0.33")
    print(f"API {batch:,}-row request: max {max(latencies) * 1000:.0f} ms, mean "
          f"{sum(latencies) / len(latencies) * 1000:.0f} ms   (target < 1000 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
