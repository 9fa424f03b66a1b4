"""REST API for segments and the layering models: segments with their members, exclusions, exports and size over
time; a customer's segments and layers; the RFM grid and class migration, the AIPL funnel, the lifecycle and ladder
distributions, and the layering settings. Segments are shared by everyone; every member, count and aggregate is
limited to the customers the user may see. Writes go through segments.services."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import renderers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from customers import selectors as customer_selectors
from customers.conditions import RuleError
from customers.visibility import sees_all_customers
from segments import exports, selectors
from segments.api import serializers as s
from segments.models import LayeringSettings, LayerModel, Segment, SegmentKind
from segments.services import segments as service
from segments.services.membership import MembershipChange
from tags.api.views import CONFLICT, RULE_ERROR, Conflict

SEGMENT_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
CUSTOMER_PK = OpenApiParameter("customer_pk", OpenApiTypes.INT, OpenApiParameter.PATH)


def invalid_rule(exc: RuleError) -> Response:
    """A RuleError as a 400 listing every issue with its path (returned, not raised: the exception handler keeps
    only `detail` and `code` of raised errors)."""
    body = {"detail": _("The rule is not valid."), "code": "invalid_rule", "issues": [i.as_dict() for i in exc.issues]}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


class CsvRenderer(renderers.BaseRenderer):
    """Selects the CSV export (`?format=csv`); the export view writes the body itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class XlsxRenderer(CsvRenderer):
    media_type = exports.XLSX_TYPE
    format = "xlsx"
    charset = None


# ------------------------------------------------------------------------------------------------- segments


def _since(request: Request) -> datetime | None:
    raw = request.query_params.get("since")
    if not raw:
        return None
    try:
        moment = parse_datetime(raw.replace(" ", "+"))  # a "+08:00" sent unencoded arrives as a space
    except ValueError:
        moment = None
    if moment is None:
        raise ValidationError({"since": [_("Expected a date and time like 2026-11-01T00:00:00+08:00.")]})
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


@extend_schema_view(
    list=extend_schema(responses=s.SegmentOutput(many=True)),
    retrieve=extend_schema(responses=s.SegmentOutput),
)
class SegmentViewSet(viewsets.ModelViewSet):
    """Segments: dynamic (a rule, kept current), static (a list) and model segments (kept by the layering
    models, read-only here). Everyone reads them; admins and operators change them."""

    filterset_fields = ["kind"]
    search_fields = ["name"]
    lookup_value_regex = r"\d+"
    serializer_class = s.SegmentOutput

    @property
    def write_requires_manage(self) -> bool:
        # Asking for a fresh recompute is open to anyone who may write; running it inline (?sync=1) is not.
        return self.action != "recompute"

    def get_queryset(self):
        return selectors.segment_list(self.request.user)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is None or self.action != "list":  # the members and exclusions pages are paginated here too
            return page
        return selectors.with_member_counts(self.request.user, page)

    def get_object(self) -> Segment:
        # Not through the list's filter backends: `?search=` on a segment's own URLs must not hide it.
        return selectors.get_segment(self.request.user, self.kwargs["pk"])

    def _output(self, segment: Segment, *, code: int = status.HTTP_200_OK) -> Response:
        return Response(s.SegmentOutput(selectors.get_segment(self.request.user, segment.pk)).data, status=code)

    @extend_schema(request=s.SegmentInput, responses={201: s.SegmentOutput, 400: RULE_ERROR})
    def create(self, request, *args, **kwargs):
        """Create a segment; a dynamic one is then built by a worker."""
        data = s.SegmentInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            segment = service.save_segment(None, by=request.user, **data.validated_data)
        except RuleError as exc:
            return invalid_rule(exc)
        return self._output(segment, code=status.HTTP_201_CREATED)

    @extend_schema(request=s.SegmentInput, responses={200: s.SegmentOutput, 400: RULE_ERROR, 409: CONFLICT})
    def update(self, request, *args, **kwargs):
        """Change a segment; a rule that reads the segment itself (directly or through others) is refused."""
        segment = self.get_object()
        _refuse_model_segment(segment)
        data = s.SegmentInput(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        given = {"name": segment.name, "description": segment.description, "kind": segment.kind,
                 "rule": segment.rule, **data.validated_data}  # fmt: skip
        try:
            service.save_segment(segment, by=request.user, **given)
        except RuleError as exc:
            return invalid_rule(exc)
        return self._output(segment)

    @extend_schema(request=s.SegmentInput, responses={200: s.SegmentOutput, 400: RULE_ERROR, 409: CONFLICT})
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(responses={204: None, 409: CONFLICT})
    def destroy(self, request, *args, **kwargs):
        """Delete a segment with its membership history; refused while a segment's or a tag's rule reads it."""
        segment = self.get_object()
        _refuse_model_segment(segment)
        if using := selectors.rules_reading(segment):
            raise Conflict(
                _("The rules of %(segments)s read this segment; change them first.") % {"segments": "、".join(using)},
                code="segment_in_use",
            )
        segment.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("sync", OpenApiTypes.BOOL, description="Run now (admins and operators).")],
        responses={200: s.SegmentOutput, 202: s.SegmentOutput, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def recompute(self, request, pk=None):
        """Rebuild a dynamic segment: queued for a worker (202), or run now with `?sync=1` (200, admins and
        operators). 409 `recompute_running` if another run holds the lease."""
        segment = self.get_object()
        if segment.kind != SegmentKind.DYNAMIC:
            raise Conflict(_("Only dynamic segments are recomputed."), code="not_dynamic")
        if request.query_params.get("sync") in ("1", "true"):
            if not request.user.can_manage:
                raise PermissionDenied(_("Only admins and operators run a recompute inline."))
            if service.recompute_segment(segment) is None:
                raise Conflict(_("A recompute of this segment is already running."), code="recompute_running")
            return self._output(segment)
        segment_id = segment.pk
        transaction.on_commit(lambda: service.enqueue_recompute(segment_id))
        return self._output(segment, code=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.FreezeInput, responses={201: s.SegmentOutput})
    @action(detail=True, methods=["post"])
    def freeze(self, request, pk=None):
        """A static copy of the segment's current members under a new name (a snapshot)."""
        segment = self.get_object()
        data = s.FreezeInput(data=request.data)
        data.is_valid(raise_exception=True)
        frozen = service.freeze(segment, name=data.validated_data["name"], by=request.user)
        return self._output(frozen, code=status.HTTP_201_CREATED)

    @extend_schema(
        methods=["GET"],
        parameters=[OpenApiParameter("since", OpenApiTypes.DATETIME, description="Only members who entered since.")],
        responses=s.MemberOutput(many=True),
    )
    @extend_schema(methods=["POST", "DELETE"], request=s.CustomerIdsInput,
                   responses={200: s.MembershipChangeOutput, 409: CONFLICT})  # fmt: skip
    @action(detail=True, methods=["get", "post", "delete"], filter_backends=[])
    def members(self, request, pk=None):
        """GET the current members you may see, newest entry first, cursor-paginated (`since`: only those who
        entered at or after that time). POST adds customers to a static segment, DELETE takes them out."""
        segment = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.segment_members(request.user, segment, since=_since(request)))
            return self.get_paginated_response(s.MemberOutput(page, many=True).data)
        if segment.kind != SegmentKind.STATIC:
            raise Conflict(_("Only static segments take lists; use exclusions for a dynamic one."), code="not_static")
        ids = _customer_ids(request, s.CustomerIdsInput)["customers"]
        if request.method == "POST":
            change = service.add_to_static(segment, ids)
        else:
            change = service.remove_from_static(segment, ids)
        return self._change(segment, change)

    @extend_schema(methods=["GET"], responses=s.ExclusionOutput(many=True))
    @extend_schema(methods=["POST"], request=s.ExclusionInput, responses={200: s.MembershipChangeOutput, 409: CONFLICT})
    @extend_schema(methods=["DELETE"], request=s.CustomerIdsInput,
                   responses={200: s.MembershipChangeOutput, 409: CONFLICT})  # fmt: skip
    @action(detail=True, methods=["get", "post", "delete"], filter_backends=[])
    def exclusions(self, request, pk=None):
        """Customers kept out of a dynamic segment by hand (they stay out through every recompute). POST excludes
        them (they leave now), DELETE lets them back (they re-enter at once if they match)."""
        segment = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.segment_exclusions(request.user, segment))
            return self.get_paginated_response(s.ExclusionOutput(page, many=True).data)
        if segment.kind != SegmentKind.DYNAMIC:
            raise Conflict(_("Only dynamic segments take exclusions."), code="not_dynamic")
        if request.method == "POST":
            given = _customer_ids(request, s.ExclusionInput)
            change = service.exclude(segment, given["customers"], reason=given["reason"], by=request.user)
        else:
            change = service.clear_exclusions(segment, _customer_ids(request, s.CustomerIdsInput)["customers"])
        return self._change(segment, change)

    def _change(self, segment: Segment, change: MembershipChange) -> Response:
        size = selectors.get_segment(self.request.user, segment.pk).member_count
        return Response(s.MembershipChangeOutput({**change.as_dict(), "size": size}).data)

    @extend_schema(
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["csv", "xlsx"], description="Default csv.")],
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, XlsxRenderer.media_type): OpenApiTypes.BINARY,
                   409: CONFLICT},
    )  # fmt: skip
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None,
            renderer_classes=[renderers.JSONRenderer, CsvRenderer, XlsxRenderer])  # fmt: skip
    def export(self, request, pk=None):
        """The current members you may see as CSV (streamed, any size) or an Excel workbook."""
        segment = self.get_object()
        try:
            return exports.download(request.user, segment, as_xlsx=request.accepted_renderer.format == "xlsx")
        except exports.TooManyRows:
            raise Conflict(
                _("Too many members for one Excel sheet; export CSV instead."), code="too_many_rows"
            ) from None

    def handle_exception(self, exc):
        if self.action == "export":  # errors of the export answer JSON whatever format was asked for
            self.request.accepted_renderer = renderers.JSONRenderer()
            self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)

    @extend_schema(responses=s.SegmentSizeOutput(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def sizes(self, request, pk=None):
        """Size after each recompute, newest first (for a rep, their own customers then in the segment)."""
        segment = self.get_object()
        page = self.paginate_queryset(selectors.segment_sizes(request.user, segment))
        page = selectors.with_visible_sizes(request.user, segment, page)
        context = {"sees_all": sees_all_customers(request.user)}
        return self.get_paginated_response(s.SegmentSizeOutput(page, many=True, context=context).data)


def _refuse_model_segment(segment: Segment) -> None:
    if segment.kind == SegmentKind.MODEL:
        raise Conflict(_("Model segments are kept by their layering model."), code="model_segment")


def _customer_ids(request: Request, serializer_class) -> dict:
    """The validated body; every id must be a customer the user may see (else 400 naming the others)."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    wanted = set(data.validated_data["customers"])
    if missing := sorted(wanted - selectors.visible_customer_ids(request.user, sorted(wanted))):
        raise ValidationError({"customers": [_("Customers not found: %(ids)s") % {"ids": missing[:20]}]})
    return {**data.validated_data, "customers": sorted(wanted)}


# ------------------------------------------------------------------------------------------- one customer


class CustomerSegmentViewSet(viewsets.ViewSet):
    """A customer's segments and layers. A customer you may not see is 404."""

    @extend_schema(parameters=[CUSTOMER_PK], responses=s.CustomerSegmentsOutput)
    def list(self, request, customer_pk=None):
        """The segments the customer is in now (with when they entered) and their past episodes; their RFM
        values, scores and class; their AIPL, lifecycle and ladder stages; their latest RFM class changes."""
        customer = customer_selectors.get_customer(request.user, customer_pk)
        current, past = selectors.customer_memberships(customer)
        layers = selectors.customer_layers(customer)
        body = {"current": current, "history": past, "rfm": layers.rfm, "stages": layers.stages,
                "rfm_transitions": layers.transitions}  # fmt: skip
        return Response(s.CustomerSegmentsOutput(body).data)


# --------------------------------------------------------------------------------------------------- layers


class LayerViewSet(viewsets.ViewSet):
    """The layering models over the customers you may see (a rep: their own book); their settings are read by
    everyone and changed by admins and operators, who also start recomputes."""

    write_requires_manage = True

    @extend_schema(methods=["GET"], responses=s.LayeringSettingsSerializer)
    @extend_schema(methods=["PUT"], request=s.LayeringSettingsSerializer, responses=s.LayeringSettingsSerializer)
    @action(detail=False, methods=["get", "put"], url_path="settings", url_name="settings")
    def layering_settings(self, request):  # not `settings`: APIView.settings holds DRF's own
        """RFM window, reference date (`rfm_as_of`, empty = today), scoring (`quantile` or `thresholds`),
        thresholds and high-from scores; AIPL, lifecycle and ladder parameters. PUT changes the fields given;
        the new values apply from the next recompute."""
        current = LayeringSettings.load()
        if request.method == "PUT":
            data = s.LayeringSettingsSerializer(current, data=request.data, partial=True)
            data.is_valid(raise_exception=True)
            current = data.save()
        return Response(s.LayeringSettingsSerializer(current).data)

    @extend_schema(responses=s.RfmGridOutput)
    @action(detail=False, methods=["get"])
    def rfm(self, request):
        """The eight RFM classes and no_purchase: count, share, GMV and its share, average recency, frequency and
        spend, from the last recompute."""
        return Response(s.RfmGridOutput(selectors.rfm_grid(request.user)).data)

    @extend_schema(
        parameters=[OpenApiParameter("from", OpenApiTypes.DATE, required=True),
                    OpenApiParameter("to", OpenApiTypes.DATE, required=True)],
        responses=s.RfmMigrationOutput,
    )  # fmt: skip
    @action(detail=False, methods=["get"], url_path="rfm/migration", url_name="rfm-migration")
    def rfm_migration(self, request):
        """Customers by RFM class at the end of `from` (rows) and at the end of `to` (columns), read from the
        recorded class changes; `unclassified` is a customer not yet classified on that date."""
        data = s.RfmMigrationInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        return Response(s.RfmMigrationOutput(selectors.rfm_migration(request.user, start=given["from"],
                                                                     end=given["to"])).data)  # fmt: skip

    @extend_schema(responses=s.FunnelOutput)
    @action(detail=False, methods=["get"])
    def aipl(self, request):
        """Customers at each AIPL stage (awareness, interest, purchase, loyalty) with the funnel's conversions."""
        return Response(s.FunnelOutput(selectors.aipl_funnel(request.user)).data)

    @extend_schema(responses=s.DistributionOutput)
    @action(detail=False, methods=["get"])
    def lifecycle(self, request):
        """Customers at each lifecycle stage."""
        return Response(s.DistributionOutput(selectors.stage_distribution(request.user, LayerModel.LIFECYCLE)).data)

    @extend_schema(responses=s.DistributionOutput)
    @action(detail=False, methods=["get"])
    def ladder(self, request):
        """Customers at each step of the relationship ladder."""
        return Response(s.DistributionOutput(selectors.stage_distribution(request.user, LayerModel.LADDER)).data)

    @extend_schema(
        request=s.LayersRecomputeInput,
        parameters=[OpenApiParameter("sync", OpenApiTypes.BOOL, description="Run now and answer the outcomes.")],
        responses={200: s.LayersRecomputeOutput, 202: s.LayersRecomputeOutput},
    )
    @action(detail=False, methods=["post"])
    def recompute(self, request):
        """Recompute the layering models and their model segments: queued for a worker (202, every model, as the
        nightly run), or run now with `?sync=1` (200), optionally only some `models` and with RFM `as_of` another
        date. A model that fails is reported under its name without stopping the others."""
        data = s.LayersRecomputeInput(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        if request.query_params.get("sync") in ("1", "true"):
            from segments.services.layers import MODELS, recompute_layers

            outcomes = recompute_layers(tuple(given.get("models", MODELS)), as_of=given.get("as_of"))
            return Response(s.LayersRecomputeOutput({"queued": False, "outcomes": outcomes}).data)
        if given:
            raise ValidationError({"models": [_("Choosing models or a date needs ?sync=1; a queued run does all.")]})
        transaction.on_commit(_enqueue_layers)
        return Response(s.LayersRecomputeOutput({"queued": True, "outcomes": {}}).data, status=status.HTTP_202_ACCEPTED)


def _enqueue_layers() -> None:
    from scrm.celery import send_quietly
    from segments.tasks import recompute_layers

    send_quietly(recompute_layers)  # if the broker is down, the nightly run catches up
