"""API shapes for journeys, their enrollments and reps' tasks. Writes are validated here for shape, then by the
journeys services (a draft is checked in full when it is published or dry-run: journeys.definition.validate)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from journeys.models import (
    Enrollment,
    EnrollmentState,
    ExitReason,
    Journey,
    JourneyStatus,
    RefusalReason,
    Task,
    TaskStatus,
)
from journeys.services.dryrun import MAX_SAMPLE_SIZE
from messaging.api.serializers import NamedChoiceField
from messaging.models import CapAction

MAX_ENROLL = 1000


class JourneyStatusField(NamedChoiceField):
    enum_name, enum_choices = "JourneyStatusEnum", JourneyStatus


class EnrollmentStateField(NamedChoiceField):
    enum_name, enum_choices = "EnrollmentStateEnum", EnrollmentState


class ExitReasonField(NamedChoiceField):
    enum_name, enum_choices = "ExitReasonEnum", ExitReason


class RefusalReasonField(NamedChoiceField):
    enum_name, enum_choices = "RefusalReasonEnum", RefusalReason


class TaskStatusField(NamedChoiceField):
    enum_name, enum_choices = "TaskStatusEnum", TaskStatus


class CapActionField(NamedChoiceField):
    enum_name, enum_choices = "JourneyCapActionEnum", CapAction


# --------------------------------------------------------------------------------------------------- journeys


class JourneyOutput(serializers.ModelSerializer):
    """A journey in a list: its settings and where it stands, without its definition."""

    status = JourneyStatusField(read_only=True)
    cap_action = CapActionField(read_only=True)
    version = serializers.IntegerField(
        source="current_version.number", read_only=True, allow_null=True, default=None,
        help_text=_("The published version new enrollments use; empty for a draft never published."),
    )  # fmt: skip

    class Meta:
        model = Journey
        fields = [
            "id", "name", "description", "status", "priority", "owner", "template_code", "version", "cap_action",
            "cap_expiry_hours", "lateness_limit_hours", "created_at", "updated_at", "paused_at",
        ]  # fmt: skip
        read_only_fields = fields


class JourneyDetailOutput(JourneyOutput):
    """A journey with its editable draft and the definition of its published version."""

    draft = serializers.JSONField(read_only=True)
    definition = serializers.JSONField(
        source="current_version.definition", read_only=True, allow_null=True, default=None,
        help_text=_("The published version's definition; empty for a draft never published."),
    )  # fmt: skip

    class Meta(JourneyOutput.Meta):
        fields = [*JourneyOutput.Meta.fields, "draft", "definition"]
        read_only_fields = fields


class JourneyInput(serializers.Serializer):
    """A journey's settings and its draft (saved as it is: it is checked in full when published). On create,
    `template` starts from a built-in SOP template instead of `draft` (journeys.sop_templates)."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    priority = serializers.IntegerField(required=False, min_value=-100, max_value=100)
    draft = serializers.JSONField(required=False, help_text=_("The definition: trigger, steps… (docs/journeys.md)."))
    cap_action = CapActionField(required=False)
    cap_expiry_hours = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=24 * 30)
    lateness_limit_hours = serializers.IntegerField(required=False, min_value=1, max_value=24 * 30)

    def validate_draft(self, draft: object) -> object:
        if not isinstance(draft, dict):
            raise serializers.ValidationError(_("Expected a journey definition object."), code="invalid")
        return draft


class JourneyCreateInput(JourneyInput):
    name = serializers.CharField(max_length=100, required=False)
    template = serializers.CharField(required=False, help_text=_("A built-in SOP template's code, e.g. welcome."))

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("template") and not attrs.get("name"):
            raise serializers.ValidationError({"name": [_("This field is required.")]}, code="required")
        if attrs.get("template") and "draft" in attrs:
            raise serializers.ValidationError({"draft": [_("Give a template or a draft, not both.")]}, code="invalid")
        return attrs


class MigrationInput(serializers.Serializer):
    map = serializers.DictField(
        child=serializers.CharField(), required=False, default=dict,
        help_text=_("Old step id → new step id for customers in flight."),
    )  # fmt: skip
    restart_waits = serializers.BooleanField(required=False, default=False)
    unmapped = serializers.ChoiceField(choices=["refuse", "finish_on_old"], required=False, default="refuse")


class PublishInput(serializers.Serializer):
    """Publish the draft as the next version. Without `migration`, customers in flight stay on their version."""

    migration = MigrationInput(required=False, allow_null=True)


class DefinitionIssueOutput(serializers.Serializer):
    path = serializers.CharField(help_text=_('Where, e.g. "steps[2].next".'))
    message = serializers.CharField()


class DefinitionErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = DefinitionIssueOutput(many=True)


# ---------------------------------------------------------------------------------------------------- dry run


class DryRunInput(serializers.Serializer):
    sample_size = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SAMPLE_SIZE, default=20)


class PlannedStepOutput(serializers.Serializer):
    step_id = serializers.CharField()
    description = serializers.CharField()
    at = serializers.DateTimeField(help_text=_("When the step would run (for a wait, when it ends)."))
    note = serializers.CharField(help_text=_("Quiet hours, the branch or arm taken, what a wait assumed…"))


class SamplePathOutput(serializers.Serializer):
    customer_id = serializers.IntegerField()
    customer_name = serializers.CharField()
    steps = PlannedStepOutput(many=True)


class DryRunOutput(serializers.Serializer):
    entering = serializers.IntegerField(help_text=_("Customers who would enter now."))
    on_trigger = serializers.BooleanField(
        help_text=_("An event trigger: nobody enters at publishing; `entering` match the entry filter now and would "
                    "enter when the trigger happens to them.")
    )  # fmt: skip
    step_counts = serializers.DictField(child=serializers.IntegerField(), help_text=_("Step id → customers."))
    sample = SamplePathOutput(many=True)


# ------------------------------------------------------------------------------------------------- enrollment


class EnrollInput(serializers.Serializer):
    customers = serializers.ListField(
        child=serializers.IntegerField(), allow_empty=False, max_length=MAX_ENROLL, help_text=_("Customer ids.")
    )


class EnrolledOutput(serializers.Serializer):
    customer = serializers.IntegerField()
    enrollment = serializers.IntegerField()


class RefusedOutput(serializers.Serializer):
    customer = serializers.IntegerField()
    reason = RefusalReasonField()
    reason_label = serializers.CharField()


class EnrollOutput(serializers.Serializer):
    enrolled = EnrolledOutput(many=True)
    refused = RefusedOutput(many=True)


class EnrollmentOutput(serializers.ModelSerializer):
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    version = serializers.IntegerField(source="version_number", read_only=True)
    state = EnrollmentStateField(read_only=True)
    exit_reason = ExitReasonField(read_only=True, allow_blank=True)

    class Meta:
        model = Enrollment
        fields = [
            "id", "customer", "customer_name", "version", "rotation", "state", "step", "step_entered_at",
            "next_run_at", "trigger", "entered_at", "ended_at", "exit_reason", "converted_at", "conversion_amount",
        ]  # fmt: skip
        read_only_fields = fields


# ------------------------------------------------------------------------------------------------------ tasks


class TaskOutput(serializers.ModelSerializer):
    status = TaskStatusField(read_only=True)
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    assignee_name = serializers.CharField(source="assignee.name", read_only=True, allow_null=True, default=None)
    journey_name = serializers.CharField(source="journey.name", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Task
        fields = [
            "id", "customer", "customer_name", "assignee", "assignee_name", "title", "script", "due_at", "status",
            "journey", "journey_name", "created_at", "completed_at", "outcome",
        ]  # fmt: skip
        read_only_fields = fields


class CompleteTaskInput(serializers.Serializer):
    outcome = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
