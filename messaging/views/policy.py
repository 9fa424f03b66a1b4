"""The contact policy page (admins and operators): quiet hours, WeCom's monthly receipt budget, frequency caps and
rate limits. Dispatch reads them on every cycle (services/dispatch.py), so a change applies to the next claim.
Each section is its own form; a refused one comes back with the error on the field it concerns."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from customers.models import MessageChannel
from messaging.models import ContactPolicy, FrequencyCap, RateLimit

SECTIONS = ("policy", "caps", "limits")


def _bootstrap(form: forms.BaseForm) -> None:
    for field in form.fields.values():
        if isinstance(field.widget, forms.CheckboxInput):
            field.widget.attrs.setdefault("class", "form-check-input")
        else:
            css = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
            field.widget.attrs.setdefault("class", css)


class ContactPolicyForm(forms.ModelForm):
    wecom_monthly_receipts = forms.IntegerField(
        label=gettext_lazy("WeCom mass messages a customer receives a month"),
        required=False,
        min_value=1,
        max_value=31,
        help_text=gettext_lazy("Empty: WeCom's default, as many as the month has days (at most 31)."),
    )

    class Meta:
        model = ContactPolicy
        fields = ["quiet_hours_enabled", "quiet_start", "quiet_end", "wecom_monthly_receipts"]
        widgets = {
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _bootstrap(self)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("quiet_start"), cleaned.get("quiet_end")
        if cleaned.get("quiet_hours_enabled") and start is not None and start == end:
            self.add_error(
                "quiet_end", _("The quiet hours end when they start, so there would be none; turn them off instead.")
            )
        return cleaned


class FrequencyCapForm(forms.ModelForm):
    channel = forms.ChoiceField(
        label=gettext_lazy("Channel"),
        choices=[("", gettext_lazy("All channels")), *MessageChannel.choices],
        required=False,
    )

    class Meta:
        model = FrequencyCap
        fields = ["channel", "period", "limit", "is_active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _bootstrap(self)


class RateLimitForm(forms.ModelForm):
    class Meta:
        model = RateLimit
        fields = ["channel", "sender", "per_minute"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sender"].help_text = _("Empty: the whole channel; otherwise one sender's own (a WeCom userid).")
        _bootstrap(self)


class RowsFormSet(forms.BaseModelFormSet):
    """Rows of a table: one empty row adds a new one, a ticked Delete removes one."""

    def add_fields(self, form: forms.BaseForm, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].widget.attrs["class"] = "form-check-input"


FrequencyCapFormSet = forms.modelformset_factory(
    FrequencyCap, form=FrequencyCapForm, formset=RowsFormSet, extra=1, can_delete=True
)
RateLimitFormSet = forms.modelformset_factory(
    RateLimit, form=RateLimitForm, formset=RowsFormSet, extra=1, can_delete=True
)


def _forms(request: HttpRequest, section: str) -> dict[str, Any]:
    """The three sections, the one posted bound to the request."""

    def data(name: str) -> Any:
        return request.POST if section == name else None

    return {
        "policy_form": ContactPolicyForm(data("policy"), instance=ContactPolicy.current()),
        "caps": FrequencyCapFormSet(
            data("caps"), prefix="caps", queryset=FrequencyCap.objects.order_by("channel", "period")
        ),
        "limits": RateLimitFormSet(
            data("limits"), prefix="limits", queryset=RateLimit.objects.order_by("channel", "sender")
        ),
    }


@login_required
def contact_policy(request: HttpRequest) -> HttpResponse:
    if not request.user.can_manage:
        raise PermissionDenied
    section = request.POST.get("section", "") if request.method == "POST" else ""
    context = _forms(request, section)
    if section in SECTIONS:
        form = {"policy": context["policy_form"], "caps": context["caps"], "limits": context["limits"]}[section]
        if form.is_valid():
            with transaction.atomic():
                form.save()
            messages.success(request, _("Contact policy saved; dispatch applies it from its next claim."))
            return redirect(reverse("messaging-policy") + f"#{section}")
    return render(request, "messaging/policy/edit.html", context)
