"""REST API of event subscriptions: subscriptions (CRUD, test event, secret rotation) and their deliveries (list,
filter, replay). Workspace configuration: admins and operators, or API tokens acting as one; to anyone else the
endpoints answer 404. Writes go through messaging.integrations."""

from __future__ import annotations

import django_filters
from django.utils.translation import gettext_lazy
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from messaging import integrations
from messaging.models import Delivery, DeliveryStatus, Subscription
from tags.api.views import CONFLICT, Conflict

# ------------------------------------------------------------------------------------------------ serializers


class SubscriptionInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(
        max_length=500, validators=[integrations.validate_url], help_text=gettext_lazy("An http(s) URL.")
    )
    kinds = serializers.ListField(
        child=serializers.CharField(max_length=40),
        validators=[integrations.validate_kinds],
        help_text=gettext_lazy("Event kinds to send: %(kinds)s.") % {"kinds": ", ".join(integrations.EVENT_KINDS)},
    )
    is_active = serializers.BooleanField(default=True)
    secret = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=128,
        write_only=True,
        validators=[integrations.validate_secret],
        help_text=gettext_lazy("Signing secret (at least 16 characters); generated when empty."),
    )


class SubscriptionOutput(serializers.ModelSerializer):
    class Meta:
        model = Subscription
        fields = ["id", "name", "url", "kinds", "is_active", "created_at"]


class SubscriptionCreatedOutput(SubscriptionOutput):
    secret = serializers.CharField(help_text=gettext_lazy("Shown once: keep it to verify X-SCRM-Signature."))

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "secret"]


class SecretOutput(serializers.Serializer):
    secret = serializers.CharField(help_text=gettext_lazy("Shown once."))


class DeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = ["id", "subscription", "event_key", "kind", "payload", "status", "attempts", "next_attempt_at",
                  "response_status", "response_body", "created_at", "delivered_at"]  # fmt: skip


# ------------------------------------------------------------------------------------------------------ views


class ManagersOnly(permissions.BasePermission):
    """Admins and operators (or their tokens); for everyone else signed in, the resource does not exist."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not user.can_manage:
            raise NotFound()
        return True


@extend_schema_view(
    list=extend_schema(responses=SubscriptionOutput(many=True)),
    retrieve=extend_schema(responses=SubscriptionOutput),
    create=extend_schema(request=SubscriptionInput, responses={201: SubscriptionCreatedOutput}),
    update=extend_schema(request=SubscriptionInput, responses=SubscriptionOutput),
    partial_update=extend_schema(request=SubscriptionInput, responses=SubscriptionOutput),
    destroy=extend_schema(responses={204: None}),
)
class SubscriptionViewSet(viewsets.ModelViewSet):
    """URLs that receive domain events, signed with HMAC-SHA256: header X-SCRM-Signature is the hex digest of
    f"{X-SCRM-Timestamp}.{body}" with the subscription's secret. Deleting one deletes its deliveries."""

    queryset = Subscription.objects.all()
    serializer_class = SubscriptionOutput
    permission_classes = [ManagersOnly]
    filterset_fields = ["is_active"]
    search_fields = ["name", "url"]

    def create(self, request, *args, **kwargs):
        data = SubscriptionInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription, secret = integrations.create_subscription(**data.validated_data)
        body = {**SubscriptionOutput(subscription).data, "secret": secret}
        return Response(SubscriptionCreatedOutput(body).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        subscription = self.get_object()
        data = SubscriptionInput(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        integrations.update_subscription(subscription, **data.validated_data)
        return Response(SubscriptionOutput(subscription).data)

    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Subscription) -> None:
        integrations.delete_subscription(instance)

    @extend_schema(request=None, responses={200: DeliveryOutput})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a `subscription.test` event now (also to a switched-off subscription) and answer the delivery
        with the receiver's response. One attempt, no retry."""
        return Response(DeliveryOutput(integrations.send_test_event(self.get_object())).data)

    @extend_schema(request=None, responses={200: SecretOutput})
    @action(detail=True, methods=["post"], url_path="rotate-secret", url_name="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Replace the signing secret; the new one is shown once and signs every delivery from now on."""
        return Response(SecretOutput({"secret": integrations.rotate_secret(self.get_object())}).data)


class DeliveryFilter(django_filters.FilterSet):
    subscription = django_filters.NumberFilter(field_name="subscription_id")
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    kind = django_filters.CharFilter()

    class Meta:
        model = Delivery
        fields = ["subscription", "status", "kind"]


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every event sent or to be sent to a subscription, newest first, with the receiver's last answer (status
    and the first 2,000 characters of its body)."""

    queryset = Delivery.objects.all()
    serializer_class = DeliveryOutput
    permission_classes = [ManagersOnly]
    filter_backends = [DjangoFilterBackend]
    filterset_class = DeliveryFilter

    @extend_schema(request=None, responses={202: DeliveryOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """Send the delivery's event again: a new delivery (event_key f"{original}~r{n}", same payload and `id`)
        queued now; the original keeps its record. 409 while it is pending or its subscription is off."""
        try:
            replay = integrations.replay_delivery(self.get_object())
        except integrations.DeliveryError as exc:
            raise Conflict(exc.message, code=exc.code) from exc
        return Response(DeliveryOutput(replay).data, status=status.HTTP_202_ACCEPTED)
