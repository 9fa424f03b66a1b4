"""The journey list (with each journey's enrollment counts, one query for the page), a new blank journey, and new
journeys from the SOP templates. Operators only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from journeys import definition as definitions
from journeys import sop_templates
from journeys.forms import NewJourneyForm
from journeys.models import EnrollmentState, Journey, JourneyStatus
from journeys.views.builder import STATUS_COLOURS, is_htmx, require_manager

LIST_SIZE = 200


@login_required
def journey_list(request):
    """Every journey but the archived ones (unless asked for), by priority, with its counts."""
    require_manager(request)
    status = request.GET.get("status", "")
    journeys = Journey.objects.select_related("current_version").annotate(
        enrolled=Count("enrollments"),
        active=Count("enrollments", filter=Q(enrollments__state=EnrollmentState.ACTIVE)),
        completed=Count("enrollments", filter=Q(enrollments__state=EnrollmentState.COMPLETED)),
        converted=Count("enrollments", filter=Q(enrollments__converted_at__isnull=False)),
    )
    if status in JourneyStatus.values:
        journeys = journeys.filter(status=status)
    else:
        status = ""
        journeys = journeys.exclude(status=JourneyStatus.ARCHIVED)
    rows = list(journeys[:LIST_SIZE])
    for journey in rows:
        shown = journey.current_version.definition if journey.current_version else (journey.draft or {})
        journey.trigger_text = definitions.describe_trigger(shown.get("trigger") or {})
        journey.status_colour = STATUS_COLOURS.get(journey.status, "secondary")
    context = {
        "journeys": rows,
        "statuses": JourneyStatus.choices,
        "status": status,
        "new_form": NewJourneyForm(),
        "sop_templates": sop_templates.TEMPLATES if request.GET.get("templates") else None,
    }
    return render(request, "journeys/list.html", context)


@login_required
@require_POST
def create_journey(request):
    """A blank draft journey owned by the operator, opened in the builder."""
    require_manager(request)
    form = NewJourneyForm(request.POST)
    name = (form.cleaned_data["name"] if form.is_valid() else "") or _("New journey")
    journey = Journey.objects.create(name=name, owner=request.user, draft=definitions.empty())
    return redirect("journeys:builder", pk=journey.pk)


@login_required
def template_list(request):
    """The SOP templates to start a journey from: a panel on the list page (HTMX) or the list page with it open."""
    require_manager(request)
    if is_htmx(request):
        return render(request, "journeys/_builder_templates.html", {"sop_templates": sop_templates.TEMPLATES})
    return redirect(reverse("journeys:list") + "?templates=1")


@login_required
@require_POST
def use_template(request, code: str):
    require_manager(request)
    try:
        journey = sop_templates.create_from_template(code, by=request.user)
    except sop_templates.UnknownTemplate:
        raise Http404("No such template") from None
    messages.success(request, _("Journey created from the template: review it, then publish."))
    return redirect("journeys:builder", pk=journey.pk)
