from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Subscription(models.Model):
    """An integration's URL for domain events (customer.created, tag.added, touchpoint.status, …); deliveries are
    signed with `secret` (HMAC-SHA256 over timestamp and body)."""

    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(_("URL"), max_length=500)
    secret = models.CharField(_("signing secret"), max_length=128)
    kinds = models.JSONField(_("event kinds"), default=list)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("event subscription")
        verbose_name_plural = _("event subscriptions")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", pgettext_lazy("delivery status", "Failed")


class Delivery(models.Model):
    """One event sent to one subscription; `event_key` is unique per subscription, so an event is queued once."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    event_key = models.CharField(max_length=64)
    kind = models.CharField(_("kind"), max_length=40)
    payload = models.JSONField(_("payload"), default=dict)
    status = models.CharField(
        _("status"), max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    response_body = models.TextField(_("response"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("event delivery")
        verbose_name_plural = _("event deliveries")
        constraints = [models.UniqueConstraint(fields=["subscription", "event_key"], name="delivery_unique")]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="delivery_pending", condition=models.Q(status="pending")),
            models.Index(fields=["subscription", "-id"], name="delivery_subscription"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.subscription_id} ({self.status})"


class WeComCallbackReceipt(models.Model):
    """A WeCom callback already accepted: its signature is unique, so a replayed message is refused."""

    msg_signature = models.CharField(max_length=64, unique=True)
    timestamp = models.BigIntegerField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.msg_signature


class WeComReminder(models.Model):
    """One nudge sent to a staff member about a mass send waiting for their confirmation; WeCom allows at most
    three a day per staff member."""

    staff = models.ForeignKey("customers.Staff", on_delete=models.CASCADE, related_name="+")
    msgid = models.CharField(max_length=128)
    reminded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["staff", "-reminded_at"], name="wecomreminder_staff")]

    def __str__(self) -> str:
        return f"{self.staff_id} {self.msgid}"
