from django.db import models
from django.utils.translation import gettext_lazy as _


class ChannelKind(models.TextChoices):
    STORE_QR = "store_qr", _("Store QR code")
    GUIDE_INVITE = "guide_invite", _("Shopping-guide invite")
    ADS = "ads", _("Advertising")
    CONTENT = "content", _("Content")
    PLATFORM = "platform", _("Platform account")
    REFERRAL = "referral", _("Referral")
    OTHER = "other", _("Other")


class Channel(models.Model):
    """Where customers come from (来源渠道). `code` is what live codes carry in their `state`."""

    code = models.SlugField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=20, choices=ChannelKind.choices, default=ChannelKind.OTHER)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    sku = models.CharField(_("SKU"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    category = models.CharField(_("category"), max_length=100, blank=True, db_index=True)
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=2, default=0)
    consumption_cycle_days = models.PositiveIntegerField(
        _("consumption cycle (days)"),
        null=True,
        blank=True,
        help_text=_("Typical days until a customer needs it again, e.g. 30 for a face mask."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"
