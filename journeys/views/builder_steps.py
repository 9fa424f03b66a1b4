"""The builder's step views: add a step on a way out of another (first its type, then its form), edit, delete and
move a step. Each change of the draft goes through `change_draft` (the journey's row lock) and one of the edits of
journeys/drafts.py, which keep the links between the steps whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from journeys.drafts import draft_of, find, insert_step, move_step, new_step_id, remove_step, seed, slots, start_of
from journeys.forms import STEP_FORMS, STEP_MENU, StepForm
from journeys.models import Journey
from journeys.steps import REGISTRY, Checker
from journeys.views.builder import change_draft, form_context, managed_journey, posted, respond, saved, step_or_404
from journeys.views.builder_graph import describe_step, step_label


def targets(draft: Mapping[str, Any], *, besides: str = "") -> list[tuple[str, str]]:
    """The steps a step may lead to: every other step, with its words."""
    return [
        (str(step.get("id")), f"{step.get('id')} · {describe_step(step)[:60]}")
        for step in draft["steps"]
        if step.get("id") != besides
    ]


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
    before = step_or_404(draft, source) if source else {}
    onward = next((s.target for s in slots(before) if s.key == slot), None) if source else start_of(draft)
    if onward is None:
        raise Http404("No such way out of the step")
    if kind not in STEP_FORMS:
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
    step = step_or_404(draft, step_id)
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
    step_or_404(draft_of(journey), step_id)
    change_draft(journey, lambda d: remove_step(d, step_id))
    return saved(request, journey, _("Step %(step)s deleted.") % {"step": step_id})


@login_required
@require_POST
def move(request, pk: int, step_id: str):
    journey = managed_journey(request, pk)
    direction = request.POST.get("direction")
    if direction not in ("up", "down"):
        raise Http404("Up or down")
    step_or_404(draft_of(journey), step_id)
    if change_draft(journey, lambda d: move_step(d, step_id, direction)):
        return saved(request, journey, _("Step %(step)s moved.") % {"step": step_id})
    return saved(request, journey, _("Only a step in a straight chain (one way in, one way on) can be moved."),
                 level=messages.WARNING)  # fmt: skip
