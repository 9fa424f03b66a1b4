"""Forms of the journey builder: the journey's settings, its trigger, entry and exit policies and goal, one form
per step type, and the publish form with its migration of customers in flight. Each form turns what the operator
typed into the settings of the definition (journeys/definition.py); the definition's own checks (the step type's
`check`, `definition.validate`) then speak about them, and `add_issues` puts what they say next to the field.

fields.py holds the builder's fields and their choices, base.py what the forms share (`BuilderForm`), journey.py
the journey's own forms, steps.py and actions.py the step forms, step_types.py the form of each step type and the
"add a step" menu, publish.py the publish form."""

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
from journeys.forms.base import BuilderForm
from journeys.forms.fields import END
from journeys.forms.journey import GoalForm, NewJourneyForm, PoliciesForm, SettingsForm, TriggerForm
from journeys.forms.publish import FINISH_ON_OLD, PublishForm
from journeys.forms.step_types import STEP_FORMS, STEP_MENU
from journeys.forms.steps import BranchForm, SplitForm, StepForm, WaitConditionForm, WaitEventForm, WaitForm

__all__ = [
    "END", "FINISH_ON_OLD", "STEP_FORMS", "STEP_MENU", "AddTagForm", "AddToSegmentForm", "BranchForm", "BuilderForm",
    "EnterJourneyForm", "ExitForm", "GoalForm", "InviteGroupForm", "NewJourneyForm", "PoliciesForm", "PublishForm",
    "RemoveFromSegmentForm", "RemoveTagForm", "SendForm", "SettingsForm", "SplitForm", "StepForm", "TaskForm",
    "TriggerForm", "UpdateAttributeForm", "WaitConditionForm", "WaitEventForm", "WaitForm",
]  # fmt: skip
