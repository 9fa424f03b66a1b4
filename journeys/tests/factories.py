"""Journeys for tests: a definition in a few lines, published and active."""

from __future__ import annotations

from typing import Any

from journeys.models import Journey
from journeys.services import lifecycle


def published(steps: list[dict[str, Any]] | None = None, *, trigger: dict[str, Any] | None = None,
              name: str = "SOP", **definition: Any) -> Journey:  # fmt: skip
    """An active journey whose first version has these steps (default: one console message)."""
    options = {key: definition.pop(key) for key in ("priority", "cap_action", "cap_expiry_hours",
                                                     "lateness_limit_hours") if key in definition}  # fmt: skip
    draft = {
        "trigger": trigger or {"type": "manual"},
        "steps": steps if steps is not None else [send("s1")],
        **definition,
    }
    journey = Journey.objects.create(name=name, draft=draft, **options)
    lifecycle.publish(journey)
    journey.refresh_from_db()
    return journey


def send(step_id: str, text: str = "您好 {{ customer.name }}", next: str | None = None, **params: Any) -> dict:
    return {"id": step_id, "type": "send", "channel": "sms", "text": text, **({"next": next} if next else {}),
            **params}  # fmt: skip


def wait(step_id: str, next: str | None = None, **params: Any) -> dict:
    return {"id": step_id, "type": "wait", **params, **({"next": next} if next else {})}
