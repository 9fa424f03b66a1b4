"""Message template pages: the list, the editor with its live preview against a real customer, and deletion.

Operators and admins create, edit and delete templates. Everyone signed in may read a template and preview it
for the customers they can see (customers.selectors): for a rep another rep's customer is "not found".
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from customers import selectors
from customers.models import Customer, Staff
from messaging.forms import MessageTemplateForm, format_defaults
from messaging.models import CLAIMABLE_STATUSES, MessageTemplate, Touchpoint
from messaging.templating import (
    ALLOWED_FILTERS,
    ALLOWED_TAGS,
    CARD_FIELDS,
    RenderError,
    render_preview,
    variable_help,
)

CUSTOMER_CHOICES = 8
SAMPLE_COUPON_CODE = "COUPON-8888"
SAMPLE_LINK = "https://example.com/"


def _require_manager(request: HttpRequest) -> None:
    if not request.user.can_manage:
        raise PermissionDenied


@login_required
def template_list(request):
    templates = MessageTemplate.objects.order_by("name", "id")
    return render(
        request, "messaging/templates/list.html", {"templates": templates, "can_manage": request.user.can_manage}
    )


def _render_editor(request: HttpRequest, template: MessageTemplate | None, form: MessageTemplateForm) -> HttpResponse:
    context: dict[str, Any] = {
        "template": template,
        "form": form,
        "main_fields": [form[name] for name in ("name", "channel", "format", "language")],
        "card_fields": [form[f"card_{name}"] for name in CARD_FIELDS],
        "variables": variable_help(),
        "allowed_tags": ", ".join(ALLOWED_TAGS),
        "allowed_filters": ", ".join(ALLOWED_FILTERS),
    }
    return render(request, "messaging/templates/editor.html", context)


@login_required
def create_template(request):
    _require_manager(request)
    form = MessageTemplateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        template = form.save()
        messages.success(request, _("Template “%(name)s” created.") % {"name": template.name})
        return redirect("messaging-template-edit", pk=template.pk)
    return _render_editor(request, None, form)


@login_required
def edit_template(request, pk: int):
    """The editor for operators and admins; for everyone else the template read-only, with the preview."""
    template = get_object_or_404(MessageTemplate, pk=pk)
    if not request.user.can_manage:
        if request.method == "POST":
            raise PermissionDenied
        context = {"template": template, "defaults": format_defaults(template.defaults or {})}
        return render(request, "messaging/templates/detail.html", context)
    form = MessageTemplateForm(request.POST or None, instance=template)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Template “%(name)s” saved.") % {"name": template.name})
        return redirect("messaging-template-edit", pk=template.pk)
    return _render_editor(request, template, form)


@login_required
@require_POST
def delete_template(request, pk: int):
    """Delete a template, unless queued messages still use it: they would have nothing to render."""
    _require_manager(request)
    template = get_object_or_404(MessageTemplate, pk=pk)
    queued = Touchpoint.objects.filter(template=template, status__in=CLAIMABLE_STATUSES).count()
    if queued:
        messages.error(
            request,
            _("“%(name)s” is used by %(count)d queued messages; cancel them or wait until they are sent.")
            % {"name": template.name, "count": queued},
        )
        return redirect("messaging-template-edit", pk=template.pk)
    template.delete()
    messages.success(request, _("Template “%(name)s” deleted.") % {"name": template.name})
    return redirect("messaging-template-list")


def _preview_context(request: HttpRequest, customer: Customer | None) -> dict[str, Any]:
    """What the touchpoint would carry: the customer's latest order and event, and the sample coupon and link."""
    context: dict[str, Any] = {
        "coupon_code": request.POST.get("preview_coupon_code", "").strip() or SAMPLE_COUPON_CODE,
        "link": request.POST.get("preview_link", "").strip() or SAMPLE_LINK,
    }
    if customer is not None:
        context["order_id"] = customer.orders.order_by("-ordered_at", "-id").values_list("pk", flat=True).first()
        context["event_id"] = customer.events.order_by("-occurred_at", "-id").values_list("pk", flat=True).first()
    return context


@login_required
@require_POST
def preview_template(request):
    """The message as it would be sent to the chosen customer, or why it cannot be: the editor's form for
    managers, a stored template (`template_id`) for everyone else. The customer must be one the user sees."""
    customer_id = request.POST.get("preview_customer", "")
    customer = selectors.get_customer(request.user, customer_id) if customer_id else None
    issues: list[str] = []
    if request.user.can_manage and "template_id" not in request.POST:
        form = MessageTemplateForm(request.POST)
        form.is_valid()
        issues = [str(message) for field, errors in form.errors.items() if field != "name" for message in errors]
        template = None if issues else form.build_template()  # an unnamed draft previews all the same
    else:
        template = get_object_or_404(MessageTemplate, pk=request.POST.get("template_id") or 0)
    message, error = None, None
    if template is not None and customer is not None:
        staff = Staff.objects.filter(user=request.user).first()  # a rep previews as the sender
        try:
            message = render_preview(template, customer, context=_preview_context(request, customer), staff=staff)
        except RenderError as failure:
            error = failure
    context = {"customer": customer, "issues": issues, "message": message, "error": error}
    return render(request, "messaging/templates/_preview.html", context)


@login_required
def customer_choices(request):
    """Customers to preview with: those the user sees matching the search (name, phone, identities)."""
    term = request.GET.get("q", "").strip()
    customers = selectors.customer_list(request.user, search=term)[:CUSTOMER_CHOICES] if term else []
    return render(request, "messaging/templates/_customer_choices.html", {"customers": customers, "term": term})
