"""What the fake HTTP providers share: a threaded HTTP/1.1 server on 127.0.0.1 that records every request, acts on
each idempotency key once, can be told to fail or answer slowly, and reports its counts.

No Django here: the fakes also run as a separate process (`python -m messaging.fakes …`) that outlives killed
Celery workers.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeout tests); the request is still acted on


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    key: str
    status: int


@dataclass
class _Failure:
    status: int
    code: str = ""
    delay: float = 0.0
    remaining: int | None = 1  # None: every time


class ServedInThread:
    """Start and stop a socketserver in a daemon thread, or use it as a context manager (the HTTP and SMTP
    fakes)."""

    _thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FakeHttpServer(ServedInThread, ThreadingHTTPServer):
    """Subclasses implement `answer(path, headers, body)` and call `record`, `injected_failure` and `act`.

    Thread-safe: every counter changes under `self.condition`. `seen[key]` counts authentic requests per key,
    `acted_on[key]` how many times the fake acted on it (at most once while `dedupe` is on).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # bursts of thousands of connections from a benchmark
    endpoint = "/"
    control_actions = frozenset({"fail_next", "delay_next", "fail_key", "reset"})

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, dedupe: bool = True, max_skew: float | None = 300):
        super().__init__((host, port), _Handler)
        self.dedupe = dedupe
        self.max_skew = max_skew  # seconds a signed timestamp may be off; None accepts any
        self.condition = threading.Condition()
        self.stopping = threading.Event()
        self.reset()

    # Lifecycle

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + self.endpoint

    def stop(self) -> None:
        self.stopping.set()  # releases slow answers and ends kept-alive connections
        super().stop()

    # What tests tell the fake

    def reset(self) -> None:
        with self.condition:
            self.requests: deque[Recorded] = deque(maxlen=200_000)
            self.seen: Counter[str] = Counter()
            self.acted_on: Counter[str] = Counter()
            self.rejected = 0
            self.injected = 0
            self._answers: dict[str, dict[str, Any]] = {}  # key → the answer it got when acted on
            self._failures: deque[_Failure] = deque()
            self._key_failures: dict[str, _Failure] = {}

    def fail_next(self, count: int = 1, *, status: int = 500, code: str = "", delay: float = 0.0) -> None:
        """The next `count` authentic requests are answered `status` (with `code` in the body) and not acted on."""
        with self.condition:
            self._failures.extend(_Failure(status, code, delay) for _ in range(count))

    def delay_next(self, count: int = 1, *, seconds: float) -> None:
        """The next `count` requests are acted on, then answered only after `seconds` (a client timing out)."""
        with self.condition:
            self._failures.extend(_Failure(0, "", seconds) for _ in range(count))

    def fail_key(self, key: str, *, status: int = 400, code: str = "", times: int | None = None) -> None:
        """Requests for `key` are answered `status`, `times` times (None: always): one bad recipient."""
        with self.condition:
            self._key_failures[key] = _Failure(status, code, remaining=times)

    def wait_for_acted(self, count: int, *, timeout: float) -> bool:
        """Block until `count` distinct keys were acted on (no polling loop); False on timeout."""
        with self.condition:
            return self.condition.wait_for(lambda: len(self.acted_on) >= count, timeout=timeout)

    def stats(self, *, keys: bool = False) -> dict[str, Any]:
        with self.condition:
            result: dict[str, Any] = {
                "requests": len(self.requests),
                "rejected": self.rejected,
                "injected_failures": self.injected,
                "keys_seen": len(self.seen),
                "keys_acted_on": len(self.acted_on),
                "acted_on_total": sum(self.acted_on.values()),
                "keys_seen_more_than_once": sum(1 for count in self.seen.values() if count > 1),
                "keys_acted_on_more_than_once": sorted(key for key, count in self.acted_on.items() if count > 1),
            }
            if keys:
                result["seen"] = dict(self.seen)
                result["acted_on"] = dict(self.acted_on)
            return result

    def control(self, command: Mapping[str, Any]) -> Answer:
        """POST /_control {"action": "fail_next", "count": 3, "status": 500}: steer a fake in another process."""
        params = dict(command)
        action = params.pop("action", "")
        if action not in self.control_actions:
            return Answer(400, {"error": f"unknown action {action!r}"})
        try:
            getattr(self, action)(**params)
        except TypeError as error:
            return Answer(400, {"error": str(error)})
        return Answer(200, {"ok": True})

    # For subclasses

    def answer(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        raise NotImplementedError

    def record(self, path: str, headers: Mapping[str, str], body: Any, key: str, status: int) -> None:
        with self.condition:
            self.requests.append(Recorded(path, dict(headers), body, key, status))

    def reject(self) -> None:
        with self.condition:
            self.rejected += 1

    def act(self, key: str, make_answer: Any) -> tuple[dict[str, Any], bool, float]:
        """Count an authentic request for `key`; unless a failure is injected, act on it once (`make_answer()`
        builds the first answer; a repeat gets the same one). Returns (answer or failure, acted now?, delay)."""
        with self.condition:
            self.seen[key] += 1
            failure = self._key_failures.get(key)
            if failure is not None:
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        del self._key_failures[key]
            elif self._failures:
                failure = self._failures.popleft()
            delay = failure.delay if failure is not None else 0.0
            if failure is not None and failure.status:
                self.injected += 1
                return {"status": failure.status, "code": failure.code}, False, delay
            if key in self._answers and self.dedupe:
                return {**self._answers[key], "duplicate": True}, False, delay
            answer = self._answers.setdefault(key, make_answer())
            self.acted_on[key] += 1
            self.condition.notify_all()
            return answer, True, delay


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a pooled client reuses its connections
    # Headers and body go out as separate writes; with Nagle's algorithm on, each answer on a kept-alive
    # connection waits ~40 ms for the client's delayed ACK (measured: 260 requests/s instead of thousands).
    disable_nagle_algorithm = True
    server: FakeHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: thousands of requests a second would flood the test output."""

    def do_GET(self) -> None:
        if self.path.startswith("/_stats"):
            self._reply(Answer(200, self.server.stats(keys="keys=1" in self.path)))
        else:
            self._reply(Answer(404, {"error": "not found"}))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_control":
            try:
                command = json.loads(body or b"{}")
            except ValueError:
                command = {}
            answer = self.server.control(command if isinstance(command, dict) else {})
        else:
            answer = self.server.answer(self.path, self.headers, body)
        if answer.delay:
            self.server.stopping.wait(answer.delay)
        self._reply(answer)

    def _reply(self, answer: Answer) -> None:
        data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if self.server.stopping.is_set():
            self.close_connection = True
