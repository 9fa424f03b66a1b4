"""API shapes for touchpoints. Writes are validated here for shape, then by messaging.services.scheduling."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from customers.models import MessageChannel
from messaging.models import CapAction, Touchpoint, TouchpointKind, TouchpointSource, TouchpointStatus


class NamedChoiceField(serializers.ChoiceField):
    """A choice field whose enum has its own name in the schema (spectacular's automatic names collide with the
    orders' `status`, the tags' `kind` and the customers' `source`)."""

    enum_name = ""
    enum_choices: type[TouchpointKind] | type[TouchpointSource] | type[TouchpointStatus]

    def __init__(self, **kwargs) -> None:
        super().__init__(choices=self.enum_choices.choices, **kwargs)


class TouchpointKindField(NamedChoiceField):
    enum_name, enum_choices = "TouchpointKindEnum", TouchpointKind


class TouchpointSourceField(NamedChoiceField):
    enum_name, enum_choices = "TouchpointSourceEnum", TouchpointSource


class TouchpointStatusField(NamedChoiceField):
    enum_name, enum_choices = "TouchpointStatusEnum", TouchpointStatus


class NamedChoiceFieldSchema(OpenApiSerializerFieldExtension):
    target_class = NamedChoiceField
    match_subclasses = True

    def get_name(self) -> str:
        return self.target.enum_name

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": list(self.target.enum_choices.values)}


class TouchpointInput(serializers.Serializer):
    """One message to one customer (or one community group). Either `template` or `content` gives the message;
    `content` may use the template language ({{ customer.name }}) and is rendered when the message is sent."""

    channel = serializers.ChoiceField(choices=MessageChannel.choices)
    idempotency_key = serializers.CharField(
        max_length=200,
        help_text=_("Unique per message: sending the same key again returns the first message (200) and sends "
                    "nothing more."),
    )  # fmt: skip
    customer = serializers.IntegerField(required=False, allow_null=True, help_text=_("A customer you may see."))
    group = serializers.IntegerField(required=False, allow_null=True, help_text=_("A community group you may see."))
    template = serializers.IntegerField(required=False, allow_null=True, help_text=_("A message template's id."))
    content = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text=_('{"text": "…", "subject": "…", "card": {"title", "description", "url", "image_url"}}'),
    )
    context = serializers.JSONField(required=False, allow_null=True, help_text=_("Extra values the template may read."))
    kind = TouchpointKindField(default=TouchpointKind.MARKETING)
    due_at = serializers.DateTimeField(required=False, allow_null=True, help_text=_("Default: now."))
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text=_("A message not sent by then is not sent at all.")
    )
    priority = serializers.IntegerField(min_value=-100, max_value=100, default=0)
    on_cap = serializers.ChoiceField(choices=CapAction.choices, default=CapAction.SKIP)
    source_ref = serializers.CharField(
        max_length=64, required=False, allow_blank=True, help_text=_("Your own reference; filter on it later.")
    )
    sender = serializers.CharField(max_length=64, required=False, allow_blank=True)

    def validate_content(self, content: object) -> object:
        if content is not None and not isinstance(content, dict):
            raise serializers.ValidationError(_("Expected an object."), code="invalid")
        return content

    def validate_context(self, context: object) -> object:
        return self.validate_content(context)


class TouchpointOutput(serializers.ModelSerializer):
    """A message in a list: where it stands, without its content and decision log."""

    kind = TouchpointKindField(read_only=True)
    source = TouchpointSourceField(read_only=True)
    status = TouchpointStatusField(read_only=True)

    class Meta:
        model = Touchpoint
        fields = [
            "id", "channel", "customer", "group", "kind", "source", "source_ref", "priority", "idempotency_key",
            "status", "reason", "provider_code", "provider_message_id", "recipient", "attempts", "max_attempts",
            "scheduled_for", "due_at", "expires_at", "created_at", "updated_at", "sent_at", "confirmed_at",
            "delivered_at", "read_at", "clicked_at",
        ]  # fmt: skip
        read_only_fields = fields


class TouchpointDetailOutput(TouchpointOutput):
    """A message with what was asked (`template`, `content`), what was sent (`rendered`), every policy decision
    and attempt in order, and the provider's answer."""

    decisions = serializers.ListField(child=serializers.DictField(), read_only=True)

    class Meta(TouchpointOutput.Meta):
        fields = [*TouchpointOutput.Meta.fields, "template", "content", "rendered", "decisions", "provider_response"]
        read_only_fields = fields


class InvalidOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), help_text=_("Field name → its errors.")
    )
