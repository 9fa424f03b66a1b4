"""Forms of the journey builder: the journey's settings, its trigger, entry and exit policies and goal, one form
per step type, and the publish form with its migration of customers in flight. Each form turns what the operator
typed into the settings of the definition (journeys/definition.py); the definition's own checks (the step type's
`check`, `definition.validate`) then speak about them, and `add_issues` puts what they say next to the field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from customers.conditions import RuleError, validate
from customers.models import AttributeType, CommunityGroup, CustomAttribute, MessageChannel, Product
from journeys import definition as definitions
from journeys.models import Journey, JourneyStatus
from journeys.steps.waits import WAIT_MODES, WEEKDAYS
from messaging.models import MessageTemplate, TouchpointKind
from segments.models import Segment, SegmentKind
from tags.models import Tag

END = ""  # a target of "" ends the journey
FINISH_ON_OLD = "__old__"
CHOICE_LIMIT = 1000
WEEKDAY_CHOICES = [(str(index), name) for index, name in enumerate(WEEKDAYS)]
CLOCK = RegexValidator(r"^([01]\d|2[0-3]):[0-5]\d$", _("Expected a time of day such as 09:00."))
ROW_ISSUE = re.compile(r"^(?P<key>\w+)\[(?P<index>\d+)\]\.?(?P<rest>.*)$")


# --------------------------------------------------------------------------------------------------- fields


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


# ------------------------------------------------------------------------------------------------ the base form


class BuilderForm(forms.Form):
    """What the builder's forms share: rows of repeated fields (branches, arms, plan days), fields shown only for
    some values of another one (`shown_when`: field → (controlling field, values); static/scrm/journey-graph.js
    hides the others), and the definition's issues put next to the field they concern (`add_issues`)."""

    shown_when: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}
    # Repeated rows: the row's name and its fields; a row left blank is ignored.
    row_name: ClassVar[str] = ""
    row_title: ClassVar[Any] = ""
    row_key: ClassVar[str] = ""  # the definition's list the rows make ("branches", "arms", "plan")
    extra_rows: ClassVar[int] = 1
    min_rows: ClassVar[int] = 0

    def __init__(self, data: Any = None, *, rows: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.row_count = 0
        self.kept_rows: list[int] = []  # the definition's row index → the form's row index
        if self.row_name:
            self._add_rows(rows or [])

    def row_fields(self) -> dict[str, forms.Field]:
        return {}

    def _add_rows(self, rows: list[dict[str, Any]]) -> None:
        if self.is_bound:
            indexes = {int(m.group(1)) for key in self.data if (m := re.match(rf"^{self.row_name}_(\d+)_", key))}
            count = max(indexes) + 1 if indexes else 0
        else:
            count = len(rows) + self.extra_rows
        self.row_count = max(count, self.min_rows)
        for index in range(self.row_count):
            values = rows[index] if index < len(rows) else {}
            for key, field in self.row_fields().items():
                name = f"{self.row_name}_{index}_{key}"
                self.fields[name] = field
                if key in values:
                    self.initial[name] = values[key]

    def row_values(self) -> list[dict[str, Any]]:
        """The cleaned rows that are not blank, in order (and which form row each came from)."""
        found, self.kept_rows = [], []
        for index in range(self.row_count):
            values = {key: self.cleaned_data.get(f"{self.row_name}_{index}_{key}") for key in self.row_fields()}
            if not self.is_blank_row(values):
                found.append(values)
                self.kept_rows.append(index)
        return found

    def is_blank_row(self, values: Mapping[str, Any]) -> bool:
        return all(value in (None, "", [], {}) for key, value in values.items() if key != "next")

    # What the template draws.

    def layout(self) -> list[dict[str, Any]]:
        """The fields outside rows (but those drawn after them), each with the condition under which it shows."""
        after = set(self.after_rows())
        return [self._cell(name) for name in self.fields if not self._is_row_field(name) and name not in after]

    def layout_after_rows(self) -> list[dict[str, Any]]:
        return [self._cell(name) for name in self.after_rows() if name in self.fields]

    def after_rows(self) -> list[str]:
        return []

    def rows(self) -> list[list[dict[str, Any]]]:
        keys = list(self.row_fields())
        return [[self._cell(f"{self.row_name}_{i}_{key}", key) for key in keys] for i in range(self.row_count)]

    def row_headers(self) -> list[Any]:
        return [field.label for field in self.row_fields().values()]

    def _is_row_field(self, name: str) -> bool:
        return bool(self.row_name) and name.startswith(f"{self.row_name}_")

    def _cell(self, name: str, key: str | None = None) -> dict[str, Any]:
        controller, values = self.shown_when.get(f"{self.row_name}.{key}" if key else name, ("", ()))
        return {"field": self[name], "when": controller, "values": " ".join(values)}

    def rows_when(self) -> dict[str, str]:
        controller, values = self.shown_when.get(self.row_name, ("", ()))
        return {"when": controller, "values": " ".join(values)}

    # The definition's issues, next to their fields.

    def add_issues(self, issues: Iterable[tuple[str, str]], prefix: str) -> None:
        for path, message in issues:
            field = self.field_for(path.removeprefix(prefix).lstrip("."))
            self.add_error(field, message if field else f"{path}: {message}")

    def field_for(self, path: str) -> str | None:
        """The form field an issue's path (relative to this form's part of the definition) concerns."""
        if match := ROW_ISSUE.match(path):
            if self.row_key and match["key"] == self.row_key and int(match["index"]) < len(self.kept_rows):
                row = self.kept_rows[int(match["index"])]
                key = match["rest"].split(".")[0].split("[")[0]
                name = f"{self.row_name}_{row}_{key}"
                return name if name in self.fields else None
            return None
        key = path.split(".")[0]
        name = self.aliases().get(key, key)
        if name == "window":
            name = f"window_{path.split('.')[1]}" if "." in path else "window_start"
        return name if name in self.fields else None

    def aliases(self) -> dict[str, str]:
        return {}


def target_field(label: Any, targets: list[tuple[str, str]]) -> forms.ChoiceField:
    return forms.ChoiceField(label=label, choices=[(END, _("End of the journey")), *targets], required=False)


# ----------------------------------------------------------------------------------------- journey settings


class SettingsForm(forms.ModelForm):
    class Meta:
        model = Journey
        fields = ["name", "description", "priority", "cap_action", "cap_expiry_hours", "lateness_limit_hours"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bootstrap(self)

    def layout(self) -> list[dict[str, Any]]:
        return [
            {"field": self[name], "when": "cap_action", "values": "defer_expire"}
            if name == "cap_expiry_hours"
            else {"field": self[name], "when": "", "values": ""}
            for name in self.fields
        ]


# ------------------------------------------------------------------------------------------------- trigger

GROUP_TYPES = tuple(definitions.GROUP_TRIGGERS)


class TriggerForm(BuilderForm):
    """The trigger: its type and that type's settings (only those are kept)."""

    type = forms.ChoiceField(label=_("Customers enter when"))
    tag = int_choice(_("Tag"), [], required=False)
    segment = int_choice(_("Segment"), [], required=False)
    event_type = forms.CharField(label=_("Event type"), max_length=64, required=False)
    properties = PropertiesField()
    product = forms.ChoiceField(label=_("Containing the product"), required=False)
    category = forms.ChoiceField(label=_("Containing a product of the category"), required=False)
    min_amount = forms.DecimalField(label=_("Amount at least"), required=False, min_value=0, decimal_places=2)
    attribute = forms.ChoiceField(label=_("Date attribute"), required=False)
    offset_days = forms.IntegerField(label=_("Days after the date (negative: before)"), required=False,
                                     min_value=-366, max_value=366)  # fmt: skip
    cycle_product = forms.ChoiceField(label=_("Product"), required=False,
                                      help_text=_("Empty: any product with a consumption cycle."))  # fmt: skip
    days_before = forms.IntegerField(label=_("Days before"), required=False, min_value=0, max_value=60)
    at = ClockField(label=_("At"), help_text=_("The time of day customers enter (workspace time zone)."))
    group_type = forms.ChoiceField(label=_("Groups of the type"), required=False)

    shown_when = {
        "tag": ("type", ("tag_added", "tag_removed")),
        "segment": ("type", ("segment_entered", "segment_exited")),
        "event_type": ("type", ("event",)),
        "properties": ("type", ("event",)),
        "product": ("type", ("order_placed",)),
        "category": ("type", ("order_placed",)),
        "min_amount": ("type", ("order_placed",)),
        "attribute": ("type", ("date_attribute",)),
        "offset_days": ("type", ("date_attribute",)),
        "cycle_product": ("type", ("consumption_cycle",)),
        "days_before": ("type", ("birthday", "consumption_cycle")),
        "at": ("type", tuple(definitions.DATE_TRIGGERS)),
        "group_type": ("type", GROUP_TYPES),
        "plan": ("type", GROUP_TYPES),
        "plan.weekday": ("type", ("group_weekly",)),
        "plan.day": ("type", ("group_rhythm",)),
    }
    row_name, row_key, row_title, extra_rows = "plan", "plan", _("Plan: one message a line"), 2

    def __init__(self, data: Any = None, *, trigger: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        trigger = dict(trigger or {"type": "manual"})
        initial = {key: trigger.get(key) for key in self.base_fields if key in trigger}
        if trigger.get("type") == "consumption_cycle":
            initial["cycle_product"] = trigger.get("product")
            initial.pop("product", None)
        plan = [
            {**item, "weekday": str(item["weekday"]) if "weekday" in item else ""}
            for item in trigger.get("plan") or []
            if isinstance(item, dict)
        ]
        super().__init__(data, initial=initial, rows=plan, **kwargs)
        self.fields["type"].choices = [
            (_("When something happens"), list(definitions.EVENT_TRIGGERS.items())),
            (_("On a date"), list(definitions.DATE_TRIGGERS.items())),
            (_("Community groups"), list(definitions.GROUP_TRIGGERS.items())),
            (_("Other"), [("manual", definitions.TRIGGERS["manual"])]),
        ]
        set_choices(self.fields["tag"], tag_choices(), trigger.get("tag"))
        set_choices(self.fields["segment"], segment_choices(), trigger.get("segment"))
        set_choices(self.fields["product"], product_choices(), trigger.get("product"))
        set_choices(self.fields["category"], category_choices(), trigger.get("category"))
        set_choices(self.fields["attribute"], attribute_choices(dates_only=True), trigger.get("attribute"))
        set_choices(self.fields["cycle_product"], product_choices(with_cycle=True), initial.get("cycle_product"))
        set_choices(self.fields["group_type"], group_type_choices(), trigger.get("group_type"))
        templates = template_choices()
        for index in range(self.row_count):
            set_choices(self.fields[f"plan_{index}_template"], templates, self.initial.get(f"plan_{index}_template"))
        bootstrap(self)

    def row_fields(self) -> dict[str, forms.Field]:
        return {
            "weekday": forms.ChoiceField(
                label=_("Weekday"), choices=[("", "---------"), *WEEKDAY_CHOICES], required=False
            ),
            "day": forms.IntegerField(
                label=_("Day since the group was created"), min_value=1, max_value=90, required=False
            ),
            "at": ClockField(label=_("At")),
            "text": forms.CharField(label=_("Message"), required=False, widget=forms.Textarea(attrs={"rows": 1})),
            "template": int_choice(_("or template"), [], required=False),
        }

    def is_blank_row(self, values: Mapping[str, Any]) -> bool:
        return not (values.get("text") or values.get("template") or values.get("at"))

    def aliases(self) -> dict[str, str]:
        return {"product": "cycle_product"} if self.cleaned_data.get("type") == "consumption_cycle" else {}

    def trigger(self) -> dict[str, Any]:
        data = self.cleaned_data
        kind = data["type"]
        trigger: dict[str, Any] = {"type": kind}
        if kind in ("tag_added", "tag_removed"):
            trigger["tag"] = data["tag"]
        elif kind in ("segment_entered", "segment_exited"):
            trigger["segment"] = data["segment"]
        elif kind == "event":
            trigger |= {"event_type": data["event_type"], "properties": data["properties"]}
        elif kind == "order_placed":
            trigger |= {key: data[key] for key in ("product", "category") if data[key]}
            if data["min_amount"] is not None:
                trigger["min_amount"] = str(data["min_amount"])
        elif kind in definitions.DATE_TRIGGERS:
            if data["at"]:
                trigger["at"] = data["at"]
            if kind == "date_attribute":
                trigger |= {"attribute": data["attribute"], "offset_days": data["offset_days"] or 0}
            else:
                trigger["days_before"] = data["days_before"] or 0
            if kind == "consumption_cycle" and data["cycle_product"]:
                trigger["product"] = data["cycle_product"]
        elif kind in GROUP_TYPES:
            trigger |= {"group_type": data["group_type"], "plan": [self._plan_item(kind, row)
                                                                   for row in self.row_values()]}  # fmt: skip
        return trigger

    @staticmethod
    def _plan_item(kind: str, row: Mapping[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"at": row["at"] or ""}
        if kind == "group_weekly":
            if row["weekday"] not in (None, ""):
                item["weekday"] = int(row["weekday"])
        elif row["day"] is not None:
            item["day"] = row["day"]
        if row["template"]:
            item["template"] = row["template"]
        else:
            item["text"] = row["text"] or ""
        return item


# ---------------------------------------------------------------------------------------- entry and exit


class PoliciesForm(BuilderForm):
    entry_filter = RuleField(label=_("Only customers who match"), required=False)
    reentry = forms.ChoiceField(label=_("Re-entry"), choices=list(definitions.REENTRY_POLICIES.items()))
    reentry_days = forms.IntegerField(label=_("Days after the previous entry"), required=False, min_value=1,
                                      max_value=3650)  # fmt: skip
    exit = forms.ChoiceField(label=_("Customers leave early"), choices=list(definitions.EXIT_POLICIES.items()))

    shown_when = {"reentry_days": ("reentry", ("after_days",))}

    def __init__(self, data: Any = None, *, draft: Mapping[str, Any], **kwargs: Any) -> None:
        reentry, exit_policy = draft.get("reentry") or {}, draft.get("exit") or {}
        initial = {
            "entry_filter": draft.get("entry_filter"),
            "reentry": reentry.get("policy", "never"),
            "reentry_days": reentry.get("days"),
            "exit": exit_policy.get("policy", "goal"),
        }
        super().__init__(data, initial=initial, **kwargs)
        bootstrap(self)

    def aliases(self) -> dict[str, str]:
        return {"reentry": "reentry_days"}

    def field_for(self, path: str) -> str | None:
        if path.startswith("reentry.policy"):
            return "reentry"
        if path.startswith("exit"):
            return "exit"
        return super().field_for(path)

    def policies(self) -> dict[str, Any]:
        data = self.cleaned_data
        reentry: dict[str, Any] = {"policy": data["reentry"]}
        if data["reentry"] == "after_days":
            reentry["days"] = data["reentry_days"]
        return {"entry_filter": data["entry_filter"], "reentry": reentry, "exit": {"policy": data["exit"]}}


# ---------------------------------------------------------------------------------------------------- goal


class GoalForm(BuilderForm):
    type = forms.ChoiceField(label=_("The goal"), required=False)
    window_days = forms.IntegerField(label=_("Counted for (days after entry)"), required=False, min_value=1,
                                     max_value=definitions.MAX_GOAL_WINDOW_DAYS,
                                     initial=definitions.DEFAULT_GOAL_WINDOW_DAYS)  # fmt: skip
    event_type = forms.CharField(label=_("Event type"), max_length=64, required=False)
    properties = PropertiesField()
    rule = RuleField(label=_("Condition"), required=False)
    product = forms.ChoiceField(label=_("Containing the product"), required=False)
    category = forms.ChoiceField(label=_("Containing a product of the category"), required=False)
    min_amount = forms.DecimalField(label=_("Amount at least"), required=False, min_value=0, decimal_places=2)

    shown_when = {
        "window_days": ("type", tuple(definitions.GOAL_TYPES)),
        "event_type": ("type", ("event",)),
        "properties": ("type", ("event",)),
        "rule": ("type", ("condition",)),
        "product": ("type", ("order",)),
        "category": ("type", ("order",)),
        "min_amount": ("type", ("order",)),
    }

    def __init__(self, data: Any = None, *, goal: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        goal = dict(goal or {})
        initial = {key: goal.get(key) for key in self.base_fields if key in goal}
        super().__init__(data, initial=initial, **kwargs)
        self.fields["type"].choices = [("", _("No goal")), *definitions.GOAL_TYPES.items()]
        set_choices(self.fields["product"], product_choices(), goal.get("product"))
        set_choices(self.fields["category"], category_choices(), goal.get("category"))
        bootstrap(self)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("type") == "condition" and not data.get("rule") and "rule" not in self.errors:
            self.add_error("rule", _("Write the condition."))
        return data

    def goal(self) -> dict[str, Any] | None:
        data = self.cleaned_data
        kind = data["type"]
        if not kind:
            return None
        window = data["window_days"] or definitions.DEFAULT_GOAL_WINDOW_DAYS
        goal: dict[str, Any] = {"type": kind, "window_days": window}
        if kind == "event":
            goal |= {"event_type": data["event_type"], "properties": data["properties"]}
        elif kind == "condition":
            goal["rule"] = data["rule"]
        else:
            goal |= {key: data[key] for key in ("product", "category") if data[key]}
            if data["min_amount"] is not None:
                goal["min_amount"] = str(data["min_amount"])
        return goal


# ---------------------------------------------------------------------------------------------------- steps


class StepForm(BuilderForm):
    """A step's settings. `targets` are the steps it may lead to (id, words); `exits` its links by name."""

    type: ClassVar[str]
    exits: ClassVar[dict[str, Any]] = {"next": _("Then go to")}

    def __init__(
        self,
        data: Any = None,
        *,
        step: Mapping[str, Any] | None = None,
        targets: Sequence[tuple[str, str]] = (),
        journey: Journey | None = None,
        **kwargs: Any,
    ) -> None:
        self.step, self.journey = dict(step or {}), journey
        initial = {key: self.step[key] for key in self.base_fields if key in self.step}
        initial |= self.initial_from(self.step)
        super().__init__(data, initial=initial, rows=self.rows_from(self.step), **kwargs)
        for key, label in self.exits.items():
            self.fields[key] = target_field(label, list(targets))
            self.initial[key] = self.step.get(key) or END
        for name in self.fields:
            if name.endswith("_next") and self._is_row_field(name):
                self.fields[name] = target_field(_("Go to"), list(targets))
        self.prepare()
        bootstrap(self)

    def after_rows(self) -> list[str]:
        return list(self.exits)  # where the step leads reads best last

    def initial_from(self, step: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def rows_from(self, step: Mapping[str, Any]) -> list[dict[str, Any]]:
        return []

    def prepare(self) -> None:
        """Fill choices that need the database."""

    def settings(self) -> dict[str, Any]:
        return {key: value for key, value in self.cleaned_data.items() if key in self.base_fields}

    def managed_keys(self) -> set[str]:
        """The step's settings this form edits: any other (set by a template or the API) is kept as it was."""
        return {*self.base_fields, *self.exits, *([self.row_key] if self.row_key else [])}

    def params(self) -> dict[str, Any]:
        """The step's settings and links, as the definition keeps them (without id and type)."""
        params = self.settings()
        for key in self.exits:
            if self.cleaned_data.get(key):
                params[key] = self.cleaned_data[key]
        return params


class WaitForm(StepForm):
    type = "wait"
    mode = forms.ChoiceField(label=_("Wait"), choices=list(zip(WAIT_MODES, (
        _("For a length of time"), _("Some days, then until a time of day"), _("Until a weekday at a time"),
        _("Until the send window opens")), strict=True)))  # fmt: skip
    days = forms.IntegerField(label=_("Days"), required=False, min_value=0, max_value=366)
    hours = forms.IntegerField(label=_("Hours"), required=False, min_value=0)
    minutes = forms.IntegerField(label=_("Minutes"), required=False, min_value=0)
    weekday = forms.ChoiceField(label=_("Weekday"), choices=WEEKDAY_CHOICES, required=False)
    at = ClockField(label=_("At"))
    window_weekdays = forms.MultipleChoiceField(label=_("Send window: days"), choices=WEEKDAY_CHOICES, required=False,
                                                widget=forms.CheckboxSelectMultiple)  # fmt: skip
    window_start = ClockField(label=_("Send window: from"))
    window_end = ClockField(label=_("Send window: until"),
                            help_text=_("Optional: the step waits further until the window opens."))  # fmt: skip

    shown_when = {
        "days": ("mode", ("duration", "days_at")),
        "hours": ("mode", ("duration",)),
        "minutes": ("mode", ("duration",)),
        "weekday": ("mode", ("weekday_at",)),
        "at": ("mode", ("days_at", "weekday_at")),
    }

    def managed_keys(self) -> set[str]:
        return {*super().managed_keys(), "window"}

    def initial_from(self, step: Mapping[str, Any]) -> dict[str, Any]:
        window = step.get("window") or {}
        initial: dict[str, Any] = {"mode": step.get("mode", "duration")}
        if "weekday" in step:
            initial["weekday"] = str(step["weekday"])
        if window:
            initial |= {"window_weekdays": [str(d) for d in window.get("weekdays", range(7))],
                        "window_start": window.get("start"), "window_end": window.get("end")}  # fmt: skip
        return initial

    def settings(self) -> dict[str, Any]:
        data = self.cleaned_data
        mode = data["mode"]
        params: dict[str, Any] = {"mode": mode}
        if mode == "duration":
            params |= {key: data[key] for key in ("days", "hours", "minutes") if data[key]}
        elif mode == "days_at":
            params |= {"days": data["days"] if data["days"] is not None else 1, "at": data["at"]}
        elif mode == "weekday_at":
            params |= {"at": data["at"]}
            if data["weekday"] not in (None, ""):
                params["weekday"] = int(data["weekday"])
        if data["window_start"] or data["window_end"]:
            weekdays = sorted(int(d) for d in data["window_weekdays"]) or list(range(7))
            params["window"] = {"weekdays": weekdays, "start": data["window_start"], "end": data["window_end"]}
        return params


class WaitEventForm(StepForm):
    type = "wait_event"
    event_type = forms.CharField(label=_("Event type"), max_length=64, help_text=_("e.g. content_view"))
    properties = PropertiesField()
    timeout_hours = forms.IntegerField(label=_("Wait at most (hours)"), min_value=1, max_value=366 * 24)
    exits = {"next": _("When the event happens, go to"), "timeout_next": _("After the timeout, go to")}


class WaitConditionForm(StepForm):
    type = "wait_condition"
    rule = RuleField(label=_("Until the customer matches"))
    check_every_minutes = forms.IntegerField(label=_("Check every (minutes)"), required=False, min_value=5,
                                             max_value=7 * 24 * 60, initial=60)  # fmt: skip
    timeout_hours = forms.IntegerField(label=_("Wait at most (hours)"), required=False, min_value=1,
                                       max_value=366 * 24, help_text=_("Empty: as long as it takes."))  # fmt: skip
    exits = {"next": _("When the condition holds, go to"), "timeout_next": _("After the timeout, go to")}

    def settings(self) -> dict[str, Any]:
        return {key: value for key, value in super().settings().items() if value is not None}


class BranchForm(StepForm):
    type = "branch"
    exits = {"else_next": _("Everyone else goes to")}
    row_name, row_key, row_title, extra_rows, min_rows = "branch", "branches", _("Branches, checked in order"), 1, 1

    def row_fields(self) -> dict[str, forms.Field]:
        return {
            "label": forms.CharField(label=_("Label"), max_length=40, required=False),
            "rule": RuleField(label=_("Customers who match"), required=False, help_text=""),
            "next": target_field(_("Go to"), []),
        }

    def rows_from(self, step: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dict(branch) for branch in step.get("branches") or [] if isinstance(branch, dict)]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for index in range(self.row_count):
            if data.get(f"branch_{index}_label") and not data.get(f"branch_{index}_rule"):
                self.add_error(f"branch_{index}_rule", _("Write the condition of this branch."))
        return data

    def settings(self) -> dict[str, Any]:
        branches = []
        for row in self.row_values():
            branch = {"label": row["label"] or "", "rule": row["rule"]}
            if row["next"]:
                branch["next"] = row["next"]
            branches.append(branch)
        return {"branches": branches}


class SplitForm(StepForm):
    type = "split"
    experiment = forms.BooleanField(label=_("Run it as an experiment, then send everyone to the winner"),
                                    required=False)  # fmt: skip
    test_days = forms.IntegerField(label=_("Test for (days)"), required=False, min_value=1, max_value=90, initial=14)
    fallback = forms.CharField(label=_("Arm to use when no arm is clearly better"), max_length=40, required=False)
    confidence = forms.FloatField(label=_("Confidence"), required=False, min_value=0.5, max_value=0.99, initial=0.95)
    exits: ClassVar[dict[str, Any]] = {}
    row_name, row_key, row_title, extra_rows, min_rows = "arm", "arms", _("Arms"), 1, 2

    shown_when = dict.fromkeys(("test_days", "fallback", "confidence"), ("experiment", ("on",)))

    def field_for(self, path: str) -> str | None:
        return super().field_for(path.removeprefix("experiment."))

    def row_fields(self) -> dict[str, forms.Field]:
        return {
            "name": forms.CharField(label=_("Name"), max_length=40, required=False),
            "weight": forms.IntegerField(label=_("Share (%)"), required=False, min_value=1, max_value=100),
            "next": target_field(_("Go to"), []),
        }

    def initial_from(self, step: Mapping[str, Any]) -> dict[str, Any]:
        experiment = step.get("experiment") or {}
        return {"experiment": bool(experiment), **{key: experiment[key] for key in experiment}}

    def rows_from(self, step: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dict(arm) for arm in step.get("arms") or [] if isinstance(arm, dict)]

    def settings(self) -> dict[str, Any]:
        data = self.cleaned_data
        arms = []
        for row in self.row_values():
            arm = {"name": row["name"] or "", "weight": row["weight"] or 0}
            if row["next"]:
                arm["next"] = row["next"]
            arms.append(arm)
        params: dict[str, Any] = {"arms": arms}
        if data["experiment"]:
            params["experiment"] = {"test_days": data["test_days"] or 14, "fallback": data["fallback"] or "",
                                    "confidence": data["confidence"] or 0.95}  # fmt: skip
        return params


class SendForm(StepForm):
    type = "send"
    channel = forms.ChoiceField(label=_("Channel"), choices=MessageChannel.choices)
    template = int_choice(_("Message template"), [], required=False)
    text = forms.CharField(label=_("or the text"), required=False, widget=forms.Textarea(attrs={"rows": 3}),
                           help_text=_("May use {{ customer.name }} and the other template variables."))  # fmt: skip
    to = forms.ChoiceField(label=_("To"), choices=[("customer", _("The customer")),
                                                   ("group", _("Her community group"))])  # fmt: skip
    kind = forms.ChoiceField(label=_("Kind"), choices=TouchpointKind.choices,
                             help_text=_("Transactional messages skip frequency caps and quiet hours."))  # fmt: skip
    wait_confirmation = forms.BooleanField(label=_("Wait until the rep confirms the WeCom send"), required=False)
    confirmation_timeout_hours = forms.IntegerField(
        label=_("Wait for the confirmation at most (hours)"), required=False, min_value=1, max_value=30 * 24, initial=48
    )
    exits = {"next": _("Then go to"), "timeout_next": _("If not confirmed in time, go to")}

    shown_when = {
        "confirmation_timeout_hours": ("wait_confirmation", ("on",)),
        "timeout_next": ("wait_confirmation", ("on",)),
    }

    def prepare(self) -> None:
        set_choices(self.fields["template"], template_choices(), self.step.get("template"))

    def settings(self) -> dict[str, Any]:
        data = self.cleaned_data
        params: dict[str, Any] = {"channel": data["channel"], "to": data["to"], "kind": data["kind"]}
        if data["template"]:
            params["template"] = data["template"]
        else:
            params["text"] = data["text"]
        if data["wait_confirmation"]:
            hours = data["confirmation_timeout_hours"] or 48
            params |= {"wait_confirmation": True, "confirmation_timeout_hours": hours}
        return params

    def params(self) -> dict[str, Any]:
        params = super().params()
        if not params.get("wait_confirmation"):
            params.pop("timeout_next", None)
        return params


class TagStepForm(StepForm):
    tag = int_choice(_("Tag"), [])

    def prepare(self) -> None:
        set_choices(self.fields["tag"], tag_choices(), self.step.get("tag"))


class AddTagForm(TagStepForm):
    type = "add_tag"


class RemoveTagForm(TagStepForm):
    type = "remove_tag"


class SegmentStepForm(StepForm):
    segment = int_choice(_("Static segment"), [])

    def prepare(self) -> None:
        set_choices(self.fields["segment"], segment_choices(static_only=True), self.step.get("segment"))


class AddToSegmentForm(SegmentStepForm):
    type = "add_to_segment"


class RemoveFromSegmentForm(SegmentStepForm):
    type = "remove_from_segment"


class InviteGroupForm(StepForm):
    type = "invite_group"
    group = int_choice(_("Community group"), [])
    channel = forms.ChoiceField(label=_("Channel"), choices=MessageChannel.choices, initial=MessageChannel.WECOM)
    text = forms.CharField(label=_("Invitation"), widget=forms.Textarea(attrs={"rows": 3}))
    join_url = forms.URLField(
        label=_("Join link"), required=False, assume_scheme="https", help_text=_("Sent as a card when given.")
    )

    def prepare(self) -> None:
        set_choices(self.fields["group"], group_choices(), self.step.get("group"))

    def settings(self) -> dict[str, Any]:
        return {key: value for key, value in super().settings().items() if value not in (None, "")}


class TaskForm(StepForm):
    type = "task"
    title = forms.CharField(label=_("Task for the rep"), max_length=200)
    script = forms.CharField(label=_("What to say"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    due_hours = forms.IntegerField(label=_("Due after (hours)"), min_value=0, max_value=90 * 24, initial=24)


class UpdateAttributeForm(StepForm):
    type = "update_attribute"
    attribute = forms.ChoiceField(label=_("Attribute"))
    value = forms.CharField(
        label=_("New value"), max_length=200, required=False,
        help_text=_("Numbers and yes/no are stored as such for number and yes/no attributes."),
    )  # fmt: skip

    def prepare(self) -> None:
        set_choices(self.fields["attribute"], attribute_choices(), self.step.get("attribute"))
        value = self.step.get("value")
        if isinstance(value, bool):
            self.initial["value"] = "yes" if value else "no"
        elif value is not None:
            self.initial["value"] = str(value)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = CustomAttribute.objects.filter(key=data.get("attribute") or "").values_list("type", flat=True).first()
        raw = (data.get("value") or "").strip()
        if kind == AttributeType.NUMBER:
            try:
                number = Decimal(raw)
            except ArithmeticError:
                self.add_error("value", _("Expected a number."))
            else:
                data["value"] = int(number) if number == number.to_integral_value() else float(number)
        elif kind == AttributeType.BOOLEAN:
            if raw.lower() not in ("true", "false", "yes", "no", "1", "0"):
                self.add_error("value", _("Expected yes or no."))
            data["value"] = raw.lower() in ("true", "yes", "1")
        else:
            data["value"] = raw
        return data


class EnterJourneyForm(StepForm):
    type = "enter_journey"
    journey = int_choice(_("Journey"), [])

    def prepare(self) -> None:
        others = Journey.objects.exclude(status=JourneyStatus.ARCHIVED)
        if self.journey is not None:
            others = others.exclude(pk=self.journey.pk)
        set_choices(self.fields["journey"], list(others.values_list("pk", "name")[:CHOICE_LIMIT]),
                    self.step.get("journey"))  # fmt: skip


class ExitForm(StepForm):
    type = "exit"
    exits: ClassVar[dict[str, Any]] = {}


STEP_FORMS: dict[str, type[StepForm]] = {
    form.type: form
    for form in (
        WaitForm, WaitEventForm, WaitConditionForm, BranchForm, SplitForm, SendForm, AddTagForm, RemoveTagForm,
        AddToSegmentForm, RemoveFromSegmentForm, InviteGroupForm, TaskForm, UpdateAttributeForm, EnterJourneyForm,
        ExitForm,
    )
}  # fmt: skip
# The step types as the "add a step" menu groups them.
STEP_MENU = [
    (_("Wait"), ("wait", "wait_event", "wait_condition")),
    (_("Branch"), ("branch", "split")),
    (_("Message"), ("send", "invite_group")),
    (_("Customer data"), ("add_tag", "remove_tag", "add_to_segment", "remove_from_segment", "update_attribute")),
    (_("Other"), ("task", "enter_journey", "exit")),
]


# -------------------------------------------------------------------------------------------------- publish


class PublishForm(forms.Form):
    """Publishing; when customers are in flight, what happens to them (J39-J41): stay on their version, or move
    to the new one step by step (a removed step needs a new step or "finish on the old version")."""

    mode = forms.ChoiceField(
        label=_("Customers in flight"),
        choices=[("migrate", _("Move them to the new version")), ("keep", _("Keep them on their version"))],
        initial="migrate",
        widget=forms.RadioSelect,
    )
    restart_waits = forms.BooleanField(label=_("Restart their waits (time already waited does not count)"),
                                       required=False)  # fmt: skip

    def __init__(self, data: Any = None, *, waiting: Mapping[str, int], new_steps: Mapping[str, str],
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(data, **kwargs)
        self.waiting, self.new_steps = dict(waiting), dict(new_steps)
        if not self.waiting:
            del self.fields["mode"], self.fields["restart_waits"]
        for step, count in sorted(self.waiting.items()):
            choices: list[tuple[str, Any]] = [(new, f"{new} · {words}") for new, words in self.new_steps.items()]
            if step not in self.new_steps:
                choices = [("", _("Choose…")), *choices, (FINISH_ON_OLD, _("Finish on the old version"))]
            self.fields[self.map_field(step)] = forms.ChoiceField(
                label=_("%(count)s customer(s) at %(step)s go to") % {"count": count, "step": step},
                choices=choices, required=False, initial=step if step in self.new_steps else "",
            )  # fmt: skip
        bootstrap(self)

    @staticmethod
    def map_field(step: str) -> str:
        return f"map_{step}"

    def map_fields(self) -> list[forms.BoundField]:
        return [self[self.map_field(step)] for step in sorted(self.waiting)]

    def migration(self) -> dict[str, Any] | None:
        """The migration `lifecycle.publish` takes, or None to leave everyone on their version."""
        if not self.waiting or self.cleaned_data["mode"] == "keep":
            return None
        choices = {step: self.cleaned_data.get(self.map_field(step)) or "" for step in self.waiting}
        mapping = {step: new for step, new in choices.items() if new and new != FINISH_ON_OLD}
        unchosen = [step for step, new in choices.items() if step not in self.new_steps and not new]
        finishing = any(new == FINISH_ON_OLD for new in choices.values())
        return {
            "map": mapping,
            "restart_waits": self.cleaned_data["restart_waits"],
            # Only when every removed step has an answer: one left open must still be refused (J41).
            "unmapped": "finish_on_old" if finishing and not unchosen else "refuse",
        }

    def add_issues(self, issues: Iterable[tuple[str, str]]) -> None:
        """The refusals of `lifecycle.publish`, on the step they concern. A step whose customers were to finish on
        the old version is refused only because another removed step was left open: the error is there."""
        for path, message in issues:
            field = self.map_field(path.removeprefix("migration.map.")) if path.startswith("migration.map.") else ""
            if field not in self.fields:
                self.add_error(None, message)
            elif self.cleaned_data.get(field) != FINISH_ON_OLD:
                self.add_error(field, message)


class NewJourneyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, required=False)
