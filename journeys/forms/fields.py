"""The builder's own fields (a time of day, a condition rule, event properties, a link to a step) and the choices
they offer, read from the database; `bootstrap` gives a form's widgets their Bootstrap classes."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from customers.conditions import RuleError, validate
from customers.models import AttributeType, CommunityGroup, CustomAttribute, MessageChannel, Product
from journeys.steps.waits import WEEKDAYS
from messaging.models import MessageTemplate
from segments.models import Segment, SegmentKind
from tags.models import Tag

END = ""  # a target of "" ends the journey
CHOICE_LIMIT = 1000
WEEKDAY_CHOICES = [(str(index), name) for index, name in enumerate(WEEKDAYS)]
CLOCK = RegexValidator(r"^([01]\d|2[0-3]):[0-5]\d$", _("Expected a time of day such as 09:00."))


class ClockField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(validators=[CLOCK], widget=forms.TimeInput(attrs={"type": "time"}), **kwargs)


class RuleField(forms.JSONField):
    """A condition rule typed as JSON and checked by the condition engine (every issue, with its path)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "class": "form-control font-monospace"}))
        kwargs.setdefault("help_text", _('JSON, e.g. {"predicate": "attribute", "field": "city", "op": "eq", '
                                         '"value": "上海"}'))  # fmt: skip
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False) if value not in (None, "") else ""

    def clean(self, value: Any) -> Any:
        rule = super().clean(value)
        if rule in (None, "", {}):
            if self.required:
                raise ValidationError(self.error_messages["required"], code="required")
            return None
        try:
            validate(rule)
        except RuleError as error:
            raise ValidationError([f"{issue.path}: {issue.message}" for issue in error.issues]) from error
        return rule


class PropertiesField(forms.JSONField):
    """Event properties that must match: a JSON object of property → value."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", _("With these properties"))
        kwargs.setdefault("help_text", _('JSON object, e.g. {"page": "serum"}; empty for any.'))
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2, "class": "form-control font-monospace"}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False) if value else ""

    def clean(self, value: Any) -> dict[str, Any]:
        properties = super().clean(value)
        if properties in (None, ""):
            return {}
        if not isinstance(properties, dict):
            raise ValidationError(_("Expected an object of property → value."))
        return properties


def int_choice(label: Any, choices: list[tuple[Any, Any]], *, required: bool = True) -> forms.TypedChoiceField:
    return forms.TypedChoiceField(label=label, choices=[("", "---------"), *choices], coerce=int, empty_value=None,
                                  required=required)  # fmt: skip


def with_current(choices: list[tuple[Any, Any]], current: Any) -> list[tuple[Any, Any]]:
    """The choices, plus a stored value no longer among them (a product no longer sold), so editing keeps it."""
    if current in (None, "") or str(current) in {str(value) for value, _label in choices}:
        return choices
    return [*choices, (current, str(current))]


def tag_choices() -> list[tuple[int, str]]:
    return [(pk, f"{group} / {name}") for pk, name, group in Tag.objects.values_list("pk", "name", "group__name")]


def segment_choices(*, static_only: bool = False) -> list[tuple[int, str]]:
    segments = Segment.objects.filter(kind=SegmentKind.STATIC) if static_only else Segment.objects.all()
    return list(segments.order_by("name").values_list("pk", "name")[:CHOICE_LIMIT])


def template_choices() -> list[tuple[int, str]]:
    labels = dict(MessageChannel.choices)
    return [
        (pk, f"{name} · {labels.get(channel, channel)}")
        for pk, name, channel in MessageTemplate.objects.values_list("pk", "name", "channel")[:CHOICE_LIMIT]
    ]


def group_choices() -> list[tuple[int, str]]:
    return list(CommunityGroup.objects.filter(dismissed_at__isnull=True).values_list("pk", "name")[:CHOICE_LIMIT])


def group_type_choices() -> list[tuple[str, str]]:
    types = CommunityGroup.objects.exclude(group_type="").values_list("group_type", flat=True).distinct()
    return [(value, value) for value in sorted(types)]


def product_choices(*, with_cycle: bool = False) -> list[tuple[str, str]]:
    products = Product.objects.filter(is_active=True)
    if with_cycle:
        products = products.filter(consumption_cycle_days__gt=0)
    return [(sku, f"{name} ({sku})") for sku, name in products.values_list("sku", "name")[:CHOICE_LIMIT]]


def category_choices() -> list[tuple[str, str]]:
    categories = Product.objects.exclude(category="").values_list("category", flat=True).distinct()
    return [(value, value) for value in sorted(categories)]


def attribute_choices(*, dates_only: bool = False) -> list[tuple[str, str]]:
    attributes = CustomAttribute.objects.all()
    if dates_only:
        attributes = attributes.filter(type=AttributeType.DATE)
    return [(key, f"{label} ({key})") for key, label in attributes.values_list("key", "label")]


def set_choices(field: forms.Field, choices: list[tuple[Any, Any]], current: Any = None) -> None:
    field.choices = [("", "---------"), *with_current(choices, current)]


def bootstrap(form: forms.BaseForm) -> None:
    for field in form.fields.values():
        widget = field.widget
        if isinstance(widget, forms.CheckboxInput):
            css = "form-check-input"
        elif isinstance(widget, forms.CheckboxSelectMultiple | forms.RadioSelect):
            continue
        elif isinstance(widget, forms.Select):
            css = "form-select form-select-sm"
        else:
            css = "form-control form-control-sm"
        widget.attrs.setdefault("class", css)


def target_field(label: Any, targets: list[tuple[str, str]]) -> forms.ChoiceField:
    return forms.ChoiceField(label=label, choices=[(END, _("End of the journey")), *targets], required=False)
