"""Pages of event subscriptions (admins and operators only; 404 for everyone else): the list, create and edit, and a
subscription's deliveries with the receiver's answers, where a delivery is replayed and a test event sent (HTMX:
the new delivery's row is prepended to the table)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from messaging import integrations
from messaging.models import Delivery, DeliveryStatus, Subscription

PAGE_SIZE = 50

KIND_LABELS = {
    "customer.created": gettext_lazy("Customer created"),
    "customer.updated": gettext_lazy("Customer updated"),
    "customer.merged": gettext_lazy("Customers merged"),
    "order.placed": gettext_lazy("Order placed"),
    "order.refunded": gettext_lazy("Order refunded"),
    "event.recorded": gettext_lazy("Behaviour recorded"),
    "tag.added": gettext_lazy("Tag added"),
    "tag.removed": gettext_lazy("Tag removed"),
    "segment.entered": gettext_lazy("Entered a segment"),
    "segment.exited": gettext_lazy("Left a segment"),
    "touchpoint.status": gettext_lazy("Message status changed"),
    "task.due": gettext_lazy("Task due"),
    "task.done": gettext_lazy("Task done"),
}


def _managers_only(request: HttpRequest) -> None:
    if not request.user.can_manage:
        raise Http404


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


class SubscriptionForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    url = forms.CharField(
        label=gettext_lazy("URL"),
        max_length=500,
        validators=[integrations.validate_url],
        help_text=gettext_lazy("Events are POSTed here as JSON."),
    )
    kinds = forms.MultipleChoiceField(
        label=gettext_lazy("Event kinds"),
        choices=[(kind, f"{KIND_LABELS[kind]} ({kind})") for kind in integrations.EVENT_KINDS],
        widget=forms.CheckboxSelectMultiple,
    )
    is_active = forms.BooleanField(label=gettext_lazy("Active"), required=False, initial=True)
    secret = forms.CharField(
        label=gettext_lazy("Signing secret"),
        required=False,
        max_length=128,
        validators=[integrations.validate_secret],
        widget=forms.PasswordInput(render_value=False),
        help_text=gettext_lazy("At least 16 characters. Leave empty to generate one (or, when editing, to keep it)."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            css = "form-check-input" if name in ("kinds", "is_active") else "form-control"
            field.widget.attrs.setdefault("class", css)


# ------------------------------------------------------------------------------------------------------ pages


@login_required
def subscription_list(request: HttpRequest) -> HttpResponse:
    _managers_only(request)
    subscriptions = Subscription.objects.annotate(
        pending=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
        failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
    )
    return render(request, "messaging/subscriptions/list.html", {"subscriptions": subscriptions})


@login_required
def subscription_create(request: HttpRequest) -> HttpResponse:
    _managers_only(request)
    form = SubscriptionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        subscription, secret = integrations.create_subscription(**form.cleaned_data)
        messages.success(request, _("Subscription “%(name)s” created.") % {"name": subscription.name})
        return _render_detail(request, subscription, new_secret=secret)
    return render(request, "messaging/subscriptions/form.html", {"form": form, "subscription": None})


@login_required
def subscription_edit(request: HttpRequest, pk: int) -> HttpResponse:
    _managers_only(request)
    subscription = get_object_or_404(Subscription, pk=pk)
    initial = {"name": subscription.name, "url": subscription.url, "kinds": subscription.kinds,
               "is_active": subscription.is_active}  # fmt: skip
    form = SubscriptionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        integrations.update_subscription(subscription, **form.cleaned_data)
        messages.success(request, _("Subscription “%(name)s” saved.") % {"name": subscription.name})
        return redirect("subscription-detail", pk=subscription.pk)
    return render(request, "messaging/subscriptions/form.html", {"form": form, "subscription": subscription})


def _deliveries(request: HttpRequest, subscription: Subscription) -> dict[str, Any]:
    """A page of the subscription's deliveries, newest first, filtered by status and kind; keyset on the id."""
    rows = Delivery.objects.filter(subscription=subscription).order_by("-id")
    status = request.GET.get("status", "")
    if status in DeliveryStatus.values:
        rows = rows.filter(status=status)
    kind = request.GET.get("kind", "")
    if kind:
        rows = rows.filter(kind=kind)
    before = request.GET.get("before", "")
    if before.isdigit():
        rows = rows.filter(pk__lt=int(before))
    page = list(rows[: PAGE_SIZE + 1])
    return {
        "deliveries": _readable(page[:PAGE_SIZE]),
        "next_before": page[PAGE_SIZE - 1].pk if len(page) > PAGE_SIZE else None,
        "status": status,
        "kind": kind,
        "statuses": DeliveryStatus.choices,
        "kinds": [*integrations.EVENT_KINDS, integrations.TEST_KIND],
    }


def _readable(deliveries: Iterable[Delivery]) -> list[Delivery]:
    """The deliveries with `payload_text`: their payload as indented JSON, as the receiver gets it."""
    shown = list(deliveries)
    for delivery in shown:
        delivery.payload_text = json.dumps(delivery.payload, ensure_ascii=False, indent=2, sort_keys=True)
    return shown


def _render_detail(request: HttpRequest, subscription: Subscription, *, new_secret: str = "") -> HttpResponse:
    context = {"subscription": subscription, "new_secret": new_secret, **_deliveries(request, subscription)}
    if _is_htmx(request) and request.method == "GET":
        return render(request, "messaging/subscriptions/_deliveries.html", context)
    return render(request, "messaging/subscriptions/detail.html", context)


@login_required
def subscription_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The subscription and its deliveries; an HTMX request (filter, next page) gets only the deliveries."""
    _managers_only(request)
    return _render_detail(request, get_object_or_404(Subscription, pk=pk))


@login_required
@require_POST
def subscription_rotate_secret(request: HttpRequest, pk: int) -> HttpResponse:
    _managers_only(request)
    subscription = get_object_or_404(Subscription, pk=pk)
    secret = integrations.rotate_secret(subscription)
    messages.success(request, _("A new signing secret was made; the old one no longer verifies."))
    return _render_detail(request, subscription, new_secret=secret)


@login_required
@require_POST
def subscription_delete(request: HttpRequest, pk: int) -> HttpResponse:
    _managers_only(request)
    subscription = get_object_or_404(Subscription, pk=pk)
    integrations.delete_subscription(subscription)
    messages.success(request, _("Subscription “%(name)s” deleted.") % {"name": subscription.name})
    return redirect("subscription-list")


def _new_row(request: HttpRequest, delivery: Delivery, *, subscription: Subscription) -> HttpResponse:
    if _is_htmx(request):
        context = {"delivery": _readable([delivery])[0], "subscription": subscription, "is_new": True}
        return render(request, "messaging/subscriptions/_delivery_row.html", context)
    return redirect("subscription-detail", pk=subscription.pk)


@login_required
@require_POST
def subscription_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a test event now; the new delivery's row shows the receiver's answer."""
    _managers_only(request)
    subscription = get_object_or_404(Subscription, pk=pk)
    return _new_row(request, integrations.send_test_event(subscription), subscription=subscription)


@login_required
@require_POST
def subscription_replay(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue a delivery's event again (a new delivery row); a refusal is shown in place of the row."""
    _managers_only(request)
    delivery = get_object_or_404(Delivery.objects.select_related("subscription"), pk=pk)
    try:
        replay = integrations.replay_delivery(delivery)
    except integrations.DeliveryError as exc:
        if _is_htmx(request):
            # HTMX swaps only 2xx answers: the refusal goes to the page's alert area instead of the table.
            response = render(request, "messaging/subscriptions/_replay_refused.html", {"error": exc.message})
            response["HX-Retarget"] = "#delivery-alert"
            response["HX-Reswap"] = "innerHTML"
            return response
        messages.error(request, exc.message)
        return redirect("subscription-detail", pk=delivery.subscription_id)
    return _new_row(request, replay, subscription=delivery.subscription)
