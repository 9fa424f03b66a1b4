"""Publishing a journey, and what happens to the customers in flight (J39-J41)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from journeys.forms.fields import bootstrap

FINISH_ON_OLD = "__old__"


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
