"""The segment editor: name and description, and for a dynamic segment the rule builder with its live preview."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from customers.conditions import RuleError, RuleIssue
from segments.forms import (
    CONDITION_FIELDS,
    ConditionForm,
    RuleForm,
    SegmentForm,
    segment_builder_config,
    with_condition,
)
from segments.models import Segment, SegmentKind
from segments.services import segments as service
from segments.views.segments import managed_segment, require_manager
from tags.views import render_rule_preview


def _render_editor(
    request: HttpRequest,
    segment: Segment | None,
    form: SegmentForm,
    *,
    rule_json: str | None = None,
    issues: list[RuleIssue] | None = None,
) -> HttpResponse:
    is_dynamic = segment is None or segment.kind == SegmentKind.DYNAMIC
    context: dict[str, Any] = {"segment": segment, "form": form, "is_dynamic": is_dynamic, "issues": issues or []}
    if is_dynamic:
        stored = segment.rule if segment is not None else {"all": []}
        config = segment_builder_config(segment)
        context |= {
            "builder_config": config,
            "rule_json": rule_json if rule_json is not None else json.dumps(stored, ensure_ascii=False),
            "conditions": _condition_rows(ConditionForm(), config),
        }
    return render(request, "segments/editor.html", context)


def _condition_rows(form: ConditionForm, config: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """The "add a condition" rows of the editor: (predicate, its name, the form field choosing its values)."""
    return [(name, label, form[CONDITION_FIELDS[name]]) for name, label in config["extraPredicates"]]


def _add_condition(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    """The editor again, with one condition on a segment or a layer added to the rule being edited (not saved)."""
    rule_form, condition_form = RuleForm(request.POST), ConditionForm(request.POST)
    rule = rule_form.cleaned_data["rule"] if rule_form.is_valid() else None
    if condition_form.is_valid():
        rule = with_condition(rule, condition_form.condition())
    else:
        messages.error(request, _("Choose what the condition is about."))
    form = SegmentForm(instance=segment, initial={key: request.POST.get(key, "") for key in ("name", "description")})
    return _render_editor(request, segment, form, rule_json=json.dumps(rule, ensure_ascii=False))


def _save(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    if "add_condition" in request.POST:
        return _add_condition(request, segment)
    kind = segment.kind if segment is not None else SegmentKind.DYNAMIC
    form = SegmentForm(request.POST, instance=segment)
    posted_rule = request.POST.get("rule")
    if not form.is_valid():
        issues = [RuleIssue("$", str(message)) for message in form.errors.get("rule", [])]
        return _render_editor(request, segment, form, rule_json=posted_rule, issues=issues)
    rule = form.cleaned_data["rule"] if kind == SegmentKind.DYNAMIC else None
    try:
        saved = service.save_segment(
            segment,
            name=form.cleaned_data["name"],
            kind=kind,
            rule=rule,
            description=form.cleaned_data["description"],
            by=request.user,
        )
    except RuleError as error:
        return _render_editor(request, segment, form, rule_json=posted_rule, issues=error.issues)
    if kind == SegmentKind.DYNAMIC:
        messages.success(request, _("Segment saved. Its members are being rebuilt in the background."))
    else:
        messages.success(request, _("Segment saved."))
    return redirect("segments:detail", pk=saved.pk)


@login_required
def create_segment(request):
    """A new dynamic segment: the rule builder with its live preview."""
    require_manager(request)
    if request.method == "POST":
        return _save(request, None)
    return _render_editor(request, None, SegmentForm())


@login_required
def edit_segment(request, pk: int):
    segment = managed_segment(request, pk, SegmentKind.DYNAMIC, SegmentKind.STATIC)
    if request.method == "POST":
        return _save(request, segment)
    return _render_editor(request, segment, SegmentForm(instance=segment))


@login_required
@require_POST
def preview_rule(request):
    """The rule in words, how many of the customers the user may see match it now, and a sample; or its issues
    with their paths (the builder marks them on the conditions)."""
    require_manager(request)
    return render_rule_preview(request, RuleForm(request.POST))
