"""Journeys (SOPs): a versioned definition, the enrollments that run through it, their step runs, the refusals
a trigger met, and the tasks journeys give to reps."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from messaging.models import CapAction


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    ACTIVE = "active", pgettext_lazy("journey status", "Active")
    PAUSED = "paused", _("Paused")
    STOPPED = "stopped", _("Stopped")
    ARCHIVED = "archived", _("Archived")


class Journey(models.Model):
    """An SOP. Its editable `draft` becomes an immutable JourneyVersion when published; enrollments stay on the
    version they entered (J39)."""

    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("owner"),
    )  # fmt: skip
    priority = models.IntegerField(
        _("priority"), default=0, help_text=_("Higher wins the last frequency-cap slot over other journeys.")
    )
    status = models.CharField(_("status"), max_length=10, choices=JourneyStatus.choices, default=JourneyStatus.DRAFT)
    draft = models.JSONField(_("draft definition"), default=dict, blank=True)
    current_version = models.ForeignKey(
        "journeys.JourneyVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cap_action = models.CharField(
        _("when a frequency cap is full"), max_length=16, choices=CapAction.choices, default=CapAction.SKIP
    )
    cap_expiry_hours = models.PositiveIntegerField(
        _("deferred messages expire after (hours)"), null=True, blank=True, default=48
    )
    lateness_limit_hours = models.PositiveIntegerField(
        _("lateness limit (hours)"),
        default=24,
        help_text=_("After a pause, messages overdue by more than this expire instead of going out late."),
    )
    template_code = models.CharField(_("built from template"), max_length=40, blank=True)
    group_cursor = models.DateTimeField(null=True, blank=True, help_text="Group plans are scheduled up to here.")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True)

    class Meta:
        verbose_name = _("journey")
        verbose_name_plural = _("journeys")
        ordering = ["-priority", "name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def source_ref(self) -> str:
        """The touchpoints' lane and handle: one per journey, so dispatch shares out fairly between journeys."""
        return f"journey:{self.pk}"


class JourneyVersion(models.Model):
    """A published definition: trigger, entry filter, policies, goal and the step graph. Never changes."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(_("version"))
    definition = models.JSONField(_("definition"))
    published_at = models.DateTimeField(_("published at"), default=timezone.now)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    migration = models.JSONField(_("migration from the previous version"), default=dict, blank=True)

    class Meta:
        verbose_name = _("journey version")
        verbose_name_plural = _("journey versions")
        constraints = [models.UniqueConstraint(fields=["journey", "number"], name="journeyversion_unique_number")]
        ordering = ["journey", "-number"]

    def __str__(self) -> str:
        return f"{self.journey} v{self.number}"


class EnrollmentState(models.TextChoices):
    ACTIVE = "active", _("In progress")
    COMPLETED = "completed", _("Completed")
    EXITED = "exited", _("Exited")


class ExitReason(models.TextChoices):
    END = "end", _("Reached the end")
    EXIT_STEP = "exit_step", _("Exit step")
    GOAL = "goal", _("Goal reached")
    NOT_MATCHING = "not_matching", _("No longer matching")
    JOURNEY_STOPPED = "journey_stopped", _("Journey stopped")
    MANUAL = "manual", _("Removed by an operator")
    MERGED = "merged", _("Customer merged")
    ERROR = "error", _("Failed repeatedly")


class Enrollment(models.Model):
    """One customer's run through one journey version. `rotation` counts re-entries; `step` is where she is and
    `next_run_at` when the runtime next looks at her (NULL once finished)."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments")
    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="enrollments")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="enrollments")
    rotation = models.PositiveIntegerField(_("rotation"), default=1)
    state = models.CharField(_("state"), max_length=10, choices=EnrollmentState.choices, default=EnrollmentState.ACTIVE)
    step = models.CharField(_("current step"), max_length=32, blank=True)
    step_entered_at = models.DateTimeField(_("arrived at the step"), default=timezone.now)
    next_run_at = models.DateTimeField(_("next run"), null=True, blank=True)
    seq = models.PositiveIntegerField(default=0, help_text="Step runs so far: the next run's key.")
    wait = models.JSONField(default=dict, blank=True, help_text="State of a step that spans several runs.")
    arms = models.JSONField(default=dict, blank=True, help_text="Split step → arm taken.")
    trigger = models.CharField(_("trigger"), max_length=40, blank=True)
    trigger_key = models.CharField(max_length=128, blank=True)
    context = models.JSONField(default=dict, blank=True, help_text="What the trigger carried (order id, product…).")
    entered_at = models.DateTimeField(_("entered at"), default=timezone.now)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    exit_reason = models.CharField(_("exit reason"), max_length=20, choices=ExitReason.choices, blank=True)
    converted_at = models.DateTimeField(_("converted at"), null=True, blank=True)
    conversion_amount = models.DecimalField(
        _("conversion amount"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    conversion_ref = models.CharField(_("conversion"), max_length=64, blank=True)
    goal_until = models.DateTimeField(null=True, blank=True, help_text="End of the goal window, fixed at entry.")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("enrollment")
        verbose_name_plural = _("enrollments")
        constraints = [
            models.UniqueConstraint(fields=["journey", "customer", "rotation"], name="enrollment_unique_rotation"),
            # A trigger delivered twice enrolls once (J1).
            models.UniqueConstraint(
                fields=["journey", "customer", "trigger_key"],
                condition=~Q(trigger_key=""),
                name="enrollment_unique_trigger",
            ),
        ]
        indexes = [
            # The runtime's queue: only active rows, by due time.
            models.Index(fields=["next_run_at", "id"], condition=Q(state="active"), name="enrollment_due"),
            models.Index(fields=["customer", "journey"], name="enrollment_customer"),
            models.Index(fields=["journey", "state", "step"], name="enrollment_journey_step"),
            models.Index(fields=["journey", "entered_at"], name="enrollment_journey_entered"),
        ]

    def __str__(self) -> str:
        return f"{self.journey_id}/{self.customer_id}#{self.rotation}"


class StepRun(models.Model):
    """One step executed for one enrollment: `(enrollment, seq)` is its unique key, so it happens once."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="step_runs")
    seq = models.PositiveIntegerField()
    step = models.CharField(_("step"), max_length=32)
    step_type = models.CharField(_("step type"), max_length=24)
    ran_at = models.DateTimeField(_("ran at"), default=timezone.now)
    outcome = models.CharField(_("outcome"), max_length=40, blank=True)
    next_step = models.CharField(_("next step"), max_length=32, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    touchpoint_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = _("step run")
        verbose_name_plural = _("step runs")
        constraints = [models.UniqueConstraint(fields=["enrollment", "seq"], name="steprun_unique_seq")]
        indexes = [models.Index(fields=["touchpoint_id"], condition=Q(touchpoint_id__isnull=False), name="steprun_tp")]

    def __str__(self) -> str:
        return f"{self.enrollment_id}:{self.seq} {self.step}"


class RefusalReason(models.TextChoices):
    ALREADY_ACTIVE = "already_active", _("Already in this journey")
    REENTRY_NOT_ALLOWED = "reentry_not_allowed", _("Re-entry not allowed")
    REENTRY_TOO_SOON = "reentry_too_soon", _("Re-entry not allowed yet")
    FILTER_NOT_MATCHED = "filter_not_matched", _("Entry filter not matched")
    OPTED_OUT = "opted_out", _("Opted out")
    JOURNEY_NOT_ACTIVE = "journey_not_active", _("Journey not active")


class Refusal(models.Model):
    """A trigger that did not enroll the customer, and why (J7): shown on her page."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="refusals")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="journey_refusals")
    reason = models.CharField(_("reason"), max_length=24, choices=RefusalReason.choices)
    trigger = models.CharField(_("trigger"), max_length=40, blank=True)
    trigger_key = models.CharField(max_length=128, blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("refused enrollment")
        verbose_name_plural = _("refused enrollments")
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "customer", "trigger_key"], condition=~Q(trigger_key=""),
                name="refusal_unique_trigger",
            )
        ]  # fmt: skip
        indexes = [models.Index(fields=["customer", "-at"], name="refusal_customer")]

    def __str__(self) -> str:
        return f"{self.journey_id}/{self.customer_id}: {self.reason}"


class TaskStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")


class Task(models.Model):
    """Something a rep should do for a customer ("call her about the serum"), from a journey or by hand.
    Completing it records a `task_completed` event, which a goal or a wait-for-event step can use."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="tasks")
    assignee = models.ForeignKey(
        "customers.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks",
        verbose_name=_("assignee"),
    )  # fmt: skip
    title = models.CharField(_("title"), max_length=200)
    script = models.TextField(_("script"), blank=True, help_text=_("What to say: shown to the rep with the task."))
    due_at = models.DateTimeField(_("due"))
    status = models.CharField(_("status"), max_length=10, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    journey = models.ForeignKey(
        Journey, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks", verbose_name=_("journey")
    )
    enrollment = models.ForeignKey(Enrollment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    idempotency_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    outcome = models.CharField(_("outcome"), max_length=200, blank=True)
    due_announced_at = models.DateTimeField(null=True, blank=True, help_text="When task.due was recorded.")

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        ordering = ["status", "due_at", "id"]
        indexes = [
            models.Index(fields=["assignee", "status", "due_at"], name="task_assignee"),
            models.Index(fields=["customer", "-created_at"], name="task_customer"),
        ]

    def __str__(self) -> str:
        return self.title
