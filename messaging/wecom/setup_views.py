"""The WeCom setup check page and the WeCom sandbox page (operators and admins).

Setup: every step of messaging.wecom.setup with what to do, and a button that runs the callback URL round trip
(HTMX: only the result is re-rendered). Sandbox: actions that play the platform (messaging.wecom.sandbox) and
the flow they cause; the flow panel is re-rendered alone for HTMX, so the page can follow the welcome and the
mass sends as they move. The sandbox answers 404 unless settings.WECOM_SANDBOX is on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from customers.models import Channel, MessageChannel
from messaging import selectors
from messaging.backends import channel_config
from messaging.wecom import mass_send, sandbox, setup

RECENT_TOUCHPOINTS = 15


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _require_manager(request: HttpRequest) -> None:
    if not request.user.can_manage:
        raise PermissionDenied


def _request_base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


# ---------------------------------------------------------------------------------------------------- setup


@login_required
def setup_check(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    return render(request, "messaging/wecom/setup.html", _setup_context(request))


def _setup_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    report = setup.run_setup_check(request_base=_request_base(request))
    return {"report": report, "is_sandbox": sandbox.is_enabled(), **extra}


@login_required
@require_POST
def setup_round_trip(request: HttpRequest) -> HttpResponse:
    """The callback URL round trip; the result fragment (HTMX) or the whole page with it."""
    _require_manager(request)
    url = setup.callback_url(request_base=_request_base(request))
    step = setup.verify_callback_url(url, config=channel_config(MessageChannel.WECOM))
    if is_htmx(request):
        return render(request, "messaging/wecom/setup_round_trip.html", {"step": step})
    return render(request, "messaging/wecom/setup.html", _setup_context(request, round_trip=step))


# -------------------------------------------------------------------------------------------------- sandbox


def _require_sandbox(request: HttpRequest) -> None:
    if not sandbox.is_enabled():
        raise Http404("The WeCom sandbox is off")
    _require_manager(request)


class ContactAddedForm(forms.Form):
    userid = forms.CharField(label=gettext_lazy("Staff member (WeCom userid)"), max_length=64)
    name = forms.CharField(label=gettext_lazy("Contact's name"), max_length=64, required=False)
    state = forms.CharField(label=gettext_lazy("Live code state"), max_length=30, required=False)


class ContactForm(forms.Form):
    userid = forms.CharField(max_length=64)
    external_userid = forms.CharField(max_length=128)


class GroupJoinForm(forms.Form):
    chat_id = forms.CharField(label=gettext_lazy("Group chat_id"), max_length=64)
    owner = forms.CharField(label=gettext_lazy("Group owner (WeCom userid)"), max_length=64)
    external_userid = forms.CharField(max_length=128)


class MassSendForm(forms.Form):
    customers = forms.TypedMultipleChoiceField(label=gettext_lazy("Customers"), coerce=int, choices=())
    text = forms.CharField(label=gettext_lazy("Message"), max_length=1000)
    is_transactional = forms.BooleanField(
        label=gettext_lazy("Transactional (not held back by quiet hours or caps)"), required=False
    )

    def __init__(self, *args: Any, contacts: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = {c["customer_id"]: c["customer__name"] or c["external_userid"] for c in contacts}
        self.fields["customers"].choices = list(choices.items())


class ConfirmForm(forms.Form):
    msgid = forms.CharField(max_length=128)


def _flow_context(request: HttpRequest) -> dict[str, Any]:
    touchpoints = (
        selectors.touchpoints_for(request.user)
        .filter(channel=MessageChannel.WECOM)
        .select_related("customer", "sender_staff")
        .order_by("-created_at", "-pk")[:RECENT_TOUCHPOINTS]
    )
    return {
        "touchpoints": list(touchpoints),
        "pending": list(mass_send.pending_mass_sends(request.user)[:20]),
        "fake": sandbox.fake_state(),
    }


@login_required
def sandbox_page(request: HttpRequest) -> HttpResponse:
    _require_sandbox(request)
    context = _flow_context(request)
    if is_htmx(request):
        return render(request, "messaging/wecom/sandbox_flow.html", context)
    contacts = sandbox.recent_contacts()
    context.update(
        contacts=contacts,
        active_contacts=[c for c in contacts if c["status"] == "active"],
        userids=sandbox.staff_userids(),
        channels=list(Channel.objects.order_by("code").values_list("code", "name")),
        fake_url=sandbox.fake_url(),
        site_url=sandbox.site_url(),
    )
    return render(request, "messaging/wecom/sandbox.html", context)


def _contact_added(request: HttpRequest) -> sandbox.SandboxOutcome | None:
    form = ContactAddedForm(request.POST)
    if not form.is_valid():
        return None
    return sandbox.simulate_contact_added(**form.cleaned_data)


def _customer_deleted_staff(request: HttpRequest) -> sandbox.SandboxOutcome | None:
    form = ContactForm(request.POST)
    return sandbox.simulate_customer_deleted_staff(**form.cleaned_data) if form.is_valid() else None


def _group_joined(request: HttpRequest) -> sandbox.SandboxOutcome | None:
    form = GroupJoinForm(request.POST)
    return sandbox.simulate_group_join(**form.cleaned_data) if form.is_valid() else None


def _mass_send(request: HttpRequest) -> sandbox.SandboxOutcome | None:
    form = MassSendForm(request.POST, contacts=sandbox.recent_contacts())
    if not form.is_valid():
        return None
    touchpoints = sandbox.queue_mass_send(
        customer_ids=form.cleaned_data["customers"],
        text=form.cleaned_data["text"],
        is_transactional=form.cleaned_data["is_transactional"],
        created_by=request.user,
    )
    message = _("%(count)d WeCom messages queued; the worker hands them to WeCom as a mass send.") % {
        "count": len(touchpoints)
    }
    return sandbox.SandboxOutcome("mass_send_queued", message, {"touchpoints": [t.pk for t in touchpoints]})


def _confirm(request: HttpRequest) -> sandbox.SandboxOutcome | None:
    form = ConfirmForm(request.POST)
    if not form.is_valid():
        return None
    if not mass_send.pending_mass_sends(request.user).filter(provider_message_id=form.cleaned_data["msgid"]).exists():
        raise Http404("No such mass send waiting for confirmation")
    return sandbox.confirm_mass_send(msgid=form.cleaned_data["msgid"])


def _poll(request: HttpRequest) -> sandbox.SandboxOutcome | None:
    return sandbox.poll_now()


ACTIONS: dict[str, Callable[[HttpRequest], sandbox.SandboxOutcome | None]] = {
    "contact-added": _contact_added,
    "customer-deleted-staff": _customer_deleted_staff,
    "group-joined": _group_joined,
    "mass-send": _mass_send,
    "confirm": _confirm,
    "poll": _poll,
}


@login_required
@require_POST
def sandbox_action(request: HttpRequest, action: str) -> HttpResponse:
    """Run one sandbox action and go back to the page with what it did (or why it could not)."""
    _require_sandbox(request)
    handler = ACTIONS.get(action)
    if handler is None:
        raise Http404("No such sandbox action")
    try:
        outcome = handler(request)
    except sandbox.SandboxError as error:
        messages.error(request, str(error))
    else:
        if outcome is None:
            messages.error(request, _("Fill in the form: some values are missing or too long."))
        else:
            messages.success(request, outcome.message)
    return redirect("wecom-sandbox")
