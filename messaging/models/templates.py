from django.db import models
from django.utils.translation import gettext_lazy as _

from customers.models import MessageChannel


class TemplateFormat(models.TextChoices):
    TEXT = "text", _("Text")
    IMAGE = "image", _("Image")
    LINK = "link", _("Link card")
    MINIPROGRAM = "miniprogram", _("Mini-program card")


class MessageTemplate(models.Model):
    """A message in the sandboxed template language: `body` and the card's fields may use `{{ customer.name }}`
    and the other whitelisted variables; `defaults` gives the value of a variable that is missing."""

    name = models.CharField(_("name"), max_length=100)
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices)
    format = models.CharField(_("format"), max_length=16, choices=TemplateFormat.choices, default=TemplateFormat.TEXT)
    language = models.CharField(_("language"), max_length=10, default="zh-hans")
    subject = models.CharField(_("subject"), max_length=200, blank=True, help_text=_("Email only."))
    body = models.TextField(_("text"), blank=True)
    card = models.JSONField(
        _("card"),
        default=dict,
        blank=True,
        help_text=_("title, description, url, image_url; appid and page for mini-program cards."),
    )
    defaults = models.JSONField(_("defaults for missing variables"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ChannelConfig(models.Model):
    """Credentials and options of a channel entered in the UI; `secrets` is encrypted with a key derived from
    SECRET_KEY (messaging.secrets). Values set in the environment take precedence and are never stored."""

    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices, unique=True)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    options = models.JSONField(_("options"), default=dict, blank=True)
    secrets = models.TextField(_("encrypted secrets"), blank=True, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("channel configuration")
        verbose_name_plural = _("channel configurations")

    def __str__(self) -> str:
        return self.get_channel_display()
