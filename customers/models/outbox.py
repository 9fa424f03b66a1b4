from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class DomainEventKind(models.TextChoices):
    CUSTOMER_CREATED = "customer.created", _("Customer created")
    CUSTOMER_UPDATED = "customer.updated", _("Customer updated")
    CUSTOMER_MERGED = "customer.merged", _("Customers merged")
    ORDER_PLACED = "order.placed", _("Order placed")
    ORDER_UPDATED = "order.updated", _("Order updated")
    ORDER_REFUNDED = "order.refunded", _("Order refunded")
    EVENT_RECORDED = "event.recorded", _("Behaviour recorded")
    TAG_ADDED = "tag.added", _("Tag added")
    TAG_REMOVED = "tag.removed", _("Tag removed")


class DomainEvent(models.Model):
    """A change that matters, written in the same transaction as the change (the outbox).

    Consumers registered by the apps read pending events in id order per customer shard, after commit; a
    periodic sweep catches anything a lost task missed. `processed_at` is set once every consumer handled it.
    `kind` is open-ended: later apps add their own (segment.entered …).
    """

    kind = models.CharField(_("kind"), max_length=40)
    customer_id = models.BigIntegerField(_("customer"), db_index=False)  # no FK: the outbox must never block a write
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    retry_at = models.DateTimeField(_("retry at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("domain event")
        verbose_name_plural = _("domain events")
        # No index by customer: nothing reads a customer's events, and every writer of an outbox row would keep
        # one (a quarter of an event's index writes).
        indexes = [
            # The consumers' queue: only pending rows, so it stays tiny whatever the history.
            models.Index(fields=["id"], name="domainevent_pending", condition=models.Q(processed_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.customer_id}"
