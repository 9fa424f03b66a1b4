"""Start a fake provider as a separate process (`python -m messaging.fakes …`) and talk to it over HTTP, so it
keeps counting while a test kills and restarts Celery workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Self


class FakeProcess:
    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.stats_file = Path(tempfile.mkstemp(prefix=f"fake-{kind}-", suffix=".json")[1])
        self.arguments = [sys.executable, "-m", "messaging.fakes", kind, "--stats-file", str(self.stats_file)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                self.arguments.append(flag)
            elif value not in (False, None):
                self.arguments += [flag, str(value)]
        self.process: subprocess.Popen[str] | None = None
        self.url = self.base_url = ""
        self.final_stats: dict[str, Any] = {}

    def start(self) -> Self:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(self.arguments, stdout=subprocess.PIPE, text=True, env=env, cwd=root)  # noqa: S603
        assert self.process.stdout is not None  # noqa: S101 - stdout=PIPE
        line = self.process.stdout.readline()  # blocks until the server listens (or the process died)
        if not line:
            raise RuntimeError(f"fake {self.kind} did not start (exit code {self.process.wait()})")
        started = json.loads(line)
        self.url, self.base_url = started["url"], started["base_url"]
        return self

    def stats(self, *, keys: bool = False) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/_stats{'?keys=1' if keys else ''}", timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def control(self, **command: Any) -> dict[str, Any]:
        """e.g. control(action="fail_next", count=3, status=500)."""
        request = urllib.request.Request(  # noqa: S310 - our own local fake
            f"{self.base_url}/_control", data=json.dumps(command).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait, and return the counts the process wrote on its way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        text = self.stats_file.read_text() if self.stats_file.exists() else ""
        self.final_stats = json.loads(text) if text else {}
        self.stats_file.unlink(missing_ok=True)
        return self.final_stats

    def __enter__(self) -> Self:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def spawn(kind: str, **options: Any) -> FakeProcess:
    """A started fake in its own process: spawn("webhook", secret="s"), spawn("sms", app_key=…, app_secret=…)."""
    return FakeProcess(kind, **options).start()
