from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class AttributeType(models.TextChoices):
    TEXT = "text", _("Text")
    NUMBER = "number", _("Number")
    DATE = "date", _("Date")
    BOOLEAN = "boolean", _("Yes/no")


class CustomAttribute(models.Model):
    """A declared custom attribute (a key of Customer.attributes) with its type, so rules can compare it."""

    key = models.CharField(
        _("key"), max_length=50, unique=True,
        validators=[RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", _("Letters, digits and underscores."))],
    )  # fmt: skip
    label = models.CharField(_("label"), max_length=100)
    type = models.CharField(_("type"), max_length=10, choices=AttributeType.choices, default=AttributeType.TEXT)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("custom attribute")
        verbose_name_plural = _("custom attributes")
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.label} ({self.key})"
