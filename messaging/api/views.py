"""REST API for touchpoints, for integrations: create (through schedule_touchpoint, idempotent on the key), list
with filters, detail with the decision log, cancel. Every read and write is limited to the touchpoints the
user (or the token's user) may see (messaging.selectors); another's is 404."""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from customers import selectors as customer_selectors
from customers.models import CommunityGroup, Customer
from messaging import selectors
from messaging.api import serializers as s
from messaging.api.filters import TouchpointFilter
from messaging.models import MessageTemplate, Touchpoint, TouchpointSource
from messaging.services.scheduling import InvalidTouchpoint, cancel_touchpoints, schedule_touchpoint
from tags.api.views import CONFLICT, Conflict

INVALID = OpenApiResponse(s.InvalidOutput, description="Field errors under `errors`.")


def _customer(request: Request, customer_id: int | None) -> Customer | None:
    if customer_id is None:
        return None
    try:
        return customer_selectors.get_customer(request.user, customer_id)
    except Http404:
        raise ValidationError({"customer": [_("No customer with id %(id)s.") % {"id": customer_id}]}) from None


def _group(request: Request, group_id: int | None) -> CommunityGroup | None:
    if group_id is None:
        return None
    group = customer_selectors.group_list(request.user).filter(pk=group_id).first()
    if group is None:
        raise ValidationError({"group": [_("No community group with id %(id)s.") % {"id": group_id}]})
    return group


def _template(template_id: int | None) -> MessageTemplate | None:
    if template_id is None:
        return None
    template = MessageTemplate.objects.filter(pk=template_id).first()
    if template is None:
        raise ValidationError({"template": [_("No message template with id %(id)s.") % {"id": template_id}]})
    return template


@extend_schema_view(
    list=extend_schema(summary="Touchpoints you may see, newest first (cursor-paginated)."),
    retrieve=extend_schema(summary="One touchpoint with its content, decision log and the provider's answer."),
)
class TouchpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Messages to customers and community groups, and what happened to each."""

    filterset_class = TouchpointFilter
    search_fields: list[str] = []
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return selectors.touchpoints_for(self.request.user)

    def get_serializer_class(self):
        return s.TouchpointOutput if self.action == "list" else s.TouchpointDetailOutput

    def _visible(self, touchpoint: Touchpoint) -> Touchpoint:
        found = self.get_queryset().filter(pk=touchpoint.pk).first()
        if found is None:  # the key belongs to a message of a customer this user may not see
            raise Conflict(_("This idempotency key is already used."), code="idempotency_key_taken")
        return found

    @extend_schema(
        request=s.TouchpointInput,
        responses={
            201: s.TouchpointDetailOutput,
            200: OpenApiResponse(s.TouchpointDetailOutput, description="The key was sent before: that message."),
            400: INVALID,
            409: CONFLICT,
        },
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        """Queue a message (source "api"). A repeated `idempotency_key` returns the message it first created with
        200 and queues nothing; 409 `idempotency_key_taken` if that message is one you may not see."""
        data = s.TouchpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        existing = Touchpoint.objects.filter(idempotency_key=given["idempotency_key"]).first()
        if existing is not None:
            return Response(s.TouchpointDetailOutput(self._visible(existing)).data)
        try:
            touchpoint = schedule_touchpoint(
                channel=given["channel"],
                idempotency_key=given["idempotency_key"],
                customer=_customer(request, given.get("customer")),
                group=_group(request, given.get("group")),
                template=_template(given.get("template")),
                content=given.get("content"),
                context=given.get("context"),
                due_at=given.get("due_at"),
                kind=given["kind"],
                source=TouchpointSource.API,
                source_ref=given.get("source_ref", ""),
                priority=given["priority"],
                on_cap=given["on_cap"],
                expires_at=given.get("expires_at"),
                sender=given.get("sender", ""),
                created_by=request.user,
            )
        except InvalidTouchpoint as invalid:
            raise ValidationError({field: [message] for field, message in invalid.errors.items()}) from invalid
        if not touchpoint.is_new:  # a concurrent request with the same key queued it first
            return Response(s.TouchpointDetailOutput(self._visible(touchpoint)).data)
        return Response(s.TouchpointDetailOutput(self._visible(touchpoint)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.TouchpointDetailOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a message still waiting in the queue; 409 `not_queued` once a worker is sending or has sent
        it (or it has ended otherwise)."""
        touchpoint = self.get_object()
        if not cancel_touchpoints(ids=[touchpoint.pk]):
            raise Conflict(_("Only a message still waiting in the queue can be cancelled."), code="not_queued")
        return Response(s.TouchpointDetailOutput(self.get_queryset().get(pk=touchpoint.pk)).data)
