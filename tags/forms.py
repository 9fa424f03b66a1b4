import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from customers.conditions.predicates import PROFILE_FIELDS
from customers.conditions.registry import COUNT_OPERATORS, OPERATORS, SYMBOLS
from customers.models import Channel, CustomAttribute, Customer
from tags.models import Tag, TagGroup, TagKind


class ColourInput(forms.TextInput):
    input_type = "color"


def _bootstrap(form: forms.BaseForm) -> None:
    for field in form.fields.values():
        widget = field.widget
        if isinstance(widget, forms.Select):
            css = "form-select"
        elif isinstance(widget, ColourInput):
            css = "form-control form-control-color"
        else:
            css = "form-control"
        widget.attrs.setdefault("class", css)


class TagGroupForm(forms.ModelForm):
    prefix = "group"

    class Meta:
        model = TagGroup
        fields = ["name", "description", "position"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _bootstrap(self)


class TagForm(forms.ModelForm):
    """A new tag starts as a manual one; saving an auto-tag rule on its page makes it automatic."""

    prefix = "tag"

    class Meta:
        model = Tag
        fields = ["group", "name", "colour", "description"]
        widgets = {"colour": ColourInput}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].empty_label = None
        _bootstrap(self)

    def clean_colour(self) -> str:
        colour = self.cleaned_data["colour"]
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
            raise ValidationError(_("Enter a hex colour like #0d6efd."))
        return colour


class RuleForm(forms.Form):
    """The rule as the builder (static/scrm/rule-builder.js) writes it into its hidden field."""

    rule = forms.JSONField(label=_("Rule"))
    is_active = forms.BooleanField(label=_("Rule is on"), required=False, initial=True)


def _operator_labels() -> dict[str, str]:
    return {
        **SYMBOLS,
        "between": gettext("between"),
        "in": gettext("is one of"),
        "not_in": gettext("is none of"),
        "contains": gettext("contains"),
        "starts_with": gettext("starts with"),
        "is_set": gettext("is set"),
        "not_set": gettext("is not set"),
    }


def rule_builder_config(tag: Tag) -> dict[str, Any]:
    """What the rule builder offers: fields, operators, other tags, channels, and its words in the user's language."""
    labels = _operator_labels()
    fields = [
        {"value": name, "label": str(Customer._meta.get_field(name).verbose_name), "type": value_type}
        for name, value_type in PROFILE_FIELDS.items()
    ]
    fields += [
        {"value": f"attributes.{key}", "label": label, "type": value_type}
        for key, label, value_type in CustomAttribute.objects.values_list("key", "label", "type")
    ]
    return {
        "fields": fields,
        "operators": {value_type: [[op, labels[op]] for op in ops] for value_type, ops in OPERATORS.items()},
        "countOperators": [[op, labels[op]] for op in COUNT_OPERATORS],
        "tags": [
            {"id": pk, "name": name, "group": group}
            for pk, name, group in Tag.objects.exclude(pk=tag.pk).values_list("pk", "name", "group__name")
        ],
        "channels": [{"code": code, "name": name} for code, name in Channel.objects.values_list("code", "name")],
        "predicates": [
            ["attribute", gettext("Profile attribute")],
            ["date_relative", gettext("Date (birthday, first seen…)")],
            ["channel", gettext("Source channel")],
            ["orders_count", gettext("Number of purchases")],
            ["orders_sum", gettext("Amount spent")],
            ["avg_order_value", gettext("Average order value")],
            ["bought", gettext("Bought a product or category")],
            ["days_since_last_order", gettext("Days since the last order")],
            ["event_count", gettext("Number of behaviour events")],
            ["days_since_last_event", gettext("Days since a behaviour event")],
            ["has_tag", gettext("Has a tag")],
            ["lacks_tag", gettext("Does not have a tag")],
        ],
        "labels": {
            "all": gettext("All of these"),
            "any": gettext("Any of these"),
            "none": gettext("None of these"),
            "addCondition": gettext("Add condition"),
            "addGroup": gettext("Add group"),
            "remove": gettext("Remove"),
            "removeGroup": gettext("Remove group"),
            "condition": gettext("Condition"),
            "combine": gettext("How to combine"),
            "field": gettext("Field"),
            "operator": gettext("Comparison"),
            "value": gettext("Value"),
            "from": gettext("from"),
            "to": gettext("to"),
            "listHint": gettext("values, separated by commas"),
            "yes": gettext("yes"),
            "no": gettext("no"),
            "ever": gettext("ever"),
            "lastDays": gettext("in the last N days"),
            "dateRange": gettext("between dates"),
            "days": gettext("days"),
            "window": gettext("When"),
            "products": gettext("SKUs (optional)"),
            "categories": gettext("categories (optional)"),
            "eventType": gettext("event type, e.g. content_view"),
            "properties": gettext("properties (optional): key=value; key=value"),
            "anniversary": gettext("anniversary within the next N days"),
            "moreThanDaysAgo": gettext("more than N days ago"),
            "lessThanDaysAgo": gettext("within the last N days"),
            "tags": gettext("Tags"),
            "channels": gettext("Channels"),
            "matchAny": gettext("any of them"),
            "matchAll": gettext("all of them"),
            "json": gettext("Condition as JSON"),
            "invalidJson": gettext("This is not valid JSON."),
            "empty": gettext("No conditions yet: add one."),
        },
    }


class AddCustomerTagForm(forms.Form):
    """Tags a person may give by hand: manual ones (an automatic tag follows its rule)."""

    tag = forms.ModelChoiceField(
        label=_("Tag"),
        queryset=Tag.objects.filter(kind=TagKind.MANUAL),
        error_messages={"invalid_choice": _("Choose a manual tag: automatic tags follow their rule.")},
    )
