"""Dry run: what the journey's draft would do if it were published now, without writing or sending anything.

`dry_run(journey)` answers three questions for the builder:

- `entering`: who would enter now. For a segment trigger, the segment's current members; for a date trigger
  (birthday, date attribute, consumption cycle), who is due today in the workspace's zone; for any other trigger,
  every current customer. In every case narrowed by the entry filter, by opt-outs of every channel the journey
  sends on, and by the re-entry policy against the journey's existing enrollments - one set-based count.
- `step_counts`: of those, how many would reach each step. The graph is walked with sets, not customers: a
  condition branch narrows the set by each branch's rule (one count per distinct path, evaluated on the data of
  now); a random split divides it by the arms' weights (proportional, rounded at the end); waits are assumed to
  take their main path: a wait for an event takes its timeout exit (nobody acts in a dry run), a wait until a
  condition lets through who matches now and sends the others to its timeout exit (or keeps them waiting when it
  has no timeout); a WeCom send waiting for the rep's confirmation assumes she confirms. Goals and "no longer
  matching" exits are not simulated. A path stops where it would visit a step a second time (a loop).
- `sample`: for a few of them (lowest ids first, so the answer is stable), each step with when it would run
  (`arrive` of each step type in the customer's zone) and a note: quiet hours moving a marketing message, the
  branch or arm taken, an opt-out, the assumption a wait made.

Group triggers (weekly plans, rhythms of new groups) enroll no customers: their dry run is empty.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from journeys import definition as definitions
from journeys import timing
from journeys.models import Enrollment, EnrollmentState, Journey
from journeys.services.enrollment import opted_out_of_all_q
from journeys.steps import step_type
from journeys.steps.branches import assign_arm

DEFAULT_SAMPLE_SIZE = 20
MAX_SAMPLE_SIZE = 200
MAX_VISITS = 500  # (step, path) pairs walked for the counts: a bound for pathological graphs


@dataclass
class PlannedStep:
    step_id: str
    description: str
    at: datetime.datetime  # when the step would run (for a wait: when it ends)
    note: str = ""


@dataclass
class SamplePath:
    customer_id: int
    customer_name: str
    steps: list[PlannedStep] = field(default_factory=list)


@dataclass
class DryRun:
    entering: int
    step_counts: dict[str, int]
    sample: list[SamplePath]
    # An event trigger (a new contact, a tag, an order…) enrolls nobody at publishing: `entering` is then who
    # matches the entry filter now and would enter when the trigger happens to them.
    on_trigger: bool = False


# A path's conditions: (matched?, rule as canonical JSON) pairs, so equal paths share one count.
Conditions = tuple[tuple[bool, str], ...]


def dry_run(
    journey: Journey, *, sample_size: int = DEFAULT_SAMPLE_SIZE, now: datetime.datetime | None = None
) -> DryRun:
    """Who would enter the journey's draft now, how many would reach each step, and a sample's paths with times.
    Reads only: nothing is written, queued or sent. Raises DefinitionError when the draft does not validate."""
    from customers.conditions import Context

    definition = definitions.validate(journey.draft)
    now = now or timezone.now()
    if definition["trigger"]["type"] in definitions.GROUP_TRIGGERS:
        return DryRun(entering=0, step_counts={}, sample=[])
    ctx = Context(now=now)
    entering_set = entering_customers(journey, definition, now=now)
    entering = entering_set.count()
    counts = _step_counts(definition, entering_set, entering, ctx) if entering else dict.fromkeys(_ids(definition), 0)
    size = max(0, min(sample_size, MAX_SAMPLE_SIZE))
    sample = _sample(journey, definition, entering_set, size, now, ctx) if entering and size else []
    on_trigger = definition["trigger"]["type"] in (*definitions.EVENT_TRIGGERS, "manual")
    return DryRun(entering=entering, step_counts=counts, sample=sample, on_trigger=on_trigger)


def _ids(definition: Mapping[str, Any]) -> list[str]:
    return [step["id"] for step in definition["steps"]]


# ---------------------------------------------------------------------------------------------------- entering


def entering_customers(journey: Journey, definition: Mapping[str, Any], *, now: datetime.datetime) -> QuerySet:
    """The customers the (validated) definition would enroll now, as one queryset: the trigger's population,
    the entry filter, opt-outs and the re-entry policy. Evaluating it is one query."""
    from customers.conditions import Context, matching_customers

    base = _population(definition["trigger"], now)
    if rule := definition.get("entry_filter"):
        base = matching_customers(rule, base=base, ctx=Context(now=now))
    if channels := definitions.channels_of(definition):
        base = base.exclude(opted_out_of_all_q(channels))
    if journey.pk is not None:
        base = base.exclude(_reentry_refused_q(journey, definition.get("reentry") or {}, now))
    return base


def _population(trigger: Mapping[str, Any], now: datetime.datetime) -> QuerySet:
    from customers.models import Customer
    from segments.models import SegmentMembership

    customers = Customer.objects.current()
    kind = trigger["type"]
    if kind == "segment_entered":
        members = SegmentMembership.objects.filter(
            segment_id=trigger["segment"], customer=OuterRef("pk"), exited_at__isnull=True
        )
        return customers.filter(Exists(members))
    if kind in definitions.DATE_TRIGGERS:
        from journeys.services.scheduled import _candidates

        today = now.astimezone(ZoneInfo(settings.TIME_ZONE)).date()
        due = sorted({customer_id for customer_id, _key, _context in _candidates(dict(trigger), today)})
        return customers.filter(pk__in=due)
    return customers


def _reentry_refused_q(journey: Journey, reentry: Mapping[str, Any], now: datetime.datetime) -> Q:
    """The customers the re-entry policy refuses, as journeys.services.enrollment decides it."""
    policy = reentry.get("policy", "never")
    enrollments = Enrollment.objects.filter(journey_id=journey.pk, customer=OuterRef("pk"))
    refused = Q(pk__in=[])
    if policy != "concurrent":
        refused |= Q(Exists(enrollments.filter(state=EnrollmentState.ACTIVE)))
    if policy == "never":
        refused |= Q(Exists(enrollments))
    elif policy == "after_days":
        refused |= Q(Exists(enrollments.filter(entered_at__gt=now - datetime.timedelta(days=reentry["days"]))))
    return refused


def _entry_time(trigger: Mapping[str, Any], now: datetime.datetime) -> datetime.datetime:
    """When the trigger would enroll them: now, or for a date trigger with a time of day, today at that time."""
    if trigger["type"] in definitions.DATE_TRIGGERS and trigger.get("at"):
        tz = ZoneInfo(settings.TIME_ZONE)
        local = now.astimezone(tz)
        return max(now, datetime.datetime.combine(local.date(), timing.parse_clock(trigger["at"]), tzinfo=tz))
    return now


# ------------------------------------------------------------------------------------------------------ counts


def _key(rule: Any) -> str:
    return orjson.dumps(rule, option=orjson.OPT_SORT_KEYS).decode()


def _onward(params: Mapping[str, Any]) -> list[tuple[str, Conditions, float]]:
    """Where the customers at a step go on the main path: (target, conditions added, share of them)."""
    kind = params["type"]
    if kind == "branch":
        rules = [_key(branch["rule"]) for branch in params["branches"]]
        found: list[tuple[str, Conditions, float]] = []
        for index, branch in enumerate(params["branches"]):
            if branch.get("next"):
                earlier = tuple((False, rule) for rule in rules[:index])
                found.append((branch["next"], ((True, rules[index]), *earlier), 1.0))
        if params.get("else_next"):
            found.append((params["else_next"], tuple((False, rule) for rule in rules), 1.0))
        return found
    if kind == "split":
        total = sum(arm["weight"] for arm in params["arms"])
        return [(arm["next"], (), arm["weight"] / total) for arm in params["arms"] if arm.get("next")]
    if kind == "wait_event":
        return [(params["timeout_next"], (), 1.0)] if params.get("timeout_next") else []
    if kind == "wait_condition":
        rule = _key(params["rule"])
        found = [(params["next"], ((True, rule),), 1.0)] if params.get("next") else []
        if params.get("timeout_hours") and params.get("timeout_next"):
            found.append((params["timeout_next"], ((False, rule),), 1.0))
        return found
    if kind == "exit":
        return []
    return [(params["next"], (), 1.0)] if params.get("next") else []


def _narrowed(base: QuerySet, conditions: Conditions, ctx: Any) -> QuerySet:
    from customers.conditions import matching_customers

    narrowed = base
    for matched, rule in conditions:
        if matched:
            narrowed = matching_customers(orjson.loads(rule), base=narrowed, ctx=ctx)
        else:  # NOT IN over non-null ids: the exact complement, whatever NULLs the rule's columns hold
            narrowed = narrowed.exclude(pk__in=matching_customers(orjson.loads(rule), ctx=ctx).values("pk"))
    return narrowed


def _step_counts(definition: Mapping[str, Any], base: QuerySet, entering: int, ctx: Any) -> dict[str, int]:
    steps = definitions.by_id(definition)
    counted: dict[Conditions, int] = {(): entering}

    def count(conditions: Conditions) -> int:
        if conditions not in counted:
            counted[conditions] = _narrowed(base, conditions, ctx).count()
        return counted[conditions]

    totals: dict[str, float] = defaultdict(float)
    todo: list[tuple[str, Conditions, float, frozenset[str]]] = [(definition["start"], (), 1.0, frozenset())]
    visits = 0
    while todo and visits < MAX_VISITS:
        step_id, conditions, share, seen = todo.pop()
        if step_id in seen or step_id not in steps:
            continue
        visits += 1
        reached = count(conditions) * share
        if not reached:
            continue
        totals[step_id] += reached
        for target, more, fraction in _onward(steps[step_id]):
            todo.append((target, tuple(dict.fromkeys(conditions + more)), share * fraction, seen | {step_id}))
    return {step_id: round(totals.get(step_id, 0.0)) for step_id in _ids(definition)}


# ------------------------------------------------------------------------------------------------------ sample


class _SampleFacts:
    """What the sample's notes need, each read once for the whole sample (one query per distinct rule, one for
    groups, one for consents), never per customer."""

    def __init__(self, ids: list[int], ctx: Any) -> None:
        self.ids, self.ctx = ids, ctx
        self._rules: dict[str, set[int]] = {}
        self._group_members: dict[int, set[int]] = {}
        self._latest_groups: dict[int, int] | None = None
        self._opted_out: dict[int, set[str]] | None = None
        self._policy: Any = None

    def matches(self, rule: Any) -> set[int]:
        from customers.conditions import matching_customers

        key = _key(rule)
        if key not in self._rules:
            found = matching_customers(rule, customer_ids=self.ids, ctx=self.ctx).values_list("pk", flat=True)
            self._rules[key] = set(found)
        return self._rules[key]

    def latest_group(self, customer_id: int) -> int | None:
        from journeys.steps.actions import latest_groups

        if self._latest_groups is None:
            self._latest_groups = latest_groups(self.ids)
        return self._latest_groups.get(customer_id)

    def in_group(self, group_id: int, customer_id: int) -> bool:
        from customers.models import GroupMembership

        if group_id not in self._group_members:
            self._group_members[group_id] = set(
                GroupMembership.objects.filter(group_id=group_id, customer_id__in=self.ids, left_at__isnull=True)
                .values_list("customer_id", flat=True)
            )  # fmt: skip
        return customer_id in self._group_members[group_id]

    def opted_out(self, customer_id: int) -> set[str]:
        from customers.models import Consent, ConsentStatus

        if self._opted_out is None:
            self._opted_out = defaultdict(set)
            rows = Consent.objects.filter(customer_id__in=self.ids, status=ConsentStatus.OPTED_OUT)
            for owner, channel in rows.values_list("customer_id", "channel"):
                self._opted_out[owner].add(channel)
        return self._opted_out.get(customer_id, set())

    @property
    def policy(self) -> Any:
        from messaging.models import ContactPolicy

        if self._policy is None:  # ContactPolicy.current() would create the row: read it, or use the defaults
            self._policy = ContactPolicy.objects.filter(pk=1).first() or ContactPolicy()
        return self._policy


def _sample(
    journey: Journey, definition: Mapping[str, Any], base: QuerySet, size: int, now: datetime.datetime, ctx: Any
) -> list[SamplePath]:
    from messaging.services.policy import zone

    customers = list(base.order_by("pk").only("pk", "name", "time_zone")[:size])
    facts = _SampleFacts([c.pk for c in customers], ctx)
    steps = definitions.by_id(definition)
    descriptions: dict[str, str] = {}  # describe() may read names from the database: once per step
    entered_at = _entry_time(definition["trigger"], now)
    sample = []
    for customer in customers:
        path = SamplePath(customer.pk, str(customer), [])
        tz = zone(customer.time_zone or "")
        at, step_id, seen = entered_at, definition["start"], set()
        while step_id in steps and step_id not in seen:
            seen.add(step_id)
            params = steps[step_id]
            kind = step_type(params["type"])
            if step_id not in descriptions:
                descriptions[step_id] = kind.describe(params)
            due, _wait = kind.arrive(params, at, tz)
            leaves_at, next_id, note = _decide(journey, params, customer.pk, at, due, tz, facts)
            path.steps.append(PlannedStep(step_id, descriptions[step_id], leaves_at, note))
            at, step_id = leaves_at, next_id
        sample.append(path)
    return sample


def _decide(
    journey: Journey, params: Mapping[str, Any], customer_id: int, arrived: datetime.datetime,
    due: datetime.datetime, tz: ZoneInfo, facts: _SampleFacts,
) -> tuple[datetime.datetime, str | None, str]:  # fmt: skip
    """When the customer leaves the step, where to, and the note: the step's outcome as the dry run assumes it."""
    deciders: dict[str, Callable[..., tuple[datetime.datetime, str | None, str]]] = {
        "branch": _branch, "split": _split, "wait_event": _wait_event, "wait_condition": _wait_condition,
    }  # fmt: skip
    if decide := deciders.get(params["type"]):
        return decide(journey, params, customer_id, arrived, due, facts)
    if params["type"] == "exit":
        return due, None, ""
    notes = []
    if params["type"] == "invite_group" and facts.in_group(params["group"], customer_id):
        notes.append(_("already in the group: no invitation"))
    elif params["type"] == "send" and params.get("to") == "group" and facts.latest_group(customer_id) is None:
        notes.append(_("in no group: skipped"))
    elif step_type(params["type"]).sends:
        notes += _delivery_notes(params, customer_id, due, tz, facts)
    if params["type"] == "send" and params.get("wait_confirmation") and params.get("channel") == "wecom":
        notes.append(_("assumes the rep confirms the send"))
    return due, params.get("next") or None, "; ".join(notes)


def _delivery_notes(
    params: Mapping[str, Any], customer_id: int, due: datetime.datetime, tz: ZoneInfo, facts: _SampleFacts
) -> list[str]:
    """Opt-outs (every kind, J32) and quiet hours (marketing only, J17) as dispatch would apply them."""
    from customers.models import MessageChannel
    from messaging.models import TouchpointKind
    from messaging.services.policy import quiet_hours_end

    channel = params.get("channel") or MessageChannel.WECOM
    if params.get("to") != "group" and channel in facts.opted_out(customer_id):
        label = dict(MessageChannel.choices).get(channel, channel)
        return [_("opted out of %(channel)s: not sent") % {"channel": label}]
    policy = facts.policy
    if (params.get("kind") or TouchpointKind.MARKETING) != TouchpointKind.MARKETING or not policy.quiet_hours_enabled:
        return []
    end = quiet_hours_end(due, tz, policy.quiet_start, policy.quiet_end)
    if end is None:
        return []
    return [_("quiet hours: moved to %(time)s") % {"time": end.astimezone(tz).strftime("%H:%M")}]


def _branch(journey, params, customer_id, arrived, due, facts):
    for index, branch in enumerate(params["branches"]):
        if customer_id in facts.matches(branch["rule"]):
            label = branch.get("label") or f"#{index + 1}"
            return due, branch.get("next") or None, _("branch %(label)s") % {"label": label}
    return due, params.get("else_next") or None, _("no branch matched: else")


def _split(journey, params, customer_id, arrived, due, facts):
    arm = assign_arm(params["arms"], journey.pk or 0, params["id"], customer_id)
    chosen = next(a for a in params["arms"] if a["name"] == arm)
    return due, chosen.get("next") or None, _("arm %(arm)s") % {"arm": arm}


def _wait_event(journey, params, customer_id, arrived, due, facts):
    return due, params.get("timeout_next") or None, _("assumes no event: timeout")


def _wait_condition(journey, params, customer_id, arrived, due, facts):
    if customer_id in facts.matches(params["rule"]):
        return due, params.get("next") or None, _("condition met now")
    if params.get("timeout_hours"):
        timeout = arrived + datetime.timedelta(hours=params["timeout_hours"])
        return timeout, params.get("timeout_next") or None, _("assumes the condition is not met: timeout")
    return due, None, _("waits until the condition is met")
