"""The journey builder's flow diagram: where each step stands (`layout`), the nodes and links ECharts draws
(`graph`, drawn by static/scrm/journey-graph.js), and the flow card around it: the steps as a table with their ways
out, and the validation's findings next to the step they concern."""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from journeys import definition as definitions
from journeys.drafts import slots, start_of
from journeys.models import Journey
from journeys.steps import REGISTRY

STEP_PATH = re.compile(r"^steps\[(\d+)\]")
H_GAP, V_GAP, END_GAP = 230, 130, 70  # the flow's grid, in pixels
GRAPH_MARGIN_X, GRAPH_MARGIN_Y, GRAPH_MIN_WIDTH = 115, 40, 200  # around the drawing, as in journey-graph.js
NODE_TEXT = 120  # characters of a step's description sent for its node (the page wraps it; the tooltip has it all)
# What the flow colours a node by (the same families as the "add a step" menu).
FAMILIES = {
    "wait": "wait", "wait_event": "wait", "wait_condition": "wait", "branch": "branch", "split": "branch",
    "send": "message", "invite_group": "message", "exit": "exit",
}  # fmt: skip


def describe_step(step: Mapping[str, Any]) -> str:
    kind = REGISTRY.get(step.get("type"))
    if kind is None:
        return _("Unknown step type %(type)s") % {"type": step.get("type")}
    try:
        return kind.describe(step)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):  # settings not filled in yet
        return f"{kind.label} ({_('not set up yet')})"


def step_label(step: Mapping[str, Any]) -> str:
    kind = REGISTRY.get(step.get("type"))
    return str(kind.label) if kind else str(step.get("type"))


def split_issues(draft: Mapping[str, Any], issues: list[tuple[str, str]]) -> tuple[dict[str, list], list]:
    """The issues by step id (from their "steps[2]…" path), and the others."""
    by_step: dict[str, list[tuple[str, str]]] = defaultdict(list)
    general = []
    for path, message in issues:
        match = STEP_PATH.match(path)
        if match and int(match.group(1)) < len(draft["steps"]):
            by_step[str(draft["steps"][int(match.group(1))].get("id"))].append((path, message))
        else:
            general.append((path, message))
    return by_step, general


def issue_words(path: str, message: str) -> str:
    """A step's issue as shown beside it: the setting it is about ("template: …"), then what is wrong."""
    setting = STEP_PATH.sub("", path).lstrip(".")
    return f"{setting}: {message}" if setting else message


def layout(draft: Mapping[str, Any]) -> dict[str, tuple[float, int]]:
    """Grid positions (column from the centre, layer) of the steps: layered by distance from the start, the steps
    a step leads to side by side in the order of its ways out, each layer centred. Steps no path reaches stand to
    the right, under their own subtrees, so no link of the journey runs through them."""
    steps = definitions.by_id(draft)
    layer: dict[str, int] = {}

    def walk(root: str, rows: dict[int, list[str]]) -> None:
        layer[root] = 1
        rows[1].append(root)
        queue = deque([root])
        while queue:
            current = queue.popleft()
            for slot in slots(steps[current]):
                if slot.target in steps and slot.target not in layer:
                    layer[slot.target] = layer[current] + 1
                    rows[layer[slot.target]].append(slot.target)
                    queue.append(slot.target)

    main: dict[int, list[str]] = defaultdict(list)
    if start_of(draft) in steps:
        walk(start_of(draft), main)
    lost: dict[int, list[str]] = defaultdict(list)
    for step in draft["steps"]:
        if step.get("id") in steps and step["id"] not in layer:
            walk(step["id"], lost)
    positions = {
        step_id: (column - (len(ids) - 1) / 2, depth)
        for depth, ids in main.items()
        for column, step_id in enumerate(ids)
    }
    right = max(((len(ids) - 1) / 2 + 1 for ids in main.values()), default=0)
    positions |= {step_id: (right + column, depth) for depth, ids in lost.items() for column, step_id in enumerate(ids)}
    return positions


def graph(journey: Journey, draft: Mapping[str, Any], by_step: Mapping[str, list]) -> dict[str, Any]:
    """The flow as ECharts draws it, at its natural size: nodes with positions (the trigger on top), links labelled
    with their way out, and a small end mark under a step for each way out that ends the journey. Clicking a node
    edits the step; clicking a link or an end mark adds a step there."""
    steps = definitions.by_id(draft)
    trigger = draft.get("trigger") or {}
    nodes = [{
        "id": "trigger", "family": "trigger", "title": _("Trigger"), "text": definitions.describe_trigger(trigger),
        "tooltip": trigger_details(trigger) or definitions.describe_trigger(trigger),
        "url": reverse("journeys:trigger", args=[journey.pk]), "x": 0, "y": 0,
    }]  # fmt: skip
    links: list[dict[str, Any]] = []

    def end_marks(source: str, x: int, y: int, ways: list[tuple[str, str, str]]) -> None:
        """(slot key, label, url) of the ways out of `source` that end the journey, each to its own end mark."""
        for index, (key, label, url) in enumerate(ways):
            mark = f"end:{source}:{key}"
            nodes.append({"id": mark, "family": "end", "title": "", "text": "", "tooltip": _("End of the journey"),
                          "url": url, "x": x + round((index - (len(ways) - 1) / 2) * END_GAP),
                          "y": y + V_GAP // 2})  # fmt: skip
            links.append({"source": source, "target": mark, "label": label, "url": url})

    start = start_of(draft)
    if start in steps:
        links.append({"source": "trigger", "target": start, "label": "", "url": add_url(journey, "", "")})
    else:
        end_marks("trigger", 0, 0, [("start", "", add_url(journey, "", ""))])
    for step_id, (column, depth) in layout(draft).items():
        step = steps[step_id]
        x, y = round(column * H_GAP), depth * V_GAP
        words = describe_step(step)
        problems = [message for _path, message in by_step.get(step_id, [])]
        nodes.append({
            "id": step_id, "family": FAMILIES.get(step.get("type"), "action"), "x": x, "y": y,
            "title": f"{step_label(step)} · {step_id}",
            "text": words if len(words) <= NODE_TEXT else words[: NODE_TEXT - 1] + "…",
            "tooltip": "\n".join([words, *problems]), "problems": len(problems),
            "url": reverse("journeys:step", args=[journey.pk, step_id]),
        })  # fmt: skip
        ending = []
        for slot in slots(step):
            url = add_url(journey, step_id, slot.key)
            if slot.target in steps:
                links.append({"source": step_id, "target": slot.target, "label": slot.label, "url": url})
            else:  # ends the journey (or leads to a step that is not there: validation says so)
                ending.append((slot.key, f"{slot.label} → ? {slot.target}" if slot.target else slot.label, url))
        end_marks(step_id, x, y, ending)
    xs, ys = [node["x"] for node in nodes], [node["y"] for node in nodes]
    # The drawing's natural size. ECharts stretches the nodes' box to the chart less its margins (journey-graph.js
    # frames a narrow one to GRAPH_MIN_WIDTH), so a chart of exactly this size draws it at scale 1.
    return {"nodes": nodes, "links": links, "width": max(max(xs) - min(xs), GRAPH_MIN_WIDTH) + 2 * GRAPH_MARGIN_X,
            "height": max(ys) - min(ys) + 2 * GRAPH_MARGIN_Y}  # fmt: skip


def add_url(journey: Journey, source: str, slot: str) -> str:
    query = urlencode({"source": source, "slot": slot}) if source else ""
    return reverse("journeys:add_step", args=[journey.pk]) + (f"?{query}" if query else "")


def flow_context(journey: Journey, draft: Mapping[str, Any], issues: list[tuple[str, str]] | None) -> dict[str, Any]:
    """The flow card: the graph, the steps as a table with their ways out, and the validation's findings (when
    `issues` is given: None means the draft was not validated now)."""
    by_step, general = split_issues(draft, issues or [])
    steps = definitions.by_id(draft)
    start = start_of(draft)
    words = {step_id: describe_step(step) for step_id, step in steps.items()}
    rows = []
    for step in draft["steps"]:
        step_id = str(step.get("id"))
        rows.append({
            "id": step_id, "label": step_label(step), "text": words.get(step_id, ""), "is_start": step_id == start,
            "issues": [issue_words(path, message) for path, message in by_step.get(step_id, [])],
            "slots": [{"label": slot.label, "target": slot.target, "target_text": words.get(slot.target, ""),
                       "add_url": add_url(journey, step_id, slot.key)} for slot in slots(step)],
        })  # fmt: skip
    return {
        "journey": journey,
        "steps": rows,
        "graph": graph(journey, draft, by_step),
        "validated": issues is not None,
        "general_issues": general,
        "issue_count": len(issues or []),
    }


def trigger_details(trigger: Mapping[str, Any]) -> str:
    """The trigger's settings in words ("VIP", "order ≥ 199 of 面膜", "09:00, 3 days before")."""
    from customers.models import CustomAttribute
    from segments.models import Segment
    from tags.models import Tag

    kind, parts = trigger.get("type"), []
    if kind in ("tag_added", "tag_removed"):
        parts.append(Tag.objects.filter(pk=trigger.get("tag") or 0).values_list("name", flat=True).first() or "?")
    elif kind in ("segment_entered", "segment_exited"):
        parts.append(Segment.objects.filter(pk=trigger.get("segment") or 0).values_list("name", flat=True).first()
                     or "?")  # fmt: skip
    elif kind == "event":
        parts.append(str(trigger.get("event_type") or "?"))
        parts += [f"{key}={value}" for key, value in (trigger.get("properties") or {}).items()]
    elif kind == "order_placed":
        if trigger.get("product"):
            parts.append(_("product %(sku)s") % {"sku": trigger["product"]})
        if trigger.get("category"):
            parts.append(_("category %(category)s") % {"category": trigger["category"]})
        if trigger.get("min_amount") not in (None, ""):
            parts.append(_("amount ≥ %(amount)s") % {"amount": trigger["min_amount"]})
    elif kind == "date_attribute":
        label = CustomAttribute.objects.filter(key=trigger.get("attribute") or "").values_list("label", flat=True)
        parts.append(label.first() or str(trigger.get("attribute") or "?"))
        parts.append(_("%(days)s day(s) after") % {"days": trigger.get("offset_days") or 0})
    elif kind in ("birthday", "consumption_cycle"):
        if kind == "consumption_cycle":
            parts.append(str(trigger.get("product") or _("any product with a cycle")))
        parts.append(_("%(days)s day(s) before") % {"days": trigger.get("days_before") or 0})
    elif kind in definitions.GROUP_TRIGGERS:
        parts.append(str(trigger.get("group_type") or "?"))
        count = len(trigger.get("plan") or [])
        parts.append(_("%(count)s message(s) in the plan") % {"count": count})
    if kind in definitions.DATE_TRIGGERS and trigger.get("at"):
        parts.append(_("at %(at)s") % {"at": trigger["at"]})
    return " · ".join(str(part) for part in parts)
