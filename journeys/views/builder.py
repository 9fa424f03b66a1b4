"""The journey builder: the step graph drawn as a flow, forms (HTMX fragments) for the settings, trigger, policies,
goal and every step, validation next to the step it concerns, publishing with the migration of customers in
flight, the lifecycle buttons, the version history and the dry run. Operators only.

Every fragment view answers HTMX with the fragment and a plain request with the whole page, the fragment open in
its editor panel (one view, two templates). Changes of the draft lock the journey's row, so two operators editing
at once do not lose each other's steps."""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from customers.conditions import RuleError, describe
from journeys import definition as definitions
from journeys.forms import (
    STEP_FORMS,
    STEP_MENU,
    GoalForm,
    PoliciesForm,
    PublishForm,
    SettingsForm,
    StepForm,
    TriggerForm,
)
from journeys.models import EnrollmentState, Journey, JourneyStatus
from journeys.services import dryrun, lifecycle
from journeys.services.lifecycle import JourneyError
from journeys.steps import REGISTRY, Checker, DefinitionError

STEP_PATH = re.compile(r"^steps\[(\d+)\]")
H_GAP, V_GAP, END_GAP = 230, 130, 70  # the flow's grid, in pixels
GRAPH_MARGIN_X, GRAPH_MARGIN_Y, GRAPH_MIN_WIDTH = 115, 40, 200  # around the drawing, as in journey-graph.js
NODE_TEXT = 120  # characters of a step's description sent for its node (the page wraps it; the tooltip has it all)
# What the flow colours a node by (the same families as the "add a step" menu).
FAMILIES = {
    "wait": "wait", "wait_event": "wait", "wait_condition": "wait", "branch": "branch", "split": "branch",
    "send": "message", "invite_group": "message", "exit": "exit",
}  # fmt: skip
LIFECYCLE = {
    "pause": (lifecycle.pause, gettext_lazy("Journey paused: nothing of it goes out until you resume it.")),
    "resume": (lifecycle.resume, gettext_lazy("Journey resumed.")),
    "stop": (lifecycle.stop, gettext_lazy("Journey stopped: the customers in it have left it.")),
    "archive": (lifecycle.archive, gettext_lazy("Journey archived.")),
}
STATUS_COLOURS = {
    JourneyStatus.DRAFT: "secondary", JourneyStatus.ACTIVE: "success", JourneyStatus.PAUSED: "warning",
    JourneyStatus.STOPPED: "danger", JourneyStatus.ARCHIVED: "dark",
}  # fmt: skip


def posted(request: HttpRequest) -> Any:
    """The form's data when it was submitted (an empty POST too: a form with no fields is still submitted)."""
    return request.POST if request.method == "POST" else None


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def require_manager(request: HttpRequest) -> None:
    if not request.user.can_manage:
        raise PermissionDenied


def managed_journey(request: HttpRequest, pk: int) -> Journey:
    require_manager(request)
    return get_object_or_404(Journey.objects.select_related("current_version"), pk=pk)


# ------------------------------------------------------------------------------------- the draft, as a graph


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
    name, _dot, index = key.partition(".")
    if name in ("branches", "arms"):
        try:
            holder = step[name][int(index)]
        except (KeyError, IndexError, ValueError, TypeError):
            raise Http404("No such way out of the step") from None
    elif key in ("next", "timeout_next", "else_next"):
        holder = step
        name = key
    else:
        raise Http404("No such way out of the step")
    field = "next" if name in ("branches", "arms") else name
    if target:
        holder[field] = target
    else:
        holder.pop(field, None)


def draft_of(journey: Journey) -> dict[str, Any]:
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
    raise Http404("No such step")


def new_step_id(draft: Mapping[str, Any]) -> str:
    numbers = [int(m.group(1)) for s in draft["steps"] if (m := re.fullmatch(r"s(\d+)", str(s.get("id"))))]
    return f"s{max(numbers, default=0) + 1}"


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


def change_draft(journey: Journey, change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply `change` to the journey's draft under its row lock and save it; returns what `change` returned."""
    with transaction.atomic():
        locked = Journey.objects.select_for_update().get(pk=journey.pk)
        draft = draft_of(locked)
        result = change(draft)
        lifecycle.save_draft(locked, draft)
    journey.draft = locked.draft
    return result


# ------------------------------------------------------------------------------------ what the page shows


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


def issues_of(draft: Mapping[str, Any]) -> list[tuple[str, str]]:
    try:
        definitions.validate(draft)
    except DefinitionError as error:
        return [(path, str(message)) for path, message in error.issues]
    return []


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


def rule_words(rule: Any) -> str:
    try:
        return describe(rule)
    except RuleError as error:
        return _("Invalid rule: %(error)s") % {"error": error}


def summary_context(journey: Journey, draft: Mapping[str, Any]) -> dict[str, Any]:
    trigger = draft.get("trigger") or {}
    reentry, goal = draft.get("reentry") or {}, draft.get("goal") or {}
    reentry_text = str(definitions.REENTRY_POLICIES.get(reentry.get("policy"), reentry.get("policy")))
    if reentry.get("policy") == "after_days":
        reentry_text += f" ({reentry.get('days')})"
    goal_text = ""
    if goal:
        goal_text = str(definitions.GOAL_TYPES.get(goal.get("type"), goal.get("type")))
        if goal.get("type") == "event":
            goal_text += f": {goal.get('event_type')}"
        elif goal.get("type") == "condition":
            goal_text += f": {rule_words(goal.get('rule'))}"
        elif goal.get("min_amount") or goal.get("product") or goal.get("category"):
            goal_text += ": " + trigger_details({"type": "order_placed", **goal})
        goal_text += " · " + _("within %(days)s days") % {"days": definitions.goal_window_days(draft)}
    return {
        "journey": journey,
        "trigger_text": definitions.describe_trigger(trigger),
        "trigger_details": trigger_details(trigger),
        "entry_filter_text": rule_words(draft["entry_filter"]) if draft.get("entry_filter") else "",
        "reentry_text": reentry_text,
        "exit_text": str(definitions.EXIT_POLICIES.get((draft.get("exit") or {}).get("policy"), "")),
        "goal_text": goal_text,
    }


def page_context(journey: Journey, draft: Mapping[str, Any], issues: list | None = None) -> dict[str, Any]:
    versions = (
        journey.versions.select_related("published_by")
        .annotate(active=Count("enrollments", filter=Q(enrollments__state=EnrollmentState.ACTIVE)))
        .order_by("-number")
    )
    status = journey.status
    return {
        **flow_context(journey, draft, issues),
        **summary_context(journey, draft),
        "status_colour": STATUS_COLOURS.get(status, "secondary"),
        "versions": versions,
        "can_publish": status not in (JourneyStatus.STOPPED, JourneyStatus.ARCHIVED),
        "actions": {
            "pause": status == JourneyStatus.ACTIVE,
            "resume": status == JourneyStatus.PAUSED,
            "stop": status in (JourneyStatus.ACTIVE, JourneyStatus.PAUSED),
            "archive": status in (JourneyStatus.DRAFT, JourneyStatus.STOPPED),
        },
    }


# ------------------------------------------------------------------------------------------------- responses


def render_page(request: HttpRequest, journey: Journey, *, editor_template: str = "",
                editor: Mapping[str, Any] | None = None, issues: list | None = None) -> HttpResponse:  # fmt: skip
    context = {**page_context(journey, draft_of(journey), issues), **(editor or {}), "editor_template": editor_template}
    return render(request, "journeys/builder.html", context)


def respond(request: HttpRequest, journey: Journey, template: str, context: Mapping[str, Any]) -> HttpResponse:
    """The fragment for HTMX; the page with the fragment open in the editor panel otherwise."""
    if is_htmx(request):
        return render(request, template, {"journey": journey, **context, "is_fragment": True})
    return render_page(request, journey, editor_template=template, editor=context)


def saved(request: HttpRequest, journey: Journey, message: str, *, level: int = messages.SUCCESS) -> HttpResponse:
    """After a change: HTMX gets a note in the editor panel and the flow and summary again (out of band); a plain
    POST goes back to the page."""
    if is_htmx(request):
        alert = "warning" if level == messages.WARNING else "success"
        context = {**page_context(journey, draft_of(journey)), "message": message, "alert": alert}
        return render(request, "journeys/_builder_saved.html", context)
    messages.add_message(request, level, message)
    return redirect("journeys:builder", pk=journey.pk)


def go_to_builder(request: HttpRequest, journey: Journey) -> HttpResponse:
    if is_htmx(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("journeys:builder", args=[journey.pk])
        return response
    return redirect("journeys:builder", pk=journey.pk)


def form_context(form: Any, *, title: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"form": form, "title": title, "action": action, **extra}


def section_issues(definition: Mapping[str, Any], *prefixes: str) -> list[tuple[str, str]]:
    """The definition's issues under these parts of it ("trigger", "goal"…)."""
    return [(path, message) for path, message in issues_of(definition)
            if any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in prefixes)]  # fmt: skip


# ------------------------------------------------------------------------------------------------------ pages


@login_required
def builder(request, pk: int):
    return render_page(request, managed_journey(request, pk))


@login_required
def edit_settings(request, pk: int):
    journey = managed_journey(request, pk)
    form = SettingsForm(posted(request), instance=journey)
    if request.method == "POST" and form.is_valid():
        form.save()
        return saved(request, journey, _("Settings saved."))
    action = reverse("journeys:settings", args=[pk])
    return respond(request, journey, "journeys/_builder_form.html", form_context(form, title=_("Settings"),
                                                                                 action=action))  # fmt: skip


@login_required
def edit_trigger(request, pk: int):
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    form = TriggerForm(posted(request), trigger=draft["trigger"])
    if request.method == "POST" and form.is_valid():
        trigger = form.trigger()
        issues = section_issues({**draft, "trigger": trigger}, "trigger")
        if not issues:
            change_draft(journey, lambda d: d.update(trigger=trigger))
            return saved(request, journey, _("Trigger saved."))
        form.add_issues(issues, "trigger")
    action = reverse("journeys:trigger", args=[pk])
    return respond(request, journey, "journeys/_builder_form.html", form_context(form, title=_("Trigger"),
                                                                                 action=action))  # fmt: skip


@login_required
def edit_policies(request, pk: int):
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    form = PoliciesForm(posted(request), draft=draft)
    if request.method == "POST" and form.is_valid():
        policies = form.policies()
        issues = section_issues({**draft, **policies}, "entry_filter", "reentry", "exit")
        if not issues:
            change_draft(journey, lambda d: d.update(policies))
            return saved(request, journey, _("Entry and exit saved."))
        form.add_issues(issues, "")
    action = reverse("journeys:policies", args=[pk])
    entry = rule_words(draft["entry_filter"]) if draft.get("entry_filter") else ""
    return respond(request, journey, "journeys/_builder_form.html",
                   form_context(form, title=_("Entry and exit"), action=action, rule_text=entry))  # fmt: skip


@login_required
def edit_goal(request, pk: int):
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    form = GoalForm(posted(request), goal=draft.get("goal"))
    if request.method == "POST" and form.is_valid():
        goal = form.goal()
        issues = section_issues({**draft, "goal": goal}, "goal")
        if not issues:
            change_draft(journey, lambda d: d.update(goal=goal))
            return saved(request, journey, _("Goal saved."))
        form.add_issues(issues, "goal")
    action = reverse("journeys:goal", args=[pk])
    rule = (draft.get("goal") or {}).get("rule")
    return respond(
        request,
        journey,
        "journeys/_builder_form.html",
        form_context(form, title=_("Goal"), action=action, rule_text=rule_words(rule) if rule else ""),
    )


# ------------------------------------------------------------------------------------------------------ steps


def targets(draft: Mapping[str, Any], *, besides: str = "") -> list[tuple[str, str]]:
    """The steps a step may lead to: every other step, with its words."""
    return [
        (str(step.get("id")), f"{step.get('id')} · {describe_step(step)[:60]}")
        for step in draft["steps"]
        if step.get("id") != besides
    ]


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


def checked(form: StepForm, step: dict[str, Any]) -> bool:
    """The step type's own check of the settings; its issues go on the form's fields."""
    checker = Checker()
    REGISTRY[step["type"]].check(step, "step", checker)
    form.add_issues(checker.issues, "step")
    return not checker.issues


def step_menu(journey: Journey, source: str, slot: str) -> list[dict[str, Any]]:
    base = reverse("journeys:add_step", args=[journey.pk])
    menu = []
    for title, kinds in STEP_MENU:
        items = [
            {"type": kind, "label": REGISTRY[kind].label,
             "url": base + "?" + urlencode({"source": source, "slot": slot, "type": kind})}
            for kind in kinds
        ]  # fmt: skip
        menu.append({"title": title, "types": items})
    return menu


@login_required
def add_step(request, pk: int):
    """A new step on a way out of a step (`source`, `slot`: after it, or as a branch's target), or at the start:
    first its type, then its form."""
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    params = request.POST if request.method == "POST" else request.GET
    source, slot, kind = params.get("source", ""), params.get("slot", "") or "next", params.get("type", "")
    onward = next((s.target for s in slots(find(draft, source)) if s.key == slot), None) if source else start_of(draft)
    if onward is None:
        raise Http404("No such way out of the step")
    if kind not in STEP_FORMS:
        before = find(draft, source) if source else {}
        return respond(request, journey, "journeys/_builder_step_types.html", {
            "source": source, "source_text": describe_step(before) if source else "",
            "slot_label": next((s.label for s in slots(before) if s.key == slot), "") if source else "",
            "menu": step_menu(journey, source, slot),
        })  # fmt: skip
    form = STEP_FORMS[kind](posted(request), step=seed(kind, onward), targets=targets(draft), journey=journey)
    if request.method == "POST" and form.is_valid():
        step = {"id": new_step_id(draft), "type": kind, **form.params()}
        if checked(form, step):
            change_draft(journey, lambda d: insert_step(d, {**step, "id": new_step_id(d)}, source=source, slot=slot))
            return saved(request, journey, _("Step added: %(step)s") % {"step": describe_step(step)})
    title = _("New step: %(type)s") % {"type": REGISTRY[kind].label}
    return respond(request, journey, "journeys/_builder_form.html", form_context(
        form, title=title, action=reverse("journeys:add_step", args=[pk]),
        hidden={"source": source, "slot": slot, "type": kind}))  # fmt: skip


@login_required
def edit_step(request, pk: int, step_id: str):
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    step = find(draft, step_id)
    if step.get("type") not in STEP_FORMS:
        raise Http404("This step type has no form")
    form = STEP_FORMS[step["type"]](posted(request), step=step, targets=targets(draft, besides=step_id),
                                    journey=journey)  # fmt: skip
    if request.method == "POST" and form.is_valid():
        kept = {key: value for key, value in step.items() if key not in form.managed_keys()}
        changed = {**kept, "id": step_id, "type": step["type"], **form.params()}
        if checked(form, changed):

            def replace(d: dict[str, Any]) -> None:
                d["steps"][d["steps"].index(find(d, step_id))] = changed

            change_draft(journey, replace)
            return saved(request, journey, _("Step saved: %(step)s") % {"step": describe_step(changed)})
    title = f"{step_label(step)} · {step_id}"
    return respond(request, journey, "journeys/_builder_form.html", form_context(
        form, title=title, action=reverse("journeys:step", args=[pk, step_id]), step_id=step_id,
        delete_url=reverse("journeys:delete_step", args=[pk, step_id])))  # fmt: skip


@login_required
@require_POST
def delete_step(request, pk: int, step_id: str):
    journey = managed_journey(request, pk)
    find(draft_of(journey), step_id)
    change_draft(journey, lambda d: remove_step(d, step_id))
    return saved(request, journey, _("Step %(step)s deleted.") % {"step": step_id})


@login_required
@require_POST
def move(request, pk: int, step_id: str):
    journey = managed_journey(request, pk)
    direction = request.POST.get("direction")
    if direction not in ("up", "down"):
        raise Http404("Up or down")
    find(draft_of(journey), step_id)
    if change_draft(journey, lambda d: move_step(d, step_id, direction)):
        return saved(request, journey, _("Step %(step)s moved.") % {"step": step_id})
    return saved(request, journey, _("Only a step in a straight chain (one way in, one way on) can be moved."),
                 level=messages.WARNING)  # fmt: skip


# ---------------------------------------------------------------------------------- validate, publish, lifecycle


@login_required
@require_POST
def validate_draft(request, pk: int):
    """Every problem of the draft, next to the step it concerns."""
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    issues = issues_of(draft)
    if is_htmx(request):
        return render(request, "journeys/_builder_flow.html", flow_context(journey, draft, issues))
    return render_page(request, journey, issues=issues)


@login_required
def publish(request, pk: int):
    """Publish the draft as the next version. With customers in flight, the operator says what happens to them:
    they stay on their version, or move step by step (a removed step needs a new step or "finish on the old
    version"; left open, publishing is refused and nothing is published)."""
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    issues = issues_of(draft)
    if issues:
        context = {**flow_context(journey, draft, issues), "blocked": True}
        return respond(request, journey, "journeys/_builder_publish.html", context)
    definition = definitions.validate(draft)
    waiting = lifecycle.waiting_steps(journey) if journey.current_version_id else {}
    new_steps = {str(step["id"]): describe_step(step)[:60] for step in definition.get("steps") or []}
    form = PublishForm(posted(request), waiting=waiting, new_steps=new_steps)
    if request.method == "POST" and form.is_valid():
        try:
            version = lifecycle.publish(journey, by=request.user, migration=form.migration())
        except DefinitionError as error:
            form.add_issues(error.issues)
        except JourneyError as error:
            messages.error(request, str(error))
            return go_to_builder(request, journey)
        else:
            messages.success(request, _("Version %(number)s published.") % {"number": version.number})
            return go_to_builder(request, journey)
    number = (journey.current_version.number if journey.current_version else 0) + 1
    return respond(request, journey, "journeys/_builder_publish.html", {"form": form, "number": number})


@login_required
@require_POST
def change_status(request, pk: int, action: str):
    journey = managed_journey(request, pk)
    service, message = LIFECYCLE[action]
    try:
        service(journey)
    except JourneyError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, message)
    return go_to_builder(request, journey)


@login_required
def dry_run(request, pk: int):
    """Who would enter now, how many would reach each step, and a few customers' paths, without doing anything."""
    journey = managed_journey(request, pk)
    draft = draft_of(journey)
    try:
        result = dryrun.dry_run(journey)
    except DefinitionError as error:
        return respond(request, journey, "journeys/_builder_dry_run.html",
                       {"issues": [(path, str(message)) for path, message in error.issues]})  # fmt: skip
    steps = definitions.by_id(draft)
    counts = [
        {"id": step_id, "text": describe_step(steps[step_id]) if step_id in steps else "", "count": count}
        for step_id, count in result.step_counts.items()
    ]
    return respond(request, journey, "journeys/_builder_dry_run.html", {"result": result, "counts": counts})
