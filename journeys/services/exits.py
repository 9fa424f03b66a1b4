"""Leaving journeys: conversions, exits and the messages they cancel."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from journeys.models import Enrollment, EnrollmentState, ExitReason


def convert(enrollment: Enrollment, *, at: datetime.datetime, amount: Decimal | None = None, ref: str = "") -> bool:
    """Record the enrollment's conversion once (J11: the first goal event in the window; editing the goal later
    rewrites nothing). With the goal exit policy an active enrollment exits at `at` and its queued messages are
    cancelled (J8). Returns whether this call recorded it."""
    recorded = Enrollment.objects.filter(pk=enrollment.pk, converted_at__isnull=True).update(
        converted_at=at, conversion_amount=amount, conversion_ref=ref[:64]
    )
    if not recorded:
        return False
    policy = (enrollment.version.definition.get("exit") or {}).get("policy", "goal")
    if policy in ("goal", "either"):
        exit_enrollments(Enrollment.objects.filter(pk=enrollment.pk), reason=ExitReason.GOAL, at=at)
    return True


def exit_enrollments(
    enrollments: QuerySet, *, reason: str, at: datetime.datetime | None = None, cancel_messages: bool = True
) -> int:
    """End the active ones among `enrollments` with `reason` and cancel their queued messages."""
    at = at or timezone.now()
    with transaction.atomic():
        ended = list(
            enrollments.filter(state=EnrollmentState.ACTIVE)
            .select_for_update()
            .values_list("id", "journey_id", "customer_id")
        )
        if not ended:
            return 0
        Enrollment.objects.filter(pk__in=[row[0] for row in ended], state=EnrollmentState.ACTIVE).update(
            state=EnrollmentState.EXITED if reason != ExitReason.END else EnrollmentState.COMPLETED,
            exit_reason=reason, ended_at=at, next_run_at=None, wait={},
        )  # fmt: skip
        if cancel_messages:
            cancel_queued_messages([(journey, customer) for _id, journey, customer in ended])
    return len(ended)


def cancel_queued_messages(pairs: Iterable[tuple[int, int]]) -> int:
    """Cancel the journey's queued (not yet handed to a channel) messages to these customers."""
    from messaging.services.scheduling import cancel_touchpoints

    by_journey: dict[int, set[int]] = defaultdict(set)
    for journey, customer in pairs:
        by_journey[journey].add(customer)
    return sum(
        cancel_touchpoints(source_ref=f"journey:{journey}", customers=sorted(customers), reason="journey exit")
        for journey, customers in sorted(by_journey.items())
    )
