"""Sending deliveries: claims with FOR UPDATE SKIP LOCKED and a lease, signed POSTs (several at once), answers
recorded only for rows still held, retries with exponential backoff and jitter."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from messaging.backends.http import make_client
from messaging.integrations.subscriptions import TEST_KIND
from messaging.models import DeliveryStatus

logger = logging.getLogger(__name__)

BODY_KEPT = 2000  # characters of the receiver's answer kept on the delivery
_BODY_READ = 8192  # bytes read from an answer at most: a receiver cannot make us buffer a huge body

# Tunable in settings; these defaults keep a batch within its lease: ceil(50 / 8) requests x 5 s < 60 s.
MAX_ATTEMPTS = getattr(settings, "SUBSCRIPTION_MAX_ATTEMPTS", 8)
BATCH_SIZE = getattr(settings, "SUBSCRIPTION_BATCH_SIZE", 50)
LEASE_SECONDS = getattr(settings, "SUBSCRIPTION_LEASE_SECONDS", 60)
SEND_THREADS = getattr(settings, "SUBSCRIPTION_SEND_THREADS", 8)
RETRY_BASE_SECONDS = getattr(settings, "SUBSCRIPTION_RETRY_BASE_SECONDS", 10.0)
RETRY_MAX_SECONDS = getattr(settings, "SUBSCRIPTION_RETRY_MAX_SECONDS", 3600.0)


@dataclass
class SendReport:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0  # claimed but not attempted in the lease: handed back at once

    def add(self, other: SendReport) -> None:
        for name in ("claimed", "delivered", "retried", "failed", "released"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    body: bytes
    attempts: int
    url: str
    secret: str


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: no answer (timeout, refused connection)
    body: str

    @property
    def is_success(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """X-SCRM-Signature: hex HMAC-SHA256 of f"{timestamp}.{body}" with the subscription's secret."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def max_attempts(kind: str) -> int:
    return 1 if kind == TEST_KIND else MAX_ATTEMPTS


def retry_delay(attempts: int, *, jitter: float) -> float:
    """Seconds before attempt `attempts + 1`: 10, 20, 40 … capped, each scaled by 0.8 to 1.2 (jitter in [0, 1)) so
    receivers that failed together are not all retried in the same second."""
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempts - 1)) * (0.8 + 0.4 * jitter)


_jitter = random.random  # tests replace it


_FAIL_EXHAUSTED_SQL = """
    UPDATE messaging_delivery SET status = 'failed', lease_token = NULL
    WHERE status = 'pending' AND next_attempt_at <= %(now)s
      AND attempts >= CASE WHEN kind = %(test)s THEN 1 ELSE %(max)s END
"""

_CLAIM_SQL = """
    WITH due AS (
        SELECT d.id FROM messaging_delivery d
        JOIN messaging_subscription s ON s.id = d.subscription_id
        WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s
          AND (s.is_active OR d.kind = %(test)s)
          AND d.attempts < CASE WHEN d.kind = %(test)s THEN 1 ELSE %(max)s END
          AND (%(ids)s::bigint[] IS NULL OR d.id = ANY(%(ids)s::bigint[]))
        ORDER BY d.next_attempt_at, d.id
        LIMIT %(limit)s
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE messaging_delivery d
    SET lease_token = %(token)s, next_attempt_at = %(until)s, attempts = d.attempts + 1
    FROM due, messaging_subscription s
    WHERE d.id = due.id AND s.id = d.subscription_id
    RETURNING d.id, d.kind, d.payload::text, d.attempts, s.url, s.secret
"""


def claim(*, token: uuid.UUID, limit: int | None = None, ids: Sequence[int] | None = None) -> list[_Claimed]:
    """Lease up to `limit` due deliveries (oldest due first) to `token`, committed before returning. Rows another
    worker is claiming are skipped, rows it holds are not due until its lease ends."""
    now = timezone.now()
    params = {"now": now, "test": TEST_KIND, "max": MAX_ATTEMPTS, "ids": list(ids) if ids is not None else None,
              "limit": limit or BATCH_SIZE, "token": token,
              "until": now + timedelta(seconds=LEASE_SECONDS)}  # fmt: skip
    with transaction.atomic(), connection.cursor() as cursor:
        # A row whose worker died after its last attempt would otherwise stay pending forever.
        cursor.execute(_FAIL_EXHAUSTED_SQL, params)
        cursor.execute(_CLAIM_SQL, params)
        rows = cursor.fetchall()
    return sorted(
        (_Claimed(pk, kind, orjson.dumps(orjson.loads(payload), option=orjson.OPT_SORT_KEYS), attempts, url, secret)
         for pk, kind, payload, attempts, url, secret in rows),
        key=lambda row: row.id,
    )  # fmt: skip


_CLIENT: httpx.Client | None = None


def _client() -> httpx.Client:
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = make_client()  # thread-safe and pooled; one per process
    return _CLIENT


def _post(delivery: _Claimed, *, deadline: float) -> _Answer | None:
    if time.monotonic() > deadline:
        return None  # the lease might end mid-request: leave the row to the next claim
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "SCRM-Webhooks/1",
        "X-SCRM-Event": delivery.kind,
        "X-SCRM-Delivery": str(delivery.id),
        "X-SCRM-Timestamp": timestamp,
        "X-SCRM-Signature": sign(delivery.secret, timestamp, delivery.body),
    }
    try:
        with _client().stream("POST", delivery.url, content=delivery.body, headers=headers) as response:
            read = b""
            for chunk in response.iter_bytes():
                read += chunk
                if len(read) >= _BODY_READ:
                    break
            return _Answer(response.status_code, read.decode(errors="replace")[:BODY_KEPT])
    except httpx.HTTPError as exc:
        return _Answer(None, f"{type(exc).__name__}: {exc}"[:BODY_KEPT])


_RECORD_SQL = """
    UPDATE messaging_delivery d
    SET status = r.status, response_status = r.code, response_body = r.body, next_attempt_at = r.next_at,
        delivered_at = r.delivered_at, lease_token = NULL
    FROM json_to_recordset(%s::json) AS r(id bigint, status text, code int, body text, next_at timestamptz,
                                          delivered_at timestamptz)
    WHERE d.id = r.id AND d.lease_token = %s
"""
_RELEASE_SQL = """
    UPDATE messaging_delivery SET lease_token = NULL, next_attempt_at = %s, attempts = attempts - 1
    WHERE id = ANY(%s) AND lease_token = %s
"""


def _record(claimed: Sequence[_Claimed], answers: Sequence[_Answer | None], token: uuid.UUID) -> SendReport:
    """Store the answers of rows still leased to `token` (a row whose lease ended belongs to its new claimer)."""
    now = timezone.now()
    report = SendReport(claimed=len(claimed))
    rows: list[dict[str, Any]] = []
    released: list[int] = []
    for delivery, answer in zip(claimed, answers, strict=True):
        if answer is None:
            released.append(delivery.id)
            continue
        row = {"id": delivery.id, "code": answer.status, "body": answer.body, "next_at": now, "delivered_at": None}
        if answer.is_success:
            row |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
            report.delivered += 1
        elif delivery.attempts >= max_attempts(delivery.kind):
            row["status"] = DeliveryStatus.FAILED
            report.failed += 1
        else:
            row |= {"status": DeliveryStatus.PENDING,
                    "next_at": now + timedelta(seconds=retry_delay(delivery.attempts, jitter=_jitter()))}  # fmt: skip
            report.retried += 1
        rows.append(row)
    with transaction.atomic(), connection.cursor() as cursor:
        if rows:
            cursor.execute(_RECORD_SQL, [orjson.dumps(rows).decode(), token])
        if released:
            cursor.execute(_RELEASE_SQL, [now, released, token])
    report.released = len(released)
    return report


def send_due(*, limit: int | None = None, ids: Sequence[int] | None = None) -> SendReport:
    """One claim cycle: lease due deliveries (only `ids` if given), POST them signed, several at once, and record
    every answer. Safe to run in any number of workers at once: a row is sent by one of them at a time."""
    token = uuid.uuid4()
    claimed_at = time.monotonic()
    claimed = claim(token=token, limit=limit, ids=ids)
    if not claimed:
        return SendReport()
    # Start no request that could outlive the lease (a request takes at most the timeout, plus a margin).
    deadline = claimed_at + LEASE_SECONDS - settings.MESSAGING_REQUEST_TIMEOUT - 2
    if len(claimed) == 1:
        answers = [_post(claimed[0], deadline=deadline)]
    else:
        with ThreadPoolExecutor(max_workers=min(SEND_THREADS, len(claimed))) as pool:
            answers = list(pool.map(lambda delivery: _post(delivery, deadline=deadline), claimed))
    report = _record(claimed, answers, token)
    logger.info("subscriptions.sent", extra=vars(report))
    return report


def send_pending(*, seconds: float = 20.0) -> SendReport:
    """Claim cycles until nothing is due or `seconds` have passed (what the task and the beat tick run)."""
    total = SendReport()
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        report = send_due()
        total.add(report)
        if report.claimed < BATCH_SIZE:  # the queue is drained (or the rest is another worker's)
            break
    return total
