"""The customer page's journeys panel (J7): the journeys she is in and was in, the triggers that did not enroll
her and why, and her open tasks. Registered through customers.extensions by JourneysConfig."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from customers.models import Customer
from journeys import selectors


def journeys_panel(request: HttpRequest, customer: Customer) -> dict[str, Any]:
    """Three queries whatever her history: enrollments, refusals, open tasks (the page has checked she is
    visible; the selectors check again)."""
    journeys = selectors.customer_journeys(request.user, customer)
    return {
        "customer": customer,
        "enrollments": journeys.enrollments,
        "refusals": journeys.refusals,
        "tasks": selectors.customer_open_tasks(request.user, customer),
        "now": timezone.now(),
        "enrollment_limit": selectors.PANEL_ENROLLMENTS,
        "can_write": request.user.can_write,
    }
