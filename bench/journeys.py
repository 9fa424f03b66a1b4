"""Journey runtime: step runs/s through non-send steps with 1 and 2 worker processes (next to a bare SQL claim loop
measured in the same run), and the end-to-end trigger latency from an order's commit to its journey message being
scheduled, through a real Celery worker and beat.

    createdb -h 127.0.0.1 -U postgres scrm_bench_journeys
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/scrm_bench_journeys REDIS_URL=redis://127.0.0.1:6379/6
    DEBUG=1 .venv/bin/python manage.py migrate && DEBUG=1 .venv/bin/python manage.py seed_demo --customers 5000
    .venv/bin/python bench/journeys.py [--part throughput|latency|both] [--count 100000] [--processes 1,2]
        [--repeat 2] [--due spread|same] [--profile] [--rate 200] [--seconds 40] [--per-commit 10]
        [--concurrency 2] [--advance-worker] [--keep-logs]

Database: a fresh small database of the bench's own (a few thousand seeded customers) is enough: the runtime
reads the enrollments' queue, the journey and the customers of the batch, never whole tables. The throughput part
adds its own `--count` customers; the latency part creates one customer per order. Nothing else may write to the
database (the latency worker consumes every pending domain event; the bench refuses to start above
`--max-backlog` pending events). Everything the bench wrote is deleted at the end.

Throughput (issue 6: ≥ 1,000 step runs/s per worker process; 100,000 enrollments in under 2 minutes on 2 cores).
A published journey `add_tag → branch (city = 上海) → update_attribute | add_tag → wait 1 day`, so every
enrollment runs exactly three instant steps in one tick and stops at the wait (half the bench customers live in
上海, so both arms run). The fixture is set-based: `--count` customers and one due enrollment each at the start
step are inserted with INSERT … SELECT generate_series (due times spread over the last minutes, or all the same
instant with `--due same`, which is what one `enroll()` of a big batch writes). N forked processes (Django's
connections closed before the fork) then loop on `journeys.services.runtime.advance_due()` (batches of 500) until
a call claims nothing; the clock runs from releasing them to the last one finishing. After each run the bench
checks there are exactly 3 x count StepRun rows, no duplicate (enrollment, seq), every enrollment waiting at the
wait step, and the branch split matching the cities. The steps' domain events (tag.added, customer.updated) are
written but not consumed in this part: consuming them is the domain-event pipeline's work, not the runtime's.

Baseline: the same enrollments claimed by the same number of processes with a bare SQL loop: SELECT … LIMIT 500
FOR UPDATE SKIP LOCKED, then one UPDATE of the 500 rows (next step, seq, due tomorrow), one transaction per batch.
The ratio printed is the runtime's enrollments/s over the baseline's rows/s: what running three real steps costs
over merely claiming and moving the rows. Each scenario runs `--repeat` times on a freshly inserted fixture.

`--profile` adds a cProfile of one `advance_due()` call of 500 enrollments while `--count` are due (the claim's
cost depends on how many are), for the non-send journey and for a journey whose step sends, with the time spent in
each SQL statement (by its first words); `--repeat 0 --profile` profiles only.

Latency (issue 6: p95 < 3 s under a steady 200 orders/s). A published journey triggered by `order_placed` whose
first step sends an SMS (the console backend: MESSAGING_BACKENDS has no sms backend by default). A Celery worker
(prefork, `--concurrency`) and beat run as subprocesses on a Redis of the bench's own (their cache too). A thread
writes orders at `--rate` for `--seconds`, `--per-commit` orders per `bulk_upsert_orders` call, each from a new
customer; a poller reads every `--poll-ms` which committed orders' customers have the journey's touchpoint. Per
order: commit (the write returned) → first poll that sees the touchpoint, and commit → the touchpoint's
`created_at` (same machine clock), with the enrollment's `entered_at` splitting it into commit → enrolled (the
domain-event consumer) and enrolled → scheduled (the first step, which the consumer runs in the same
transaction). Quiet hours are off during the run (restored after), so the worker has the messages to send too, as
in the daytime.

`--advance-worker` is an experiment, not the shipped configuration: journeys.advance is routed to a queue of its
own served by one more worker process (`-c 1`), set in the worker's and beat's own processes only. It shows what
isolating the runtime from the domain-event consumers does to the latency (see the report).
"""

import argparse
import cProfile
import io
import multiprocessing
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import _setup
from django.conf import settings
from django.db import connection, connections, transaction

from customers.domain_events import pending_count
from customers.models import Customer, DomainEvent, Identity
from customers.services.ingest import bulk_upsert_orders
from journeys.models import Enrollment, Journey
from journeys.services import lifecycle, runtime
from messaging.models import ContactPolicy
from scrm.celery import app as celery_app
from scrm.testing import DedicatedRedis, current_database_url
from tags.models import Tag, TagGroup

PREFIX = "bench-journeys"
GROUP = "bench-journeys"
STEP_RUNS_PER_ENROLLMENT = 3
TARGET_PER_PROCESS = 1_000  # step runs/s per worker process
TARGET_SECONDS = 120  # for --count enrollments with 2 processes
TARGET_P95_S = 3.0
BASELINE_BATCH = 500
SEND_TEXT = "感谢您的订单, {{ customer.name }}"


# ------------------------------------------------------------------------------------------------------ fixture


def create_throughput_journey() -> tuple[Journey, dict[str, int]]:
    group = TagGroup.objects.create(name=GROUP)
    tags = {
        "visited": Tag.objects.create(group=group, name=f"{PREFIX} visited").pk,
        "elsewhere": Tag.objects.create(group=group, name=f"{PREFIX} elsewhere").pk,
    }
    shanghai = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}
    draft = {
        "trigger": {"type": "manual"},
        "exit": {"policy": "end"},
        "start": "s1",
        "steps": [
            {"id": "s1", "type": "add_tag", "tag": tags["visited"], "next": "s2"},
            {"id": "s2", "type": "branch", "branches": [{"label": "上海", "rule": shanghai, "next": "s3"}],
             "else_next": "s4"},
            {"id": "s3", "type": "update_attribute", "attribute": "bench_city_offer", "value": "shanghai",
             "next": "s5"},
            {"id": "s4", "type": "add_tag", "tag": tags["elsewhere"], "next": "s5"},
            {"id": "s5", "type": "wait", "mode": "duration", "days": 1},
        ],
    }  # fmt: skip
    journey = Journey.objects.create(name=f"{PREFIX} throughput", draft=draft)
    lifecycle.publish(journey)
    journey.refresh_from_db()
    return journey, tags


def ensure_customers(count: int) -> None:
    """`count` bench customers, half of them in 上海 (inserted in one statement; no identities, no orders)."""
    have = Customer.objects.filter(name__startswith=f"{PREFIX}-").count()
    if have >= count:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_customer (name, gender, city, occupation, phone, email, time_zone, attributes,
                first_seen_at, last_seen_at, created_at, updated_at)
            SELECT %(prefix)s || n, '', CASE WHEN n %% 2 = 0 THEN '上海' ELSE '北京' END, '',
                   '138' || lpad(n::text, 8, '0'), '', '', '{}', now(), now(), now(), now()
            FROM generate_series(%(first)s, %(last)s) AS n
            """,
            {"prefix": f"{PREFIX}-", "first": have, "last": count - 1},
        )  # fmt: skip
        cursor.execute("ANALYZE customers_customer")


def reset_enrollments(journey: Journey, tags: dict[str, int], count: int, due: str) -> None:
    """Remove what a run wrote and insert `count` enrollments due now at the start step (one statement)."""
    clear_throughput_runs(journey, tags)
    spread = "now() - interval '10 minutes' + (n * interval '1 millisecond')" if due == "spread" else "now()"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO journeys_enrollment (journey_id, version_id, customer_id, rotation, state, step,
                step_entered_at, next_run_at, seq, wait, arms, trigger, trigger_key, context, entered_at, exit_reason,
                goal_until, attempts, last_error, conversion_ref)
            SELECT %(journey)s, %(version)s, c.id, 1, 'active', 's1', due, due, 0, '{{}}', '{{}}', 'manual', '', '{{}}',
                   due, '', NULL, 0, '', ''
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM customers_customer
                  WHERE name LIKE %(prefix)s ORDER BY id LIMIT %(count)s) AS c,
                 LATERAL (SELECT {spread} - interval '1 second' AS due) AS d
            """,
            {"journey": journey.pk, "version": journey.current_version_id, "prefix": f"{PREFIX}-%", "count": count},
        )  # fmt: skip
    vacuum()


def clear_throughput_runs(journey: Journey, tags: dict[str, int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_touchpoint WHERE source_ref = %s", [journey.source_ref])
        cursor.execute(
            "DELETE FROM journeys_steprun WHERE enrollment_id IN (SELECT id FROM journeys_enrollment "
            "WHERE journey_id = %s)",
            [journey.pk],
        )
        cursor.execute("DELETE FROM journeys_enrollment WHERE journey_id = %s", [journey.pk])
        cursor.execute("DELETE FROM tags_taghistory WHERE tag_id = ANY(%s)", [list(tags.values())])
        cursor.execute("DELETE FROM tags_customertag WHERE tag_id = ANY(%s)", [list(tags.values())])
        cursor.execute(
            "DELETE FROM customers_domainevent WHERE customer_id IN (SELECT id FROM customers_customer "
            "WHERE name LIKE %s)",
            [f"{PREFIX}-%"],
        )
        cursor.execute(
            "UPDATE customers_customer SET attributes = attributes - 'bench_city_offer' WHERE name LIKE %s "
            "AND attributes ? 'bench_city_offer'",
            [f"{PREFIX}-%"],
        )


def vacuum() -> None:
    with connection.cursor() as cursor:
        for table in ("journeys_enrollment", "journeys_steprun", "customers_customer", "customers_domainevent",
                      "tags_customertag", "tags_taghistory"):  # fmt: skip
            cursor.execute(f"VACUUM ANALYZE {table}")


def cleanup_throughput() -> None:
    """Delete the throughput journey, its tags, its enrollments and the bench customers (set-based)."""
    for journey in Journey.objects.filter(name__in=[f"{PREFIX} throughput", f"{PREFIX} send"]):
        tags = dict(Tag.objects.filter(group__name=GROUP).values_list("name", "pk"))
        clear_throughput_runs(journey, tags)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM journeys_refusal WHERE journey_id = %s", [journey.pk])
        journey.delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM customers_domainevent WHERE customer_id IN (SELECT id FROM customers_customer "
            "WHERE name LIKE %s)",
            [f"{PREFIX}-%"],
        )
        cursor.execute("DELETE FROM customers_customer WHERE name LIKE %s", [f"{PREFIX}-%"])
    Tag.objects.filter(group__name=GROUP).delete()
    TagGroup.objects.filter(name=GROUP).delete()


# --------------------------------------------------------------------------------------------------- throughput


def _runtime_loop(start, results, batch_size: int) -> None:
    """A worker process: advance due enrollments until a call claims nothing."""
    try:
        start.wait()
        began = time.perf_counter()
        claimed = step_runs = 0
        ticks: list[float] = []  # seconds per advance_due() call that claimed something
        while True:
            tick = time.perf_counter()
            result = runtime.advance_due(batch_size=batch_size)
            if not result.claimed:
                break
            ticks.append(time.perf_counter() - tick)
            claimed += result.claimed
            step_runs += result.step_runs
        results.put((os.getpid(), claimed, step_runs, ticks, began, time.perf_counter(), None))
    except BaseException as exc:
        results.put((os.getpid(), 0, 0, [], 0.0, 0.0, repr(exc)))
    finally:
        connection.close()


_BARE_CLAIM = """
SELECT id FROM journeys_enrollment
WHERE state = 'active' AND next_run_at <= %s AND journey_id = %s
ORDER BY next_run_at, id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_BARE_UPDATE = """
UPDATE journeys_enrollment SET step = 's5', step_entered_at = %s, next_run_at = %s + interval '1 day',
       seq = seq + 3, wait = '{}', attempts = 0
WHERE id = ANY(%s)
"""


def _baseline_loop(start, results, journey_id: int, batch_size: int) -> None:
    """A worker process: claim and move rows with bare SQL until a claim returns nothing."""
    try:
        start.wait()
        began = time.perf_counter()
        claimed = 0
        ticks: list[float] = []
        while True:
            tick = time.perf_counter()
            now = datetime.now(UTC)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_BARE_CLAIM, [now, journey_id, batch_size])
                ids = [row[0] for row in cursor.fetchall()]
                if not ids:
                    break
                cursor.execute(_BARE_UPDATE, [now, now, ids])
            claimed += len(ids)
            ticks.append(time.perf_counter() - tick)
        results.put((os.getpid(), claimed, 0, ticks, began, time.perf_counter(), None))
    except BaseException as exc:
        results.put((os.getpid(), 0, 0, [], 0.0, 0.0, repr(exc)))
    finally:
        connection.close()


def run_processes(target, processes: int, *args) -> tuple[float, list[tuple]]:
    """Fork `processes` children running `target`, release them together; wall seconds and each one's result."""
    connections.close_all()  # never share a connection with a child
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    children = [context.Process(target=target, args=(start, results, *args), daemon=True) for _ in range(processes)]
    for child in children:
        child.start()
    time.sleep(0.5)  # let them reach the barrier
    released = time.perf_counter()
    start.set()
    outcomes = [results.get(timeout=1800) for _ in children]
    for child in children:
        child.join(timeout=60)
    errors = [o[-1] for o in outcomes if o[-1]]
    if errors:
        raise RuntimeError(f"a worker process failed: {errors}")
    return max(o[5] for o in outcomes) - released, outcomes


def verify_runtime(journey: Journey, count: int) -> dict[str, int]:
    """Counts the run must have produced: every enrollment ran its three steps exactly once."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*), count(DISTINCT (r.enrollment_id, r.seq)),
                      count(*) FILTER (WHERE r.step = 's3'), count(*) FILTER (WHERE r.step = 's4')
               FROM journeys_steprun r JOIN journeys_enrollment e ON e.id = r.enrollment_id
               WHERE e.journey_id = %s""",
            [journey.pk],
        )
        runs, distinct, shanghai_runs, elsewhere_runs = cursor.fetchone()
        cursor.execute(
            """SELECT count(*) FILTER (WHERE e.state = 'active' AND e.step = 's5' AND e.seq = 3
                                         AND e.next_run_at > now() + interval '23 hours'),
                      count(*) FILTER (WHERE c.city = '上海')
               FROM journeys_enrollment e JOIN customers_customer c ON c.id = e.customer_id
               WHERE e.journey_id = %s""",
            [journey.pk],
        )
        waiting, shanghai = cursor.fetchone()
    problems = []
    if runs != STEP_RUNS_PER_ENROLLMENT * count:
        problems.append(f"{runs:,} step runs, expected {STEP_RUNS_PER_ENROLLMENT * count:,}")
    if distinct != runs:
        problems.append(f"{runs - distinct:,} duplicate (enrollment, seq)")
    if waiting != count:
        problems.append(f"{count - waiting:,} enrollments not waiting at s5 with seq 3")
    if shanghai_runs != shanghai or elsewhere_runs != count - shanghai:
        problems.append(f"branch split {shanghai_runs:,}/{elsewhere_runs:,}, "
                        f"expected {shanghai:,}/{count - shanghai:,}")  # fmt: skip
    return {"step_runs": runs, "duplicates": runs - distinct, "problems": problems}


def verify_baseline(journey: Journey, count: int) -> list[str]:
    moved = Enrollment.objects.filter(journey=journey, step="s5", seq=3).count()
    return [] if moved == count else [f"{moved:,} rows moved, expected {count:,}"]


def create_send_journey() -> Journey:
    draft = {"trigger": {"type": "manual"}, "exit": {"policy": "end"},
             "steps": [{"id": "s1", "type": "send", "channel": "sms", "text": SEND_TEXT}]}  # fmt: skip
    journey = Journey.objects.create(name=f"{PREFIX} send", draft=draft)
    lifecycle.publish(journey)
    journey.refresh_from_db()
    return journey


def profile_one_batch(journey: Journey, tags: dict[str, int], due: str, count: int) -> str:
    """cProfile of one advance_due() of 500 enrollments while `count` are due (after one unprofiled call warms the
    process up), and the time in each SQL statement."""
    reset_enrollments(journey, tags, max(count, 2 * runtime.BATCH_SIZE), due)
    runtime.advance_due()
    timings: dict[str, list[float]] = defaultdict(list)

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            words = " ".join(sql.split())
            timings[words[:90]].append(time.perf_counter() - started)

    profiler = cProfile.Profile()
    with connection.execute_wrapper(timed):
        started = time.perf_counter()
        profiler.enable()
        result = runtime.advance_due()
        profiler.disable()
        elapsed = time.perf_counter() - started
    out = io.StringIO()
    out.write(f"one advance_due() with {max(count, 2 * runtime.BATCH_SIZE) - runtime.BATCH_SIZE:,} due: claimed "
              f"{result.claimed}, {result.step_runs} step runs in {elapsed * 1000:.0f} ms "
              f"({result.step_runs / elapsed:,.0f} step runs/s)\n\nSQL statements (ms, by first words):\n")  # fmt: skip
    total_sql = 0.0
    for sql, values in sorted(timings.items(), key=lambda item: -sum(item[1])):
        total_sql += sum(values)
        out.write(f"  {sum(values) * 1000:8.1f} ms  x{len(values):<3} {sql}\n")
    out.write(f"  {total_sql * 1000:8.1f} ms  in SQL ({total_sql / elapsed:.0%} of the call)\n\n")
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)
    clear_throughput_runs(journey, tags)  # none of its enrollments stays due for the next profile
    return out.getvalue()


def run_runtime(args, journey: Journey, tags: dict[str, int], attempt: int, processes: int, variant: str) -> tuple:
    reset_enrollments(journey, tags, args.count, args.due)
    wall, outcomes = run_processes(_runtime_loop, processes, runtime.BATCH_SIZE)
    check = verify_runtime(journey, args.count)
    print(f"  {variant:11} run {attempt}, {processes} process(es): {check['step_runs'] / wall:8,.0f} step runs/s "
          f"({wall:.1f} s){'  ' + '; '.join(check['problems']) if check['problems'] else ''}", flush=True)  # fmt: skip
    return attempt, processes, variant, wall, outcomes, check


def throughput(args, broker: DedicatedRedis) -> tuple[list[tuple], list[tuple], str]:
    cleanup_throughput()
    ensure_customers(args.count)
    journey, tags = create_throughput_journey()
    variants = ["runtime"]
    baselines, results = [], []
    profile = ""
    try:
        for attempt in range(1, args.repeat + 1):
            for processes in args.processes:
                reset_enrollments(journey, tags, args.count, args.due)
                wall, outcomes = run_processes(_baseline_loop, processes, journey.pk, BASELINE_BATCH)
                problems = verify_baseline(journey, args.count)
                baselines.append((attempt, processes, wall, outcomes, problems))
                print(f"  {'baseline':11} run {attempt}, {processes} process(es): {args.count / wall:8,.0f} rows/s "
                      f"({wall:.1f} s){'  ' + '; '.join(problems) if problems else ''}", flush=True)  # fmt: skip
                for variant in variants:
                    results.append(run_runtime(args, journey, tags, attempt, processes, variant))
        if args.profile:
            profile = "Non-send steps (add_tag, branch, update_attribute | add_tag):\n"
            profile += profile_one_batch(journey, tags, args.due, args.count)
            profile += "\nA send step (sms, text with the customer's name), the latency journey's first step:\n"
            profile += profile_one_batch(create_send_journey(), {}, args.due, args.count)
    finally:
        cleanup_throughput()
    return baselines, results, profile


def report_throughput(args, baselines: list[tuple], results: list[tuple]) -> None:
    print(f"\nThroughput: {args.count:,} due enrollments, {STEP_RUNS_PER_ENROLLMENT} instant steps each "
          f"(add_tag → branch city=上海 → update_attribute | add_tag → wait 1 day), due times '{args.due}', "
          f"batches of {runtime.BATCH_SIZE}")  # fmt: skip
    base = {(attempt, processes): args.count / wall for attempt, processes, wall, _o, _p in baselines}
    print(f"\n  {'variant':11} {'run':>3} {'procs':>5} {'baseline rows/s':>16} {'enrollments/s':>14} "
          f"{'step runs/s':>12} {'per process':>12} {'vs baseline':>11} {'seconds':>8} {'step runs':>10} {'dups':>5}  "
          f"check")  # fmt: skip
    for attempt, processes, variant, wall, outcomes, check in results:
        rate = check["step_runs"] / wall
        enrollments = args.count / wall
        per_process = ", ".join(f"{o[2] / (o[5] - o[4]):,.0f}" for o in sorted(outcomes))
        verdict = "ok" if not check["problems"] else "; ".join(check["problems"])
        print(f"  {variant:11} {attempt:>3} {processes:>5} {base[attempt, processes]:>16,.0f} {enrollments:>14,.0f} "
              f"{rate:>12,.0f} {per_process:>12} {enrollments / base[attempt, processes]:>10.2f}x {wall:>8.1f} "
              f"{check['step_runs']:>10,} {check['duplicates']:>5}  {verdict}")  # fmt: skip
    for attempt, processes, variant, _wall, outcomes, _check in results:
        for pid, claimed, step_runs, ticks, began, ended, _error in sorted(outcomes):
            tenth = max(1, len(ticks) // 10)  # the first and last tenth of the ticks: does a tick slow down?
            first, last = statistics.fmean(ticks[:tenth]) * 1000, statistics.fmean(ticks[-tenth:]) * 1000
            print(f"    {variant}, run {attempt}, {processes} proc(s): pid {pid} claimed {claimed:,} in {len(ticks)} "
                  f"ticks, {step_runs:,} step runs in {ended - began:.1f} s; ms per tick: p50 "
                  f"{_setup.percentile(ticks, 50) * 1000:.0f}, first tenth {first:.0f}, "
                  f"last tenth {last:.0f}")  # fmt: skip
    ok = all(not check["problems"] for *_rest, check in results)
    shipped = [r for r in results if r[2] == "runtime"]
    for processes in args.processes:
        rates = [check["step_runs"] / wall / p for _a, p, _v, wall, _o, check in shipped if p == processes]
        verdicts = " / ".join(f"{'met' if r >= TARGET_PER_PROCESS else 'NOT met'} ({r:,.0f})" for r in rates)
        print(f"Target ≥ {TARGET_PER_PROCESS:,} step runs/s per process with {processes} process(es), each run: "
              f"{verdicts}")  # fmt: skip
    two = [wall for _a, p, _v, wall, _o, _c in shipped if p == 2]
    if two:
        verdicts = " / ".join(f"{'met' if w < TARGET_SECONDS else 'NOT met'} ({w:.0f} s)" for w in two)
        print(f"Target {args.count:,} enrollments in < {TARGET_SECONDS} s with 2 processes, each run: {verdicts}")
    print(f"Correctness (exact step runs, no duplicate (enrollment, seq), all waiting, branch split): "
          f"{'ok' if ok else 'FAILED'}")  # fmt: skip


# ------------------------------------------------------------------------------------------------------ latency


ADVANCE_QUEUE = "bench-journeys-advance"
_ROUTED = (
    "import sys; from scrm.celery import app; "
    f"app.conf.task_routes = {{**(app.conf.task_routes or {{}}), 'journeys.advance': {{'queue': '{ADVANCE_QUEUE}'}}}}; "
    "sys.exit(app.start(sys.argv[1:]))"
)


class Worker:
    """The worker and beat as subprocesses in their own process groups, logging to a temporary directory; broker
    and cache on the bench's Redis."""

    def __init__(self, *, broker_url: str, concurrency: int, advance_worker: bool = False) -> None:
        self.directory = tempfile.mkdtemp(prefix="bench-journeys-")
        self.env = {**os.environ, "DATABASE_URL": current_database_url(), "CELERY_BROKER_URL": broker_url,
                    "REDIS_URL": broker_url, "DJANGO_SETTINGS_MODULE": "scrm.settings"}  # fmt: skip
        self.env = {k: v for k, v in self.env.items() if not k.startswith("MESSAGING_")}
        # The experiment: journeys.advance on a queue of its own, served by a worker process of its own (set in every
        # process that sends it: the worker's consumers kick it, beat ticks it).
        celery = [sys.executable, "-c", _ROUTED] if advance_worker else [sys.executable, "-m", "celery", "-A", "scrm"]
        worker = ["worker", "--pool", "prefork", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        self.commands = {
            "worker": [*celery, *worker, "--concurrency", str(concurrency),
                       "--hostname", f"bench-journeys-{os.getpid()}@%h"],
            "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule", f"{self.directory}/beat-schedule"],
        }  # fmt: skip
        if advance_worker:
            self.commands["worker"] += ["--queues", "celery"]
            self.commands["advance"] = [*celery, *worker, "--concurrency", "1", "--queues", ADVANCE_QUEUE,
                                        "--hostname", f"bench-journeys-advance-{os.getpid()}@%h"]  # fmt: skip
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        for name, command in self.commands.items():
            with open(f"{self.directory}/{name}.log", "wb") as log:
                self.processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                    command, cwd=_setup.ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"celery {name} exited ({process.returncode}):\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = f"{self.directory}/{name}.log"
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])

    def count_in_log(self, needle: str) -> int:
        path = f"{self.directory}/worker.log"
        if not os.path.exists(path):
            return 0
        with open(path, errors="replace") as log:
            return sum(needle in line for line in log)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # the group we started: the pool's children too
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def discard_logs(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Ingest(threading.Thread):
    """Writes `rate` orders/s for `seconds`, `per_commit` per call, each from a new customer; records commit times
    (perf_counter for the poller, wall clock for the database's timestamps)."""

    def __init__(self, *, run: str, attempt: int, rate: float, seconds: float, per_commit: int) -> None:
        super().__init__(daemon=True)
        self.attempt = attempt  # phones 166<attempt><7 digits>: a prefix the seeded customers do not use
        self.run_id, self.rate, self.seconds, self.per_commit = run, rate, seconds, per_commit
        self.committed: dict[int, tuple[float, float]] = {}  # order id → (perf_counter, time.time) at commit
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.started_at = self.finished_at = 0.0
        self.behind = 0
        self.stop = threading.Event()

    def rows(self, first: int) -> list[dict]:
        ordered_at = datetime.now(UTC).isoformat()
        return [{"source": f"{PREFIX}-{self.run_id}", "external_id": f"J{i}",
                 "customer": {"unionid": f"{PREFIX}-{self.run_id}-{i}", "phone": f"166{self.attempt % 10}{i:07d}"},
                 "ordered_at": ordered_at, "status": "paid",
                 "lines": [{"sku": "BENCH-JOURNEY", "quantity": 1, "unit_price": "199.00"}]}
                for i in range(first, first + self.per_commit)]  # fmt: skip

    def run(self) -> None:
        try:
            commits = round(self.rate * self.seconds / self.per_commit)
            interval = self.per_commit / self.rate
            self.started_at = time.perf_counter()
            give_up = self.started_at + self.seconds * 1.5 + 5
            for k in range(commits):
                if self.stop.is_set() or time.perf_counter() > give_up:
                    break
                pause = self.started_at + k * interval - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                elif pause < -interval:
                    self.behind += 1
                result = bulk_upsert_orders(self.rows(k * self.per_commit), user=None)
                returned = (time.perf_counter(), time.time())
                assert not result.errors, result.errors[:3]
                with self.lock:
                    self.committed.update(dict.fromkeys(result.ids, returned))
            self.finished_at = time.perf_counter()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            connection.close()


def poll(ingest: Ingest, journey: Journey, *, poll_s: float, drain_s: float, worker: Worker) -> tuple[dict, int]:
    """Per order, the seconds from its commit to the first poll that sees its customer's journey touchpoint; and the
    pending domain events when the ingest stopped."""
    seen: dict[int, float] = {}
    deadline = None
    backlog = 0
    last_check = 0.0
    with connection.cursor() as cursor:
        while True:
            with ingest.lock:
                waiting = [pk for pk in ingest.committed if pk not in seen]
            if waiting:
                cursor.execute(
                    """SELECT o.id FROM customers_order o
                       JOIN messaging_touchpoint t ON t.customer_id = o.customer_id AND t.source_ref = %s
                       WHERE o.id = ANY(%s)""",
                    [journey.source_ref, waiting],
                )
                now = time.perf_counter()
                for (pk,) in cursor.fetchall():
                    seen[pk] = now - ingest.committed[pk][0]
            if ingest.error is not None:
                raise RuntimeError("the ingest failed") from ingest.error
            if not ingest.is_alive():
                if deadline is None:
                    deadline = time.perf_counter() + drain_s
                    backlog = pending_count()
                if len(seen) == len(ingest.committed) or time.perf_counter() > deadline:
                    return seen, backlog
            if time.perf_counter() - last_check > 1:
                worker.check_alive()
                last_check = time.perf_counter()
            time.sleep(poll_s)


def stages(ingest: Ingest, journey: Journey) -> dict[int, tuple[float, float | None, float | None, str]]:
    """Per order: (commit wall time, enrollment entered_at, touchpoint created_at, touchpoint status)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT (e.context->>'order_id')::bigint, extract(epoch FROM e.entered_at),
                      extract(epoch FROM t.created_at), t.status
               FROM journeys_enrollment e
               LEFT JOIN messaging_touchpoint t ON t.customer_id = e.customer_id AND t.source_ref = %s
               WHERE e.journey_id = %s""",
            [journey.source_ref, journey.pk],
        )
        rows = {pk: (float(entered), float(created) if created is not None else None, status or "")
                for pk, entered, created, status in cursor.fetchall()}  # fmt: skip
    return {pk: (wall, *rows.get(pk, (None, None, ""))) for pk, (_perf, wall) in ingest.committed.items()}


def bench_customer_ids() -> list[int]:
    return list(
        Identity.objects.filter(kind="unionid", value__startswith=f"{PREFIX}-").values_list("customer_id", flat=True)
    )


def cleanup_latency() -> None:
    ids = bench_customer_ids()
    journeys = list(Journey.objects.filter(name__startswith=f"{PREFIX} latency"))
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            DomainEvent.objects.filter(customer_id__in=chunk).delete()
            cursor.execute("DELETE FROM messaging_contactcounter WHERE customer_id = ANY(%s)", [chunk])
            Customer.objects.filter(pk__in=chunk).delete()  # orders, identities, enrollments, touchpoints…
        for journey in journeys:
            Enrollment.objects.filter(journey=journey).delete()
            journey.delete()


def latency(args, broker: DedicatedRedis) -> list[dict]:
    runs = []
    for attempt in range(1, args.repeat + 1):
        runs.append(latency_once(args, broker, attempt))
    return runs


def latency_once(args, broker: DedicatedRedis, attempt: int) -> dict:
    cleanup_latency()
    backlog_before = pending_count()
    if backlog_before > args.max_backlog:
        raise SystemExit(f"{backlog_before:,} domain events are pending: something else writes to this database. "
                         "Run the bench on a database of its own (see its docstring).")  # fmt: skip
    draft = {
        "trigger": {"type": "order_placed"},
        "reentry": {"policy": "never"},
        "exit": {"policy": "end"},
        "steps": [{"id": "s1", "type": "send", "channel": "sms", "text": SEND_TEXT}],
    }
    journey = Journey.objects.create(name=f"{PREFIX} latency {attempt}", draft=draft)
    lifecycle.publish(journey)
    journey.refresh_from_db()
    worker = Worker(broker_url=broker.url, concurrency=args.concurrency, advance_worker=args.advance_worker)
    ingest = None
    run_id = datetime.now(UTC).strftime("%H%M%S")
    try:
        worker.start()
        started = time.perf_counter()
        while worker.count_in_log("ready.") == 0:  # the worker's "celery@… ready." line
            worker.check_alive()
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"the worker did not start in 120 s:\n{worker.log_tail('worker')}")
            time.sleep(0.2)
        time.sleep(2)  # beat's first ticks
        ingest = Ingest(run=run_id, attempt=attempt, rate=args.rate, seconds=args.seconds, per_commit=args.per_commit)
        ingest.start()
        seen, backlog_at_stop = poll(ingest, journey, poll_s=args.poll_ms / 1000, drain_s=args.drain, worker=worker)
        ingest.join(timeout=5)
        backlog_after = pending_count()
        per_order = stages(ingest, journey)
        if args.keep_logs:
            print(f"worker and beat logs of run {attempt}: {worker.directory}", flush=True)
        else:
            worker.discard_logs()
    except BaseException:
        print(f"worker and beat logs: {worker.directory}", file=sys.stderr)
        raise
    finally:
        if ingest is not None:
            ingest.stop.set()
            ingest.join(timeout=10)
        worker.stop()
        cleanup_latency()
    return {"attempt": attempt, "ingest": ingest, "seen": seen, "stages": per_order, "backlog_at_stop": backlog_at_stop,
            "backlog_after": backlog_after}  # fmt: skip


def report_latency(args, runs: list[dict]) -> None:
    workers = f"worker prefork -c {args.concurrency} + beat"
    if args.advance_worker:
        workers += f" + journeys.advance routed to its own worker (-c 1, queue {ADVANCE_QUEUE})"
    print(f"\nLatency: trigger order_placed → send (sms, console backend); {workers}; {args.per_commit} orders per "
          f"commit, target {args.rate:.0f}/s for {args.seconds:.0f} s")  # fmt: skip
    verdicts = []
    for run in runs:
        ingest = run["ingest"]
        orders = len(ingest.committed)
        achieved = orders / (ingest.finished_at - ingest.started_at)
        seen = [s * 1000 for s in run["seen"].values()]
        stages_ = run["stages"]
        created = [(c - w) * 1000 for w, _e, c, _s in stages_.values() if c is not None]
        enrolled = [(e - w) * 1000 for w, e, _c, _s in stages_.values() if e is not None]
        scheduled = [(c - e) * 1000 for _w, e, c, _s in stages_.values() if c is not None and e is not None]
        statuses = defaultdict(int)
        for *_rest, status in stages_.values():
            statuses[status or "none"] += 1
        print(f"\n  run {run['attempt']}: {orders:,} orders, achieved {achieved:,.1f}/s over "
              f"{ingest.finished_at - ingest.started_at:.1f} s ({ingest.behind} commits started late); touchpoint "
              f"seen for {len(seen):,} of {orders:,}")  # fmt: skip
        if seen:
            print(f"    commit → touchpoint seen (poll {args.poll_ms:.0f} ms): {_setup.summary(seen)}  "
                  f"max {max(seen):,.0f} ms")  # fmt: skip
        if created:
            print(f"    commit → touchpoint created_at:      {_setup.summary(created)}  max {max(created):,.0f} ms")
        if enrolled:
            print(f"      commit → enrolled (consumer):      {_setup.summary(enrolled)}")
        if scheduled:
            print(f"      enrolled → scheduled (runtime):    {_setup.summary(scheduled)}")
        print(f"    touchpoint statuses at the end: {dict(sorted(statuses.items()))}; pending domain events "
              f"{run['backlog_at_stop']:,} when the ingest stopped, "
              f"{run['backlog_after']:,} after the drain")  # fmt: skip
        p95 = _setup.percentile(seen, 95) if seen else float("inf")
        verdicts.append(len(seen) == orders and p95 < TARGET_P95_S * 1000)
    print(f"Target p95 < {TARGET_P95_S:.0f} s (commit → touchpoint seen) with every touchpoint scheduled: "
          f"{' / '.join('met' if v else 'MISSED' for v in verdicts)}")  # fmt: skip


# --------------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["throughput", "latency", "both"], default="both")
    parser.add_argument("--count", type=int, default=100_000, help="due enrollments (default 100,000)")
    parser.add_argument("--processes", default="1,2", help="worker processes to try (default 1,2)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (default 2)")
    parser.add_argument("--due", choices=["spread", "same"], default="spread",
                        help="due times spread over 10 minutes, or one instant for all (default spread)")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="cProfile one advance_due() of 500")
    parser.add_argument("--rate", type=float, default=200, help="orders per second (default 200)")
    parser.add_argument("--seconds", type=float, default=40, help="length of the ingest (default 40)")
    parser.add_argument("--per-commit", type=int, default=10, help="orders per write call (default 10)")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes of the worker (default 2)")
    parser.add_argument("--poll-ms", type=float, default=15, help="poll interval (default 15 ms)")
    parser.add_argument("--drain", type=float, default=30, help="longest wait for the last touchpoints (default 30 s)")
    parser.add_argument("--advance-worker", action="store_true",
                        help="experiment: journeys.advance on its own queue and worker process (latency)")  # fmt: skip
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker's and beat's logs (latency)")
    parser.add_argument("--max-backlog", type=int, default=1000, help="refuse to start above this many pending events")
    args = parser.parse_args()
    args.processes = [int(p) for p in args.processes.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the subprocesses
    settings.DEBUG = False  # no query log in this process or its forks: production runs without it

    broker = DedicatedRedis()
    broker.start()
    celery_app.conf.broker_url = broker.url  # the kicks after commit go to the bench's own Redis
    policy = ContactPolicy.current()
    quiet = policy.quiet_hours_enabled
    customers = Customer.objects.current().count()
    print(f"database: {connection.settings_dict['NAME']} ({customers:,} customers before the bench)", flush=True)
    baselines = results = runs = None
    profile = ""
    try:
        if args.part in ("throughput", "both"):
            baselines, results, profile = throughput(args, broker)
        if args.part in ("latency", "both"):
            ContactPolicy.objects.filter(pk=policy.pk).update(quiet_hours_enabled=False)
            runs = latency(args, broker)
    finally:
        ContactPolicy.objects.filter(pk=policy.pk).update(quiet_hours_enabled=quiet)
        broker.stop()
    if results:
        report_throughput(args, baselines, results)
    if profile:
        print("\nProfile of one advance_due() of 500:\n" + profile)
    if runs is not None:
        report_latency(args, runs)


if __name__ == "__main__":
    main()
