"""REST API for journeys (SOPs) and reps' tasks.

Journeys are the workspace's: everyone signed in reads them, admins and operators change them (drafts, publishing
with an optional migration, pause, resume, stop, archive, dry runs, manual enrollment). Their enrollments and the
tasks are limited to the customers the user may see (journeys.selectors): a rep sees only her own customers', and
the tasks assigned to her, which she completes. Writes go through journeys.services. A definition that does not
validate is a 400 with code `invalid_definition` and every problem under `errors` ({path, message})."""

from __future__ import annotations

import django_filters
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from customers.models import Customer
from journeys import selectors
from journeys.api import serializers as s
from journeys.models import Enrollment, EnrollmentState, Journey, JourneyStatus, RefusalReason, Task, TaskStatus
from journeys.services import lifecycle
from journeys.services.dryrun import dry_run
from journeys.services.enrollment import enroll_manually
from journeys.services.tasks import complete_task
from journeys.sop_templates import UnknownTemplate, create_from_template
from journeys.steps import DefinitionError
from tags.api.views import CONFLICT, Conflict

INVALID_DEFINITION = OpenApiResponse(
    s.DefinitionErrorOutput, description="The definition does not validate; `errors` say where."
)
JOURNEY_SETTINGS = ("name", "description", "priority", "cap_action", "cap_expiry_hours", "lateness_limit_hours")
ENROLLMENT_COLUMNS = (
    "id", "customer", "customer__name", "rotation", "state", "step", "step_entered_at", "next_run_at", "trigger",
    "entered_at", "ended_at", "exit_reason", "converted_at", "conversion_amount",
)  # fmt: skip


def invalid_definition(exc: DefinitionError) -> Response:
    """A DefinitionError as a 400 listing every problem with its path (returned, not raised: the exception handler
    keeps only `detail` and `code` of raised errors)."""
    body = {"detail": _("The journey definition is not valid."), "code": "invalid_definition",
            "errors": exc.as_list()}  # fmt: skip
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


class JourneyFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JourneyStatus.choices, help_text=_("Repeat for several."))
    template_code = django_filters.CharFilter()

    class Meta:
        model = Journey
        fields = ["status", "template_code"]


class EnrollmentFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=EnrollmentState.choices, help_text=_("Repeat for several."))
    step = django_filters.CharFilter(help_text=_("The step id she is at (or ended at)."))
    customer = django_filters.NumberFilter(field_name="customer_id")

    class Meta:
        model = Enrollment
        fields = ["state", "step", "customer"]


class TaskFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=TaskStatus.choices, help_text=_("Repeat for several."))
    assignee = django_filters.NumberFilter(field_name="assignee_id", help_text=_("A staff member's id."))
    customer = django_filters.NumberFilter(field_name="customer_id")
    journey = django_filters.NumberFilter(field_name="journey_id")

    class Meta:
        model = Task
        fields = ["status", "assignee", "customer", "journey"]


# --------------------------------------------------------------------------------------------------- journeys


def _journeys() -> QuerySet[Journey]:
    return Journey.objects.select_related("current_version")


@extend_schema_view(
    list=extend_schema(summary="Journeys, newest first (cursor-paginated).", responses=s.JourneyOutput(many=True)),
    retrieve=extend_schema(summary="One journey with its draft and published definition.",
                           responses=s.JourneyDetailOutput),
)  # fmt: skip
class JourneyViewSet(viewsets.ModelViewSet):
    """SOP journeys. Everyone reads them; admins and operators change them."""

    write_requires_manage = True
    filterset_class = JourneyFilter
    search_fields = ["name"]
    lookup_value_regex = r"\d+"
    serializer_class = s.JourneyOutput

    def get_queryset(self) -> QuerySet:
        if self.action == "enrollments":  # what its filters and the schema describe
            return selectors.enrollments_for(self.request.user)
        return _journeys()

    def get_serializer_class(self):
        return s.JourneyOutput if self.action == "list" else s.JourneyDetailOutput

    def get_object(self) -> Journey:
        # Not through the list's filters: `?status=` on a journey's own URLs must not hide it.
        journey = _journeys().filter(pk=self.kwargs["pk"]).first()
        if journey is None:
            raise Http404("Journey not found")
        return journey

    def _output(self, journey: Journey, *, code: int = status.HTTP_200_OK) -> Response:
        return Response(s.JourneyDetailOutput(_journeys().get(pk=journey.pk)).data, status=code)

    @extend_schema(request=s.JourneyCreateInput, responses={201: s.JourneyDetailOutput})
    def create(self, request: Request, *args, **kwargs) -> Response:
        """Create a draft journey from a `draft` definition (saved as it is) or from a built-in SOP `template`
        (welcome, first_order, repurchase, birthday, dormant, winback, group_weekly, new_group_rhythm)."""
        data = s.JourneyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        options = {key: given[key] for key in JOURNEY_SETTINGS if key in given}
        with transaction.atomic():
            if code := given.get("template"):
                try:
                    journey = create_from_template(code, by=request.user)
                except UnknownTemplate:
                    raise ValidationError({"template": [_("No SOP template %(code)s.") % {"code": code}]}) from None
                for key, value in options.items():
                    setattr(journey, key, value)
                journey.save()
            else:
                journey = Journey.objects.create(owner=request.user, draft=given.get("draft") or {}, **options)
        return self._output(journey, code=status.HTTP_201_CREATED)

    @extend_schema(request=s.JourneyInput, responses={200: s.JourneyDetailOutput, 409: CONFLICT})
    def update(self, request: Request, *args, **kwargs) -> Response:
        """Change a journey's settings and its draft (saved as it is, checked when published: the published
        version is not affected). An archived journey is not edited."""
        journey = self.get_object()
        if journey.status == JourneyStatus.ARCHIVED:
            raise Conflict(_("An archived journey is not edited."), code="archived")
        data = s.JourneyInput(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        given = data.validated_data
        with transaction.atomic():
            changed = [key for key in JOURNEY_SETTINGS if key in given]
            for key in changed:
                setattr(journey, key, given[key])
            if changed:
                journey.save(update_fields=[*changed, "updated_at"])
            if "draft" in given:
                lifecycle.save_draft(journey, given["draft"])
        return self._output(journey)

    @extend_schema(request=s.JourneyInput, responses={200: s.JourneyDetailOutput, 409: CONFLICT})
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(responses={204: None, 409: CONFLICT})
    def destroy(self, request: Request, *args, **kwargs) -> Response:
        """Delete a draft never published; a journey that ran is stopped and archived instead (its history
        stays)."""
        journey = self.get_object()
        if journey.status != JourneyStatus.DRAFT or journey.versions.exists():
            raise Conflict(_("Only a draft never published can be deleted; stop and archive it."), code="not_draft")
        journey.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.PublishInput, responses={200: s.JourneyDetailOutput, 400: INVALID_DEFINITION,
                                                      409: CONFLICT})  # fmt: skip
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        """Publish the draft as the next version; the journey becomes active. Customers in flight stay on their
        version unless `migration` maps their steps to the new one (`restart_waits`, and `unmapped`: "refuse"
        or "finish_on_old" for customers at a step the new version removes)."""
        journey = self.get_object()
        data = s.PublishInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            lifecycle.publish(journey, by=request.user, migration=data.validated_data.get("migration"))
        except DefinitionError as exc:
            return invalid_definition(exc)
        except lifecycle.JourneyError as exc:
            raise Conflict(str(exc), code=exc.code) from exc
        return self._output(journey)

    def _transition(self, run, journey: Journey) -> Response:
        try:
            run(journey)
        except lifecycle.JourneyError as exc:
            raise Conflict(str(exc), code=exc.code) from exc
        return self._output(journey)

    @extend_schema(request=None, responses={200: s.JourneyDetailOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Nothing of a paused journey goes out; its queued messages are held. 409 `not_active` otherwise."""
        return self._transition(lifecycle.pause, self.get_object())

    @extend_schema(request=None, responses={200: s.JourneyDetailOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Back to active; held messages overdue beyond the lateness limit expire. 409 `not_paused` otherwise."""
        return self._transition(lifecycle.resume, self.get_object())

    @extend_schema(request=None, responses={200: s.JourneyDetailOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        """Stop for good: customers in flight exit ("journey stopped") and its queued messages are cancelled,
        except those already handed to a channel. 409 `stopped` if it already is."""
        return self._transition(lifecycle.stop, self.get_object())

    @extend_schema(request=None, responses={200: s.JourneyDetailOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str | None = None) -> Response:
        """Archive a draft or a stopped journey. 409 `not_stopped` otherwise."""
        return self._transition(lifecycle.archive, self.get_object())

    @extend_schema(request=s.DryRunInput, responses={200: s.DryRunOutput, 400: INVALID_DEFINITION})
    @action(detail=True, methods=["post"], url_path="dry-run", url_name="dry-run")
    def dry_run(self, request: Request, pk: str | None = None) -> Response:
        """What the draft would do if published now, writing and sending nothing: who would enter, how many
        would reach each step, and for a sample each step with when it would run and a note."""
        journey = self.get_object()
        data = s.DryRunInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = dry_run(journey, sample_size=data.validated_data["sample_size"])
        except DefinitionError as exc:
            return invalid_definition(exc)
        return Response(s.DryRunOutput(result).data)

    @extend_schema(request=s.EnrollInput, responses={200: s.EnrollOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def enroll(self, request: Request, pk: str | None = None) -> Response:
        """Put customers into an active journey by hand, with the same checks as a trigger (entry filter,
        opt-outs, re-entry policy): the answer lists who was enrolled and who was refused, with why."""
        journey = self.get_object()
        data = s.EnrollInput(data=request.data)
        data.is_valid(raise_exception=True)
        if journey.status != JourneyStatus.ACTIVE:
            raise Conflict(_("Only an active journey takes customers."), code="not_active")
        wanted = sorted(set(data.validated_data["customers"]))
        visible = set(Customer.objects.visible_to(request.user).filter(pk__in=wanted).values_list("pk", flat=True))
        if missing := [pk for pk in wanted if pk not in visible]:
            raise ValidationError({"customers": [_("Customers not found: %(ids)s") % {"ids": missing[:20]}]})
        with transaction.atomic():
            result = enroll_manually(journey, wanted, by=request.user)
        labels = dict(RefusalReason.choices)
        body = {
            "enrolled": [{"customer": c, "enrollment": e} for c, e in sorted(result.enrolled.items())],
            "refused": [{"customer": c, "reason": r, "reason_label": str(labels.get(r, r))}
                        for c, r in sorted(result.refused.items())],
        }  # fmt: skip
        return Response(s.EnrollOutput(body).data)

    @extend_schema(responses=s.EnrollmentOutput(many=True))
    @action(detail=True, methods=["get"], filter_backends=[DjangoFilterBackend], filterset_class=EnrollmentFilter)
    def enrollments(self, request: Request, pk: str | None = None) -> Response:
        """The journey's enrollments of the customers you may see, newest first (cursor-paginated); filter by
        `state` and `step`."""
        journey = self.get_object()
        rows = (
            selectors.enrollments_for(request.user, journey)
            .select_related("customer")
            .only(*ENROLLMENT_COLUMNS)
            .annotate(version_number=F("version__number"))
        )
        page = self.paginate_queryset(self.filter_queryset(rows))
        return self.get_paginated_response(s.EnrollmentOutput(page, many=True).data)


# ------------------------------------------------------------------------------------------------------ tasks


@extend_schema_view(
    list=extend_schema(summary="Tasks you may see (cursor-paginated): yours, or your customers'."),
    retrieve=extend_schema(summary="One task with its script."),
)
class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """What reps should do for customers, from journeys or by hand. Reps see their customers' tasks and those
    assigned to them, and complete them."""

    serializer_class = s.TaskOutput
    filterset_class = TaskFilter
    search_fields = ["title"]
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Task]:
        return selectors.tasks_for(self.request.user)

    def get_object(self) -> Task:
        return selectors.get_task(self.request.user, self.kwargs["pk"])

    @extend_schema(request=s.CompleteTaskInput, responses={200: s.TaskOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        """Mark the task done with an optional `outcome`; the customer gets a `task_completed` event (a goal or a
        wait-for-event step may react). Completing a done task again changes nothing; 409 `cancelled` for a
        cancelled one."""
        task = self.get_object()
        data = s.CompleteTaskInput(data=request.data)
        data.is_valid(raise_exception=True)
        if task.status == TaskStatus.CANCELLED:
            raise Conflict(_("This task was cancelled."), code="cancelled")
        complete_task(task, by=request.user, outcome=data.validated_data["outcome"])
        return Response(s.TaskOutput(self.get_object()).data)
