"""REST API for customers and what hangs off them. Reads go through selectors; writes through services."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from customers import selectors
from customers.api import serializers as s
from customers.api.filters import CustomerFilter, EventFilter, OrderFilter
from customers.exceptions import CustomerError
from customers.models import Channel, CustomerMerge, Product, Relationship, Staff
from customers.services.ingest import (
    BulkResult,
    TooManyRows,
    bulk_record_events,
    bulk_upsert_customers,
    bulk_upsert_orders,
    delete_order,
)
from customers.services.merge import merge_customers, undo_merge
from customers.services.rows import paused_gc
from customers.services.transfer import transfer_customers


def _rows_from(request: Request) -> list:
    data = request.data
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValidationError({"rows": [_("Send a list of rows, or an object with a `rows` list.")]})
    return rows


@paused_gc()  # the request body's rows are decoded inside (request.data)
def _bulk_response(run, request: Request) -> Response:
    try:
        result: BulkResult = run(_rows_from(request), user=request.user)
    except TooManyRows as exc:
        raise ValidationError({"rows": [str(exc)]}) from exc
    body = result.as_dict()
    landed = result.landed > 0 or not result.errors
    return Response(body, status=status.HTTP_200_OK if landed else status.HTTP_400_BAD_REQUEST)


def _single_write(run, request: Request, row: object) -> BulkResult:
    """Write one row through a bulk service; its row errors become a 400 with field errors."""
    if not isinstance(row, dict):
        raise ValidationError({"detail": [_("Expected an object.")]})
    result: BulkResult = run([row], user=request.user)
    if result.errors:
        errors: dict[str, list[str]] = {}
        for error in result.errors:
            errors.setdefault(error.field, []).append(error.message)
        raise ValidationError(errors)
    return result


class CustomerViewSet(viewsets.ModelViewSet):
    """Customers. POST creates or, when an identity matches, updates; PATCH changes only the given fields."""

    filterset_class = CustomerFilter
    search_fields = []  # `?search=` is handled by the selector (name, phone, email, any identity)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        qs = selectors.customer_list(self.request.user, search=self.request.query_params.get("search", ""))
        if self.action == "retrieve":
            relationships = Prefetch("relationships", queryset=Relationship.objects.select_related("staff"))
            qs = qs.prefetch_related("identities", relationships, "consents")
        return qs

    def get_serializer_class(self):
        if self.action in ("create", "partial_update"):
            return s.CustomerInput
        return s.CustomerDetailOutput if self.action == "retrieve" else s.CustomerOutput

    @extend_schema(request=s.CustomerInput, responses={201: s.CustomerDetailOutput, 200: s.CustomerDetailOutput})
    def create(self, request, *args, **kwargs):
        result = _single_write(bulk_upsert_customers, request, request.data)
        customer = self._detail(result.ids[0])
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.CustomerDetailOutput(customer).data, status=code)

    @extend_schema(request=s.CustomerInput, responses=s.CustomerDetailOutput)
    def partial_update(self, request, *args, **kwargs):
        customer = self.get_object()
        row = {**request.data, "id": customer.pk} if isinstance(request.data, dict) else request.data
        _single_write(bulk_upsert_customers, request, row)
        return Response(s.CustomerDetailOutput(self._detail(customer.pk)).data)

    def _detail(self, pk: int):
        self.action = "retrieve"
        return self.get_queryset().get(pk=pk)

    def destroy(self, request, *args, **kwargs):
        if not request.user.can_manage:
            raise NotFound()
        return super().destroy(request, *args, **kwargs)

    @extend_schema(request=s.BulkInput, responses={200: s.BulkOutput, 400: s.BulkOutput})
    @action(detail=False, methods=["post"])
    def bulk(self, request, **kwargs):
        """Upsert up to 10,000 customers; per-row errors, good rows land."""
        return _bulk_response(bulk_upsert_customers, request)

    @extend_schema(request=s.MergeInput, responses={201: s.MergeOutput})
    @action(detail=True, methods=["post"])
    def merge(self, request, pk=None, **kwargs):
        """Merge customer `other` into this one (recorded; undo with /merges/{id}/undo/)."""
        survivor = self.get_object()
        data = s.MergeInput(data=request.data)
        data.is_valid(raise_exception=True)
        other = selectors.get_customer(request.user, data.validated_data["other"])
        try:
            merge = merge_customers(survivor, other, by=request.user)
        except CustomerError as exc:
            raise ValidationError({"other": [exc.message]}, code=exc.code) from exc
        return Response(s.MergeOutput(merge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TransferInput, responses={200: s.TransferOutput(many=True)})
    @action(detail=False, methods=["post"])
    def transfer(self, request, **kwargs):
        """Give customers to another rep; history, notes and tags stay with them."""
        data = s.TransferInput(data=request.data)
        data.is_valid(raise_exception=True)
        if not request.user.can_manage:
            raise NotFound()
        to_staff = Staff.objects.filter(pk=data.validated_data["to_staff"], is_active=True).first()
        if to_staff is None:
            raise ValidationError({"to_staff": [_("No active staff member with this id.")]})
        if "from_staff" in data.validated_data:
            book = selectors.customer_list(request.user).filter(owner_id=data.validated_data["from_staff"])
            visible = set(book.values_list("pk", flat=True))
        else:
            wanted = set(data.validated_data["customers"])
            visible = set(selectors.customer_list(request.user).filter(pk__in=wanted).values_list("pk", flat=True))
            if missing := sorted(wanted - visible):
                raise ValidationError({"customers": [_("Customers not found: %(ids)s") % {"ids": missing[:20]}]})
        changed = transfer_customers(
            visible, to_staff=to_staff, kind=data.validated_data["kind"], by=request.user,
            reason=data.validated_data["reason"],
        )  # fmt: skip
        return Response({"transferred": changed})


class MergeViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.MergeOutput

    def get_queryset(self):
        visible = selectors.customer_list(self.request.user).values("pk")
        return CustomerMerge.objects.filter(survivor__in=visible).order_by("-id")

    @extend_schema(request=None, responses=s.MergeOutput)
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None, **kwargs):
        try:
            merge = undo_merge(self.get_object())
        except CustomerError as exc:
            raise ValidationError({"detail": [exc.message]}, code=exc.code) from exc
        return Response(s.MergeOutput(merge).data)


class OrderViewSet(viewsets.ModelViewSet):
    """Orders. POST/PUT upsert by (source, external_id): re-sending an order updates it."""

    filterset_class = OrderFilter
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.order_list(self.request.user).prefetch_related("lines")

    def get_serializer_class(self):
        return s.OrderInput if self.action in ("create", "update") else s.OrderOutput

    @extend_schema(request=s.OrderInput, responses={201: s.OrderOutput, 200: s.OrderOutput})
    def create(self, request, *args, **kwargs):
        result = _single_write(bulk_upsert_orders, request, request.data)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.OrderOutput(self.get_queryset().get(pk=result.ids[0])).data, status=code)

    @extend_schema(request=s.OrderInput, responses=s.OrderOutput)
    def update(self, request, *args, **kwargs):
        order = self.get_object()
        row = request.data
        if isinstance(row, dict):
            row = {**row, "source": order.source, "external_id": order.external_id}
        result = _single_write(bulk_upsert_orders, request, row)
        return Response(s.OrderOutput(self.get_queryset().get(pk=result.ids[0])).data)

    def destroy(self, request, *args, **kwargs):
        if not request.user.can_manage:
            raise NotFound()
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        delete_order(instance)  # with its domain event: tags, segments and RFM re-read the customer's orders

    @extend_schema(request=s.BulkInput, responses={200: s.BulkOutput, 400: s.BulkOutput})
    @action(detail=False, methods=["post"])
    def bulk(self, request, **kwargs):
        """Upsert up to 10,000 orders by (source, external_id); unknown customers are created."""
        return _bulk_response(bulk_upsert_orders, request)


class EventViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """The behaviour trail. Events are immutable; a re-sent event is recorded once."""

    filterset_class = EventFilter

    def get_queryset(self):
        return selectors.event_list(self.request.user)

    def get_serializer_class(self):
        return s.EventInput if self.action == "create" else s.EventOutput

    @extend_schema(request=s.EventInput, responses={201: s.EventOutput})
    def create(self, request, *args, **kwargs):
        result = _single_write(bulk_record_events, request, request.data)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.EventOutput(self.get_queryset().get(pk=result.ids[0])).data, status=code)

    @extend_schema(request=s.BulkInput, responses={200: s.BulkOutput, 400: s.BulkOutput})
    @action(detail=False, methods=["post"])
    def bulk(self, request, **kwargs):
        """Record up to 10,000 events; unknown customers are created."""
        return _bulk_response(bulk_record_events, request)


class ManagedViewSet(viewsets.ModelViewSet):
    """Reference data everyone may read and only admins/operators may change."""

    write_requires_manage = True


class StaffViewSet(ManagedViewSet):
    queryset = Staff.objects.order_by("-id")
    filterset_fields = ["is_active", "wecom_userid"]

    def get_serializer_class(self):
        return s.StaffInput if self.action in ("create", "update", "partial_update") else s.StaffOutput


class ChannelViewSet(ManagedViewSet):
    queryset = Channel.objects.order_by("-id")
    serializer_class = s.ChannelSerializer
    filterset_fields = ["kind", "code"]


class ProductViewSet(ManagedViewSet):
    queryset = Product.objects.order_by("-id")
    serializer_class = s.ProductSerializer
    filterset_fields = ["category", "sku", "is_active"]


class GroupViewSet(ManagedViewSet):
    serializer_class = s.GroupSerializer
    filterset_fields = ["group_type", "owner", "chat_id"]

    def get_queryset(self):
        return selectors.group_list(self.request.user).order_by("-id")

    @extend_schema(responses=s.GroupMemberOutput(many=True))
    @action(detail=True, methods=["get"])
    def members(self, request, pk=None, **kwargs):
        group = get_object_or_404(self.get_queryset(), pk=pk)
        page = self.paginate_queryset(selectors.group_members(request.user, group).order_by("-id"))
        return self.get_paginated_response(s.GroupMemberOutput(page, many=True).data)
