"""Layering models and segments at a million customers: the full RFM recompute next to the bare aggregate of the
same orders, in one run; counting a 4-predicate dynamic segment; a segment's members page.

    DATABASE_URL=postgres://…/scrm_seed1m .venv/bin/python bench/segments.py [--repeats 3] [--keep]

Run against a database seeded with `manage.py seed_demo --customers 1000000` (≈4.8M orders). Targets (issue 4):

- RFM recompute within 3x the bare aggregate `SELECT customer_id, max(ordered_at), count(*), sum(amount) FROM
  customers_order GROUP BY customer_id` (run server-side with the same work_mem, rows not shipped to Python; the
  time with the rows fetched is printed too). RFM here is everything: values, scores, classes, class changes,
  the run snapshot and the 9 model segments' membership diff with history and domain events. Measured as a first
  run (every customer classified and entered: 1M rows each), then night after night: each night brings a day's
  orders (DAY_ORDERS, through the ingest service, their events handed to the RFM consumer as a worker would) and
  moves the reference date by a day (recency changes for every buyer, orders leave the window, some classes
  change). Nights alternate between the nightly run (incremental) and a full run, each followed by an unchanged
  re-run of its kind. Baseline and RFM runs are interleaved; medians of `--repeats` runs of each kind.
- Counting a dynamic segment with 4 predicates: < 2 s. Two rules: one on the models' stored results (RFM class,
  M score, ladder level, city; the ladder is recomputed first) and one mixing in the condition engine's raw
  aggregates (RFM class, orders in a window, city, content views in a window).
- A segment's members page through the API (keyset, 50 rows), first page and random depths, as an operator and
  as a rep (own book): < 200 ms.

The bench owns the RFM and ladder state of the database it runs on (derived data): it clears the RFM tables, the
ladder stages and the rfm:* and ladder:* model segments (with their history and segment events) before it starts
and again at the end (`--keep` leaves the last run's results). The orders it adds (source "bench-rfm") and their
events are deleted at the end too; the last-seen dates they moved stay. Its writes kick a throwaway Redis of its
own, and its segment events are marked processed right after each run, so no worker (not even another bench's,
sweeping the same database) replays them.
"""

import argparse
import base64
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote

import _setup
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import create_api_token
from customers.conditions import describe, matching_customers
from customers.models import Customer, DomainEvent, Order, Staff
from customers.services.ingest import bulk_upsert_orders
from scrm.celery import app as celery_app
from scrm.testing import DedicatedRedis
from segments.consumers import RFM_KINDS, recheck_rfm
from segments.models import RfmRun, Segment, SegmentMembership
from segments.services.layers import recompute_rfm, recompute_stages
from segments.services.layers.rfm import workspace_today

BARE = "SELECT customer_id, max(ordered_at), count(*), sum(amount) FROM customers_order GROUP BY customer_id"
# The same aggregate, evaluated in full on the server (every output used, so none is optimized away).
BARE_SERVER_SIDE = f"SELECT count(*), max(m), sum(n), sum(s) FROM ({BARE}) AS a(customer_id, m, n, s)"
WORK_MEM = "256MB"  # what recompute_rfm sets for its transaction
DAY_ORDERS = 13_000  # a day's orders: the seeded 4.8M span about a year
BENCH_SOURCE = "bench-rfm"
# Two 4-predicate segments: on the layering models' stored results (what segments built on the models look like),
# and mixing in the condition engine's raw aggregates over orders and behaviour events.
LAYERED_RULE = {"all": [
    {"predicate": "rfm_class", "in": ["important_value", "important_develop", "important_keep", "important_retain"]},
    {"predicate": "rfm_score", "dimension": "m", "op": "gte", "value": 4},
    {"predicate": "ladder_level", "op": "gte", "value": 3},
    {"predicate": "attribute", "field": "city", "op": "in", "value": ["上海", "北京", "杭州", "深圳"]},
]}  # fmt: skip
MIXED_RULE = {"all": [
    {"predicate": "rfm_class", "in": ["important_value", "important_develop", "important_keep"]},
    {"predicate": "orders_count", "op": "gte", "value": 2, "window": {"last_days": 365}},
    {"predicate": "attribute", "field": "city", "op": "in", "value": ["上海", "北京", "杭州", "深圳"]},
    {"predicate": "event_count", "type": "content_view", "op": "gte", "value": 1, "window": {"last_days": 90}},
]}  # fmt: skip


def timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def bare_aggregate(*, fetch: bool) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true)", [WORK_MEM])
        if fetch:
            cursor.execute(BARE)
            return len(cursor.fetchall())
        cursor.execute(BARE_SERVER_SIDE)
        return cursor.fetchone()[0]


def clear_bench_state() -> None:
    """Remove every RFM and ladder result: runs, transitions, per-customer rows and stages, the rfm:* and ladder:*
    segments, their history and their segment events."""
    ids = list(Segment.objects.filter(model_key__regex=r"^(rfm|ladder):").values_list("pk", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM customers_domainevent WHERE kind IN ('segment.entered', 'segment.exited')"
            " AND (payload ->> 'segment_id')::bigint = ANY(%s)",
            [ids],
        )
        for table in ("segments_segmentmembership", "segments_segmentsize", "segments_segmentexclusion"):
            cursor.execute(f"DELETE FROM {table} WHERE segment_id = ANY(%s)", [ids])
        cursor.execute("DELETE FROM segments_segment WHERE id = ANY(%s)", [ids])
        cursor.execute("DELETE FROM segments_customerstage WHERE model = 'ladder'")
        cursor.execute("TRUNCATE segments_rfmtransition, segments_rfmrun, segments_customerrfm, segments_rfmvaluecount")


def vacuum() -> None:
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE segments_customerrfm, segments_rfmtransition, segments_segmentmembership,"
                       " segments_customerstage, customers_domainevent")  # fmt: skip


def mark_processed(at) -> None:
    """A worker sweeping this database must not replay the bench's million segment events."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE customers_domainevent SET processed_at = now() WHERE processed_at IS NULL"
            " AND kind IN ('segment.entered', 'segment.exited') AND occurred_at = %s",
            [at],
        )


def a_days_orders(day, rng: random.Random, user: User) -> int:
    """DAY_ORDERS new orders of random customers on `day`, through the ingest service (orders, lines, outbox
    events), then the RFM consumer's part of consuming their events (the rechecks); the events are marked
    processed so no worker replays them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM customers_domainevent")
        since = cursor.fetchone()[0]
        cursor.execute("SELECT id FROM customers_customer WHERE merged_into_id IS NULL ORDER BY random() LIMIT %s",
                       [DAY_ORDERS])  # fmt: skip
        buyers = [row[0] for row in cursor.fetchall()]
    midnight = datetime.combine(day, datetime.min.time(), timezone.get_default_timezone())
    rows = [{"source": BENCH_SOURCE, "external_id": f"{day}-{k}", "customer": {"id": customer},
             "ordered_at": midnight.replace(hour=rng.randint(8, 22)).isoformat(),
             "amount": str(rng.choice([59, 99, 129, 199, 299, 599]))} for k, customer in enumerate(buyers)]  # fmt: skip
    for start in range(0, len(rows), 10_000):
        result = bulk_upsert_orders(rows[start : start + 10_000], user=user)
        assert not result.errors, result.errors[:3]
    events = list(DomainEvent.objects.filter(pk__gt=since, kind__in=RFM_KINDS))
    with transaction.atomic():
        recheck_rfm(events)
    DomainEvent.objects.filter(pk__gt=since, processed_at__isnull=True).update(processed_at=timezone.now())
    return len(rows)


def remove_bench_orders() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT id FROM customers_order WHERE source = %s", [BENCH_SOURCE])
        ids = [row[0] for row in cursor.fetchall()]
        # The ids as one array value (a hashed lookup per event): `IN (SELECT …)` on statistics that did not know
        # the bench's orders yet was planned as a scan of every event per order and ran for a quarter of an hour.
        cursor.execute(
            "DELETE FROM customers_domainevent WHERE kind LIKE 'order.%%'"
            " AND (payload ->> 'order_id')::bigint = ANY(%s::bigint[])",
            [ids],
        )
        cursor.execute("DELETE FROM customers_order WHERE source = %s", [BENCH_SOURCE])
        cursor.execute("TRUNCATE segments_rfmrecheck")


def rfm_run(as_of, *, incremental: bool = False) -> tuple[float, RfmRun, dict[str, float]]:
    """One recompute, timed, with the time of its main parts (from the statements' own timings)."""
    with CaptureQueriesContext(connection) as queries:
        seconds, run = timed(lambda: recompute_rfm(as_of=as_of, incremental=incremental))
    assert run.full is not incremental, "the bench's nights are within a week of a full run"
    mark_processed(run.started_at)
    parts = {"scores, classes, changes": 0.0, "membership (9 segments)": 0.0}
    for query in queries.captured_queries:
        if (
            query["sql"].startswith("CREATE TEMP TABLE materialized_")
            or "INSERT INTO segments_rfmtransition" in query["sql"]
        ):
            parts["scores, classes, changes"] += float(query["time"])
        elif "segments_segmentmembership" in query["sql"] and "MATERIALIZED" in query["sql"]:
            parts["membership (9 segments)"] += float(query["time"])
    return seconds, run, parts


def moved(run: RfmRun) -> str:
    entered = SegmentMembership.objects.filter(segment__model_key__startswith="rfm:", entered_at=run.started_at)
    return f"{run.transitions:,} class changes, {entered.count():,} segment entries"


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def cursor_at(position: int) -> str:
    return quote(base64.b64encode(f"p={position}".encode()).decode())


def members_pages(segment: Segment, requests: int, rng: random.Random) -> None:
    operator, _ = User.objects.get_or_create(username="bench-segments", defaults={"role": Role.OPERATOR})
    _t, operator_key = create_api_token(name="bench-segments", user=operator)
    owner = Customer.objects.filter(pk=SegmentMembership.objects.filter(segment=segment).values("customer_id")[:1])
    staff = Staff.objects.get(pk=owner.values("owner_id")[:1])
    if staff.user_id is None:
        staff.user, _ = User.objects.get_or_create(username=f"bench-segments-rep-{staff.pk}",
                                                   defaults={"role": Role.SALES})  # fmt: skip
        staff.save(update_fields=["user"])
    _t, rep_key = create_api_token(name="bench-segments-rep", user=staff.user)
    client = Client()
    url = f"/api/v1/segments/{segment.pk}/members/"
    ids = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).order_by("id")
    low, high = ids.values_list("id", flat=True).first(), ids.reverse().values_list("id", flat=True).first()
    for label, key, deep in (("operator, first page", operator_key, False), ("operator, random depth", operator_key,
                             True), ("rep (own book), first page", rep_key, False)):  # fmt: skip
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
        client.get(url, **headers)  # warm up
        latencies = []
        for _ in range(requests):
            page = f"{url}?cursor={cursor_at(rng.randint(low, high))}" if deep else url
            seconds, response = timed(lambda page=page, headers=headers: client.get(page, **headers))
            assert response.status_code == 200, (page, response.status_code, response.content[:200])
            latencies.append(seconds * 1000)
        print(f"  {label:<28}{_setup.summary(latencies)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="nightly runs and baseline runs (default 3)")
    parser.add_argument("--keep", action="store_true", help="leave the last run's RFM results in the database")
    args = parser.parse_args()
    customers = Customer.objects.current().count()
    orders = Order.objects.count()
    assert customers >= 100_000, "seed a database first: manage.py seed_demo --customers 1000000"
    print(f"customers: {customers:,}   orders: {orders:,}")
    broker = DedicatedRedis()
    broker.start()
    celery_app.conf.broker_url = broker.url  # the bench's kicks reach no worker (see the docstring)
    rng = random.Random(11)
    try:
        clear_bench_state()
        remove_bench_orders()
        bare_aggregate(fetch=False)  # warm the cache
        today = workspace_today()
        first_day = today - timedelta(days=2 * args.repeats)
        ingester, _ = User.objects.get_or_create(username="bench-segments-ingest", defaults={"role": Role.OPERATOR})

        seconds, run, parts = rfm_run(first_day)
        first = (seconds, parts, moved(run))
        vacuum()  # what autovacuum does after a million inserts, before the next night

        bare, fetched = [], []
        kinds = {True: "nightly run (incremental)", False: "full run"}
        runs: dict[bool, dict[str, list]] = {k: {"seconds": [], "parts": [], "notes": [], "rerun": []} for k in kinds}
        for night in range(1, 2 * args.repeats + 1):
            day = first_day + timedelta(days=night)
            a_days_orders(day, rng, ingester)
            vacuum()  # autovacuum runs between nights (a run updates many rows)
            bare.append(timed(lambda: bare_aggregate(fetch=False))[0])
            fetched.append(timed(lambda: bare_aggregate(fetch=True))[0])
            incremental = night % 2 == 1
            seconds, run, parts = rfm_run(day, incremental=incremental)
            kind = runs[incremental]
            kind["seconds"].append(seconds)
            kind["parts"].append(parts)
            kind["notes"].append(moved(run))
            kind["rerun"].append(rfm_run(day, incremental=incremental)[0])

        base = median_ms(bare)
        print(f"\nRFM at {customers:,} customers, a day's {DAY_ORDERS:,} orders a night, medians of {args.repeats}"
              " of each kind; ratio = time / bare aggregate (server-side)")  # fmt: skip
        print(f"  {'bare aggregate, server-side':<44}{base:>9,.0f} ms")
        print(f"  {'bare aggregate, rows fetched into Python':<44}{median_ms(fetched):>9,.0f} ms"
              f"   ratio {median_ms(fetched) / base:4.2f}")  # fmt: skip
        first_parts = ", ".join(f"{k} {v * 1000:,.0f} ms" for k, v in first[1].items())
        print(f"  {'RFM first run (everyone classified, 1 run)':<44}{first[0] * 1000:>9,.0f} ms"
              f"   ratio {first[0] * 1000 / base:4.2f}   ({first[2]}; {first_parts})")  # fmt: skip
        for incremental, label in kinds.items():
            kind = runs[incremental]
            parts = ", ".join(f"{k} {statistics.median(p[k] for p in kind['parts']) * 1000:,.0f} ms"
                              for k in kind["parts"][0])  # fmt: skip
            seconds = median_ms(kind["seconds"])
            print(f"  {'RFM ' + label + ', date + 1 day':<44}{seconds:>9,.0f} ms"
                  f"   ratio {seconds / base:4.2f}   ({'; '.join(kind['notes'])}; {parts})")  # fmt: skip
            print(f"  {'  re-run of it, nothing changed':<44}{median_ms(kind['rerun']):>9,.0f} ms"
                  f"   ratio {median_ms(kind['rerun']) / base:4.2f}")  # fmt: skip
        verdicts = {label: "met" if median_ms(runs[kind]["seconds"]) <= 3 * base else "MISSED"
                    for kind, label in ((True, "nightly run"), (False, "weekly full run"))}  # fmt: skip
        print("  target: RFM recompute <= 3x bare: " + ", ".join(f"{k} {v}" for k, v in verdicts.items()))

        ladder_at = timezone.now()
        seconds, ladder = timed(lambda: recompute_stages("ladder", now=ladder_at))
        mark_processed(ladder_at)
        vacuum()  # what autovacuum does after a million inserts
        print(f"\nladder recompute (for the layered rule): {seconds:,.1f} s ({ladder.customers:,} customers)")
        for label, rule in (("on the models' results", LAYERED_RULE), ("with raw order/event aggregates", MIXED_RULE)):
            matching_customers(rule).count()  # warm up
            counts = [timed(lambda rule=rule: matching_customers(rule).count()) for _ in range(args.repeats)]
            print(f"dynamic segment count, 4 predicates {label}: {describe(rule)}")
            print(f"  {counts[0][1]:,} customers; median {median_ms([c[0] for c in counts]):,.0f} ms "
                  f"(target < 2,000 ms)")  # fmt: skip

        largest = Segment.objects.filter(model_key__startswith="rfm:").order_by("-size").first()
        print(f"\nmembers page of “{largest.name}” ({largest.size:,} members), API, 50 rows (target < 200 ms)")
        members_pages(largest, 100, rng)
    finally:
        if not args.keep:
            clear_bench_state()
        remove_bench_orders()
        broker.stop()


if __name__ == "__main__":
    main()
