"""What a journey did: where its customers are now, its daily flow, totals and journey GMV, split arms, message
outcomes, reps' confirmations of WeCom sends and group invitations; and one customer's trace through it.

Every figure is one aggregate query over the journey's rows (never a loop over customers). The figures count every
customer: they are for those who see every customer (the views check); a customer's trace is for anyone who may
see her.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from journeys import definition as definitions
from journeys.models import (
    Enrollment,
    EnrollmentState,
    ExitReason,
    Journey,
    JourneyVersion,
    Refusal,
    StepRun,
)
from journeys.selectors import step_text
from journeys.steps import REGISTRY
from journeys.steps.actions import CONFIRMED

MAX_DAYS = 366
ZERO = Decimal("0.00")


def percent(part: int, whole: int) -> float | None:
    """part of whole in percent, to one decimal (None when there is nothing to divide)."""
    return round(100 * part / whole, 1) if whole else None


# ------------------------------------------------------------------------------------------------ where they are


@dataclass(frozen=True)
class StepCount:
    version: int
    step: str
    step_type: str
    description: str
    active: int
    is_current_version: bool


def step_counts(journey: Journey) -> list[StepCount]:
    """Customers at each step now (active enrollments grouped by version and step): every step of the current
    version in graph order, zeros included, then older versions' steps where someone still is."""
    counts = {
        (row["version_id"], row["step"]): row["n"]
        for row in Enrollment.objects.filter(journey=journey, state=EnrollmentState.ACTIVE)
        .values("version_id", "step")
        .annotate(n=Count("id"))
        .order_by()
    }
    wanted = {version_id for version_id, _step in counts} | (
        {journey.current_version_id} if journey.current_version_id else set()
    )
    versions = sorted(JourneyVersion.objects.filter(pk__in=wanted), key=lambda v: -v.number)
    rows = []
    for version in versions:
        is_current = version.pk == journey.current_version_id
        for params in version.definition.get("steps") or []:
            active = counts.pop((version.pk, params.get("id")), 0)
            if active or is_current:
                rows.append(
                    StepCount(
                        version.number, params["id"], params.get("type", ""),
                        step_text(version.definition, params["id"]), active, is_current,
                    )
                )  # fmt: skip
        for (version_id, step), active in sorted(counts.items()):
            if version_id == version.pk:  # a step no longer in its version's graph
                rows.append(StepCount(version.number, step, "", "", active, is_current))
    return rows


# ----------------------------------------------------------------------------------------------------- per day


@dataclass(frozen=True)
class Day:
    day: datetime.date
    entered: int = 0
    completed: int = 0
    exited: int = 0
    converted: int = 0


_DAILY = """
SELECT (x.at AT TIME ZONE %(tz)s)::date AS day, x.kind, count(*)
FROM (
    SELECT entered_at AS at, 'entered' AS kind FROM journeys_enrollment
    WHERE journey_id = %(journey)s AND entered_at >= %(start)s AND entered_at < %(end)s
    UNION ALL
    SELECT ended_at, CASE WHEN state = 'completed' THEN 'completed' ELSE 'exited' END FROM journeys_enrollment
    WHERE journey_id = %(journey)s AND ended_at >= %(start)s AND ended_at < %(end)s
    UNION ALL
    SELECT converted_at, 'converted' FROM journeys_enrollment
    WHERE journey_id = %(journey)s AND converted_at >= %(start)s AND converted_at < %(end)s
) x
GROUP BY 1, 2
"""


def daily_flow(journey: Journey, *, since: datetime.date, until: datetime.date) -> list[Day]:
    """Enrollments entered, completed, exited and converted on each day from `since` to `until` (inclusive, in the
    workspace's time zone), zeros included: one query."""
    if until < since:
        since, until = until, since
    since = max(since, until - datetime.timedelta(days=MAX_DAYS - 1))
    tz = timezone.get_current_timezone()
    start = datetime.datetime.combine(since, datetime.time.min, tzinfo=tz)
    end = datetime.datetime.combine(until + datetime.timedelta(days=1), datetime.time.min, tzinfo=tz)
    found: dict[datetime.date, dict[str, int]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(_DAILY, {"tz": str(tz), "journey": journey.pk, "start": start, "end": end})
        for day, kind, count in cursor.fetchall():
            found[day][kind] = count
    days = (until - since).days + 1
    return [Day(day, **found.get(day, {})) for day in (since + datetime.timedelta(days=n) for n in range(days))]


# ------------------------------------------------------------------------------------------------------- totals


@dataclass(frozen=True)
class ExitCount:
    reason: str
    label: str
    count: int


@dataclass(frozen=True)
class Totals:
    enrolled: int = 0
    active: int = 0
    completed: int = 0
    exited: int = 0
    converted: int = 0
    gmv: Decimal = ZERO
    exits: list[ExitCount] = field(default_factory=list)

    @property
    def conversion_percent(self) -> float | None:
        return percent(self.converted, self.enrolled)


def totals(journey: Journey) -> Totals:
    """Enrollments in all (every rotation counts), now active, completed, exited (by reason) and converted, the
    conversion rate and the journey's GMV (the sum of its conversions' amounts): one query."""
    rows = list(
        Enrollment.objects.filter(journey=journey)
        .values("state", "exit_reason")
        .annotate(
            n=Count("id"),
            converted=Count("id", filter=Q(converted_at__isnull=False)),
            gmv=Sum("conversion_amount"),
        )
        .order_by()
    )
    by_state: dict[str, int] = defaultdict(int)
    exits: dict[str, int] = defaultdict(int)
    for row in rows:
        by_state[row["state"]] += row["n"]
        if row["state"] == EnrollmentState.EXITED:
            exits[row["exit_reason"]] += row["n"]
    labels = dict(ExitReason.choices)
    return Totals(
        enrolled=sum(row["n"] for row in rows),
        active=by_state[EnrollmentState.ACTIVE],
        completed=by_state[EnrollmentState.COMPLETED],
        exited=by_state[EnrollmentState.EXITED],
        converted=sum(row["converted"] for row in rows),
        gmv=sum((row["gmv"] or ZERO for row in rows), ZERO),
        exits=[
            ExitCount(reason, str(labels.get(reason, reason or "-")), count)
            for reason, count in sorted(exits.items(), key=lambda item: (-item[1], item[0]))
        ],
    )


# ------------------------------------------------------------------------------------------------ split arms


@dataclass(frozen=True)
class ArmResult:
    step: str
    arm: str
    customers: int
    converted: int
    gmv: Decimal
    took_winner: int  # of `customers`, sent to the arm as the decided winner of an experiment

    @property
    def conversion_percent(self) -> float | None:
        return percent(self.converted, self.customers)


_ARMS = """
SELECT s.step, s.arm, count(*), count(*) FILTER (WHERE e.converted_at IS NOT NULL),
       coalesce(sum(e.conversion_amount), 0), count(*) FILTER (WHERE s.winner)
FROM (
    SELECT DISTINCT ON (r.enrollment_id, r.step) r.enrollment_id, r.step, r.detail->>'arm' AS arm,
           r.detail ? 'winner' AS winner
    FROM journeys_steprun r JOIN journeys_enrollment e ON e.id = r.enrollment_id
    WHERE e.journey_id = %s AND r.step_type = 'split'
    ORDER BY r.enrollment_id, r.step, r.seq
) s JOIN journeys_enrollment e ON e.id = s.enrollment_id
GROUP BY 1, 2
ORDER BY 1, 2
"""


def split_results(journey: Journey) -> list[ArmResult]:
    """Per split step and arm: the enrollments that took it (the first time, if she passed it twice), how many
    converted, the rate and their GMV: one query."""
    with connection.cursor() as cursor:
        cursor.execute(_ARMS, [journey.pk])
        return [ArmResult(step, arm or "", n, converted, gmv, winner) for step, arm, n, converted, gmv, winner in
                cursor.fetchall()]  # fmt: skip


# -------------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: str
    count: int


def touchpoint_outcomes(journey: Journey) -> list[StatusCount]:
    """The journey's messages (to customers and groups) by status, in the statuses' order: one query."""
    from messaging.models import Touchpoint, TouchpointStatus

    counts = dict(
        Touchpoint.objects.filter(source_ref=journey.source_ref)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("status", "n")
    )
    ordered = [StatusCount(status, str(label), counts.pop(status)) for status, label in TouchpointStatus.choices
               if status in counts]  # fmt: skip
    return ordered + [StatusCount(status, status, n) for status, n in sorted(counts.items())]


@dataclass(frozen=True)
class RepConfirmations:
    staff_id: int | None
    name: str
    total: int
    confirmed: int
    awaiting: int

    @property
    def confirmation_percent(self) -> float | None:
        """Of the sends that reached the rep (confirmed, or still awaiting her): none yet is "—", not 0%."""
        return percent(self.confirmed, self.confirmed + self.awaiting)


def rep_confirmations(journey: Journey) -> list[RepConfirmations]:
    """Per sending rep, the journey's WeCom messages: in all, confirmed (or beyond: sent, delivered, read,
    clicked), still awaiting the rep's confirmation, and the confirmation rate: one query."""
    from messaging.models import Touchpoint, TouchpointStatus

    rows = (
        Touchpoint.objects.filter(source_ref=journey.source_ref, channel="wecom")
        .values("sender_staff_id", "sender_staff__name")
        .annotate(
            total=Count("id"),
            confirmed=Count("id", filter=Q(status__in=CONFIRMED)),
            awaiting=Count("id", filter=Q(status=TouchpointStatus.AWAITING_CONFIRMATION)),
        )
        .order_by("sender_staff__name", "sender_staff_id")
    )
    return [
        RepConfirmations(
            row["sender_staff_id"], row["sender_staff__name"] or _("No rep"), row["total"], row["confirmed"],
            row["awaiting"],
        )
        for row in rows
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ group invites


@dataclass(frozen=True)
class InviteResult:
    group_id: int | None
    group: str
    invited: int
    joined: int
    already_members: int

    @property
    def join_percent(self) -> float | None:
        return percent(self.joined, self.invited)


_INVITES = """
SELECT (r.detail->>'group')::bigint AS group_id, g.name,
       count(*) FILTER (WHERE r.outcome = 'invited'),
       count(*) FILTER (WHERE r.outcome = 'invited' AND EXISTS (
           SELECT 1 FROM customers_groupmembership m
           WHERE m.group_id = (r.detail->>'group')::bigint AND m.customer_id = e.customer_id
             AND m.joined_at >= r.ran_at)),
       count(*) FILTER (WHERE r.outcome = 'already_member')
FROM journeys_steprun r
JOIN journeys_enrollment e ON e.id = r.enrollment_id
LEFT JOIN customers_communitygroup g ON g.id = (r.detail->>'group')::bigint
WHERE e.journey_id = %s AND r.step_type = 'invite_group' AND r.detail ? 'group'
GROUP BY 1, 2
ORDER BY 2, 1
"""


def group_invites(journey: Journey) -> list[InviteResult]:
    """Per community group the journey invites to: invitations sent, of which the customer joined the group
    afterwards, and those who were members already: one query."""
    with connection.cursor() as cursor:
        cursor.execute(_INVITES, [journey.pk])
        return [InviteResult(group_id, name or f"#{group_id}", invited, joined, already)
                for group_id, name, invited, joined, already in cursor.fetchall()]  # fmt: skip


# ------------------------------------------------------------------------------------------ recent enrollments


def latest_enrollments(journey: Journey, *, limit: int = 20) -> list[Enrollment]:
    """The journey's latest enrollments with their customers (one query), to open their traces."""
    return list(
        Enrollment.objects.filter(journey=journey).select_related("customer").order_by("-entered_at", "-id")[:limit]
    )


# ------------------------------------------------------------------------------------------------------ traces

OUTCOME_LABELS = {
    "done": gettext_lazy("Done"),
    "queued": gettext_lazy("Message queued"),
    "expired": gettext_lazy("Too late: dropped instead of going out late"),
    "no_group": gettext_lazy("Not sent: she is in no community group"),
    "confirmed": gettext_lazy("Confirmed by the rep"),
    "confirmation_timeout": gettext_lazy("The rep did not confirm in time"),
    "awaiting_confirmation": gettext_lazy("Awaiting the rep's confirmation"),
    "else": gettext_lazy("No branch matched: the other path"),
    "timeout": gettext_lazy("Timed out"),
    "event": gettext_lazy("The event happened"),
    "matched": gettext_lazy("The condition held"),
    "waiting": gettext_lazy("Waiting"),
    "invited": gettext_lazy("Invited"),
    "already_member": gettext_lazy("Already a member: not invited"),
    "entered": gettext_lazy("Entered the journey"),
    "refused": gettext_lazy("Not entered"),
    "exit": gettext_lazy("Exit step"),
}


def outcome_label(outcome: str, detail: dict[str, Any] | None = None) -> str:
    """A step run's outcome in words: "branch:0" names the branch, "arm:A" the arm, "not_sent:capped" the
    message's status."""
    from messaging.models import TouchpointStatus

    detail = detail or {}
    kind, _sep, value = outcome.partition(":")
    if kind == "branch":
        return _("Branch %(branch)s") % {"branch": detail.get("branch") or f"#{int(value) + 1}"}
    if kind == "arm":
        text = _("Arm %(arm)s") % {"arm": value}
        return text + (" · " + _("the experiment's winner") if detail.get("winner") else "")
    if kind == "not_sent":
        return _("Not sent: %(status)s") % {"status": dict(TouchpointStatus.choices).get(value, value)}
    return str(OUTCOME_LABELS.get(outcome, outcome))


@dataclass
class TraceRun:
    run: StepRun
    type_label: str
    description: str
    outcome: str
    touchpoint: Any = None  # messaging.models.Touchpoint


@dataclass
class TraceEnrollment:
    enrollment: Enrollment
    version_number: int
    runs: list[TraceRun]
    current_description: str = ""
    waiting_touchpoint: Any = None


@dataclass
class Trace:
    journey: Journey
    customer: Any
    enrollments: list[TraceEnrollment]
    refusals: list[Refusal]


def customer_trace(journey: Journey, customer: Any) -> Trace:
    """What happened to her in the journey and why: every enrollment (rotation) with its step runs in order, each
    with its outcome and, for a message, the touchpoint's status, reason and decisions; where she is now; and the
    triggers that did not enroll her. Four queries, plus those of step descriptions that name tags or groups."""
    from messaging.models import Touchpoint

    enrollments = list(
        Enrollment.objects.filter(journey=journey, customer=customer).select_related("version").order_by("rotation")
    )
    runs: dict[int, list[StepRun]] = defaultdict(list)
    for run in StepRun.objects.filter(enrollment__in=enrollments).order_by("enrollment_id", "seq"):
        runs[run.enrollment_id].append(run)
    touchpoint_ids = {run.touchpoint_id for rows in runs.values() for run in rows if run.touchpoint_id}
    touchpoint_ids |= {
        e.wait["touchpoint"] for e in enrollments if isinstance(e.wait, dict) and e.wait.get("touchpoint")
    }
    touchpoints = Touchpoint.objects.filter(pk__in=touchpoint_ids).in_bulk() if touchpoint_ids else {}
    descriptions: dict[tuple[int, str], str] = {}

    def describe(version: JourneyVersion, step: str) -> str:
        if (version.pk, step) not in descriptions:
            descriptions[version.pk, step] = step_text(version.definition, step)
        return descriptions[version.pk, step]

    traced = []
    for enrollment in enrollments:
        version = enrollment.version
        steps = definitions.by_id(version.definition)
        rows = []
        for run in runs.get(enrollment.pk, []):
            kind = REGISTRY.get(run.step_type)
            rows.append(
                TraceRun(
                    run=run,
                    type_label=str(kind.label) if kind else run.step_type,
                    description=describe(version, run.step) if run.step in steps else "",
                    outcome=outcome_label(run.outcome, run.detail if isinstance(run.detail, dict) else {}),
                    touchpoint=touchpoints.get(run.touchpoint_id) if run.touchpoint_id else None,
                )
            )
        waiting = enrollment.wait.get("touchpoint") if isinstance(enrollment.wait, dict) else None
        is_active = enrollment.state == EnrollmentState.ACTIVE
        traced.append(
            TraceEnrollment(
                enrollment=enrollment,
                version_number=version.number,
                runs=rows,
                current_description=describe(version, enrollment.step) if is_active and enrollment.step else "",
                waiting_touchpoint=touchpoints.get(waiting) if is_active and waiting else None,
            )
        )
    refusals = list(Refusal.objects.filter(journey=journey, customer=customer).order_by("at", "id"))
    return Trace(journey, customer, traced, refusals)
