"""The customer page's message history: the latest touchpoints with status, channel, a preview of the content and
a summary of the decisions — every attempt and provider error code (this is where a WeCom welcome's attempts
show). Registered on the customer page through customers.extensions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from customers.models import Customer
from messaging import selectors
from messaging.models import Touchpoint
from messaging.sources import name_sources
from messaging.views.outbox import OUTCOME_LABELS, reason_label, status_tone

PREVIEW_LENGTH = 80


@dataclass(frozen=True)
class Attempt:
    number: int
    result: str  # the provider's code, or the outcome when it gave none
    step: str  # what dispatch made of it


@dataclass(frozen=True)
class HistoryRow:
    touchpoint: Touchpoint
    tone: str
    reason: str
    preview: str
    attempts: list[Attempt]


def _preview(touchpoint: Touchpoint) -> str:
    """The message as sent; before it is rendered, its own text (which may still hold template variables)."""
    for content in (touchpoint.rendered, touchpoint.content):
        if isinstance(content, dict):
            card = content.get("card") or {}
            if text := content.get("text") or card.get("title") or content.get("subject"):
                return str(text)
    return ""


def _summary(touchpoint: Touchpoint) -> HistoryRow:
    decisions = touchpoint.decisions if isinstance(touchpoint.decisions, list) else []
    attempts = [
        Attempt(
            number=entry["attempt"],
            result=str(entry.get("code") or OUTCOME_LABELS.get(entry.get("outcome"), entry.get("outcome", ""))),
            step=reason_label(str(entry.get("step", ""))),
        )
        for entry in decisions
        if isinstance(entry, dict) and "attempt" in entry
    ]
    return HistoryRow(
        touchpoint=touchpoint,
        tone=status_tone(touchpoint.status),
        reason=reason_label(touchpoint.reason) if touchpoint.reason else "",
        preview=_preview(touchpoint),
        attempts=attempts,
    )


def _named(touchpoints) -> list[Touchpoint]:
    touchpoints = list(touchpoints)
    name_sources(touchpoints)
    return touchpoints


def messages_panel(request: HttpRequest, customer: Customer) -> dict[str, Any]:
    """The customer's latest messages (one query; the customer page has checked the customer is visible)."""
    return {
        "customer": customer,
        "rows": [_summary(touchpoint) for touchpoint in _named(selectors.customer_message_history(customer))],
        "limit": selectors.HISTORY_SIZE,
    }


def register_customer_page_extensions() -> None:
    """The message history panel in the customer page's main column. Call from MessagingConfig.ready()."""
    from customers import extensions

    extensions.register_detail_panel(
        extensions.DetailPanel("messages", "messaging/_customer_panel.html", messages_panel, column="main")
    )
