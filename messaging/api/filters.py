"""Filters of touchpoints, shared by the API's list and the outbox page (one meaning for each parameter)."""

from __future__ import annotations

import datetime

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.models import MessageChannel
from messaging.models import Touchpoint, TouchpointSource, TouchpointStatus


def _local_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=timezone.get_current_timezone())


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class TouchpointFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=TouchpointStatus.choices, label=_("Status"), help_text=_("Repeat for several.")
    )
    reason = django_filters.CharFilter(label=_("Reason"))
    channel = django_filters.ChoiceFilter(choices=MessageChannel.choices, label=_("Channel"))
    source = django_filters.ChoiceFilter(choices=TouchpointSource.choices, label=_("Source"))
    source_ref = django_filters.CharFilter(label=_("Source reference"))
    customer = IdFilter(field_name="customer_id", label=_("Customer id"))
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label=_("Created since"), help_text=_("An ISO 8601 time.")
    )
    date_from = django_filters.DateFilter(
        method="filter_date_from", label=_("Created from"), help_text=_("A day in the workspace's time zone.")
    )
    date_to = django_filters.DateFilter(
        method="filter_date_to", label=_("Created until"), help_text=_("A day in the workspace's time zone.")
    )

    class Meta:
        model = Touchpoint
        fields = ["status", "reason", "channel", "source", "source_ref", "customer", "since", "date_from", "date_to"]

    def filter_date_from(self, queryset: QuerySet[Touchpoint], name: str, value: datetime.date) -> QuerySet:
        return queryset.filter(created_at__gte=_local_midnight(value))

    def filter_date_to(self, queryset: QuerySet[Touchpoint], name: str, value: datetime.date) -> QuerySet:
        return queryset.filter(created_at__lt=_local_midnight(value + datetime.timedelta(days=1)))
