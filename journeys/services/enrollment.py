"""Entering journeys: one service decides who is enrolled, who is refused and why (J1-J7)."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from journeys import definition as definitions
from journeys.models import Enrollment, EnrollmentState, Journey, JourneyStatus, RefusalReason
from journeys.steps import step_type

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A customer a trigger points at. `trigger_key` names the trigger occurrence (the domain event, the
    birthday's year…): the same occurrence delivered twice enrolls once (J1)."""

    customer_id: int
    trigger: str
    trigger_key: str
    at: datetime.datetime
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EnrollResult:
    enrolled: dict[int, int] = field(default_factory=dict)  # customer → enrollment
    refused: dict[int, str] = field(default_factory=dict)  # customer → RefusalReason

    def __bool__(self) -> bool:
        return bool(self.enrolled)


def still_matching_rule(definition: Mapping[str, Any]) -> dict[str, Any] | None:
    """What 'still matching' means for the exit policy: the entry filter, and membership of the trigger's
    segment or tag where the trigger is one."""
    parts = []
    trigger = definition.get("trigger") or {}
    if trigger.get("type") == "segment_entered":
        parts.append({"predicate": "in_segment", "segments": [trigger["segment"]]})
    elif trigger.get("type") == "tag_added":
        parts.append({"predicate": "has_tag", "tags": [trigger["tag"]]})
    if definition.get("entry_filter"):
        parts.append(definition["entry_filter"])
    return {"all": parts} if parts else None


def enroll(journey: Journey, candidates: Iterable[Candidate], *, now: datetime.datetime | None = None) -> EnrollResult:
    """Enroll the candidates in the journey's current version. Idempotent per trigger occurrence; refused
    candidates get a Refusal row with the reason. Joins the caller's transaction."""
    from customers.conditions import Context, matching_customers

    now = now or timezone.now()
    result = EnrollResult()
    first: dict[int, Candidate] = {}
    for candidate in sorted(candidates, key=lambda c: c.at):
        first.setdefault(candidate.customer_id, candidate)
    if not first:
        return result
    journey = Journey.objects.select_related("current_version").get(pk=journey.pk)  # the version published now
    if journey.status != JourneyStatus.ACTIVE or journey.current_version_id is None:
        _refuse(journey, first.values(), RefusalReason.JOURNEY_NOT_ACTIVE, result, now)
        return result
    version = journey.current_version
    definition = version.definition
    first = _drop_seen_triggers(journey, first)
    if not first:
        return result
    ids = sorted(first)
    if rule := definition.get("entry_filter"):
        matched = set(matching_customers(rule, customer_ids=ids, ctx=Context(now=now)).values_list("pk", flat=True))
        _refuse(journey, [first[c] for c in ids if c not in matched], RefusalReason.FILTER_NOT_MATCHED, result, now)
        ids = [c for c in ids if c in matched]
    if ids and (channels := definitions.channels_of(definition)):
        opted_out = _opted_out_of_all(ids, channels)
        _refuse(journey, [first[c] for c in ids if c in opted_out], RefusalReason.OPTED_OUT, result, now)
        ids = [c for c in ids if c not in opted_out]
    if ids:
        ids = _apply_reentry(journey, definition, ids, first, result, now)
    if ids:
        _insert(journey, version, definition, [first[c] for c in ids], result, now)
    return result


def _drop_seen_triggers(journey: Journey, first: dict[int, Candidate]) -> dict[int, Candidate]:
    from journeys.models import Refusal

    keyed = [c for c in first.values() if c.trigger_key]
    if not keyed:
        return first
    keys = {c.trigger_key for c in keyed}
    seen = set(
        Enrollment.objects.filter(journey=journey, customer_id__in=[c.customer_id for c in keyed], trigger_key__in=keys)
        .values_list("customer_id", "trigger_key")
    ) | set(
        Refusal.objects.filter(journey=journey, customer_id__in=[c.customer_id for c in keyed], trigger_key__in=keys)
        .values_list("customer_id", "trigger_key")
    )  # fmt: skip
    return {c: cand for c, cand in first.items() if (c, cand.trigger_key) not in seen}


def opted_out_of_all_q(channels: set[str]) -> Q:
    """Customers opted out of every channel the journey sends on: enrollment refuses them (so does the dry run)."""
    from customers.models import Consent, ConsentStatus

    q = Q()
    for channel in sorted(channels):
        q &= Q(Exists(Consent.objects.filter(customer=OuterRef("pk"), channel=channel,
                                             status=ConsentStatus.OPTED_OUT)))  # fmt: skip
    return q


def _opted_out_of_all(ids: list[int], channels: set[str]) -> set[int]:
    from customers.models import Customer

    return set(Customer.objects.filter(pk__in=ids).filter(opted_out_of_all_q(channels)).values_list("pk", flat=True))


def _apply_reentry(
    journey: Journey, definition: Mapping[str, Any], ids: list[int], first: dict[int, Candidate],
    result: EnrollResult, now: datetime.datetime,
) -> list[int]:  # fmt: skip
    reentry = definition.get("reentry") or {"policy": "never"}
    policy = reentry.get("policy", "never")
    history = {
        row["customer_id"]: row
        for row in Enrollment.objects.filter(journey=journey, customer_id__in=ids)
        .values("customer_id")
        .annotate(
            last_entered=Max("entered_at"),
            active=Max("id", filter=Q(state=EnrollmentState.ACTIVE)),
        )
    }
    allowed = []
    for customer_id in ids:
        past = history.get(customer_id)
        reason = None
        if past is None:
            allowed.append(customer_id)
            continue
        if past["active"] and policy != "concurrent":
            reason = RefusalReason.ALREADY_ACTIVE
        elif policy == "never":
            reason = RefusalReason.REENTRY_NOT_ALLOWED
        elif policy == "after_days" and past["last_entered"] + datetime.timedelta(days=reentry["days"]) > now:
            reason = RefusalReason.REENTRY_TOO_SOON
        if reason:
            _refuse(journey, [first[customer_id]], reason, result, now)
        else:
            allowed.append(customer_id)
    return allowed


_INSERT = """
WITH r AS (
    SELECT * FROM json_to_recordset(%s::json) AS r(
        customer bigint, trigger text, trigger_key text, context jsonb, next_run_at timestamptz, wait jsonb)
),
numbered AS (
    SELECT r.*, coalesce((SELECT max(rotation) FROM journeys_enrollment e
                          WHERE e.journey_id = %s AND e.customer_id = r.customer), 0) + 1 AS rotation
    FROM r
)
INSERT INTO journeys_enrollment (
    journey_id, version_id, customer_id, rotation, state, step, step_entered_at, next_run_at, seq, wait, arms,
    trigger, trigger_key, context, entered_at, exit_reason, goal_until, attempts, last_error, conversion_ref)
SELECT %s, %s, customer, rotation, 'active', %s, %s, next_run_at, 0, wait, '{}'::jsonb,
       trigger, trigger_key, context, %s, '', %s, 0, '', ''
FROM numbered
ON CONFLICT DO NOTHING
RETURNING id, customer_id
"""


def _insert(
    journey: Journey, version: Any, definition: Mapping[str, Any], candidates: list[Candidate],
    result: EnrollResult, now: datetime.datetime,
) -> None:  # fmt: skip
    from customers.models import Customer
    from messaging.services.policy import zone

    start = definitions.by_id(definition)[definition["start"]]
    kind = step_type(start["type"])
    zones = dict(Customer.objects.filter(pk__in=[c.customer_id for c in candidates]).values_list("pk", "time_zone"))
    rows = []
    for candidate in candidates:
        due, wait = kind.arrive(start, now, zone(zones.get(candidate.customer_id) or ""))
        rows.append({
            "customer": candidate.customer_id, "trigger": candidate.trigger[:40],
            "trigger_key": candidate.trigger_key[:128], "context": dict(candidate.context),
            "next_run_at": due.isoformat(), "wait": wait,
        })  # fmt: skip
    goal_until = now + datetime.timedelta(days=definitions.goal_window_days(definition))
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT,
            [orjson.dumps(rows, default=str).decode(), journey.pk, journey.pk, version.pk, start["id"], now, now,
             goal_until],
        )  # fmt: skip
        for enrollment_id, customer_id in cursor.fetchall():
            result.enrolled[customer_id] = enrollment_id
    if result.enrolled:
        from journeys.services.runtime import kick_after_commit

        logger.info("journeys.enrolled", extra={"journey": journey.pk, "count": len(result.enrolled)})
        kick_after_commit()


def _refuse(
    journey: Journey, candidates: Iterable[Candidate], reason: str, result: EnrollResult, now: datetime.datetime
) -> None:
    from journeys.models import Refusal

    rows = [
        Refusal(journey=journey, customer_id=c.customer_id, reason=reason, trigger=c.trigger[:40],
                trigger_key=c.trigger_key[:128], at=now)
        for c in candidates
    ]  # fmt: skip
    for row in rows:
        result.refused[row.customer_id] = reason
    Refusal.objects.bulk_create(rows, ignore_conflicts=True)


def enroll_manually(journey: Journey, customer_ids: Iterable[int], *, by: Any = None) -> EnrollResult:
    """An operator (or the API) puts customers into a journey: the same checks as a trigger."""
    now = timezone.now()
    key = f"manual:{uuid.uuid4().hex}"  # one enrollment attempt per call
    return enroll(journey, [Candidate(c, "manual", key, now, {}) for c in customer_ids], now=now)
