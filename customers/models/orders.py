from django.db import models
from django.utils.translation import gettext_lazy as _

from customers.querysets import CustomerOwnedQuerySet, OrderLineQuerySet


class OrderStatus(models.TextChoices):
    PENDING = "pending", _("Pending payment")
    PAID = "paid", _("Paid")
    SHIPPED = "shipped", _("Shipped")
    COMPLETED = "completed", _("Completed")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")
    CANCELLED = "cancelled", _("Cancelled")


class Order(models.Model):
    """An order from any shop. (source, external_id) is unique, so re-sending an order updates it."""

    source = models.CharField(_("source"), max_length=32, help_text=_("Shop or system code, e.g. youzan, pos."))
    external_id = models.CharField(_("external id"), max_length=64)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="orders", db_index=False
    )  # covered by order_customer_purchases
    status = models.CharField(_("status"), max_length=20, choices=OrderStatus.choices, default=OrderStatus.PAID)
    ordered_at = models.DateTimeField(_("ordered at"))
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    refunded_amount = models.DecimalField(_("refunded amount"), max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    # Indexed only where set (order_channel, order_staff): most orders carry neither, and every index an insert
    # skips is a tenth less time per order ingested.
    channel = models.ForeignKey(
        "customers.Channel", on_delete=models.SET_NULL, null=True, blank=True, related_name="orders", db_index=False
    )
    staff = models.ForeignKey(
        "customers.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="attributed_orders",
        db_index=False,
    )  # fmt: skip
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="order_source_external_id"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="order_amount_non_negative"),
            models.CheckConstraint(
                condition=models.Q(refunded_amount__gte=0) & models.Q(refunded_amount__lte=models.F("amount")),
                name="order_refund_within_amount",
            ),
        ]
        indexes = [
            # A customer's orders in time order, with what her aggregates read (status, amounts): the engine's
            # order predicates for a few customers and an incremental RFM run read the index alone, not one heap
            # page per order.
            models.Index(
                fields=["customer", "ordered_at"],
                include=["status", "amount", "refunded_amount"],
                name="order_customer_purchases",
            ),
            models.Index(fields=["ordered_at"], name="order_time"),  # daily series, windows over everyone
            models.Index(fields=["channel"], name="order_channel", condition=models.Q(channel__isnull=False)),
            models.Index(fields=["staff"], name="order_staff", condition=models.Q(staff__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"

    @property
    def net_amount(self):
        return self.amount - self.refunded_amount


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(
        "customers.Product", on_delete=models.SET_NULL, null=True, blank=True, related_name="order_lines"
    )
    sku = models.CharField(_("SKU"), max_length=64, blank=True)
    name = models.CharField(_("name"), max_length=200, blank=True)
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2, default=0)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2, default=0)

    objects = OrderLineQuerySet.as_manager()

    class Meta:
        verbose_name = _("order line")
        verbose_name_plural = _("order lines")

    def __str__(self) -> str:
        return f"{self.sku} x {self.quantity}"
