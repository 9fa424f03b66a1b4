import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scrm import health

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_reports_each_dependency_and_fails_when_one_is_down(client, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "celery", lambda: None)
    healthy = client.get("/healthz")

    def no_worker():
        raise RuntimeError("no worker answered a ping within 1 s")

    monkeypatch.setitem(health.CHECKS, "celery", no_worker)
    down = client.get("/healthz")

    assert healthy.status_code == 200
    assert healthy.json()["checks"]["database"]["ok"] is True
    assert healthy.json()["checks"]["redis"]["ok"] is True
    assert down.status_code == 503
    assert down.json()["checks"]["celery"] == {
        "ok": False,
        "error": "RuntimeError: no worker answered a ping within 1 s",
    }


@pytest.mark.django_db
def test_healthz_reports_redis_down_within_seconds(client, settings, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "celery", lambda: None)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


def test_production_settings_pass_the_deploy_check():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "scrm.settings",
        "DEBUG": "0",
        "SECRET_KEY": "a-real-looking-secret-key-with-enough-entropy-1f9c2b7e4d0a8c6e3b5f",
        "ALLOWED_HOSTS": "scrm.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "scrm.settings", "DEBUG": "0", "SECRET_KEY": ""}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.fixture
def celery_worker_process():
    """A real Celery worker on the test Redis database, stopped after the test."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "scrm.test_settings"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "scrm", "worker", "--pool", "solo", "--without-gossip",
         "--without-mingle", "--hostname", f"healthz-{os.getpid()}@%h", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield worker
    worker.terminate()
    worker.wait(timeout=20)


@pytest.mark.django_db
def test_healthz_sees_a_real_worker(client, celery_worker_process):
    from scrm.celery import app

    deadline = time.monotonic() + 30
    while not app.control.ping(timeout=0.5) and time.monotonic() < deadline:
        assert celery_worker_process.poll() is None, "the worker exited"

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["checks"]["celery"]["ok"] is True


def test_production_static_files_collect_with_hashed_names(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "scrm.settings",
        "DEBUG": "0",
        "SECRET_KEY": "build-only-secret-key-for-collectstatic-0123456789abcdef",
        "STATIC_ROOT": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "staticfiles.json").exists()
    assert list((tmp_path / "vendor").glob("htmx.min.*.js"))
