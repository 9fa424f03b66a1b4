"""The forms of the action steps: send a message, change the customer's tags, segments or attributes, invite her
to a group, give the rep a task, enter another journey, exit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django import forms
from django.utils.translation import gettext_lazy as _

from customers.models import AttributeType, CustomAttribute, MessageChannel
from journeys.forms.fields import (
    CHOICE_LIMIT,
    attribute_choices,
    group_choices,
    int_choice,
    segment_choices,
    set_choices,
    tag_choices,
    template_choices,
)
from journeys.forms.steps import StepForm
from journeys.models import Journey, JourneyStatus
from messaging.models import TouchpointKind


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
