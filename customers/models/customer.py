from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.querysets import CustomerOwnedQuerySet, CustomerQuerySet


class Gender(models.TextChoices):
    UNKNOWN = "unknown", _("Unknown")
    FEMALE = "female", _("Female")
    MALE = "male", _("Male")


class Customer(models.Model):
    """One person, whatever ways we know them by (see Identity)."""

    name = models.CharField(_("name"), max_length=100, blank=True)
    gender = models.CharField(_("gender"), max_length=8, choices=Gender.choices, default=Gender.UNKNOWN)
    birthday = models.DateField(_("birthday"), null=True, blank=True)
    city = models.CharField(_("city"), max_length=50, blank=True)
    occupation = models.CharField(_("occupation"), max_length=50, blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    email = models.EmailField(_("email"), blank=True)
    time_zone = models.CharField(
        _("time zone"), max_length=64, blank=True, help_text=_("Empty means the workspace time zone.")
    )
    attributes = models.JSONField(_("custom attributes"), default=dict, blank=True)
    source_channel = models.ForeignKey(
        "customers.Channel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="customers",
        verbose_name=_("source channel"),
    )
    owner = models.ForeignKey(
        "customers.Staff",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_customers",
        db_index=False,  # covered by customer_owner_book
        verbose_name=_("owner"),
    )
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("merged into"),
        help_text=_("Set when this record was merged into another; such records are hidden."),
    )
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        indexes = [
            GinIndex(fields=["attributes"], name="customer_attributes_gin", opclasses=["jsonb_path_ops"]),
            # A rep's book in page order; with `merged_into` on board, a rep's queries read their customers from
            # the index alone (where the pages are all-visible) instead of visiting each customer's row.
            models.Index(fields=["owner", "-id"], include=["merged_into"], name="customer_owner_book"),
            models.Index(fields=["phone"], name="customer_phone"),
            # Search: name contains (trigram), so a search stays an index scan at a million customers.
            GinIndex(fields=["name"], name="customer_name_trgm", opclasses=["gin_trgm_ops"]),
            models.Index(fields=["city"], name="customer_city"),
        ]

    def __str__(self) -> str:
        return self.name or f"#{self.pk}"


class IdentityKind(models.TextChoices):
    WECOM_EXTERNAL_USERID = "wecom", _("WeCom external_userid")
    UNIONID = "unionid", _("WeChat unionid")
    PHONE = "phone", _("Phone")
    EMAIL = "email", _("Email")
    SHOP = "shop", _("Shop customer id")


class Identity(models.Model):
    """A way we know a customer. (kind, namespace, value) points to one customer; namespace is the shop code."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(_("kind"), max_length=16, choices=IdentityKind.choices)
    namespace = models.CharField(_("namespace"), max_length=32, blank=True, default="")
    value = models.CharField(_("value"), max_length=128)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        indexes = [models.Index(fields=["value"], name="identity_value")]  # search by any identity
        constraints = [
            models.UniqueConstraint(fields=["kind", "namespace", "value"], name="identity_unique"),
            models.CheckConstraint(
                condition=models.Q(kind="shop") | models.Q(namespace=""), name="identity_namespace_only_for_shop"
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="shop") | ~models.Q(namespace=""), name="identity_shop_has_namespace"
            ),
        ]

    def __str__(self) -> str:
        label = f"{self.kind}:{self.namespace}" if self.namespace else self.kind
        return f"{label}={self.value}"


class MessageChannel(models.TextChoices):
    """Channels a customer can be messaged on; consent is kept per channel."""

    WECOM = "wecom", _("WeCom")
    SMS = "sms", _("SMS")
    EMAIL = "email", _("Email")
    WEBHOOK = "webhook", _("Webhook")


class ConsentStatus(models.TextChoices):
    OPTED_IN = "opted_in", _("Opted in")
    OPTED_OUT = "opted_out", _("Opted out")


class Consent(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices)
    status = models.CharField(_("status"), max_length=16, choices=ConsentStatus.choices)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        constraints = [models.UniqueConstraint(fields=["customer", "channel"], name="consent_unique")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.channel} {self.status}"


class Note(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey("customers.Staff", on_delete=models.SET_NULL, null=True, related_name="+")
    text = models.TextField(_("text"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("note")
        verbose_name_plural = _("notes")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.text[:50]


class CustomerMerge(models.Model):
    """One merge of `merged` into `survivor`, with what moved, so it can be undone exactly."""

    survivor = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_received")
    merged = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_given")
    moved = models.JSONField(default=dict, help_text="Model label → ids of the rows moved to the survivor.")
    merged_fields = models.JSONField(default=dict, help_text="Survivor fields filled from the merged customer.")
    merged_by = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, related_name="+")
    merged_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("customer merge")
        verbose_name_plural = _("customer merges")
        ordering = ["-merged_at"]

    def __str__(self) -> str:
        return f"{self.merged_id} → {self.survivor_id}"
