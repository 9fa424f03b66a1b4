"""Reads for the messaging pages and API: every function takes the acting user and returns only what they may see.

The rule is the customers' one (customers.visibility): admins, operators and analysts see every touchpoint; a
sales rep sees the touchpoints of the customers they own and of the community groups they own. A touchpoint the
user may not see is "not found", never "forbidden".
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from customers.models import Customer
from customers.visibility import customer_visibility_q, sees_all_customers
from messaging.models import ConsoleMessage, Touchpoint, TouchpointStatus

# The dead-letter queue: messages that failed for good after trying (not those the policy stopped on purpose).
DEAD_LETTER_STATUS = TouchpointStatus.FAILED
DEAD_LETTER_REASONS = ("retries_exhausted", "provider_error")
HISTORY_SIZE = 20


def touchpoint_visibility_q(user: Any) -> Q:
    """Touchpoints visible to `user`: through their customer by the customers' rule, or their group's owner."""
    if not (user and user.is_authenticated):
        return Q(pk__in=[])
    if sees_all_customers(user):
        return Q()
    by_customer = Q(customer__merged_into__isnull=True) & customer_visibility_q(user, path="customer__")
    return by_customer | Q(customer__isnull=True, group__owner__user_id=user.pk)


def touchpoints_for(user: Any) -> QuerySet[Touchpoint]:
    """Every touchpoint `user` may see, newest first, with the customer and group joined for list rows."""
    return Touchpoint.objects.filter(touchpoint_visibility_q(user)).select_related("customer", "group").order_by("-id")


def get_touchpoint(user: Any, touchpoint_id: int | str) -> Touchpoint:
    """One visible touchpoint with what its detail shows joined, or Http404."""
    try:
        return touchpoints_for(user).select_related("template", "sender_staff", "created_by").get(pk=touchpoint_id)
    except (Touchpoint.DoesNotExist, ValueError, TypeError):
        raise Http404("Touchpoint not found") from None


def dead_letters(touchpoints: QuerySet[Touchpoint]) -> QuerySet[Touchpoint]:
    """The dead-letter part of `touchpoints`: failed after exhausting retries or refused by the provider."""
    return touchpoints.filter(status=DEAD_LETTER_STATUS, reason__in=DEAD_LETTER_REASONS)


def customer_message_history(customer: Customer, *, limit: int = HISTORY_SIZE) -> list[Touchpoint]:
    """The customer's latest touchpoints, newest first, in one query (the caller has checked the customer is
    visible; every touchpoint of a visible customer is)."""
    return list(
        Touchpoint.objects.filter(customer=customer).select_related("template").order_by("-created_at", "-id")[:limit]
    )


def console_messages_for(user: Any) -> QuerySet[ConsoleMessage]:
    """What the console backend "sent", newest first: all of it for those who see every customer, otherwise
    only the messages of touchpoints the user may see."""
    messages = ConsoleMessage.objects.order_by("-id")
    if sees_all_customers(user):
        return messages
    visible = Touchpoint.objects.filter(touchpoint_visibility_q(user)).values("pk")
    return messages.filter(touchpoint__in=visible)
