"""The form of each step type, and the step types as the "add a step" menu groups them."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from journeys.forms.actions import (
    AddTagForm,
    AddToSegmentForm,
    EnterJourneyForm,
    ExitForm,
    InviteGroupForm,
    RemoveFromSegmentForm,
    RemoveTagForm,
    SendForm,
    TaskForm,
    UpdateAttributeForm,
)
from journeys.forms.steps import BranchForm, SplitForm, StepForm, WaitConditionForm, WaitEventForm, WaitForm

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
