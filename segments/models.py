from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.querysets import CustomerOwnedQuerySet


class SegmentKind(models.TextChoices):
    DYNAMIC = "dynamic", _("Dynamic (rule)")
    STATIC = "static", _("Static (list)")
    MODEL = "model", _("Model (RFM, AIPL, lifecycle, ladder)")


class RecomputeStatus(models.TextChoices):
    IDLE = "idle", _("Up to date")
    CALCULATING = "calculating", _("Calculating")
    FAILED = "failed", _("Failed")


class Segment(models.Model):
    """A set of customers: by rule (kept current), by list (frozen), or kept by a layering model.

    Membership is stored with its history (SegmentMembership). A recompute holds a lease (`lease_until`): one
    that crashes is retried after the lease expires instead of staying "calculating" forever.
    """

    name = models.CharField(_("name"), max_length=100)
    description = models.CharField(_("description"), max_length=300, blank=True)
    kind = models.CharField(_("kind"), max_length=8, choices=SegmentKind.choices, default=SegmentKind.DYNAMIC)
    rule = models.JSONField(_("rule"), null=True, blank=True)
    model_key = models.CharField(
        _("model"), max_length=40, blank=True, help_text=_("For model segments, e.g. rfm:important_value.")
    )
    depends_on = models.JSONField(_("depends on"), default=list, blank=True, help_text=_("Segment ids the rule reads."))
    is_time_relative = models.BooleanField(_("time-relative"), default=False)
    is_archived = models.BooleanField(_("archived"), default=False)
    status = models.CharField(_("status"), max_length=12, choices=RecomputeStatus.choices, default=RecomputeStatus.IDLE)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    last_started_at = models.DateTimeField(_("last recompute started"), null=True, blank=True)
    last_finished_at = models.DateTimeField(_("last recompute finished"), null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(_("last recompute duration (ms)"), null=True, blank=True)
    last_counts = models.JSONField(_("last recompute counts"), default=dict, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    size = models.PositiveIntegerField(_("members"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_key"], condition=~models.Q(model_key=""), name="segment_model_key_unique"
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="dynamic") | models.Q(rule__isnull=False), name="segment_dynamic_has_rule"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MembershipReason(models.TextChoices):
    RULE = "rule", _("Matched the rule")
    LIST = "list", _("Added to the list")
    MODEL = "model", _("Model recompute")
    NO_LONGER_MATCHING = "no_longer_matching", _("No longer matching")
    EXCLUDED = "excluded", _("Excluded by hand")
    REMOVED = "removed", _("Removed from the list")
    MERGED = "merged", _("Customer merged")


class SegmentMembership(models.Model):
    """One episode of a customer in a segment: open while `exited_at` is empty. The rows are the history."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="segment_memberships")
    entered_at = models.DateTimeField(_("entered at"), default=timezone.now)
    exited_at = models.DateTimeField(_("exited at"), null=True, blank=True)
    entry_reason = models.CharField(_("entry reason"), max_length=20, choices=MembershipReason.choices)
    exit_reason = models.CharField(_("exit reason"), max_length=20, choices=MembershipReason.choices, blank=True)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("segment membership")
        verbose_name_plural = _("segment memberships")
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "customer"],
                condition=models.Q(exited_at__isnull=True),
                name="segmentmembership_one_open",
            )
        ]
        indexes = [
            # Current members of a segment, newest first (the members page, keyset by id).
            models.Index(
                fields=["segment", "-id"], condition=models.Q(exited_at__isnull=True), name="segmentmembership_current"
            ),
            models.Index(fields=["customer", "segment"], name="segmentmembership_customer"),
            models.Index(fields=["segment", "entered_at"], name="segmentmembership_entered"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.segment_id}"


class SegmentExclusion(models.Model):
    """A customer kept out of a dynamic segment by hand, until the exclusion is cleared."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="exclusions")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="segment_exclusions")
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    excluded_at = models.DateTimeField(_("excluded at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("segment exclusion")
        verbose_name_plural = _("segment exclusions")
        constraints = [models.UniqueConstraint(fields=["segment", "customer"], name="segmentexclusion_unique")]

    def __str__(self) -> str:
        return f"{self.customer_id} kept out of {self.segment_id}"


class SegmentSize(models.Model):
    """The segment's size after each recompute (size over time)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="sizes")
    at = models.DateTimeField(_("at"), default=timezone.now)
    size = models.PositiveIntegerField(_("members"))
    entered = models.PositiveIntegerField(_("entered"), default=0)
    exited = models.PositiveIntegerField(_("exited"), default=0)

    class Meta:
        verbose_name = _("segment size")
        verbose_name_plural = _("segment sizes")
        indexes = [models.Index(fields=["segment", "-at"], name="segmentsize_segment_at")]

    def __str__(self) -> str:
        return f"{self.segment_id} {self.size} @ {self.at:%Y-%m-%d %H:%M}"
