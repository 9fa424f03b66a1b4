from datetime import date
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Func, Subquery, Value
from django.db.models.functions import Coalesce
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

    # No index of its own on either key: the composite indexes below start with each (one index less to write
    # for each of a night's tens of thousands of moves).
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    # Derived data written set-based (a first RFM run enters a million customers): no per-row database check on the
    # customer, which locked each customer's row and took most of the write. Writers take their customers from
    # the customer table in the same statement; customers are never deleted, and Django applies `on_delete`.
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="segment_memberships",
        db_constraint=False,
        db_index=False,
    )
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
            # Current members who entered since a date (the API's `since`). Current only: an exit writes a new row
            # version, which an index over every episode took at the place of its old entry date, all over the
            # index (a night's 25,000 exits at a million members).
            models.Index(
                fields=["segment", "entered_at"],
                condition=models.Q(exited_at__isnull=True),
                name="segmentmembership_entered_open",
            ),
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


# ------------------------------------------------------------------------------------------- layering models


class RfmMethod(models.TextChoices):
    QUANTILE = "quantile", _("Quantile scores (1 to 5)")
    THRESHOLDS = "thresholds", _("Operator-set thresholds")


class RfmClass(models.TextChoices):
    IMPORTANT_VALUE = "important_value", _("Important value customer")  # 重要价值客户
    IMPORTANT_DEVELOP = "important_develop", _("Important development customer")  # 重要发展客户
    IMPORTANT_KEEP = "important_keep", _("Important retention customer")  # 重要保持客户
    IMPORTANT_RETAIN = "important_retain", _("Important win-back customer")  # 重要挽留客户
    GENERAL_VALUE = "general_value", _("General value customer")  # 一般价值客户
    GENERAL_DEVELOP = "general_develop", _("General development customer")  # 一般发展客户
    GENERAL_KEEP = "general_keep", _("General retention customer")  # 一般保持客户
    GENERAL_RETAIN = "general_retain", _("General win-back customer")  # 一般挽留客户
    NO_PURCHASE = "no_purchase", _("No purchase in the window")


class LayerModel(models.TextChoices):
    AIPL = "aipl", _("AIPL")
    LIFECYCLE = "lifecycle", _("Lifecycle")
    LADDER = "ladder", _("Relationship ladder")


def default_rfm_thresholds() -> dict:
    # Score 5..2 lower bounds (recency: upper bounds in days); below the last bound scores 1.
    return {"r": [30, 60, 120, 240], "f": [6, 4, 3, 2], "m": [3000, 1500, 800, 300]}


def default_high_from() -> dict:
    return {"r": 3, "f": 3, "m": 3}


def default_aipl() -> dict:
    return {
        "interest_days": 30,
        "engagement_types": ["reply", "content_view", "group_message", "live_view", "share"],
        "purchase_days": 365,
        "loyal_orders": 2,
    }


def default_lifecycle() -> dict:
    return {"preset": "ecommerce", "dormant_days": 90, "churned_days": 180, "vip_top_percent": 10, "repeat_orders": 2}


def default_ladder() -> dict:
    return {"period_days": 365}


class LayeringSettings(models.Model):
    """The workspace's layering settings (one row): RFM window, reference date, scoring and cuts; AIPL,
    lifecycle and ladder parameters."""

    rfm_window_days = models.PositiveIntegerField(_("RFM window (days)"), default=365)
    rfm_as_of = models.DateField(
        _("RFM as of"), null=True, blank=True, help_text=_("Empty means today; set a past date to backtest.")
    )
    rfm_method = models.CharField(
        _("RFM scoring"), max_length=10, choices=RfmMethod.choices, default=RfmMethod.QUANTILE
    )
    rfm_thresholds = models.JSONField(_("RFM thresholds"), default=default_rfm_thresholds, blank=True)
    rfm_high_from = models.JSONField(_("RFM high from score"), default=default_high_from, blank=True)
    aipl = models.JSONField(_("AIPL settings"), default=default_aipl, blank=True)
    lifecycle = models.JSONField(_("lifecycle settings"), default=default_lifecycle, blank=True)
    ladder = models.JSONField(_("ladder settings"), default=default_ladder, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("layering settings")
        verbose_name_plural = _("layering settings")

    def __str__(self) -> str:
        return str(_("Layering settings"))

    @classmethod
    def load(cls) -> "LayeringSettings":
        return cls.objects.get_or_create(pk=1)[0]


def workspace_today() -> date:
    return timezone.localdate(timezone.now(), ZoneInfo(settings.TIME_ZONE))


def _latest_runs_as_of():
    return RfmRun.objects.order_by("-started_at", "-pk").values_list("as_of", flat=True)


def rfm_as_of() -> date:
    """The reference date of the latest RFM run (what stored RFM rows are current as of); today in the workspace
    zone before any run."""
    return _latest_runs_as_of().first() or workspace_today()


class DaysSince(Func):
    """Whole days from a date column to the latest RFM run's reference date (in Postgres, date - date is an
    integer), in the query itself."""

    template = "(%(expressions)s)"
    arg_joiner = " - "
    output_field = models.IntegerField()

    def __init__(self, column: str) -> None:
        super().__init__(latest_as_of(), F(column))


def latest_as_of() -> Coalesce:
    """`rfm_as_of()` as an expression: the latest run's reference date, else today in the workspace zone."""
    today = Value(workspace_today(), output_field=models.DateField())
    return Coalesce(Subquery(_latest_runs_as_of()[:1]), today, output_field=models.DateField())


class CustomerRfmQuerySet(CustomerOwnedQuerySet):
    def with_as_of(self) -> "CustomerRfmQuerySet":
        """Annotate `as_of`, the latest run's reference date, so `recency_days` needs no query of its own."""
        return self.annotate(as_of=latest_as_of())


class CustomerRfm(models.Model):
    """A customer's RFM values, scores and class as of the last recompute. Recency is stored as the date of the last
    purchase (workspace zone), not as days: a nightly run, where the reference date moves by a day, then rewrites
    only the rows whose values, scores or class change; `recency_days` counts to the latest run's reference date."""

    customer = models.OneToOneField(
        "customers.Customer", on_delete=models.CASCADE, primary_key=True, related_name="rfm", db_constraint=False
    )  # derived data: no per-row database check (see SegmentMembership.customer)
    last_purchase_on = models.DateField(_("last purchase"), null=True)
    frequency = models.PositiveIntegerField(_("frequency"), default=0)
    monetary = models.DecimalField(_("monetary"), max_digits=14, decimal_places=2, default=0)
    r_score = models.PositiveSmallIntegerField(_("R score"), null=True)
    f_score = models.PositiveSmallIntegerField(_("F score"), null=True)
    m_score = models.PositiveSmallIntegerField(_("M score"), null=True)
    rfm_class = models.CharField(_("RFM class"), max_length=20, choices=RfmClass.choices)
    computed_at = models.DateTimeField(_("computed at"))

    objects = CustomerRfmQuerySet.as_manager()

    class Meta:
        verbose_name = _("customer RFM")
        verbose_name_plural = _("customer RFM")
        indexes = [models.Index(fields=["rfm_class"], name="customerrfm_class")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.rfm_class}"

    @property
    def recency_days(self) -> int | None:
        """Days from the last purchase to the latest run's reference date (None: never bought). Read through
        `with_as_of()`, else it costs a query."""
        if self.last_purchase_on is None:
            return None
        as_of = getattr(self, "as_of", None) or rfm_as_of()
        return (as_of - self.last_purchase_on).days


class RfmRun(models.Model):
    """One RFM recompute: when, as of which date, and the class snapshot (count, share, GMV, averages)."""

    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    as_of = models.DateField(_("as of"))
    window_days = models.PositiveIntegerField(_("window (days)"))
    method = models.CharField(_("scoring"), max_length=10, choices=RfmMethod.choices)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    counts = models.JSONField(_("classes"), default=dict)
    transitions = models.PositiveIntegerField(_("class changes"), default=0)
    # A full run aggregates every customer's orders; an incremental one only those of the customers whose orders
    # changed since the previous run (RfmRecheck) or entered or left the window, and re-scores the others from
    # their stored values. `parameters` is what both must share for a run to build on the previous one.
    full = models.BooleanField(_("full recompute"), default=True)
    parameters = models.JSONField(_("parameters"), default=dict, blank=True)

    class Meta:
        verbose_name = _("RFM run")
        verbose_name_plural = _("RFM runs")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"RFM {self.as_of}"


class RfmRecheck(models.Model):
    """A customer whose orders changed (placed, updated, refunded, deleted, moved by a merge or its undoing) since
    the last RFM run: the next incremental run recomputes her values. Written by the segments app's consumer of
    those domain events; append-only (no unique key, so writers never wait on each other or on a run), and a run
    takes the rows it can see and deletes them in its own transaction."""

    id = models.BigAutoField(primary_key=True)
    customer_id = models.BigIntegerField(_("customer"))

    class Meta:
        verbose_name = _("RFM recheck")
        verbose_name_plural = _("RFM rechecks")

    def __str__(self) -> str:
        return f"{self.customer_id}"


class RfmValueCount(models.Model):
    """How many stored RFM rows of buyers in the window hold each value of one dimension, as of the last quantile
    run: one row per dimension (`dims`: the GROUPING() bits of the two columns it does not count), its distinct
    values in that dimension's array and their counts at the same places in `n`. A nightly run works its quantile
    thresholds out from these (about 45,000 values at a million customers) and the values of the customers it
    touched, instead of counting a million rows again; every quantile run rewrites them, a full run from the rows
    themselves. Three rows rather than a row per value: rewriting 45,000 rows took 0.09 s a run, three 0.04 s.
    Derived data, read and written only by the RFM run, under its lock."""

    dims = models.PositiveSmallIntegerField(unique=True)
    last_purchase_on = ArrayField(models.DateField(), null=True)
    frequency = ArrayField(models.IntegerField(), null=True)
    monetary = ArrayField(models.DecimalField(max_digits=14, decimal_places=2), null=True)
    n = ArrayField(models.IntegerField())

    class Meta:
        verbose_name = _("RFM value count")
        verbose_name_plural = _("RFM value counts")

    def __str__(self) -> str:
        return f"{self.dims}: {len(self.n)} values"


class RfmTransition(models.Model):
    """A customer's class change in a run ("who moved from 重要价值 to 重要保持 this month" is one query)."""

    # Read by customer and by classes, never by run (but for deleting a run): no index of its own to keep up.
    run = models.ForeignKey(
        RfmRun, on_delete=models.CASCADE, related_name="transition_rows", db_constraint=False, db_index=False
    )
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="rfm_transitions",
        db_index=False,
        db_constraint=False,
    )  # fmt: skip  (derived data, see SegmentMembership.customer; indexed by rfmtransition_customer)
    from_class = models.CharField(_("from"), max_length=20, choices=RfmClass.choices, blank=True)
    to_class = models.CharField(_("to"), max_length=20, choices=RfmClass.choices)
    at = models.DateTimeField(_("at"))

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("RFM class change")
        verbose_name_plural = _("RFM class changes")
        indexes = [
            models.Index(fields=["from_class", "to_class", "at"], name="rfmtransition_classes"),
            models.Index(fields=["customer", "-at"], name="rfmtransition_customer"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_class} → {self.to_class}"


class CustomerStage(models.Model):
    """A customer's current stage in one layering model (AIPL, lifecycle, ladder), and since when."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="stages", db_index=False, db_constraint=False
    )  # derived data, see SegmentMembership.customer; indexed by customerstage_unique
    model = models.CharField(_("model"), max_length=10, choices=LayerModel.choices)
    stage = models.CharField(_("stage"), max_length=24)
    since = models.DateTimeField(_("since"))

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("customer stage")
        verbose_name_plural = _("customer stages")
        constraints = [models.UniqueConstraint(fields=["customer", "model"], name="customerstage_unique")]
        indexes = [models.Index(fields=["model", "stage"], name="customerstage_stage")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.model}={self.stage}"
