"""Auto-tag reaction time: from an order's commit to the tag it earns being visible, through a real worker and beat.

    createdb scrm_reaction   # then migrate and `seed_demo --customers 1000000` with DATABASE_URL set to it
    DATABASE_URL=postgres://…/scrm_reaction .venv/bin/python bench/reaction.py [--rate 200] [--seconds 45]
        [--per-commit 10] [--pool prefork --concurrency 2] [--poll-ms 15]

Database: the reported numbers come from a database of the bench's own seeded with 1,000,000 customers (≈4.8M
orders), so each incremental check reads realistically large tables. Give it a database nothing else writes to:
the worker consumes every pending domain event of the database, so another process's writes would both slow the
measurement and be handled by this worker; the bench refuses to start when more than `--max-backlog` events are
pending. (A fresh small database works too.)

The bench saves an auto-tag rule "spent more than ¥50,000 in the last 365 days" (no seeded customer reaches it,
so the rule's full run on save tags nobody and leaves no backlog), starts a Celery worker and beat as subprocesses
on a Redis of its own (no other worker on the machine takes or adds tasks), waits for the worker's full run of
the new rule, then writes orders at a steady `--rate` for `--seconds`: `--per-commit` orders per
`bulk_upsert_orders` call, each from a new customer whose one ¥50,500 order makes them match. A poller reads,
every `--poll-ms`, in one query, which committed orders' customers carry the rule's tag yet. Per order: commit
(the write returned) → the first poll that sees the tag.

A dynamic segment with the same rule is saved next to it (issue 4: incremental entry after an order, p95 < 2 s),
so the same orders measure both: commit → tag visible, and commit → open membership of the segment visible.

Prints p50/p95/p99 (overall and per domain-event shard), the achieved orders/s and the pending domain events (the
worker's backlog) when the ingest stops and after the drain. Target (issue 3): p95 < 2 s. Bounded: the drain
waits at most `--drain` seconds; the worker and beat are always stopped (their process groups, by id). A run that
would cross the hourly :07 tick (the full re-run of time-relative rules) starts after it instead. Everything the
bench wrote is deleted at the end.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _setup
from django.db import connection, transaction
from django.utils import timezone

from customers.conditions import describe
from customers.domain_events import pending_count, shard_count
from customers.models import Customer, DomainEvent, Identity
from customers.services.ingest import bulk_upsert_orders
from scrm.celery import app as celery_app
from scrm.testing import DedicatedRedis, current_database_url
from segments.models import Segment
from segments.services import segments as segment_service
from tags import services
from tags.models import Tag, TagGroup, TagRule

GROUP = "bench-reaction"
PREFIX = "bench-react"
THRESHOLD = 50_000
TARGET_P95_S = 2.0


class Worker:
    """The worker and beat as subprocesses in their own process groups, logging to a temporary directory."""

    def __init__(self, *, broker_url: str, pool: str, concurrency: int) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="bench-reaction-"))
        self.env = {**os.environ, "DATABASE_URL": current_database_url(), "CELERY_BROKER_URL": broker_url,
                    "DJANGO_SETTINGS_MODULE": "scrm.settings"}  # fmt: skip
        celery = [sys.executable, "-m", "celery", "-A", "scrm"]
        worker = [*celery, "worker", "--pool", pool, "--without-gossip", "--without-mingle", "--loglevel", "INFO",
                  "--hostname", f"bench-reaction-{os.getpid()}@%h"]  # fmt: skip
        if pool == "prefork":
            worker += ["--concurrency", str(concurrency)]
        beat = [*celery, "beat", "--loglevel", "INFO", "--schedule", str(self.directory / "beat-schedule")]
        self.commands = {"worker": worker, "beat": beat}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        for name, command in self.commands.items():
            log = (self.directory / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command, cwd=_setup.ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            log.close()

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"celery {name} exited ({process.returncode}):\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.directory / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def discard_logs(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # the group we started: the worker's pool children too
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def bench_customer_ids() -> list[int]:
    return list(
        Identity.objects.filter(kind="unionid", value__startswith=f"{PREFIX}-").values_list("customer_id", flat=True)
    )


def cleanup() -> None:
    """Delete the bench's customers (with their orders, identities, tags…), its rule, tag and domain events."""
    ids = bench_customer_ids()
    tags = list(Tag.objects.filter(group__name=GROUP).values_list("pk", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            DomainEvent.objects.filter(customer_id__in=chunk).delete()
            Customer.objects.filter(pk__in=chunk).delete()
        if tags:
            cursor.execute(
                "DELETE FROM customers_domainevent WHERE kind IN ('tag.added', 'tag.removed')"
                " AND (payload->>'tag_id')::bigint = ANY(%s)",
                [tags],
            )
            Tag.objects.filter(pk__in=tags).delete()  # its rule, links and history go with it
        TagGroup.objects.filter(name=GROUP).delete()
        segments = list(Segment.objects.filter(name=GROUP).values_list("pk", flat=True))
        if segments:
            cursor.execute(
                "DELETE FROM customers_domainevent WHERE kind IN ('segment.entered', 'segment.exited')"
                " AND (payload->>'segment_id')::bigint = ANY(%s)",
                [segments],
            )
            Segment.objects.filter(pk__in=segments).delete()  # its memberships and sizes go with it


def wait_past_hourly_tick(window_seconds: float) -> None:
    """Start after the hourly :07 full run of time-relative rules if the run would otherwise cross it."""
    now = timezone.localtime()
    tick = now.replace(minute=7, second=0, microsecond=0)
    if tick < now - timedelta(seconds=60):
        tick += timedelta(hours=1)
    if tick - timedelta(seconds=60) <= now + timedelta(seconds=window_seconds) and now <= tick + timedelta(seconds=60):
        pause = (tick + timedelta(seconds=60) - now).total_seconds()
        print(f"the hourly :07 tick falls in the run: starting in {pause:.0f} s, after it", flush=True)
        time.sleep(pause)


class Ingest(threading.Thread):
    """Writes `rate` orders/s for `seconds`, `per_commit` per call, each from a new customer; records commit times."""

    def __init__(self, *, run: str, rate: float, seconds: float, per_commit: int) -> None:
        super().__init__(daemon=True)
        self.run_id, self.rate, self.seconds, self.per_commit = run, rate, seconds, per_commit
        self.committed: dict[int, float] = {}  # order id → perf_counter() when its write returned
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.started_at = self.finished_at = 0.0
        self.behind = 0  # commits that started late (the writer could not keep the pace)
        self.stop = threading.Event()

    def rows(self, first: int) -> list[dict]:
        ordered_at = datetime.now(UTC).isoformat()
        return [{"source": f"{PREFIX}-{self.run_id}", "external_id": f"R{i}",
                 "customer": {"unionid": f"{PREFIX}-{self.run_id}-{i}"}, "ordered_at": ordered_at, "status": "paid",
                 "lines": [{"sku": "BENCH-REACT", "quantity": 1, "unit_price": str(THRESHOLD + 500)}]}
                for i in range(first, first + self.per_commit)]  # fmt: skip

    def run(self) -> None:
        try:
            commits = round(self.rate * self.seconds / self.per_commit)
            interval = self.per_commit / self.rate
            self.started_at = time.perf_counter()
            give_up = self.started_at + self.seconds * 1.5 + 5  # a writer far behind the pace stops anyway
            for k in range(commits):
                if self.stop.is_set() or time.perf_counter() > give_up:
                    break
                due = self.started_at + k * interval
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                elif pause < -interval:
                    self.behind += 1
                result = bulk_upsert_orders(self.rows(k * self.per_commit), user=None)
                returned = time.perf_counter()
                assert not result.errors, result.errors[:3]
                with self.lock:
                    self.committed.update(dict.fromkeys(result.ids, returned))
            self.finished_at = time.perf_counter()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            connection.close()


def poll(
    ingest: Ingest, tag_id: int, segment_id: int, *, poll_s: float, drain_s: float, worker: Worker
) -> tuple[dict, dict, int]:
    """Per order, (its customer, the latency in s from its commit to the first poll that sees the customer carry
    the rule's tag), the same for entering the segment, and the pending domain events when the ingest stopped."""
    tagged: dict[int, tuple[int, float]] = {}
    entered: dict[int, tuple[int, float]] = {}
    deadline = None
    backlog = 0
    last_check = 0.0
    with connection.cursor() as cursor:
        while True:
            with ingest.lock:
                waiting = [pk for pk in ingest.committed if pk not in tagged or pk not in entered]
            if waiting:
                cursor.execute(
                    """SELECT o.id, o.customer_id,
                              EXISTS (SELECT 1 FROM tags_customertag ct WHERE ct.customer_id = o.customer_id
                                      AND ct.tag_id = %s AND ct.source = 'rule'),
                              EXISTS (SELECT 1 FROM segments_segmentmembership sm WHERE sm.segment_id = %s
                                      AND sm.customer_id = o.customer_id AND sm.exited_at IS NULL)
                       FROM customers_order o WHERE o.id = ANY(%s)""",
                    [tag_id, segment_id, waiting],
                )
                now = time.perf_counter()
                for pk, customer_id, has_tag, is_member in cursor.fetchall():
                    if has_tag and pk not in tagged:
                        tagged[pk] = (customer_id, now - ingest.committed[pk])
                    if is_member and pk not in entered:
                        entered[pk] = (customer_id, now - ingest.committed[pk])
            if ingest.error is not None:
                raise RuntimeError("the ingest failed") from ingest.error
            if not ingest.is_alive():
                if deadline is None:
                    deadline = time.perf_counter() + drain_s
                    backlog = pending_count()
                done = len(tagged) == len(entered) == len(ingest.committed)
                if done or time.perf_counter() > deadline:
                    return tagged, entered, backlog
            if time.perf_counter() - last_check > 1:
                worker.check_alive()
                last_check = time.perf_counter()
            time.sleep(poll_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="orders per second (default 200)")
    parser.add_argument("--seconds", type=float, default=45, help="length of the ingest (default 45)")
    parser.add_argument("--per-commit", type=int, default=10, help="orders per write call (default 10)")
    parser.add_argument("--pool", choices=["solo", "prefork"], default="prefork")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes (default 2)")
    parser.add_argument("--poll-ms", type=float, default=15, help="poll interval (default 15 ms)")
    parser.add_argument("--drain", type=float, default=30, help="longest wait for the last tags (default 30 s)")
    parser.add_argument("--csv", type=Path, help="write order, customer, commit time (s) and latency (ms) here")
    parser.add_argument("--max-backlog", type=int, default=1000, help="refuse to start above this many pending events")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the subprocesses

    cleanup()  # an interrupted run's leftovers
    broker = DedicatedRedis()
    broker.start()
    celery_app.conf.broker_url = broker.url
    worker = Worker(broker_url=broker.url, pool=args.pool, concurrency=args.concurrency)
    run_id = datetime.now(UTC).strftime("%H%M%S")
    ingest = None
    try:
        customers = Customer.objects.current().count()
        backlog_before = pending_count()
        if backlog_before > args.max_backlog:
            raise SystemExit(
                f"{backlog_before:,} domain events are pending: something else writes to this database. "
                "Run the bench on a database of its own (see its docstring)."
            )
        tag = Tag.objects.create(group=TagGroup.objects.create(name=GROUP), name="bench reaction")
        rule = {"predicate": "orders_sum", "op": "gt", "value": THRESHOLD, "window": {"last_days": 365}}
        description = describe(rule)
        tag_rule = services.save_rule(tag, rule)  # the worker evaluates it in full once it starts
        segment = segment_service.save_segment(None, name=GROUP, rule=rule)  # rebuilt in the worker too
        worker.start()
        started = time.perf_counter()
        while (
            TagRule.objects.filter(pk=tag_rule.pk, last_run_at__isnull=True).exists()
            or Segment.objects.filter(pk=segment.pk, last_finished_at__isnull=True).exists()
        ):
            worker.check_alive()
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"the full runs did not finish in 300 s:\n{worker.log_tail('worker')}")
            time.sleep(0.2)
        tag_rule.refresh_from_db()
        full_run = tag_rule.last_run_stats
        while pending_count() and time.perf_counter() - started < 300:  # what the full run left
            time.sleep(0.2)
        wait_past_hourly_tick(args.seconds + args.drain + 10)

        ingest = Ingest(run=run_id, rate=args.rate, seconds=args.seconds, per_commit=args.per_commit)
        ingest.start()
        latencies, entries, backlog_at_stop = poll(
            ingest, tag.pk, segment.pk, poll_s=args.poll_ms / 1000, drain_s=args.drain, worker=worker
        )
        ingest.join(timeout=5)
        backlog_after = pending_count()
        worker.discard_logs()  # kept, with their path in the error, when the run fails
    except BaseException:
        print(f"worker and beat logs: {worker.directory}", file=sys.stderr)
        raise
    finally:
        if ingest is not None:
            ingest.stop.set()
            ingest.join(timeout=10)
        worker.stop()
        broker.stop()
        cleanup()

    orders = len(ingest.committed)
    achieved = orders / (ingest.finished_at - ingest.started_at)
    values = [seconds * 1000 for _customer, seconds in latencies.values()]
    print(f"database: {connection.settings_dict['NAME']} ({customers:,} customers)   worker: {args.pool}"
          + (f" -c {args.concurrency}" if args.pool == "prefork" else "") + " + beat")  # fmt: skip
    print(f"rule: {description}")
    print(f"rule's full run on save (in the worker): {full_run}")
    print(f"pending domain events before: {backlog_before:,}")
    print(f"ingest: {orders:,} orders from new customers, {args.per_commit} per commit, target {args.rate:.0f}/s, "
          f"achieved {achieved:,.1f}/s over {ingest.finished_at - ingest.started_at:.1f} s"
          f" ({ingest.behind} commits started late)")  # fmt: skip
    print(f"tag seen for {len(latencies):,} of {orders:,} orders (poll every {args.poll_ms:.0f} ms)")
    print(f"commit → tag visible: {_setup.summary(values)}  max {max(values):,.0f} ms")
    entry_values = [seconds * 1000 for _customer, seconds in entries.values()] or [float("inf")]
    print(f"segment entered for {len(entries):,} of {orders:,} orders")
    print(f"commit → segment entry visible: {_setup.summary(entry_values)}  max {max(entry_values):,.0f} ms")
    shards = shard_count()
    for shard in range(shards):  # events are consumed per shard of customers: a starved shard shows here
        mine = [seconds * 1000 for customer, seconds in latencies.values() if customer % shards == shard]
        if mine:
            print(f"  shard {shard} (customer_id % {shards}): p50 {_setup.percentile(mine, 50):7.0f} ms  "
                  f"p95 {_setup.percentile(mine, 95):7.0f} ms  max {max(mine):7.0f} ms  (n={len(mine)})")  # fmt: skip
    print(f"pending domain events (the worker's backlog): {backlog_at_stop:,} when the ingest stopped, "
          f"{backlog_after:,} after the drain")  # fmt: skip
    if args.csv:
        with args.csv.open("w") as out:
            out.write("order,customer,committed_s,latency_ms\n")
            for pk, (customer, seconds) in sorted(latencies.items()):
                committed = ingest.committed[pk] - ingest.started_at
                out.write(f"{pk},{customer},{committed:.3f},{seconds * 1000:.1f}\n")
    for what, seen, times in (("tag", latencies, values), ("segment entry", entries, entry_values)):
        met = len(seen) == orders and _setup.percentile(times, 95) < TARGET_P95_S * 1000
        print(f"target: p95 < {TARGET_P95_S:.0f} s with every {what} seen: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
