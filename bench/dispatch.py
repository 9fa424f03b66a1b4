"""Dispatch throughput: touchpoints/s through the console and webhook backends with 1 and 2 worker processes,
next to a bare Celery no-op task rate (one message per task) measured in the same run.

    createdb scrm_bench_dispatch && DATABASE_URL=postgres://…/scrm_bench_dispatch .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://…/scrm_bench_dispatch .venv/bin/python bench/dispatch.py [--count 30000] [--noops 5000]

Each scenario queues `--count` due marketing touchpoints (a one-off text with the customer's name, to 10,000
bench customers, one lane) in one statement, then starts a Celery worker (prefork, `-c 1` or `-c 2`) on a Redis of
the bench's own with as many `messaging.dispatch` tasks waiting as it has processes. The clock runs from the first
claimed row to the last one leaving the queue. The webhook scenarios post to the fake receiver in its own process
(messaging/fakes), which verifies every signature and counts each idempotency key. Quiet hours are off for the
run (restored after): the bench measures the pipeline, not the clock.

The baseline is the rate at which the same worker drains `--noops` queued `celery.accumulate` tasks (Celery's
built-in identity task: one message, one task). Target (issue 5): ≥ 3,000 touchpoints/s with the console backend
on this 2-core machine, zero duplicates. Everything the bench wrote is deleted at the end.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _setup
import redis
from django.db import connection

from customers.models import Customer
from messaging.fakes.process import spawn
from messaging.models import ConsoleMessage, ContactPolicy
from scrm.celery import app as celery_app
from scrm.testing import DedicatedRedis, current_database_url

PREFIX = "bench-dispatch"
SECRET = "bench-secret"  # noqa: S105 (the local fake receiver's)
CUSTOMERS = 10_000
TARGET = 3_000


def ensure_customers() -> list[int]:
    existing = list(Customer.objects.filter(name__startswith=PREFIX).values_list("id", flat=True))
    if len(existing) < CUSTOMERS:
        Customer.objects.bulk_create(
            [Customer(name=f"{PREFIX}-{n}", phone=f"139{n:08d}") for n in range(len(existing), CUSTOMERS)],
            batch_size=2000,
        )
        existing = list(Customer.objects.filter(name__startswith=PREFIX).values_list("id", flat=True))
    return existing


def clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_consolemessage WHERE idempotency_key LIKE %s", [f"{PREFIX}%"])
        cursor.execute("DELETE FROM messaging_touchpoint WHERE idempotency_key LIKE %s", [f"{PREFIX}%"])
    connection.cursor().execute("VACUUM ANALYZE messaging_touchpoint")


def queue(count: int, customers: list[int], channel: str, run: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_touchpoint (customer_id, channel, sender, context, content, rendered, recipient,
                counted_in, kind, source, source_ref, priority, on_cap, idempotency_key, status, reason,
                provider_code, provider_message_id, provider_response, decisions, attempts, max_attempts,
                scheduled_for, due_at, created_at, updated_at)
            SELECT (%(customers)s::bigint[])[1 + n %% %(size)s], %(channel)s, '', '{}',
                   '{"text": "您好 {{ customer.name }}, 本周会员日全场 8 折"}', '{}', '', '[]', 'marketing',
                   'campaign', 'campaign:bench', 0, 'skip', %(prefix)s || n, 'scheduled', '', '', '', '{}', '[]',
                   0, 5, now(), now(), now(), now()
            FROM generate_series(1, %(count)s) AS n
            """,
            {"customers": customers, "size": len(customers), "channel": channel, "count": count,
             "prefix": f"{PREFIX}-{run}-"},
        )  # fmt: skip


class Worker:
    """A prefork worker in its own process group, logging to a temporary file."""

    def __init__(self, *, concurrency: int, env: dict[str, str]) -> None:
        self.directory = tempfile.mkdtemp(prefix="bench-dispatch-")
        self.log = open(Path(self.directory) / "worker.log", "w+b")  # noqa: SIM115 (closed in stop)
        command = [
            sys.executable, "-m", "celery", "-A", "scrm", "worker", "--pool", "prefork",
            "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "WARNING", "--hostname", f"bench-{os.getpid()}-{concurrency}@%h",
        ]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603 (our interpreter, our arguments)
            command, cwd=_setup.ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def worker_env(broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESSAGING_")}
    env.update(
        DATABASE_URL=current_database_url(), REDIS_URL=broker_url, LOG_LEVEL="WARNING", DEBUG="1",
        MESSAGING_DISPATCH_SECONDS="600", **extra,
    )  # fmt: skip
    return env


def noop_rate(broker: DedicatedRedis, *, concurrency: int, count: int) -> float:
    """Tasks/s at which a worker drains `count` queued one-message no-op tasks."""
    client = redis.Redis.from_url(broker.url)
    client.delete("celery")
    for _ in range(count):
        celery_app.send_task("celery.accumulate", args=[1])
    worker = Worker(concurrency=concurrency, env=worker_env(broker.url))
    try:
        started = None
        while True:
            left = client.llen("celery")
            now = time.perf_counter()
            if started is None and left < count:
                started, first_left = now, left
            if left == 0:
                return (first_left if started else count) / max(now - (started or now), 1e-3)
            time.sleep(0.01)
    finally:
        worker.stop()


def dispatch_rate(broker: DedicatedRedis, *, concurrency: int, count: int, backend: str, customers: list[int]):
    run = f"{backend}-{concurrency}"
    channel = "sms" if backend == "console" else "webhook"
    queue(count, customers, channel, run)
    fake = spawn("webhook", secret=SECRET) if backend == "webhook" else None
    extra = {}
    if fake is not None:
        extra = {
            "MESSAGING_WEBHOOK_BACKEND": "messaging.backends.webhook.WebhookBackend",
            "WEBHOOK_CHANNEL_URL": fake.url,
            "WEBHOOK_CHANNEL_SECRET": SECRET,
        }
    redis.Redis.from_url(broker.url).delete("celery")
    for _ in range(concurrency):
        celery_app.send_task("messaging.dispatch")
    worker = Worker(concurrency=concurrency, env=worker_env(broker.url, **extra))
    keys = f"{PREFIX}-{run}-%"
    try:
        started = None
        deadline = time.monotonic() + 600
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(
                    """SELECT count(*) FILTER (WHERE status = 'scheduled'),
                              count(*) FILTER (WHERE status IN ('scheduled', 'sending'))
                       FROM messaging_touchpoint WHERE idempotency_key LIKE %s""",
                    [keys],
                )
                untouched, queued = cursor.fetchone()
                now = time.perf_counter()
                if started is None and untouched < count:
                    started = now
                if queued == 0:
                    break
                time.sleep(0.05)
        elapsed = now - (started or now)
    finally:
        worker.stop()
        stats = fake.stop() if fake is not None else {}
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE attempts > 1),
                      count(*) FILTER (WHERE status <> 'sent')
               FROM messaging_touchpoint WHERE idempotency_key LIKE %s""",
            [keys],
        )
        sent, retried, other = cursor.fetchone()
    if backend == "console":
        delivered = ConsoleMessage.objects.filter(idempotency_key__startswith=f"{PREFIX}-{run}-").count()
        duplicates = 0  # the console table's unique key would have refused a second row
    else:
        delivered = stats.get("keys_acted_on", 0)
        duplicates = len(stats.get("keys_acted_on_more_than_once", []))
    return count / max(elapsed, 1e-3), sent, delivered, duplicates, retried, other, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--noops", type=int, default=5_000)
    args = parser.parse_args()
    customers = ensure_customers()
    policy = ContactPolicy.current()
    quiet = policy.quiet_hours_enabled
    ContactPolicy.objects.filter(pk=policy.pk).update(quiet_hours_enabled=False)
    broker = DedicatedRedis()
    broker.start()
    previous_broker = celery_app.conf.broker_url
    celery_app.conf.broker_url = broker.url
    results = []
    try:
        clear()
        baselines = {c: noop_rate(broker, concurrency=c, count=args.noops) for c in (1, 2)}
        for backend in ("console", "webhook"):
            for concurrency in (1, 2):
                measured = dispatch_rate(
                    broker, concurrency=concurrency, count=args.count, backend=backend, customers=customers
                )
                results.append((backend, concurrency, *measured))
                clear()
    finally:
        celery_app.conf.broker_url = previous_broker
        broker.stop()
        ContactPolicy.objects.filter(pk=policy.pk).update(quiet_hours_enabled=quiet)
        clear()
    print(f"\n{args.count:,} touchpoints per scenario; bare Celery no-op tasks (one message per task):")
    for concurrency, rate in baselines.items():
        print(f"  no-op tasks, {concurrency} process(es): {rate:8,.0f} tasks/s")
    print(f"\n  {'backend':8} {'procs':>5} {'touchpoints/s':>14} {'vs no-op':>9} {'sent':>7} {'delivered':>9} "
          f"{'dups':>5} {'retried':>7} {'other':>6} {'seconds':>8}")  # fmt: skip
    for backend, concurrency, rate, sent, delivered, duplicates, retried, other, elapsed in results:
        print(f"  {backend:8} {concurrency:>5} {rate:>14,.0f} {rate / baselines[concurrency]:>8.1f}x {sent:>7,} "
              f"{delivered:>9,} {duplicates:>5} {retried:>7} {other:>6} {elapsed:>8.1f}")  # fmt: skip
    best_console = max(rate for backend, _c, rate, *_ in results if backend == "console")
    verdict = "met" if best_console >= TARGET else "NOT met"
    print(f"\nTarget ≥ {TARGET:,} touchpoints/s with the console backend: {verdict} ({best_console:,.0f}/s)")


if __name__ == "__main__":
    main()
