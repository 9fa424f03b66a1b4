"""The step forms: what they share (`StepForm`), then the waits and the branches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django import forms
from django.utils.translation import gettext_lazy as _

from journeys.forms.base import BuilderForm
from journeys.forms.fields import (
    END,
    WEEKDAY_CHOICES,
    ClockField,
    PropertiesField,
    RuleField,
    bootstrap,
    target_field,
)
from journeys.models import Journey
from journeys.steps.waits import WAIT_MODES


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
