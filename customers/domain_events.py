"""Domain events: written in the writer's transaction, consumed after commit, in order per customer.

Writers call `record(...)` (or append `OUTBOX_SQL` to a statement whose CTE returns the rows it wrote), inside
their transaction. `kick_after_commit()` asks a worker to consume once the transaction commits; if the broker is
down the request still succeeds and the periodic sweep (`sweep`, every few seconds from beat) catches up.

Events are split into shards by customer (`customer_id % DOMAIN_EVENT_SHARDS`); one consumer at a time holds a
shard (a Postgres advisory lock), so each customer's events are handled in id order. Consumers are registered by
the apps that care (`register_consumer` in `AppConfig.ready()`); each receives a batch of events and must be
idempotent: an event is marked processed only after every consumer handled it, so a crash replays the batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from customers.models import DomainEvent

logger = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x5C12  # advisory lock key space: (namespace, shard)
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Consumer:
    name: str
    kinds: frozenset[str]
    handle: Callable[[list[DomainEvent]], None]


_CONSUMERS: dict[str, Consumer] = {}


def register_consumer(name: str, kinds: Iterable[str], handle: Callable[[list[DomainEvent]], None]) -> None:
    """Register `handle(events)` for these kinds (`"*"` for all). It runs inside the consuming transaction."""
    kinds = frozenset(kinds)
    if not kinds or not callable(handle):
        raise ValueError(f"consumer {name} needs kinds and a callable")
    _CONSUMERS[name] = Consumer(name, kinds, handle)


def consumers() -> list[Consumer]:
    return list(_CONSUMERS.values())


def shard_count() -> int:
    return settings.DOMAIN_EVENT_SHARDS


# ----------------------------------------------------------------------------------------------------- writing


def record(kind: str, customer_ids: Iterable[int], payloads: Sequence[dict[str, Any]] | None = None) -> int:
    """Write one event of `kind` per customer (with its payload), in the caller's transaction; kicks consumers."""
    ids = list(customer_ids)
    if not ids:
        return 0
    rows = [{"c": pk, "p": payloads[i] if payloads else {}} for i, pk in enumerate(ids)]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_domainevent (kind, customer_id, payload, occurred_at, attempts, last_error)
            SELECT %s, r.c, coalesce(r.p, '{}'::jsonb), now(), 0, ''
            FROM json_to_recordset(%s::json) AS r(c bigint, p jsonb)
            """,
            [kind, orjson.dumps(rows, default=str).decode()],
        )
    kick_after_commit()
    return len(ids)


def outbox_insert_sql(
    source: str, kind_sql: str, payload_sql: str, *, where: str = "TRUE", at_sql: str = "now()"
) -> str:
    """The statement appending one event per row of `source` (which has `customer_id`): the outbox's one INSERT,
    for writers that append their events to their own statement as a data-modifying CTE."""
    # Callers pass their own SQL constants, never input.
    return f"""
        INSERT INTO customers_domainevent (kind, customer_id, payload, occurred_at, attempts, last_error)
        SELECT {kind_sql}, customer_id, {payload_sql}, {at_sql}, 0, '' FROM {source} WHERE {where}"""  # noqa: S608


def outbox_sql(source: str, kind_sql: str, payload_sql: str, *, where: str = "TRUE") -> str:
    """A CTE (`outbox AS (INSERT …)`) appending events for the rows of CTE `source` in the same statement."""
    return f"""
    outbox AS ({outbox_insert_sql(source, kind_sql, payload_sql, where=where)}
    )"""


def kick_after_commit() -> None:
    """Ask a worker to consume once the current transaction commits (registered once per transaction)."""
    from scrm.celery import on_commit_once

    on_commit_once(enqueue_consumers)


_broker_down_until = 0.0
BROKER_BACKOFF_SECONDS = 2.0


def enqueue_consumers() -> bool:
    """Send the consume task; never raises (a broker that is down leaves the work to the sweep).

    The broker settings (connect timeout 1 s, no publish retry) make a dead Redis fail here within a second;
    after a failure the next sends are skipped for a moment, so an outage costs the following writes nothing.
    """
    global _broker_down_until
    from customers.tasks import consume_domain_events
    from scrm.celery import send_quietly

    if time.monotonic() < _broker_down_until:
        return False
    if not send_quietly(consume_domain_events):
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        return False
    return True


# --------------------------------------------------------------------------------------------------- consuming


def _try_lock(shard: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, shard])
        return cursor.fetchone()[0]


def _unlock(shard: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, shard])


def _pending(shard: int, limit: int) -> list[DomainEvent]:
    return list(
        DomainEvent.objects.raw(
            """
            SELECT * FROM customers_domainevent
            WHERE processed_at IS NULL AND customer_id %% %s = %s AND (retry_at IS NULL OR retry_at <= now())
            ORDER BY id LIMIT %s
            """,
            [shard_count(), shard, limit],
        )
    )


def _dispatch(events: list[DomainEvent]) -> None:
    for consumer in _CONSUMERS.values():
        mine = events if "*" in consumer.kinds else [e for e in events if e.kind in consumer.kinds]
        if mine:
            consumer.handle(mine)


def _mark_processed(ids: list[int]) -> None:
    DomainEvent.objects.filter(pk__in=ids).update(processed_at=timezone.now())


def consume(shard: int, *, batch_size: int = 500) -> int:
    """Handle one batch of this shard's pending events, oldest first, if no other worker holds the shard;
    returns how many. Safe to call from many workers."""
    if not _try_lock(shard):
        return 0  # another worker holds the shard and will see our events
    try:
        return _consume_batch(shard, batch_size)
    finally:
        _unlock(shard)


def _consume_batch(shard: int, batch_size: int) -> int:
    events = _pending(shard, batch_size)
    if not events:
        return 0
    try:
        with transaction.atomic():
            _dispatch(events)
            _mark_processed([e.pk for e in events])
    except Exception:
        logger.exception("domain_events.batch_failed", extra={"shard": shard, "first": events[0].pk})
        for event in events:  # isolate the failing event; the others go through
            _consume_one(event)
    return len(events)


def _consume_one(event: DomainEvent) -> None:
    try:
        with transaction.atomic():
            _dispatch([event])
            _mark_processed([event.pk])
    except Exception as exc:
        attempts = event.attempts + 1
        gave_up = attempts >= MAX_ATTEMPTS
        DomainEvent.objects.filter(pk=event.pk).update(
            attempts=attempts,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            retry_at=timezone.now() + timedelta(seconds=min(2**attempts, 3600)),
            processed_at=timezone.now() if gave_up else None,
        )
        logger.exception("domain_events.event_failed", extra={"event": event.pk, "attempts": attempts})


def consume_all(*, max_passes: int = 1000) -> int:
    """Consume every shard, one batch of each in turn, until a pass finds nothing. Round-robin: a busy shard never
    starves the others while a worker drains it."""
    return consume_for(None, max_passes=max_passes)[0]


def consume_for(seconds: float | None, *, max_passes: int = 1000) -> tuple[int, bool]:
    """`consume_all` for at most about `seconds` (what the tasks run): under a steady ingest the backlog never
    empties, and a task that drained it forever would hold its worker slot from every other kind of work (the
    journeys' runtime, dispatch). Returns (handled, whether it stopped with work left: the caller sends itself
    again, to the back of the queue)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    handled, rechecks = 0, 0
    for _pass in range(max_passes):
        done = sum(consume(shard) for shard in range(shard_count()))
        handled += done
        if done and deadline is not None and time.monotonic() >= deadline:
            return handled, True
        if done:
            continue
        # An event committed while we held its shard had its kick turned away by our lock: look again after
        # unlocking (a couple of times, not forever: what stays pending may be in another worker's hands).
        if rechecks >= 2 or not any(_pending(shard, 1) for shard in range(shard_count())):
            break
        rechecks += 1
    return handled, False


def pending_count() -> int:
    return DomainEvent.objects.filter(processed_at__isnull=True).count()
