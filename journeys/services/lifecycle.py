"""Publishing versions (with an optional migration of customers in flight) and pausing, resuming, stopping."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.translation import gettext as _

from journeys import definition as definitions
from journeys.models import (
    Enrollment,
    EnrollmentState,
    ExitReason,
    Journey,
    JourneyStatus,
    JourneyVersion,
)
from journeys.steps import DefinitionError, step_type

logger = logging.getLogger(__name__)


class JourneyError(ValueError):
    """A lifecycle action that cannot happen now; `code` is stable for the API."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def publish(
    journey: Journey, *, by: Any = None, migration: Mapping[str, Any] | None = None,
    now: datetime.datetime | None = None,
) -> JourneyVersion:  # fmt: skip
    """Validate the draft and publish it as the next version; new enrollments use it, those in flight stay on
    theirs (J39) unless a migration moves them: `{"map": {"old step": "new step"}, "restart_waits": False,
    "unmapped": "refuse" | "finish_on_old"}` (J40, J41). The journey becomes active."""
    now = now or timezone.now()
    definition = definitions.validate(journey.draft)
    caller = journey
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status in (JourneyStatus.STOPPED, JourneyStatus.ARCHIVED):
            raise JourneyError(_("A stopped journey cannot be published again; duplicate it."), code="stopped")
        number = (journey.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        previous = journey.current_version
        version = JourneyVersion.objects.create(
            journey=journey, number=number, definition=definition, published_at=now, published_by=by,
            migration=dict(migration or {}),
        )  # fmt: skip
        if migration and previous is not None:
            migrate(journey, version, migration, now=now)
        journey.current_version = version
        if journey.status == JourneyStatus.DRAFT:
            journey.status = JourneyStatus.ACTIVE
        journey.save(update_fields=["current_version", "status", "updated_at"])
    caller.current_version, caller.status = version, journey.status
    logger.info("journeys.published", extra={"journey": journey.pk, "version": number})
    return version


def waiting_steps(journey: Journey) -> dict[str, int]:
    """Step id → customers in flight there, over every version (what a migration has to place)."""
    rows = (
        Enrollment.objects.filter(journey=journey, state=EnrollmentState.ACTIVE)
        .values("step")
        .annotate(n=Count("id"))
        .values_list("step", "n")
    )
    return dict(rows)


def migrate(journey: Journey, version: JourneyVersion, migration: Mapping[str, Any], *, now: datetime.datetime) -> int:
    """Move in-flight enrollments to `version`, mapping their steps (a step mapped to None keeps its customers on
    their version). Time already waited counts (the wait is measured from when she arrived) unless
    `restart_waits`. A step with customers that maps nowhere is refused, unless `unmapped` is "finish_on_old":
    they finish on their version (J41)."""
    from messaging.services.policy import zone

    mapping = dict(migration.get("map") or {})
    new_steps = definitions.by_id(version.definition)
    for old, new in mapping.items():
        if new is not None and new not in new_steps:
            raise DefinitionError(
                [(f"migration.map.{old}", _("Step %(step)s is not in the new version.") % {"step": new})]
            )
    active = Enrollment.objects.filter(journey=journey, state=EnrollmentState.ACTIVE).exclude(version=version)
    stranded = sorted(
        {
            step
            for step in active.values_list("step", flat=True).distinct()
            if step not in new_steps and step not in mapping
        }
    )
    if stranded and migration.get("unmapped", "refuse") != "finish_on_old":
        raise DefinitionError([
            (f"migration.map.{step}",
             _("Customers wait at %(step)s, which the new version removes: choose where they go, or let them "
               "finish on their version.") % {"step": step})
            for step in stranded
        ])  # fmt: skip
    moved = []
    restart = bool(migration.get("restart_waits"))
    for enrollment in active.select_for_update().select_related("customer"):
        target = mapping.get(enrollment.step, enrollment.step if enrollment.step in new_steps else None)
        if target is None:
            continue  # finishes on its version
        params = new_steps[target]
        arrived = now if restart else enrollment.step_entered_at
        due, wait = step_type(params["type"]).arrive(params, arrived, zone(enrollment.customer.time_zone or ""))
        enrollment.version = version
        enrollment.step = target
        enrollment.step_entered_at = arrived
        enrollment.next_run_at = max(due, now)
        enrollment.wait = wait
        moved.append(enrollment)
    fields = ["version", "step", "step_entered_at", "next_run_at", "wait"]
    Enrollment.objects.bulk_update(moved, fields, batch_size=1000)
    return len(moved)


def pause(journey: Journey) -> None:
    """Nothing of a paused journey goes out (J42): the runtime skips it and its queued messages are held."""
    from messaging.services.scheduling import hold_touchpoints

    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status != JourneyStatus.ACTIVE:
            raise JourneyError(_("Only an active journey can be paused."), code="not_active")
        journey.status, journey.paused_at = JourneyStatus.PAUSED, timezone.now()
        journey.save(update_fields=["status", "paused_at", "updated_at"])
        hold_touchpoints(source_ref=journey.source_ref)


def resume(journey: Journey) -> None:
    """Back to active: held messages go out unless overdue beyond the lateness limit (then they expire), and
    steps overdue beyond it expire their messages when they run (J42)."""
    from messaging.services.scheduling import release_touchpoints

    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status != JourneyStatus.PAUSED:
            raise JourneyError(_("Only a paused journey can be resumed."), code="not_paused")
        journey.status, journey.paused_at = JourneyStatus.ACTIVE, None
        journey.save(update_fields=["status", "paused_at", "updated_at"])
        release_touchpoints(
            source_ref=journey.source_ref,
            expire_before=timezone.now() - datetime.timedelta(hours=journey.lateness_limit_hours),
        )
    from journeys.services.runtime import kick_after_commit

    kick_after_commit()


def stop(journey: Journey) -> int:
    """Stop for good: active enrollments exit with reason 'journey stopped' and no queued message of the journey
    goes out, except those already handed to a channel (J12). Returns how many exited."""
    from journeys.services.exits import exit_enrollments
    from messaging.services.scheduling import cancel_touchpoints, release_touchpoints

    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status in (JourneyStatus.STOPPED, JourneyStatus.ARCHIVED):
            raise JourneyError(_("The journey is already stopped."), code="stopped")
        journey.status = JourneyStatus.STOPPED
        journey.save(update_fields=["status", "updated_at"])
        exited = exit_enrollments(
            Enrollment.objects.filter(journey=journey), reason=ExitReason.JOURNEY_STOPPED, cancel_messages=False
        )
        release_touchpoints(source_ref=journey.source_ref, expire_before=None, cancel=True)
        cancel_touchpoints(source_ref=journey.source_ref, reason="journey stopped")
    return exited


def archive(journey: Journey) -> None:
    if journey.status not in (JourneyStatus.DRAFT, JourneyStatus.STOPPED):
        raise JourneyError(_("Stop the journey before archiving it."), code="not_stopped")
    journey.status = JourneyStatus.ARCHIVED
    journey.save(update_fields=["status", "updated_at"])


def save_draft(journey: Journey, draft: Mapping[str, Any]) -> Journey:
    """Keep the edited definition (checked only on publish, so work in progress can be saved)."""
    journey.draft = dict(draft)
    journey.save(update_fields=["draft", "updated_at"])
    return journey
