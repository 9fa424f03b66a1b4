"""A journey's draft as the builder edits it: the ways out of each step (`slots`) and the edits of the step graph
(insert, remove, move a step), each keeping the links between the steps whole. Pure functions of the draft's
JSON (journeys/definition.py); the builder's views take the journey's row lock and save the result."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from journeys import definition as definitions
from journeys.models import Journey
from journeys.steps import REGISTRY


class NotInDraft(LookupError):
    """The draft has no such step, or the step no such way out (the builder answers 404)."""


@dataclass(frozen=True)
class Slot:
    """One way out of a step: `key` names where the definition keeps it ("next", "branches.0", "arms.1"),
    `target` is the step it leads to ("" ends the journey)."""

    key: str
    label: str
    target: str


def slots(step: Mapping[str, Any]) -> list[Slot]:
    """Every way out of the step, linked or not (an empty one ends the journey)."""
    kind = step.get("type")
    if kind == "branch":
        found = [
            Slot(f"branches.{i}", str(b.get("label") or f"#{i + 1}"), str(b.get("next") or ""))
            for i, b in enumerate(step.get("branches") or [])
            if isinstance(b, dict)
        ]
        return [*found, Slot("else_next", _("else"), str(step.get("else_next") or ""))]
    if kind == "split":
        return [
            Slot(f"arms.{i}", f"{a.get('name')} {a.get('weight')}%", str(a.get("next") or ""))
            for i, a in enumerate(step.get("arms") or [])
            if isinstance(a, dict)
        ]
    if kind not in REGISTRY:
        return [Slot("next", label, target) for label, target in definitions.targets_of(step)]
    timeout = {"wait_event": True, "wait_condition": bool(step.get("timeout_hours")),
               "send": bool(step.get("wait_confirmation"))}.get(kind, False)  # fmt: skip
    found = []
    for key in REGISTRY[kind].exits:
        if key == "timeout_next" and not timeout and not step.get(key):
            continue  # no timeout: no such way out (unless one is still linked, which the runtime would follow)
        if key == "next":
            label = {"wait_event": _("event"), "wait_condition": _("matched"), "send": _("confirmed")}.get(kind, "")
            label = label if timeout else ""
        else:
            label = _("not confirmed") if kind == "send" else _("timeout")
        found.append(Slot(key, str(label), str(step.get(key) or "")))
    return found


def set_slot(step: dict[str, Any], key: str, target: str) -> None:
    """Link the way out `key` of the step to `target` ("" unlinks it: it ends the journey)."""
    name, _dot, index = key.partition(".")
    if name in ("branches", "arms"):
        try:
            holder = step[name][int(index)]
        except (KeyError, IndexError, ValueError, TypeError):
            raise NotInDraft("No such way out of the step") from None
    elif key in ("next", "timeout_next", "else_next"):
        holder = step
        name = key
    else:
        raise NotInDraft("No such way out of the step")
    field = "next" if name in ("branches", "arms") else name
    if target:
        holder[field] = target
    else:
        holder.pop(field, None)


def draft_of(journey: Journey) -> dict[str, Any]:
    """The journey's draft with every part present and its steps copied (safe to edit)."""
    draft = {**definitions.empty(), **(journey.draft or {})}
    draft["steps"] = [dict(step) for step in draft.get("steps") or [] if isinstance(step, dict)]
    return draft


def start_of(draft: Mapping[str, Any]) -> str:
    steps = draft.get("steps") or []
    return str(draft.get("start") or (steps[0].get("id", "") if steps else ""))


def find(draft: Mapping[str, Any], step_id: str) -> dict[str, Any]:
    for step in draft["steps"]:
        if step.get("id") == step_id:
            return step
    raise NotInDraft("No such step")


def new_step_id(draft: Mapping[str, Any]) -> str:
    numbers = [int(m.group(1)) for s in draft["steps"] if (m := re.fullmatch(r"s(\d+)", str(s.get("id"))))]
    return f"s{max(numbers, default=0) + 1}"


def seed(kind: str, onward: str) -> dict[str, Any]:
    """A new step's links before the operator changes them: on to where the way out it was put on led."""
    if kind == "branch":
        return {"type": kind, "else_next": onward} if onward else {"type": kind}
    if kind == "split":
        return {"type": kind, "arms": [{"name": name, "weight": 50, **({"next": onward} if onward else {})}
                                       for name in ("A", "B")]}  # fmt: skip
    if kind == "exit" or not onward:
        return {"type": kind}
    return {"type": kind, "next": onward}


def insert_step(draft: dict[str, Any], step: dict[str, Any], *, source: str, slot: str) -> None:
    """Put `step` on the way out `slot` of the step `source` (or at the start when there is no source): that way
    out now leads to it; where the step itself leads is its own settings."""
    if source:
        before = find(draft, source)
        set_slot(before, slot, step["id"])
        draft["steps"].insert(draft["steps"].index(before) + 1, step)
    else:
        draft["start"] = step["id"]
        draft["steps"].insert(0, step)


def remove_step(draft: dict[str, Any], step_id: str) -> None:
    """Delete the step. What led to it leads on to where it led, when that is one step; else to the end."""
    step = find(draft, step_id)
    onward = {slot.target for slot in slots(step) if slot.target and slot.target != step_id}
    follower = onward.pop() if len(onward) == 1 else ""
    was_start = start_of(draft) == step_id
    draft["steps"].remove(step)
    for other in draft["steps"]:
        for slot in slots(other):
            if slot.target == step_id:
                set_slot(other, slot.key, follower)
    if was_start:
        draft["start"] = follower or (str(draft["steps"][0].get("id")) if draft["steps"] else "")


def move_step(draft: dict[str, Any], step_id: str, direction: str) -> bool:
    """Swap the step with the one before it ("up") or after it ("down") in a straight chain: both have a single
    way onward and the lower one is reached only from the upper one. False when they are not in such a chain."""
    step = find(draft, step_id)
    if direction == "down":
        onward = [s for s in slots(step) if s.target]
        if len(onward) != 1 or onward[0].key != "next":
            return False
        return _move_up(draft, find(draft, onward[0].target))
    return _move_up(draft, step)


def _move_up(draft: dict[str, Any], lower: dict[str, Any]) -> bool:
    leading = [(other, slot) for other in draft["steps"] for slot in slots(other) if slot.target == lower["id"]]
    if len(leading) != 1 or leading[0][1].key != "next":
        return False
    upper = leading[0][0]
    if [s.key for s in slots(upper) if s.target] != ["next"] or any(s.target for s in slots(lower) if s.key != "next"):
        return False
    if upper is lower or "next" not in {s.key for s in slots(lower)}:
        return False
    after = lower.get("next") or ""
    for other in draft["steps"]:  # what led to the upper step now leads to the lower one
        for slot in slots(other):
            if slot.target == upper["id"]:
                set_slot(other, slot.key, lower["id"])
    if start_of(draft) == upper["id"]:
        draft["start"] = lower["id"]
    set_slot(lower, "next", upper["id"])
    set_slot(upper, "next", after)
    steps = draft["steps"]
    i, j = steps.index(upper), steps.index(lower)
    steps[i], steps[j] = steps[j], steps[i]
    return True
