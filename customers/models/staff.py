from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.querysets import CustomerOwnedQuerySet


class Staff(models.Model):
    """A staff member (导购/销售/客服) with a WeCom account and a book of customers."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="staff",
        verbose_name=_("login"),
    )
    name = models.CharField(_("name"), max_length=100)
    wecom_userid = models.CharField(_("WeCom userid"), max_length=64, unique=True, null=True, blank=True)
    department = models.CharField(_("department"), max_length=100, blank=True)
    is_active = models.BooleanField(_("active"), default=True, help_text=_("Unset when the person has left."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("staff member")
        verbose_name_plural = _("staff")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AddWay(models.IntegerChoices):
    """WeCom's `add_way` codes for how a contact was added."""

    UNKNOWN = 0, _("Unknown")
    QR_CODE = 1, _("Scanned QR code")
    PHONE_SEARCH = 2, _("Searched phone number")
    CARD_SHARE = 3, _("Shared business card")
    GROUP_CHAT = 4, _("From a group chat")
    ADDRESS_BOOK = 5, _("Phone address book")
    WECHAT_CONTACT = 6, _("WeChat contacts")
    FRIEND_REQUEST = 8, _("Friend request")
    THIRD_PARTY = 201, _("Shared by a colleague")
    ADMIN_ASSIGNED = 202, _("Assigned by administrator")


class RelationshipStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    DELETED_BY_CUSTOMER = "deleted_by_customer", _("Deleted by customer")
    DELETED_BY_STAFF = "deleted_by_staff", _("Deleted by staff")
    TRANSFERRED = "transferred", _("Transferred")


class Relationship(models.Model):
    """The (staff, customer) pair, WeCom's real unit: add time, way, channel `state`, remark and status."""

    staff = models.ForeignKey(Staff, on_delete=models.CASCADE, related_name="relationships")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="relationships")
    added_at = models.DateTimeField(_("added at"), default=timezone.now)
    add_way = models.IntegerField(_("add way"), choices=AddWay.choices, default=AddWay.UNKNOWN)
    state = models.CharField(
        _("channel state"), max_length=30, blank=True, help_text=_("The live code's state that attributes the add.")
    )
    remark = models.CharField(_("remark"), max_length=100, blank=True)
    status = models.CharField(
        _("status"), max_length=24, choices=RelationshipStatus.choices, default=RelationshipStatus.ACTIVE
    )
    status_changed_at = models.DateTimeField(_("status changed at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("staff relationship")
        verbose_name_plural = _("staff relationships")
        constraints = [models.UniqueConstraint(fields=["staff", "customer"], name="relationship_unique")]

    def __str__(self) -> str:
        return f"{self.staff_id}↔{self.customer_id}"


class TransferKind(models.TextChoices):
    ON_JOB = "on_job", _("On-the-job transfer")
    DEPARTED = "departed", _("Departed staff")
    ASSIGNED = "assigned", _("First assignment")


class Transfer(models.Model):
    """A change of a customer's owner; kept forever."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="transfers", db_index=False
    )
    from_staff = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, related_name="+")
    to_staff = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, related_name="+")
    kind = models.CharField(_("kind"), max_length=16, choices=TransferKind.choices)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    transferred_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    transferred_at = models.DateTimeField(_("transferred at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("transfer")
        verbose_name_plural = _("transfers")
        ordering = ["-transferred_at"]
        indexes = [models.Index(fields=["customer", "-transferred_at"], name="transfer_customer")]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_staff_id} → {self.to_staff_id}"
