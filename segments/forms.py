"""Forms of the segment and layer pages, and what the rule builder offers on a segment's editor."""

from __future__ import annotations

import re
from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from customers.conditions import registry
from segments.models import (
    LayeringSettings,
    RfmClass,
    RfmMethod,
    Segment,
    SegmentKind,
    default_high_from,
    default_rfm_thresholds,
)
from segments.services.layers.stages import AIPL_STAGES, LADDER_LEVELS, LIFECYCLE_STAGES
from tags.forms import rule_builder_config
from tags.models import Tag

MAX_IDS = 10_000
# Between pasted values: white space, commas and semicolons, full-width (Chinese) ones too.
SEPARATORS = re.compile("[\\s,;\uff0c\u3001\uff1b]+")
DIMENSIONS = ("r", "f", "m")


def _bootstrap(form: forms.BaseForm) -> None:
    for field in form.fields.values():
        css = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
        field.widget.attrs.setdefault("class", css)


def parse_ids(text: str) -> list[int]:
    """Customer ids typed or pasted: separated by commas, spaces or new lines (Chinese commas too)."""
    parts = [part for part in SEPARATORS.split(text.strip()) if part]
    if not all(part.isdigit() for part in parts):
        raise ValidationError(_("Enter customer ids (whole numbers) separated by commas, spaces or new lines."))
    ids = sorted({int(part) for part in parts})
    if len(ids) > MAX_IDS:
        raise ValidationError(_("At most %(max)s customers at a time.") % {"max": f"{MAX_IDS:,}"})
    return ids


class CustomerIdsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3})

    def clean(self, value: Any) -> list[int]:
        return parse_ids(super().clean(value) or "")


# --------------------------------------------------------------------------------------------------- segments


class RuleForm(forms.Form):
    """The rule as the builder (static/scrm/rule-builder.js) writes it into its hidden field."""

    rule = forms.JSONField(label=_("Rule"))


class SegmentForm(forms.ModelForm):
    """A segment's name and description; a dynamic segment also has the rule the builder writes into `rule`
    (checked by the service, which reports every issue with its path)."""

    rule = forms.JSONField(label=_("Rule"), required=False)

    class Meta:
        model = Segment
        fields = ["name", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _bootstrap(self)


class StaticSegmentForm(forms.Form):
    """A new static segment (a list), optionally with its first customers."""

    name = forms.CharField(label=_("Name"), max_length=100)
    description = forms.CharField(label=_("Description"), max_length=300, required=False)
    customers = CustomerIdsField(label=_("Customer ids (optional)"), required=False)

    prefix = "static"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _bootstrap(self)


class CustomerIdsForm(forms.Form):
    customers = CustomerIdsField(label=_("Customer ids"))


class ExcludeForm(forms.Form):
    customer = forms.IntegerField(label=_("Customer id"), min_value=1)
    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)


class FreezeForm(forms.Form):
    name = forms.CharField(label=_("Name of the static copy"), max_length=100)


class MembersForm(forms.Form):
    """The members list's filter ("entered since") and its keyset page (`after`: the last membership id shown)."""

    since = forms.DateField(label=_("Members since"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    after = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def since_moment(self) -> datetime | None:
        day = self.cleaned_data.get("since")
        return timezone.make_aware(datetime.combine(day, time.min)) if day else None


def segment_builder_config(segment: Segment | None) -> dict[str, Any]:
    """The tags pages' rule builder configuration, with what a segment's rule reads besides: other segments
    (`in_segment`) and the layering models' classes and stages, for the predicates registered."""
    config = rule_builder_config(Tag())  # an unsaved tag: every tag is offered
    available = set(registry.names())
    extra: list[list[str]] = []
    if "in_segment" in available:
        others = Segment.objects.filter(is_archived=False).order_by("kind", "name")
        if segment is not None and segment.pk is not None:
            others = others.exclude(pk=segment.pk)
        config["segments"] = [
            {"id": pk, "name": name, "group": str(SegmentKind(kind).label)}
            for pk, name, kind in others.values_list("pk", "name", "kind")
        ]
        extra.append(["in_segment", gettext("Is in a segment")])
    vocabularies = {
        "rfm_class": ("rfmClasses", gettext("RFM class"), {k: str(v) for k, v in RfmClass.choices}),
        "aipl_stage": ("aiplStages", gettext("AIPL stage"), AIPL_STAGES),
        "lifecycle_stage": ("lifecycleStages", gettext("Lifecycle stage"), LIFECYCLE_STAGES),
        "ladder_level": ("ladderLevels", gettext("Relationship ladder level"), LADDER_LEVELS),
    }
    for predicate, (key, label, choices) in vocabularies.items():
        if predicate in available:
            config[key] = [[value, str(text)] for value, text in choices.items()]
            extra.append([predicate, label])
    # Kept apart from `predicates`: the builder offers a predicate only once it has an editor for it; until then a
    # condition of these kinds is added with `ConditionForm` and shown and kept as JSON.
    config["extraPredicates"] = extra
    config["labels"] |= {
        "segments": gettext("Segments"),
        "classes": gettext("Classes"),
        "stages": gettext("Stages"),
        "level": gettext("Level"),
    }
    return config


# Conditions on segments and layers: the builder has no editor for them yet, so the editor page adds them through
# the server (`ConditionForm`) and the builder shows and keeps them as JSON.
CONDITION_FIELDS = {
    "in_segment": "segments",
    "rfm_class": "rfm_classes",
    "aipl_stage": "aipl_stages",
    "lifecycle_stage": "lifecycle_stages",
    "ladder_level": "ladder_level",
}


class ConditionForm(forms.Form):
    """One condition on segments or on a layering model, to add to the rule being edited."""

    add_condition = forms.ChoiceField(choices=[(name, name) for name in CONDITION_FIELDS])
    segments = forms.TypedMultipleChoiceField(label=_("Segments"), coerce=int, required=False)
    rfm_classes = forms.MultipleChoiceField(label=_("RFM classes"), choices=RfmClass.choices, required=False)
    aipl_stages = forms.MultipleChoiceField(label=_("AIPL stages"), choices=list(AIPL_STAGES.items()), required=False)
    lifecycle_stages = forms.MultipleChoiceField(
        label=_("Lifecycle stages"), choices=list(LIFECYCLE_STAGES.items()), required=False
    )
    ladder_level = forms.TypedChoiceField(
        label=_("Ladder level at least"), choices=list(LADDER_LEVELS.items()), coerce=int, required=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["segments"].choices = list(Segment.objects.filter(is_archived=False).values_list("pk", "name"))
        for field in self.fields.values():
            field.widget.attrs |= {"class": "form-select form-select-sm", "aria-label": str(field.label or "")}
            if isinstance(field.widget, forms.SelectMultiple):
                field.widget.attrs["size"] = 4

    def condition(self) -> dict[str, Any]:
        """The condition as the rule language writes it (an empty choice is left to the rule's validation)."""
        name = self.cleaned_data["add_condition"]
        value = self.cleaned_data[CONDITION_FIELDS[name]]
        if name == "in_segment":
            return {"predicate": name, "segments": value}
        if name == "ladder_level":
            return {"predicate": name, "op": "gte", "value": value or 1}
        return {"predicate": name, "in": value}


def with_condition(rule: Any, condition: dict[str, Any]) -> dict[str, Any]:
    """The rule with one more condition: appended to its top all/any group, or joined to it with "all"."""
    if isinstance(rule, dict) and len(rule) == 1 and isinstance(rule.get("all", rule.get("any")), list):
        ((mode, children),) = rule.items()
        return {mode: [*children, condition]}
    return {"all": [condition]} if rule is None else {"all": [rule, condition]}


# ----------------------------------------------------------------------------------------------------- layers


class MigrationForm(forms.Form):
    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("start") and cleaned.get("end") and cleaned["start"] > cleaned["end"]:
            raise ValidationError(_("The first date must not be after the second."))
        return cleaned


def _bounds(text: str, *, rising: bool) -> list[int | float]:
    """Four numbers, strictly rising (recency: days) or strictly falling (frequency, spend)."""
    values: list[int | float] = []
    for part in (p for p in SEPARATORS.split(text.strip()) if p):
        try:
            number = Decimal(part)
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite() or number < 0:
            raise ValidationError(_("Enter four numbers separated by commas."))
        values.append(int(number) if number == number.to_integral_value() else float(number))
    if len(values) != 4:
        raise ValidationError(_("Enter four numbers separated by commas."))
    if values != sorted(set(values), reverse=not rising):
        if rising:
            raise ValidationError(_("Each bound must be larger than the one before."))
        raise ValidationError(_("Each bound must be smaller than the one before."))
    return values


class LayeringSettingsForm(forms.Form):
    """The RFM settings the operator sets: window, reference date, scoring, the thresholds for operator-set
    scoring and the score from which each dimension counts as "high". Checked as the recompute reads them."""

    rfm_window_days = forms.IntegerField(label=_("Window (days)"), min_value=1, max_value=3650)
    rfm_as_of = forms.DateField(
        label=_("As of"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Empty means today; set a past date to backtest."),
    )
    rfm_method = forms.ChoiceField(label=_("Scoring"), choices=RfmMethod.choices)
    threshold_r = forms.CharField(label=_("R: days since the last purchase, upper bounds of scores 5, 4, 3, 2"))
    threshold_f = forms.CharField(label=_("F: purchases, lower bounds of scores 5, 4, 3, 2"))
    threshold_m = forms.CharField(label=_("M: spend, lower bounds of scores 5, 4, 3, 2"))
    high_r = forms.IntegerField(label=_("R is high from score"), min_value=1, max_value=5)
    high_f = forms.IntegerField(label=_("F is high from score"), min_value=1, max_value=5)
    high_m = forms.IntegerField(label=_("M is high from score"), min_value=1, max_value=5)

    prefix = "rfm"

    def __init__(self, *args, instance: LayeringSettings, **kwargs):
        self.instance = instance
        thresholds = {**default_rfm_thresholds(), **(instance.rfm_thresholds or {})}
        high = {**default_high_from(), **(instance.rfm_high_from or {})}
        initial = {
            "rfm_window_days": instance.rfm_window_days,
            "rfm_as_of": instance.rfm_as_of,
            "rfm_method": instance.rfm_method,
            **{f"threshold_{d}": ", ".join(str(b) for b in thresholds[d]) for d in DIMENSIONS},
            **{f"high_{d}": high[d] for d in DIMENSIONS},
        }
        super().__init__(*args, initial=initial, **kwargs)
        _bootstrap(self)

    def clean_threshold_r(self) -> list[int | float]:
        return _bounds(self.cleaned_data["threshold_r"], rising=True)

    def clean_threshold_f(self) -> list[int | float]:
        return _bounds(self.cleaned_data["threshold_f"], rising=False)

    def clean_threshold_m(self) -> list[int | float]:
        return _bounds(self.cleaned_data["threshold_m"], rising=False)

    def clean(self):
        from segments.services.layers.rfm import parameters

        cleaned = super().clean()
        if self.errors:
            return cleaned
        self.changed = LayeringSettings(
            pk=self.instance.pk,
            rfm_window_days=cleaned["rfm_window_days"],
            rfm_as_of=cleaned["rfm_as_of"],
            rfm_method=cleaned["rfm_method"],
            rfm_thresholds={dim: cleaned[f"threshold_{dim}"] for dim in DIMENSIONS},
            rfm_high_from={dim: cleaned[f"high_{dim}"] for dim in DIMENSIONS},
        )
        try:  # the recompute's own check, so a saved setting never fails the nightly run
            parameters(self.changed)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        return cleaned

    def save(self) -> LayeringSettings:
        """Writes the RFM fields only: the AIPL, lifecycle and ladder settings stay as they are."""
        for name in ("rfm_window_days", "rfm_as_of", "rfm_method", "rfm_thresholds", "rfm_high_from"):
            setattr(self.instance, name, getattr(self.changed, name))
        self.instance.save(
            update_fields=[
                "rfm_window_days",
                "rfm_as_of",
                "rfm_method",
                "rfm_thresholds",
                "rfm_high_from",
                "updated_at",
            ]
        )
        return self.instance
