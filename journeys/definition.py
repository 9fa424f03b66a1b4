"""A journey definition: trigger, entry filter, re-entry and exit policies, goal, and the step graph.

    {"trigger": {"type": "tag_added", "tag": 3},
     "entry_filter": {"all": […]} | null,
     "reentry": {"policy": "never" | "after_days" | "every" | "concurrent", "days": 30},
     "exit": {"policy": "goal" | "not_matching" | "either" | "end"},
     "goal": {"type": "order" | "event" | "condition", …, "window_days": 30} | null,
     "start": "s1",
     "steps": [{"id": "s1", "type": "send", "next": "s2", …}, …]}

`validate(definition)` returns the normalised definition or raises DefinitionError with every problem's path:
unknown types, bad settings, links to missing steps, steps no path reaches, waits over the maximum, missing
templates. docs/journeys.md has the reference.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from journeys.steps import REGISTRY, Checker, DefinitionError
from journeys.steps.waits import check_window

EVENT_TRIGGERS = {
    "customer_added": gettext_lazy("Customer created or added on WeCom"),
    "tag_added": gettext_lazy("Tag added"),
    "tag_removed": gettext_lazy("Tag removed"),
    "segment_entered": gettext_lazy("Entered a segment"),
    "segment_exited": gettext_lazy("Left a segment"),
    "event": gettext_lazy("Behaviour event"),
    "order_placed": gettext_lazy("Order placed"),
    "order_refunded": gettext_lazy("Order refunded"),
}
DATE_TRIGGERS = {
    "birthday": gettext_lazy("Birthday"),
    "date_attribute": gettext_lazy("Days before or after a date attribute"),
    "consumption_cycle": gettext_lazy("Product consumption cycle elapsed (repurchase)"),
}
GROUP_TRIGGERS = {
    "group_weekly": gettext_lazy("Weekly plan for groups"),
    "group_rhythm": gettext_lazy("Day-by-day rhythm for new groups"),
}
TRIGGERS = {**EVENT_TRIGGERS, **DATE_TRIGGERS, **GROUP_TRIGGERS, "manual": gettext_lazy("Manual or API only")}
REENTRY_POLICIES = {
    "never": gettext_lazy("Never"),
    "after_days": gettext_lazy("After N days from the previous entry"),
    "every": gettext_lazy("On every new trigger"),
    "concurrent": gettext_lazy("Concurrently, even while in the journey"),
}
EXIT_POLICIES = {
    "goal": gettext_lazy("When the goal is reached"),
    "not_matching": gettext_lazy("When no longer matching"),
    "either": gettext_lazy("Goal reached or no longer matching"),
    "end": gettext_lazy("Only at the end"),
}
GOAL_TYPES = {
    "order": gettext_lazy("Places an order"),
    "event": gettext_lazy("Behaviour event"),
    "condition": gettext_lazy("Matches a condition"),
}
DEFAULT_GOAL_WINDOW_DAYS = 30
MAX_GOAL_WINDOW_DAYS = 90
MAX_STEPS = 100


def empty() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "entry_filter": None,
        "reentry": {"policy": "never"},
        "exit": {"policy": "goal"},
        "goal": None,
        "start": "",
        "steps": [],
    }


def validate(raw: Any) -> dict[str, Any]:
    """The definition, normalised, or DefinitionError listing every problem."""
    checker = Checker()
    if not isinstance(raw, Mapping):
        raise DefinitionError([("$", str(_("Expected a journey definition object.")))])
    definition = {**empty(), **copy.deepcopy(dict(raw))}
    _check_trigger(definition["trigger"], checker)
    if definition.get("entry_filter"):
        checker.rule(definition, "entry_filter", "entry_filter")
    _check_policies(definition, checker)
    _check_goal(definition.get("goal"), checker)
    if definition["trigger"].get("type") not in GROUP_TRIGGERS:
        _check_steps(definition, checker)
    if checker.issues:
        raise DefinitionError(checker.issues)
    return definition


def _check_trigger(trigger: Any, checker: Checker) -> None:
    if not isinstance(trigger, Mapping) or trigger.get("type") not in TRIGGERS:
        checker.error("trigger.type", _("Choose a trigger."))
        return
    kind = trigger["type"]
    if kind in ("tag_added", "tag_removed"):
        from tags.models import Tag

        if not Tag.objects.filter(pk=trigger.get("tag") or 0).exists():
            checker.error("trigger.tag", _("Choose a tag."))
    elif kind in ("segment_entered", "segment_exited"):
        from segments.models import Segment

        if not Segment.objects.filter(pk=trigger.get("segment") or 0).exists():
            checker.error("trigger.segment", _("Choose a segment."))
    elif kind == "event":
        checker.require(trigger, "event_type", "trigger")
        if not isinstance(trigger.get("properties", {}), Mapping):
            checker.error("trigger.properties", _("Expected an object of property → value."))
    elif kind == "order_placed":
        if trigger.get("min_amount") not in (None, "") and not _is_number(trigger["min_amount"]):
            checker.error("trigger.min_amount", _("Expected an amount."))
    elif kind in DATE_TRIGGERS:
        checker.clock(trigger, "at", "trigger", required=False)
        if kind == "birthday":
            checker.integer(trigger, "days_before", "trigger", low=0, high=60, default=0)
        elif kind == "date_attribute":
            checker.require(trigger, "attribute", "trigger")
            checker.integer(trigger, "offset_days", "trigger", low=-366, high=366, default=0)  # < 0: before it
        else:
            checker.integer(trigger, "days_before", "trigger", low=0, high=60, default=0)
    elif kind in GROUP_TRIGGERS:
        checker.require(trigger, "group_type", "trigger")
        _check_group_plan(trigger, kind, checker)


def _check_group_plan(trigger: Mapping[str, Any], kind: str, checker: Checker) -> None:
    plan = trigger.get("plan")
    if not isinstance(plan, list) or not plan:
        checker.error("trigger.plan", _("Add at least one day to the plan."))
        return
    for index, item in enumerate(plan):
        path = f"trigger.plan[{index}]"
        if not isinstance(item, Mapping):
            checker.error(path, _("Expected a day, a time and a message."))
            continue
        if kind == "group_weekly":
            checker.integer(item, "weekday", path, low=0, high=6)
            if "weekday" not in item:
                checker.error(f"{path}.weekday", _("This setting is required."))
        else:
            checker.integer(item, "day", path, low=1, high=90)
            if "day" not in item:
                checker.error(f"{path}.day", _("This setting is required."))
        checker.clock(item, "at", path)
        if not str(item.get("text") or "").strip() and not item.get("template"):
            checker.error(f"{path}.text", _("Write the message or choose a template."))
        elif item.get("text"):
            from journeys.steps.actions import check_text

            check_text(item["text"], item.get("channel") or "wecom", f"{path}.text", checker)


def _check_policies(definition: dict[str, Any], checker: Checker) -> None:
    reentry = definition.get("reentry") or {}
    if reentry.get("policy") not in REENTRY_POLICIES:
        checker.error("reentry.policy", _("Choose a re-entry policy."))
    elif reentry["policy"] == "after_days":
        checker.integer(reentry, "days", "reentry", low=1, high=3650)
        if "days" not in reentry:
            checker.error("reentry.days", _("This setting is required."))
    exit_policy = definition.get("exit") or {}
    if exit_policy.get("policy") not in EXIT_POLICIES:
        checker.error("exit.policy", _("Choose an exit policy."))


def _check_goal(goal: Any, checker: Checker) -> None:
    if not goal:
        return
    if not isinstance(goal, Mapping) or goal.get("type") not in GOAL_TYPES:
        checker.error("goal.type", _("Choose what counts as the goal."))
        return
    checker.integer(goal, "window_days", "goal", low=1, high=MAX_GOAL_WINDOW_DAYS, default=DEFAULT_GOAL_WINDOW_DAYS)
    if goal["type"] == "event":
        checker.require(goal, "event_type", "goal")
    elif goal["type"] == "condition":
        checker.rule(goal, "rule", "goal")


def _check_steps(definition: dict[str, Any], checker: Checker) -> None:
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps:
        checker.error("steps", _("Add at least one step."))
        return
    if len(steps) > MAX_STEPS:
        checker.error("steps", _("A journey has at most %(count)s steps.") % {"count": MAX_STEPS})
    ids: dict[str, int] = {}
    for index, step in enumerate(steps):
        path = f"steps[{index}]"
        if not isinstance(step, Mapping):
            checker.error(path, _("Expected a step."))
            continue
        step_id = step.get("id")
        if not isinstance(step_id, str) or not step_id or len(step_id) > 32:
            checker.error(f"{path}.id", _("Every step needs an id of at most 32 characters."))
        elif step_id in ids:
            checker.error(f"{path}.id", _("Two steps have the id %(id)s.") % {"id": step_id})
        else:
            ids[step_id] = index
        if step.get("type") not in REGISTRY:
            checker.error(f"{path}.type", _("Unknown step type %(type)s.") % {"type": step.get("type")})
            continue
        REGISTRY[step["type"]].check(step, path, checker)
        check_window(step, path, checker)  # any step may carry a send window
    start = definition.get("start") or (steps[0].get("id") if isinstance(steps[0], Mapping) else "")
    definition["start"] = start
    if start not in ids:
        checker.error("start", _("The journey must start at one of its steps."))
        return
    for index in ids.values():
        for label, target in targets_of(steps[index]):
            if target not in ids:
                checker.error(f"steps[{index}]", _("“%(label)s” leads to a step that does not exist: %(target)s.")
                              % {"label": label, "target": target})  # fmt: skip
    reached = reachable(definition)
    for step_id, index in ids.items():
        if step_id not in reached:
            checker.error(f"steps[{index}]", _("No path reaches this step."))


def targets_of(step: Mapping[str, Any]) -> list[tuple[str, str]]:
    kind = REGISTRY.get(step.get("type"))
    return kind.targets(step) if kind else []


def reachable(definition: Mapping[str, Any]) -> set[str]:
    steps = by_id(definition)
    seen: set[str] = set()
    todo = [definition.get("start")]
    while todo:
        step_id = todo.pop()
        if step_id in seen or step_id not in steps:
            continue
        seen.add(step_id)
        todo.extend(target for _label, target in targets_of(steps[step_id]))
    return seen


def by_id(definition: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {step["id"]: step for step in definition.get("steps") or [] if isinstance(step, Mapping) and "id" in step}


def channels_of(definition: Mapping[str, Any]) -> set[str]:
    """The channels the journey's messages go out on."""
    return {
        step.get("channel") or "wecom"
        for step in definition.get("steps") or []
        if REGISTRY.get(step.get("type")) and REGISTRY[step["type"]].sends
    }


def goal_window_days(definition: Mapping[str, Any]) -> int:
    goal = definition.get("goal") or {}
    return min(int(goal.get("window_days") or DEFAULT_GOAL_WINDOW_DAYS), MAX_GOAL_WINDOW_DAYS)


def describe_trigger(trigger: Mapping[str, Any]) -> str:
    return str(TRIGGERS.get(trigger.get("type"), trigger.get("type")))


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
