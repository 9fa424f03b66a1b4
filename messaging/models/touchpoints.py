from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.models import MessageChannel
from customers.querysets import CustomerOwnedQuerySet


class TouchpointStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    DEFERRED = "deferred", _("Deferred")
    SENDING = "sending", _("Sending")
    AWAITING_CONFIRMATION = "awaiting_confirmation", _("Awaiting the rep's confirmation")
    CONFIRMED = "confirmed", _("Confirmed by the rep")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")
    CLICKED = "clicked", _("Clicked")
    FAILED = "failed", _("Failed")
    SUPPRESSED = "suppressed", _("Suppressed")
    CAPPED = "capped", _("Frequency-capped")
    EXPIRED = "expired", _("Expired")
    UNDELIVERABLE = "undeliverable", _("Undeliverable")
    CANCELLED = "cancelled", _("Cancelled")
    HELD = "held", _("Held (journey paused)")


# Rows dispatch may claim once `due_at` has passed; for SENDING `due_at` is the claim's lease expiry.
CLAIMABLE_STATUSES = (TouchpointStatus.SCHEDULED, TouchpointStatus.DEFERRED, TouchpointStatus.SENDING)
# A message handed to a channel: counted by frequency caps and never sent again.
HANDED_OVER_STATUSES = (
    TouchpointStatus.AWAITING_CONFIRMATION,
    TouchpointStatus.CONFIRMED,
    TouchpointStatus.SENT,
    TouchpointStatus.DELIVERED,
    TouchpointStatus.READ,
    TouchpointStatus.CLICKED,
)
FINAL_STATUSES = (
    *HANDED_OVER_STATUSES,
    TouchpointStatus.FAILED,
    TouchpointStatus.SUPPRESSED,
    TouchpointStatus.CAPPED,
    TouchpointStatus.EXPIRED,
    TouchpointStatus.UNDELIVERABLE,
    TouchpointStatus.CANCELLED,
)


ATTENTION_STATUSES = [
    "awaiting_confirmation",
    "confirmed",
    "failed",
    "suppressed",
    "capped",
    "expired",
    "undeliverable",
    "cancelled",
]


class TouchpointKind(models.TextChoices):
    MARKETING = "marketing", _("Marketing")
    TRANSACTIONAL = "transactional", _("Transactional")


class TouchpointSource(models.TextChoices):
    JOURNEY = "journey", _("Journey step")
    CAMPAIGN = "campaign", _("Campaign")
    MANUAL = "manual", _("Manual")
    API = "api", _("API")
    SYSTEM = "system", _("System")


class CapAction(models.TextChoices):
    """What happens to a marketing message when a frequency cap has no slot left for it."""

    SKIP = "skip", _("Skip it")
    DEFER = "defer", _("Defer to the next allowed period")
    DEFER_EXPIRE = "defer_expire", _("Defer, then give up after the expiry")


class Touchpoint(models.Model):
    """One message to one customer (or one community group), created before anything is sent.

    `due_at` is when dispatch next looks at the row: the requested time, then a deferral, a retry's backoff or,
    while SENDING, the claim's lease expiry (a worker that dies leaves a row that is claimed again at that time).
    `decisions` records every policy decision and attempt, in order.
    """

    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="touchpoints",
        db_index=False,  # covered by touchpoint_customer
        verbose_name=_("customer"),
    )
    group = models.ForeignKey(
        "customers.CommunityGroup",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="touchpoints",
        db_index=False,  # touchpoint_group
        verbose_name=_("community group"),
    )
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices)
    sender_staff = models.ForeignKey(
        "customers.Staff",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sent_touchpoints",
        db_index=False,  # touchpoint_awaiting_staff
        verbose_name=_("sending staff member"),
    )
    sender = models.CharField(
        _("sender"), max_length=64, blank=True, help_text=_("The sending account or app, when not a staff member.")
    )
    template = models.ForeignKey(
        "messaging.MessageTemplate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="touchpoints",
        db_index=False,  # touchpoint_queued_template
        verbose_name=_("template"),
    )
    context = models.JSONField(
        _("context"), default=dict, blank=True, help_text=_("What the template may read besides the customer.")
    )
    content = models.JSONField(
        _("content"), default=dict, blank=True, help_text=_("The message without a template: text, card, defaults.")
    )
    rendered = models.JSONField(_("rendered message"), default=dict, blank=True, help_text=_("The message as sent."))
    recipient = models.CharField(
        _("recipient"), max_length=200, blank=True, help_text=_("The address it was sent to: phone, email, WeCom id.")
    )
    counted_in = models.JSONField(
        default=list, blank=True, editable=False, help_text="Frequency-cap counters this message holds a slot in."
    )
    kind = models.CharField(_("kind"), max_length=16, choices=TouchpointKind.choices, default=TouchpointKind.MARKETING)
    source = models.CharField(
        _("source"), max_length=16, choices=TouchpointSource.choices, default=TouchpointSource.MANUAL
    )
    source_ref = models.CharField(
        _("source reference"),
        max_length=64,
        blank=True,
        help_text=_("The journey, step or campaign that asked; dispatch claims fairly across them."),
    )
    priority = models.SmallIntegerField(_("priority"), default=0)
    on_cap = models.CharField(_("when capped"), max_length=16, choices=CapAction.choices, default=CapAction.SKIP)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200)  # touchpoint_idempotency_key
    status = models.CharField(
        _("status"), max_length=24, choices=TouchpointStatus.choices, default=TouchpointStatus.SCHEDULED
    )
    reason = models.CharField(_("reason"), max_length=64, blank=True)
    provider_code = models.CharField(_("provider code"), max_length=64, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)
    provider_response = models.JSONField(_("provider response"), default=dict, blank=True)
    decisions = models.JSONField(_("decisions"), default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    max_attempts = models.PositiveSmallIntegerField(_("maximum attempts"), default=5)
    scheduled_for = models.DateTimeField(_("scheduled for"))
    due_at = models.DateTimeField(_("due at"))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    clicked_at = models.DateTimeField(_("clicked at"), null=True, blank=True)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("touchpoint")
        verbose_name_plural = _("touchpoints")
        # Each index costs every status change (a message changes status two or three times), so only the queue,
        # the in-flight claims and the statuses people look for are indexed, mostly as small partial indexes.
        indexes = [
            # The dispatch queue: only claimable rows, by lane then due time, so it stays small whatever the
            # history and a skip scan finds every lane with work in a few probes.
            models.Index(
                fields=["source_ref", "due_at", "id"],
                name="touchpoint_queue",
                condition=models.Q(status__in=["scheduled", "deferred", "sending"]),
            ),
            models.Index(fields=["lease_token"], name="touchpoint_inflight", condition=models.Q(status="sending")),
            models.Index(fields=["customer", "-created_at"], name="touchpoint_customer"),
            # One source's messages by status: a journey's report, and holding/releasing a paused journey's queue.
            models.Index(fields=["source_ref", "status"], name="touchpoint_source_status"),
            # Statuses an operator or rep looks for (dead letters, suppressions, sends awaiting confirmation).
            models.Index(
                fields=["status", "-id"],
                name="touchpoint_attention",
                condition=models.Q(status__in=ATTENTION_STATUSES),
            ),
            models.Index(
                fields=["sender_staff", "-id"],
                name="touchpoint_awaiting_staff",
                condition=models.Q(status__in=["awaiting_confirmation", "confirmed"]),
            ),
            models.Index(fields=["group", "-id"], name="touchpoint_group", condition=models.Q(group__isnull=False)),
            models.Index(
                fields=["template"],
                name="touchpoint_queued_template",
                condition=models.Q(status__in=["scheduled", "deferred", "sending"]),
            ),
            models.Index(
                fields=["provider_message_id"],
                name="touchpoint_provider_id",
                condition=~models.Q(provider_message_id=""),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="touchpoint_idempotency_key"),
            models.CheckConstraint(
                condition=models.Q(customer__isnull=False) | models.Q(group__isnull=False),
                name="touchpoint_has_recipient",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} → {self.customer_id or self.group_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class ContactCounter(models.Model):
    """Marketing touches a customer received in one cap period (`d:2026-11-23`, `w:2026-11-23` for the week
    starting that Monday, `m:2026-11`), across all channels (`scope` "all") or on one. Dispatch reserves a slot
    here under a row lock, so two workers can never both give away the last one."""

    customer_id = models.BigIntegerField()
    scope = models.CharField(max_length=16)
    period = models.CharField(max_length=16)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer_id", "scope", "period"], name="contactcounter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.scope} {self.period}: {self.count}"


class ConsoleMessage(models.Model):
    """What the console backend "sent": readable in the UI during development and demos."""

    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.CASCADE, related_name="+", null=True)
    channel = models.CharField(_("channel"), max_length=16)
    recipient = models.CharField(_("recipient"), max_length=200)
    content = models.JSONField(_("content"), default=dict)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    created_at = models.DateTimeField(_("sent at"), default=timezone.now)

    class Meta:
        verbose_name = _("console message")
        verbose_name_plural = _("console messages")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.channel} → {self.recipient}"
