from django.db import models
from django.utils.translation import gettext_lazy as _

from customers.querysets import CustomerOwnedQuerySet

EVENT_TYPE_LABELS = {
    "content_view": _("Read content"),
    "page_view": _("Viewed a page"),
    "reply": _("Replied"),
    "group_message": _("Spoke in a group"),
    "group_join": _("Joined a group"),
    "share": _("Shared"),
    "cart_add": _("Added to cart"),
    "coupon_claim": _("Claimed a coupon"),
    "live_view": _("Watched a live stream"),
    "wecom_contact_added": _("Added a rep on WeCom"),
    "wecom_contact_deleted": _("Removed by the rep"),
    "wecom_deleted_by_customer": _("Deleted the rep"),
    "wecom_transfer_failed": _("Transfer to a new rep failed"),
    "group_leave": _("Left a group"),
}


class Event(models.Model):
    """One thing a customer did (the behaviour trail): viewed content, replied, joined a group, shared…

    `dedupe_key` makes re-sent events idempotent: the sender's (source, external id), or a hash of the event.
    """

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="events", db_index=False
    )  # covered by event_customer_type_time
    type = models.CharField(_("type"), max_length=64)
    occurred_at = models.DateTimeField(_("occurred at"))
    properties = models.JSONField(_("properties"), default=dict, blank=True)
    content_ref = models.CharField(_("content"), max_length=200, blank=True)
    channel = models.ForeignKey(
        "customers.Channel", on_delete=models.SET_NULL, null=True, blank=True, related_name="events", db_index=False
    )
    dedupe_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("behaviour event")
        verbose_name_plural = _("behaviour events")
        indexes = [
            models.Index(fields=["customer", "type", "occurred_at"], name="event_customer_type_time"),
            models.Index(fields=["customer", "-occurred_at"], name="event_customer_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} @ {self.occurred_at:%Y-%m-%d %H:%M}"

    @property
    def type_label(self) -> str:
        """A readable name for the well-known types; integrations' own types show as they are."""
        return str(EVENT_TYPE_LABELS.get(self.type, self.type))
