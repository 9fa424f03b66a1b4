"""The journey builder: the step graph drawn as a flow, forms (HTMX fragments) for the settings, trigger, policies,
goal and every step, validation next to the step it concerns, publishing with the migration of customers in
flight, the lifecycle buttons, the version history and the dry run. Operators only.

Every fragment view answers HTMX with the fragment and a plain request with the whole page, the fragment open in
its editor panel (one view, two templates). Changes of the draft lock the journey's row, so two operators editing
at once do not lose each other's steps.

This module holds the page, its sections and publishing, and what the other builder views share; the flow diagram
is drawn by builder_graph.py, the steps are added, edited, deleted and moved by builder_steps.py, and the edits of
the draft themselves are journeys/drafts.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from customers.conditions import RuleError, describe
from journeys import definition as definitions
from journeys.drafts import NotInDraft, draft_of, find
from journeys.forms import GoalForm, PoliciesForm, PublishForm, SettingsForm, TriggerForm
from journeys.models import EnrollmentState, Journey, JourneyStatus
from journeys.services import dryrun, lifecycle
from journeys.services.lifecycle import JourneyError
from journeys.steps import DefinitionError
from journeys.views.builder_graph import describe_step, flow_context, trigger_details

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


# ------------------------------------------------------------------------------------------------- the draft


def change_draft(journey: Journey, change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply `change` to the journey's draft under its row lock and save it; returns what `change` returned."""
    try:
        with transaction.atomic():
            locked = Journey.objects.select_for_update().get(pk=journey.pk)
            draft = draft_of(locked)
            result = change(draft)
            lifecycle.save_draft(locked, draft)
    except NotInDraft as error:
        raise Http404(str(error)) from error
    journey.draft = locked.draft
    return result


def step_or_404(draft: Mapping[str, Any], step_id: str) -> dict[str, Any]:
    """The draft's step with this id; a step the draft does not have is "not found"."""
    try:
        return find(draft, step_id)
    except NotInDraft as error:
        raise Http404(str(error)) from error


def issues_of(draft: Mapping[str, Any]) -> list[tuple[str, str]]:
    try:
        definitions.validate(draft)
    except DefinitionError as error:
        return [(path, str(message)) for path, message in error.issues]
    return []


# ------------------------------------------------------------------------------------ what the page shows


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
