"""The journey's own forms: its settings, its trigger, its entry and exit policies, its goal, and a new journey."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from journeys import definition as definitions
from journeys.forms.base import BuilderForm
from journeys.forms.fields import (
    WEEKDAY_CHOICES,
    ClockField,
    PropertiesField,
    RuleField,
    attribute_choices,
    bootstrap,
    category_choices,
    group_type_choices,
    int_choice,
    product_choices,
    segment_choices,
    set_choices,
    tag_choices,
    template_choices,
)
from journeys.models import Journey

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


class NewJourneyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, required=False)
