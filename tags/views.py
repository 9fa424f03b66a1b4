"""Tag pages: groups and tags, a tag's page with the auto-tag rule builder and its live preview, a customer's tags.

The customer pages show tags through `customers.extensions`; the callbacks they call are at the end of this
module and registered in `TagsConfig.ready()`. Every read of customers is limited to those the user may see.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from customers import selectors
from customers.conditions import RuleError, RuleIssue, describe, matching_customers, validate
from customers.models import Customer
from tags import services
from tags.forms import AddCustomerTagForm, RuleForm, TagForm, TagGroupForm, rule_builder_config
from tags.models import CustomerTag, QuestionnaireResponse, Tag, TagGroup, TagHistory, TagKind, TagRule, TagSource

HISTORY_SIZE = 20
SAMPLE_SIZE = 10


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _require_manager(request: HttpRequest) -> None:
    if not request.user.can_manage:
        raise PermissionDenied


@dataclass(frozen=True)
class Chip:
    """A tag as a coloured chip, with the sources a customer has it from (if any)."""

    tag_id: int
    name: str
    colour: str
    sources: tuple[str, ...] = ()

    @classmethod
    def of(cls, tag: Tag, sources: tuple[str, ...] = ()) -> Chip:
        return cls(tag.pk, tag.name, tag.colour, sources)

    @property
    def text_colour(self) -> str:
        """Dark or white text, whichever reads better on the chip's colour (perceived brightness, YIQ)."""
        red, green, blue = (int(self.colour[i : i + 2], 16) for i in (1, 3, 5))
        return "#212529" if red * 299 + green * 587 + blue * 114 >= 150_000 else "#ffffff"

    @property
    def is_auto(self) -> bool:
        return TagSource.RULE in self.sources

    @property
    def is_removable(self) -> bool:
        """Whether a person can take it off: every source but the rule's."""
        return any(source != TagSource.RULE for source in self.sources)

    @property
    def source_labels(self) -> str:
        return ", ".join(str(TagSource(source).label) for source in self.sources)


def _visible_count(user, tag: Tag) -> int:
    return CustomerTag.objects.visible_to(user).filter(tag=tag).values("customer_id").distinct().count()


# ---------------------------------------------------------------------------------------------- groups and tags


def _render_tag_list(request: HttpRequest, *, group_form=None, tag_form=None) -> HttpResponse:
    counts = dict(
        CustomerTag.objects.visible_to(request.user)
        .values("tag_id")
        .annotate(customers=Count("customer_id", distinct=True))
        .values_list("tag_id", "customers")
    )
    groups = [
        (group, [(tag, Chip.of(tag), counts.get(tag.pk, 0)) for tag in group.tags.all()])
        for group in TagGroup.objects.prefetch_related("tags")
    ]
    context: dict[str, Any] = {"groups": groups, "can_manage": request.user.can_manage}
    if request.user.can_manage:
        tag_form = tag_form or TagForm()
        tag_form.fields["group"].choices = [(group.pk, group.name) for group, _tags in groups]  # read already
        context |= {"group_form": group_form or TagGroupForm(), "tag_form": tag_form}
    return render(request, "tags/list.html", context)


@login_required
def tag_list(request):
    return _render_tag_list(request)


@login_required
@require_POST
def create_group(request):
    _require_manager(request)
    form = TagGroupForm(request.POST)
    if not form.is_valid():
        return _render_tag_list(request, group_form=form)
    group = form.save()
    messages.success(request, _("Tag group “%(name)s” created.") % {"name": group.name})
    return redirect("tags:list")


@login_required
@require_POST
def create_tag(request):
    _require_manager(request)
    form = TagForm(request.POST)
    if not form.is_valid():
        return _render_tag_list(request, tag_form=form)
    tag = form.save()
    messages.success(request, _("Tag “%(name)s” created.") % {"name": tag.name})
    return redirect("tags:detail", pk=tag.pk)


# ---------------------------------------------------------------------------------------------- a tag's page


def _render_tag_detail(
    request: HttpRequest, tag: Tag, *, posted_rule: str | None = None, posted_active: bool | None = None,
    issues: list[RuleIssue] | None = None,
) -> HttpResponse:  # fmt: skip
    user = request.user
    tag_rule = TagRule.objects.filter(tag=tag).first()
    rule_text, stored_issues = "", []
    if tag_rule is not None:
        try:
            rule_text = describe(tag_rule.rule)
        except RuleError as error:  # e.g. a tag or custom attribute it names was deleted since
            stored_issues = error.issues
    history = (
        # Newest first by id: entries are written as they happen (`at` is the time of writing), and the tag's
        # history index is in id order.
        TagHistory.objects.visible_to(user).filter(tag=tag).select_related("customer", "by").order_by("-id")
    )
    context: dict[str, Any] = {
        "tag": tag,
        "chip": Chip.of(tag),
        "count": _visible_count(user, tag),
        "history": history[:HISTORY_SIZE],
        "tag_rule": tag_rule,
        "rule_text": rule_text,
        "stored_issues": stored_issues,
        "can_manage": user.can_manage,
    }
    if user.can_manage:
        stored = tag_rule.rule if tag_rule is not None else {"all": []}
        context |= {
            "builder_config": rule_builder_config(tag),
            "rule_json": posted_rule if posted_rule is not None else json.dumps(stored, ensure_ascii=False),
            "is_active": posted_active if posted_active is not None else (tag_rule is None or tag_rule.is_active),
            "issues": issues or [],
        }
    return render(request, "tags/detail.html", context)


@login_required
def tag_detail(request, pk: int):
    return _render_tag_detail(request, get_object_or_404(Tag.objects.select_related("group"), pk=pk))


def _form_issues(form: forms.Form) -> list[RuleIssue]:
    return [RuleIssue("$", str(message)) for message in form.errors.get("rule", [])]


@login_required
@require_POST
def preview_rule(request, pk: int):
    """The rule in words, how many of the customers the user may see match it, and a sample; or its issues."""
    _require_manager(request)
    get_object_or_404(Tag, pk=pk)
    return render_rule_preview(request, RuleForm(request.POST))


def render_rule_preview(request: HttpRequest, form: forms.Form) -> HttpResponse:
    """The preview fragment of a rule builder's form (its `rule` field): the rule in words, how many of the
    customers the user may see match it and a sample, or its issues with their paths. Tags and segments use it."""
    if not form.is_valid():
        return render(request, "tags/_rule_preview.html", {"issues": _form_issues(form)})
    rule = form.cleaned_data["rule"]
    if rule in ({"all": []}, {"any": []}):  # a builder just opened: nothing to check yet
        return render(request, "tags/_rule_preview.html", {"is_empty": True})
    try:
        validate(rule)
    except RuleError as error:
        return render(request, "tags/_rule_preview.html", {"issues": error.issues})
    matches = matching_customers(rule, base=Customer.objects.visible_to(request.user))
    context = {
        "description": describe(rule),
        "count": matches.count(),
        "sample": matches.select_related("owner").order_by("-id")[:SAMPLE_SIZE],
    }
    return render(request, "tags/_rule_preview.html", context)


@login_required
@require_POST
def save_tag_rule(request, pk: int):
    _require_manager(request)
    tag = get_object_or_404(Tag.objects.select_related("group"), pk=pk)
    form = RuleForm(request.POST)
    if not form.is_valid():
        return _render_tag_detail(request, tag, posted_rule=request.POST.get("rule", ""), issues=_form_issues(form))
    is_active = form.cleaned_data["is_active"]
    try:
        services.save_rule(tag, form.cleaned_data["rule"], by=request.user, is_active=is_active)
    except RuleError as error:
        return _render_tag_detail(
            request, tag, posted_rule=request.POST["rule"], posted_active=is_active, issues=error.issues
        )
    if is_active:
        messages.success(request, _("Rule saved. It is being applied to every customer in the background."))
    else:
        messages.success(request, _("Rule saved and switched off; the tags it gave were removed."))
    return redirect("tags:detail", pk=tag.pk)


@login_required
@require_POST
def run_tag_rule(request, pk: int):
    """Apply the rule to every customer now, and say what changed."""
    _require_manager(request)
    tag_rule = get_object_or_404(TagRule.objects.select_related("tag"), tag_id=pk)
    run, error = None, ""
    if tag_rule.is_active:
        run = services.apply_rule(tag_rule)
        tag_rule.refresh_from_db()
    else:
        error = _("The rule is switched off: switch it on and save it first.")
    if _is_htmx(request):
        context = {
            "tag_rule": tag_rule,
            "run": run,
            "error": error,
            "oob_count": _visible_count(request.user, tag_rule.tag),
        }
        return render(request, "tags/_rule_run.html", context)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, _("Rule applied: %(matched)d match, %(added)d added, %(removed)d removed.")
                         % {"matched": run.matched, "added": run.added, "removed": run.removed})  # fmt: skip
    return redirect("tags:detail", pk=pk)


@login_required
@require_POST
def delete_tag_rule(request, pk: int):
    _require_manager(request)
    tag_rule = get_object_or_404(TagRule, tag_id=pk)
    services.delete_rule(tag_rule)
    messages.success(request, _("Rule deleted; the tags it gave were removed and the tag is a manual one again."))
    return redirect("tags:detail", pk=pk)


# ------------------------------------------------------------------------------------------- a customer's tags


def tags_panel(request: HttpRequest, customer: Customer, *, notice: str = "", error: str = "") -> dict[str, Any]:
    """The customer's tags as chips with their sources, what can be added by hand, and the tag history."""
    links = (
        CustomerTag.objects.filter(customer=customer)
        .select_related("tag")
        .order_by("tag__group__position", "tag__group__name", "tag__name", "source")
    )
    sources: dict[int, list[str]] = {}
    tags: dict[int, Tag] = {}
    for link in links:
        tags[link.tag_id] = link.tag
        sources.setdefault(link.tag_id, []).append(link.source)
    chips = [Chip.of(tags[tag_id], tuple(tag_sources)) for tag_id, tag_sources in sources.items()]
    context: dict[str, Any] = {
        "customer": customer,
        "chips": chips,
        "can_edit": request.user.can_write,
        "history": TagHistory.objects.filter(customer=customer)
        .select_related("tag", "by")
        .order_by("-at", "-id")[:HISTORY_SIZE],
        "notice": notice,
        "error": error,
    }
    if request.user.can_write:
        by_hand = {chip.tag_id for chip in chips if TagSource.MANUAL in chip.sources}
        choices: dict[str, list[Tag]] = {}
        for tag in Tag.objects.filter(kind=TagKind.MANUAL).select_related("group"):
            if tag.pk not in by_hand:
                choices.setdefault(tag.group.name, []).append(tag)
        context["choices"] = list(choices.items())
    return context


def _editable_customer(request: HttpRequest, pk: int) -> Customer:
    customer = selectors.get_customer(request.user, pk)  # 404 for a customer the user may not see
    if not request.user.can_write:
        raise PermissionDenied
    return customer


def _panel_response(request: HttpRequest, customer: Customer, *, notice: str = "", error: str = "") -> HttpResponse:
    if _is_htmx(request):
        context = {"panel": tags_panel(request, customer, notice=notice, error=error)}
        return render(request, "tags/_customer_panel.html", context)
    if error:
        messages.error(request, error)
    elif notice:
        messages.info(request, notice)
    return redirect("customers:detail", pk=customer.pk)


@login_required
@require_POST
def add_customer_tag(request, pk: int):
    customer = _editable_customer(request, pk)
    form = AddCustomerTagForm(request.POST)
    if not form.is_valid():
        return _panel_response(request, customer, error=" ".join(form.errors["tag"]))
    tag = form.cleaned_data["tag"]
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL, by=request.user)
    return _panel_response(request, customer, notice=_("Tagged “%(tag)s”.") % {"tag": tag.name})


@login_required
@require_POST
def remove_customer_tag(request, pk: int, tag_id: int):
    """Take off every link a person or an import gave; the rule's own link stays (the rule decides it)."""
    customer = _editable_customer(request, pk)
    tag = get_object_or_404(Tag, pk=tag_id)
    removed = services.remove_tags([customer.pk], [tag.pk], sources=services.MANUAL_SOURCES, by=request.user)
    by_rule = CustomerTag.objects.filter(customer=customer, tag=tag, source=TagSource.RULE).exists()
    if by_rule and not removed:
        error = _("“%(tag)s” is given by an auto-tag rule and cannot be removed by hand.") % {"tag": tag.name}
        return _panel_response(request, customer, error=error)
    if by_rule:
        notice = _("Removed “%(tag)s” given by hand; its auto-tag rule still gives it.") % {"tag": tag.name}
    else:
        notice = _("Removed “%(tag)s”.") % {"tag": tag.name}
    return _panel_response(request, customer, notice=notice)


def questionnaires_panel(request: HttpRequest, customer: Customer) -> dict[str, Any]:
    """The customer's latest answers to each questionnaire, with the questions' and codes' words."""
    responses = (
        QuestionnaireResponse.objects.filter(customer=customer)
        .select_related("questionnaire")
        .prefetch_related("questionnaire__questions__codes")
        .order_by("-submitted_at")
    )
    answered = []
    for response in responses:
        questions = {question.code: question for question in response.questionnaire.questions.all()}
        answers = []
        for question_code, given in response.answers.items():
            question = questions.get(question_code)
            labels = {code.code: code.label for code in question.codes.all()} if question else {}
            codes = given if isinstance(given, list) else [given]
            answers.append((question or question_code, [f"{code} · {labels.get(str(code), '?')}" for code in codes]))
        answered.append((response, answers))
    return {"responses": answered}


# -------------------------------------------------------------------- callbacks of the customer list (extensions)


def filter_by_tags(queryset: QuerySet, values: list[str], user) -> QuerySet:
    """Customers carrying any of the chosen tags (from any source)."""
    tag_ids = sorted({int(value) for value in values if value.isdigit()})
    if not tag_ids:
        return queryset
    return queryset.filter(Exists(CustomerTag.objects.filter(customer=OuterRef("pk"), tag_id__in=tag_ids)))


def tag_filter_choices(user, values: list[str]) -> Mapping[str, Any]:
    selected = {int(value) for value in values if value.isdigit()}
    groups: dict[str, list[tuple[Chip, bool]]] = {}
    for tag in Tag.objects.select_related("group"):
        groups.setdefault(tag.group.name, []).append((Chip.of(tag), tag.pk in selected))
    return {"groups": list(groups.items()), "selected": len(selected)}


def chips_by_customer(customer_ids: list[int], user) -> Mapping[int, list[Chip]]:
    """Every listed customer's tags as chips, in one query."""
    rows = (
        CustomerTag.objects.filter(customer_id__in=customer_ids)
        .order_by("customer_id", "tag__group__position", "tag__group__name", "tag__name", "source")
        .values_list("customer_id", "tag_id", "tag__name", "tag__colour", "source")
    )
    found: dict[int, dict[int, tuple[str, str, list[str]]]] = {}
    for customer_id, tag_id, name, colour, source in rows:
        found.setdefault(customer_id, {}).setdefault(tag_id, (name, colour, []))[2].append(source)
    return {
        customer_id: [Chip(tag_id, name, colour, tuple(sources)) for tag_id, (name, colour, sources) in chips.items()]
        for customer_id, chips in found.items()
    }


# ----------------------------------------------------------------------------------- bulk, from the customer list


def bulk_action_context(user, query: str) -> dict[str, Any]:
    """The customer list's bulk tag form: shown to whoever may write."""
    if not user.can_write:
        return {"enabled": False}
    return {"enabled": True, "tags": Tag.objects.select_related("group").order_by("group__position", "name")}


@login_required
@require_POST
def bulk_tag_customers(request):
    """Add or remove a tag on every customer the list's current filters select (sent along with the form),
    in one set-based statement; a rep's set holds only their own customers."""
    if not request.user.can_write:
        raise PermissionDenied
    tag = Tag.objects.filter(pk=request.POST.get("bulk_tag") or 0).first()
    action = request.POST.get("bulk_action")
    if tag is None or action not in ("add", "remove"):
        return render(request, "tags/_bulk_result.html", {"error": _("Choose a tag and add or remove.")})
    customers, _form = selectors.customers_for_list_query(request.user, request.POST)
    if action == "add":
        changed = services.add_tags(customers, [tag.pk], source=TagSource.MANUAL, by=request.user)
        notice = _("Added “%(tag)s” to %(count)s customers.") % {"tag": tag.name, "count": f"{changed:,}"}
    else:
        changed = services.remove_tags(customers, [tag.pk], sources=services.MANUAL_SOURCES, by=request.user)
        notice = _("Removed “%(tag)s” from %(count)s customers (tags given by rules stay).") % {
            "tag": tag.name, "count": f"{changed:,}"
        }  # fmt: skip
    return render(request, "tags/_bulk_result.html", {"notice": notice})
