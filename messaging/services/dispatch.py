"""Dispatch: claim due touchpoints fairly, apply the contact policy, render, hand them to the channel backends and
record every outcome.

One cycle (`dispatch_due`):
1. Claim up to MESSAGING_BATCH_SIZE due rows with `FOR UPDATE SKIP LOCKED`, shared fairly across lanes (a lane is
   a `source_ref`: a journey, a campaign…), so a 100,000-message campaign holds back another lane's message by at
   most one cycle (J34). The claim marks rows SENDING with a lease: `due_at` becomes the lease's expiry, so a row
   whose worker died is claimed again seconds later, not after the broker's visibility timeout.
2. Decide per row, in priority order (priority, then due time, then id; J31): expiry, opt-out (J32, J35, J36),
   address, rendering (J37), quiet hours for marketing (J17), frequency caps (J29 to J31) under row locks on the
   counters, rate limits (J33). Every decision is appended to the row's `decisions`.
3. Commit the decisions and the cap slots, then call each channel's backend once with all its messages, each
   carrying its idempotency key (J26, J28), and record the results: temporary errors retry with exponential
   backoff and jitter up to `max_attempts`, permanent ones fail at once keeping the provider's code (J38).
Every write is guarded by the claim's lease token, so a worker that lost its lease cannot overwrite the row.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from customers.models import Consent, ConsentStatus, Identity, IdentityKind, MessageChannel
from messaging import ratelimit
from messaging.backends import DeliveryResult, Outcome, OutgoingMessage, backend_for
from messaging.models import (
    CapAction,
    CapPeriod,
    ContactPolicy,
    FrequencyCap,
    RateLimit,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
)
from messaging.services import policy
from messaging.services.status_events import record_status_events

logger = logging.getLogger(__name__)
S = TouchpointStatus
QUEUE = "('scheduled', 'deferred', 'sending')"  # the partial index touchpoint_queue's condition
MAX_BACKOFF_SECONDS = 3600
WECOM_BUDGET_SCOPE = "wecom_budget"
RateLimits = dict[tuple[str, str], int]
# Columns a cycle never reads: not loading them (the growing decision log above all) is a third of the load time.
UNREAD_FIELDS = (
    "decisions",
    "provider_response",
    "rendered",
    "created_at",
    "updated_at",
    "sent_at",
    "confirmed_at",
    "delivered_at",
    "read_at",
    "clicked_at",
    "created_by",
    "customer__occupation",
    "customer__source_channel",
    "customer__merged_into",
    "customer__first_seen_at",
    "customer__last_seen_at",
    "customer__created_at",
    "customer__updated_at",
)


@dataclass
class DispatchReport:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def progressed(self) -> int:
        """Rows that left the queue or moved on; rows only pushed back by a rate limit do not count."""
        return self.claimed - self.outcomes["rate_limited"]

    def add(self, other: DispatchReport) -> None:
        self.claimed += other.claimed
        self.outcomes.update(other.outcomes)


@dataclass
class _Work:
    """One claimed touchpoint while a cycle decides about it."""

    tp: Touchpoint
    tz: ZoneInfo
    status: str = S.SENDING  # SENDING until a decision ends it
    reason: str = ""
    due_at: datetime.datetime | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    content: dict[str, Any] | None = None
    recipient: str = ""
    counted_in: list[str] = field(default_factory=list)
    result: DeliveryResult | None = None

    @property
    def is_open(self) -> bool:
        return self.status == S.SENDING

    def decide(self, status: str, reason: str, now: datetime.datetime, *, step: str = "", **detail: Any) -> None:
        self.status, self.reason = status, reason
        self.decisions.append({"at": now.isoformat(), "step": step or reason, "outcome": status, **detail})


# ------------------------------------------------------------------------------------------------ entry points


def dispatch_due(*, now: datetime.datetime | None = None, batch_size: int | None = None) -> DispatchReport:
    """One cycle over the due queue. Safe to run in any number of workers at once."""
    now = now or timezone.now()
    token = uuid.uuid4()
    limits = _rate_limits()
    ids = _claim_due(now, batch_size or settings.MESSAGING_BATCH_SIZE, token, limits)
    return _process(ids, token, now, limits)


def dispatch_touchpoints(ids: Sequence[int]) -> DispatchReport:
    """The same pipeline for just these rows (those still queued and due): the WeCom welcome's fast path."""
    now = timezone.now()
    token = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE messaging_touchpoint SET status = 'sending', due_at = %s, lease_token = %s, updated_at = %s
            WHERE id IN (SELECT id FROM messaging_touchpoint WHERE id = ANY(%s) AND status IN {QUEUE}
                         AND due_at <= %s FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,  # noqa: S608 (constants only)
            [_lease_until(now), token, now, list(ids), now],
        )
        claimed = [row[0] for row in cursor.fetchall()]
    return _process(claimed, token, now, _rate_limits())


def dispatch_until_idle(*, seconds: float) -> DispatchReport:
    """Run cycles until the queue has nothing due (or only rows waiting for a rate limit) or `seconds` pass."""
    deadline = time.monotonic() + seconds
    total = DispatchReport()
    while time.monotonic() < deadline:
        report = dispatch_due()
        total.add(report)
        if report.progressed == 0:
            break
    return total


# ---------------------------------------------------------------------------------------------------- claiming


def _lease_until(now: datetime.datetime) -> datetime.datetime:
    return now + datetime.timedelta(seconds=settings.MESSAGING_LEASE_SECONDS)


def _claim_due(now: datetime.datetime, size: int, token: uuid.UUID, limits: RateLimits) -> list[int]:
    """Claim up to `size` due rows, an equal share per lane first, then what the busiest lanes can fill."""
    with connection.cursor() as cursor:
        # Every lane with queued rows, by a skip scan over the partial index (one probe per lane).
        cursor.execute(
            f"""
            WITH RECURSIVE lanes(source_ref) AS (
                (SELECT source_ref FROM messaging_touchpoint WHERE status IN {QUEUE} ORDER BY source_ref LIMIT 1)
                UNION ALL
                SELECT (SELECT t.source_ref FROM messaging_touchpoint t
                        WHERE t.status IN {QUEUE} AND t.source_ref > lanes.source_ref
                        ORDER BY t.source_ref LIMIT 1)
                FROM lanes WHERE lanes.source_ref IS NOT NULL
            )
            SELECT source_ref FROM lanes WHERE source_ref IS NOT NULL
            """  # noqa: S608 (constants only)
        )
        lanes = [row[0] for row in cursor.fetchall()]
        if not lanes:
            return []
        excluded = _exhausted_channels(now, limits)
        claimed: list[int] = []
        quota = -(-size // len(lanes))
        while lanes and len(claimed) < size:
            cursor.execute(
                f"""
                WITH picked AS (
                    SELECT c.id, c.source_ref FROM unnest(%(lanes)s::text[]) AS l(source_ref)
                    CROSS JOIN LATERAL (
                        SELECT t.id, t.source_ref FROM messaging_touchpoint t
                        WHERE t.status IN {QUEUE} AND t.source_ref = l.source_ref AND t.due_at <= %(now)s
                          AND NOT (t.channel = ANY(%(excluded)s))
                        ORDER BY t.due_at, t.id LIMIT %(quota)s FOR UPDATE SKIP LOCKED
                    ) c
                    LIMIT %(room)s
                )
                UPDATE messaging_touchpoint t
                SET status = 'sending', due_at = %(lease)s, lease_token = %(token)s, updated_at = %(now)s
                FROM picked WHERE t.id = picked.id
                RETURNING t.id, t.source_ref
                """,  # noqa: S608 (constants only)
                {
                    "lanes": lanes,
                    "now": now,
                    "excluded": excluded,
                    "quota": quota,
                    "room": size - len(claimed),
                    "lease": _lease_until(now),
                    "token": token,
                },
            )
            rows = cursor.fetchall()
            claimed.extend(row[0] for row in rows)
            per_lane = Counter(row[1] for row in rows)
            lanes = [lane for lane in lanes if per_lane[lane] == quota]  # only full lanes may have more
            if not rows:
                break
            quota = max(1, -(-(size - len(claimed)) // max(1, len(lanes))))
    return claimed


def _rate_limits() -> RateLimits:
    """(channel, sender) → per minute; sender "" is the channel-wide limit. Read once per cycle."""
    return {(limit.channel, limit.sender): limit.per_minute for limit in RateLimit.objects.all()}


def _exhausted_channels(now: datetime.datetime, limits: RateLimits) -> list[str]:
    """Channels whose channel-wide rate limit is used up this minute: not claimed until the next one."""
    channel_wide = {channel: per_minute for (channel, sender), per_minute in limits.items() if not sender}
    if not channel_wide:
        return []
    try:
        used = ratelimit.used([f"channel:{channel}" for channel in channel_wide], now=now)
    except redis.RedisError:
        return list(channel_wide)
    return [channel for channel, per_minute in channel_wide.items() if used[f"channel:{channel}"] >= per_minute]


# -------------------------------------------------------------------------------------------------- processing


def _process(ids: list[int], token: uuid.UUID, now: datetime.datetime, limits: RateLimits) -> DispatchReport:
    report = DispatchReport(claimed=len(ids))
    if not ids:
        return report
    work = [
        _Work(tp=tp, tz=policy.zone(tp.customer.time_zone if tp.customer_id else ""))
        for tp in Touchpoint.objects.filter(status=S.SENDING, lease_token=token)  # the status index, no IN list
        .select_related("customer", "group", "sender_staff", "template")
        .defer(*UNREAD_FIELDS)
        .order_by("-priority", "scheduled_for", "id")
    ]
    contact_policy = ContactPolicy.current()
    _check_recipients(work, now)
    _render([item for item in work if item.is_open], now)
    _apply_quiet_hours([item for item in work if item.is_open], contact_policy, now)
    with transaction.atomic():
        counters = _reserve_cap_slots([item for item in work if item.is_open], contact_policy, now)
        _apply_rate_limits([item for item in work if item.is_open], limits, now)
        _release_slots_of([item for item in work if not item.is_open and item.counted_in], counters)
        _save_counters(counters)
        # Written before sending: the decided rows, and rows holding new cap slots (a crash must not make them
        # take a second one). The others are written once, with their result.
        early = [item for item in work if not item.is_open or (item.counted_in and not item.tp.counted_in)]
        written = set(_write(early, token))
        record_status_events([item.tp.id for item in early if not item.is_open and item.tp.id in written])
    to_send = [item for item in work if item.is_open]
    for item in to_send:
        item.decisions.append({"at": now.isoformat(), "step": "policy", "outcome": "passed"})
    _send(to_send)
    finished = timezone.now()
    for item in to_send:
        _apply_result(item, finished)
    with transaction.atomic():
        failed = [item for item in to_send if item.status in (S.FAILED, S.UNDELIVERABLE) and item.counted_in]
        _release_counters([key for item in failed for key in item.counted_in])
        for item in failed:
            item.counted_in = []
        record_status_events(_write(to_send, token))
    for item in work:
        report.outcomes[item.reason if item.reason == "rate_limited" else str(item.status)] += 1
    return report


def _check_recipients(work: list[_Work], now: datetime.datetime) -> None:
    """Expiry, opt-out on the channel (transactional messages too), and an address to send to."""
    customer_ids = {item.tp.customer_id for item in work if item.tp.customer_id}
    opted_out = set(
        Consent.objects.filter(customer_id__in=customer_ids, status=ConsentStatus.OPTED_OUT).values_list(
            "customer_id", "channel"
        )
    )
    wecom_customers = {item.tp.customer_id for item in work if item.tp.channel == MessageChannel.WECOM}
    external_ids = dict(
        Identity.objects.filter(kind=IdentityKind.WECOM_EXTERNAL_USERID, customer_id__in=wecom_customers)
        .order_by("customer_id", "-id")
        .values_list("customer_id", "value")
    )
    for item in work:
        tp = item.tp
        if tp.expires_at and now >= tp.expires_at:
            if tp.reason in ("frequency_cap", "cap_expired"):  # deferred by a cap until it gave up (J30)
                item.decide(S.UNDELIVERABLE, "cap_expired", now)
            else:
                item.decide(S.EXPIRED, "expired", now, expires_at=tp.expires_at.isoformat())
        elif tp.customer_id and (tp.customer_id, tp.channel) in opted_out:
            item.decide(S.SUPPRESSED, "opted_out", now, channel=tp.channel)
        else:
            item.recipient = _address(tp, external_ids)
            if not item.recipient:
                item.decide(S.UNDELIVERABLE, "no_address", now, channel=tp.channel)


def _address(tp: Touchpoint, external_ids: dict[int, str]) -> str:
    if tp.group_id:
        return tp.group.chat_id
    customer = tp.customer
    match tp.channel:
        case MessageChannel.SMS:
            return customer.phone
        case MessageChannel.EMAIL:
            return customer.email
        case MessageChannel.WECOM:
            return external_ids.get(customer.pk, "")
    return str(customer.pk)


def _render(work: list[_Work], now: datetime.datetime) -> None:
    """Render every open row's message; one that fails to render fails and sends nothing (J37)."""
    from messaging.templating import RenderError, RenderItem, render_batch

    items = [
        RenderItem(
            template=item.tp.template,
            content=item.tp.content,
            customer=item.tp.customer,
            staff=item.tp.sender_staff,
            context=item.tp.context,
            channel=item.tp.channel,
        )
        for item in work
    ]
    for item, rendered in zip(work, render_batch(items), strict=True):
        if isinstance(rendered, RenderError):
            item.decide(S.FAILED, "render_error", now, detail=str(rendered))
        else:
            item.content = rendered


def _apply_quiet_hours(work: list[_Work], contact_policy: ContactPolicy, now: datetime.datetime) -> None:
    """Marketing messages wait for the end of the quiet hours in the customer's zone; transactional ones go (J17)."""
    if not contact_policy.quiet_hours_enabled:
        return
    for item in work:
        if item.tp.kind != TouchpointKind.MARKETING:
            continue
        end = policy.quiet_hours_end(now, item.tz, contact_policy.quiet_start, contact_policy.quiet_end)
        if end is None:
            continue
        if item.tp.expires_at and end > item.tp.expires_at:
            item.decide(S.EXPIRED, "quiet_hours", now, until=end.isoformat())
        else:
            item.decide(S.DEFERRED, "quiet_hours", now, until=end.isoformat())
            item.due_at = end


# ---------------------------------------------------------------------------------------------- frequency caps


@dataclass(frozen=True)
class _Slot:
    key: str  # "customer|scope|period"
    limit: int
    next_start: datetime.datetime


def _slots_for(item: _Work, caps: list[FrequencyCap], contact_policy: ContactPolicy, now: datetime.datetime):
    tp = item.tp
    slots = []
    for cap in caps:
        if cap.channel in ("", tp.channel):
            period = policy.period_of(now, item.tz, cap.period)
            slots.append(_Slot(f"{tp.customer_id}|{cap.channel or 'all'}|{period.key}", cap.limit, period.next_start))
    if tp.channel == MessageChannel.WECOM and "welcome_code" not in tp.context:
        period = policy.period_of(now, item.tz, CapPeriod.MONTH)
        limit = contact_policy.wecom_monthly_receipts or period.days
        slots.append(_Slot(f"{tp.customer_id}|{WECOM_BUDGET_SCOPE}|{period.key}", limit, period.next_start))
    return slots


def _reserve_cap_slots(
    work: list[_Work], contact_policy: ContactPolicy, now: datetime.datetime
) -> dict[str, list[int]]:
    """Give each marketing row a slot in every cap that applies to it, in priority order, under row locks on the
    counters (two workers never hand out the same last slot). Returns the counters: key → [id, count, start]."""
    candidates = [item for item in work if item.tp.kind == TouchpointKind.MARKETING and item.tp.customer_id]
    caps = list(FrequencyCap.objects.filter(is_active=True)) if candidates else []
    needed = {id(item): _slots_for(item, caps, contact_policy, now) for item in candidates if not item.tp.counted_in}
    keys = sorted({slot.key for slots in needed.values() for slot in slots})
    if not keys:
        return {}
    counters = _lock_counters(keys)
    for item in candidates:
        if item.tp.counted_in:  # a retry after a crash already holds its slots
            item.counted_in = list(item.tp.counted_in)
            continue
        slots = needed[id(item)]
        full = [slot for slot in slots if counters[slot.key][1] >= slot.limit]
        if not full:
            for slot in slots:
                counters[slot.key][1] += 1
            item.counted_in = [slot.key for slot in slots]
            continue
        reason = "wecom_monthly_budget" if all(WECOM_BUDGET_SCOPE in s.key for s in full) else "frequency_cap"
        next_start = max(slot.next_start for slot in full)  # the start of the next allowed period (J30)
        action = item.tp.on_cap
        if action == CapAction.SKIP:
            item.decide(S.CAPPED, reason, now)
        elif action == CapAction.DEFER_EXPIRE and item.tp.expires_at and next_start > item.tp.expires_at:
            item.decide(S.UNDELIVERABLE, "cap_expired", now, cap=reason)
        else:
            item.decide(S.DEFERRED, "frequency_cap", now, cap=reason, until=next_start.isoformat())
            item.due_at = next_start
    return counters


def _lock_counters(keys: list[str]) -> dict[str, list[int]]:
    rows = [key.split("|") for key in keys]
    params = [[int(r[0]) for r in rows], [r[1] for r in rows], [r[2] for r in rows]]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_contactcounter (customer_id, scope, period, count)
            SELECT c, s, p, 0 FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS k(c, s, p)
            ON CONFLICT (customer_id, scope, period) DO NOTHING
            """,
            params,
        )
        cursor.execute(
            """
            SELECT id, customer_id, scope, period, count FROM messaging_contactcounter
            WHERE (customer_id, scope, period) IN (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]))
            ORDER BY customer_id, scope, period FOR UPDATE
            """,
            params,
        )
        return {f"{c}|{s}|{p}": [pk, count, count] for pk, c, s, p, count in cursor.fetchall()}


def _release_slots_of(items: Iterable[_Work], counters: dict[str, list[int]]) -> None:
    """Rows that took a slot but then did not go (rate-limited) give it back before anything is written."""
    for item in items:
        if item.tp.counted_in:
            continue
        for key in item.counted_in:
            counters[key][1] -= 1
        item.counted_in = []


def _save_counters(counters: dict[str, list[int]]) -> None:
    changed = [(pk, count) for pk, count, start in counters.values() if count != start]
    if not changed:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_contactcounter c SET count = v.count
            FROM unnest(%s::bigint[], %s::int[]) AS v(id, count) WHERE c.id = v.id
            """,
            [[pk for pk, _ in changed], [count for _, count in changed]],
        )


def _release_counters(keys: list[str]) -> None:
    """A message that failed gives its slots back."""
    if not keys:
        return
    rows = [key.split("|") for key in keys]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_contactcounter c SET count = GREATEST(c.count - k.n, 0)
            FROM (SELECT c, s, p, count(*) AS n FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS u(c, s, p)
                  GROUP BY c, s, p) k
            WHERE c.customer_id = k.c AND c.scope = k.s AND c.period = k.p
            """,
            [[int(r[0]) for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
        )


# ------------------------------------------------------------------------------------------------- rate limits


def _sender_of(tp: Touchpoint) -> str:
    return tp.sender_staff.wecom_userid if tp.sender_staff_id and tp.sender_staff.wecom_userid else tp.sender


def _apply_rate_limits(work: list[_Work], limits: RateLimits, now: datetime.datetime) -> None:
    """Take each channel's (and sender's) allowance for this minute in due order; the rest wait (J33). A row
    pushed back by a channel-wide limit keeps its place: its due time becomes the original one again, and the
    claim skips the channel until the next minute."""
    if not limits or not work:
        return
    # In due order; a channel's own group comes before its senders' (its first row inserts it first), so a row
    # under both limits is checked against the channel's first.
    groups: dict[tuple[str, str], list[_Work]] = defaultdict(list)
    for item in sorted(work, key=lambda w: (w.tp.scheduled_for, w.tp.id)):
        if (item.tp.channel, "") in limits:
            groups[(item.tp.channel, "")].append(item)
        sender = _sender_of(item.tp)
        if sender and (item.tp.channel, sender) in limits:
            groups[(item.tp.channel, sender)].append(item)
    for (channel, sender), items in groups.items():
        waiting = [item for item in items if item.is_open]
        name = f"sender:{channel}:{sender}" if sender else f"channel:{channel}"
        try:
            granted = ratelimit.take(name, len(waiting), per_minute=limits[(channel, sender)], now=now)
        except redis.RedisError:
            granted = 0
            logger.warning("messaging.rate_limiter_unavailable", extra={"limit": name})
        for item in waiting[granted:]:
            item.decide(S.DEFERRED, "rate_limited", now, limit=name)
            item.due_at = item.tp.scheduled_for if not sender else ratelimit.next_window(now)


# ---------------------------------------------------------------------------------------------------- sending


def _send(items: list[_Work]) -> None:
    by_channel: dict[str, list[_Work]] = defaultdict(list)
    for item in items:
        by_channel[item.tp.channel].append(item)
    for channel, group in by_channel.items():
        messages = [
            OutgoingMessage(
                touchpoint_id=item.tp.id,
                idempotency_key=item.tp.idempotency_key,
                channel=channel,
                kind=item.tp.kind,
                content={**item.content, "context": item.tp.context} if item.tp.context else item.content,
                recipient=item.recipient,
                customer_id=item.tp.customer_id,
                sender=_sender_of(item.tp),
                is_group=bool(item.tp.group_id),
            )
            for item in group
        ]
        try:
            results = backend_for(channel).send_many(messages)
            if len(results) != len(messages):
                raise RuntimeError(f"{channel} backend returned {len(results)} results for {len(messages)}")
        except Exception as exc:  # a backend bug must not lose the batch: every message retries later
            logger.exception("messaging.backend_failed", extra={"channel": channel})
            results = [
                DeliveryResult(Outcome.TEMPORARY_ERROR, provider_code="backend_error", response={"error": str(exc)})
                for _ in messages
            ]
        for item, result in zip(group, results, strict=True):
            item.result = result


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1) * U(0.5, 1.5), at most an hour."""
    delay = min(settings.MESSAGING_RETRY_BASE_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    return delay * random.uniform(0.5, 1.5)  # noqa: S311 (jitter, not security)


def _provider_retry_at(result: DeliveryResult) -> datetime.datetime | None:
    """When the provider (or our own API rate limit in front of it) said to come back."""
    value = result.response.get("retry_at") if result.provider_code == "rate_limited" else None
    try:
        return datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _apply_result(item: _Work, now: datetime.datetime) -> None:
    result = item.result or DeliveryResult(Outcome.TEMPORARY_ERROR, provider_code="no_result")
    detail = {"code": result.provider_code} if result.provider_code else {}
    attempt = item.tp.attempts + 1
    match result.outcome:
        case Outcome.SENT | Outcome.DELIVERED | Outcome.AWAITING_CONFIRMATION:
            item.decide(str(result.outcome), "", now, step="send", attempt=attempt, **detail)
        case Outcome.PERMANENT_ERROR:
            item.decide(S.FAILED, "provider_error", now, attempt=attempt, **detail)
        case Outcome.TEMPORARY_ERROR if attempt >= item.tp.max_attempts:
            item.decide(S.FAILED, "retries_exhausted", now, attempt=attempt, **detail)
        case Outcome.TEMPORARY_ERROR:
            retry_at = _provider_retry_at(result) or now + datetime.timedelta(seconds=_backoff(attempt))
            if item.tp.expires_at and retry_at > item.tp.expires_at:
                item.decide(S.EXPIRED, "expired", now, attempt=attempt, **detail)
            else:
                item.decide(S.SCHEDULED, "retry", now, attempt=attempt, until=retry_at.isoformat(), **detail)
                item.due_at = retry_at


def _write(work: list[_Work], token: uuid.UUID) -> list[int]:
    """Write the cycle's decisions in one statement, only to rows this claim still holds. Returns their ids."""
    rows = []
    for item in work:
        result = item.result
        status = item.status
        timestamp = timezone.now().isoformat()
        rows.append(
            {
                "id": item.tp.id,
                "status": status,
                "reason": item.reason,
                "due_at": item.due_at.isoformat() if item.due_at else None,
                "content": item.content,
                "recipient": item.recipient or None,
                "counted_in": item.counted_in,
                "provider_code": result.provider_code if result else None,
                "provider_message_id": result.provider_message_id if result else None,
                "provider_response": result.response if result else None,
                "attempted": 1 if result else 0,
                "sent_at": timestamp if status in (S.SENT, S.DELIVERED) else None,
                "delivered_at": timestamp if status == S.DELIVERED else None,
                "decisions": item.decisions,
            }
        )
        item.decisions = []
    if not rows:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_touchpoint t SET
                status = CASE WHEN t.status = 'sending' THEN v.status ELSE t.status END,
                reason = CASE WHEN t.status = 'sending' THEN v.reason ELSE t.reason END,
                due_at = COALESCE(v.due_at, t.due_at),
                rendered = COALESCE(v.content, t.rendered),
                recipient = COALESCE(v.recipient, t.recipient),
                counted_in = v.counted_in,
                provider_code = COALESCE(v.provider_code, t.provider_code),
                provider_message_id = COALESCE(v.provider_message_id, t.provider_message_id),
                provider_response = COALESCE(v.provider_response, t.provider_response),
                attempts = t.attempts + v.attempted,
                sent_at = COALESCE(v.sent_at, t.sent_at),
                delivered_at = COALESCE(v.delivered_at, t.delivered_at),
                decisions = t.decisions || v.decisions,
                lease_token = CASE WHEN v.status = 'sending' AND t.status = 'sending' THEN t.lease_token END,
                updated_at = now()
            FROM jsonb_to_recordset(%s::jsonb) AS v(
                id bigint, status text, reason text, due_at timestamptz, content jsonb, recipient text,
                counted_in jsonb, provider_code text, provider_message_id text, provider_response jsonb,
                attempted int, sent_at timestamptz, delivered_at timestamptz, decisions jsonb)
            WHERE t.id = v.id AND t.lease_token = %s
              AND t.status IN ('sending', 'delivered', 'read', 'clicked')  -- a receipt may beat our own record
            RETURNING t.id
            """,
            [orjson.dumps(rows).decode(), token],
        )
        written = [row[0] for row in cursor.fetchall()]
    if len(written) != len(rows):
        logger.warning("messaging.lease_lost", extra={"expected": len(rows), "written": len(written)})
    return written
