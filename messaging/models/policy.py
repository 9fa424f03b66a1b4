import datetime

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from customers.models import MessageChannel


class ContactPolicy(models.Model):
    """The workspace's contact policy (one row): quiet hours and WeCom's monthly receipt budget. Frequency caps
    and rate limits are rows of their own."""

    quiet_hours_enabled = models.BooleanField(_("quiet hours on"), default=True)
    quiet_start = models.TimeField(_("quiet hours start"), default=datetime.time(21, 0))
    quiet_end = models.TimeField(
        _("quiet hours end"),
        default=datetime.time(8, 0),
        help_text=_("May be earlier than the start: crosses midnight."),
    )
    wecom_monthly_receipts = models.PositiveSmallIntegerField(
        _("WeCom mass messages a customer receives a month"),
        null=True,
        blank=True,
        help_text=_("Empty means WeCom's default: as many as the month has days."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("contact policy")
        verbose_name_plural = _("contact policy")

    def __str__(self) -> str:
        return str(_("Contact policy"))

    @classmethod
    def current(cls) -> "ContactPolicy":
        policy, _created = cls.objects.get_or_create(pk=1)
        return policy


class CapPeriod(models.TextChoices):
    DAY = "day", _("Calendar day")
    WEEK = "week", _("Calendar week")
    MONTH = "month", _("Calendar month")


class FrequencyCap(models.Model):
    """At most `limit` marketing touches per customer per calendar `period` (in the customer's time zone), on one
    channel or (blank) across all of them, whichever journey or campaign sends."""

    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices, blank=True)
    period = models.CharField(_("period"), max_length=8, choices=CapPeriod.choices, default=CapPeriod.DAY)
    limit = models.PositiveSmallIntegerField(_("at most"), validators=[MinValueValidator(1)])
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("frequency cap")
        verbose_name_plural = _("frequency caps")
        constraints = [models.UniqueConstraint(fields=["channel", "period"], name="frequencycap_unique")]

    def __str__(self) -> str:
        return f"{self.channel or 'all'} {self.limit}/{self.period}"


class RateLimit(models.Model):
    """At most `per_minute` messages a minute on a channel, per sending account (or, blank, for the channel as a
    whole). Messages over the limit wait for the next minute; none is dropped."""

    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices)
    sender = models.CharField(
        _("sender"), max_length=64, blank=True, help_text=_("Blank: the whole channel; otherwise one sender's own.")
    )
    per_minute = models.PositiveIntegerField(_("per minute"), validators=[MinValueValidator(1)])

    class Meta:
        verbose_name = _("rate limit")
        verbose_name_plural = _("rate limits")
        constraints = [models.UniqueConstraint(fields=["channel", "sender"], name="ratelimit_unique")]

    def __str__(self) -> str:
        return f"{self.channel} {self.sender or '*'} {self.per_minute}/min"
