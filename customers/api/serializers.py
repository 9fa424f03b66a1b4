"""API shapes. Output serializers are read-only; writes go through the ingest and customer services."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from customers.models import (
    Channel,
    CommunityGroup,
    Consent,
    Customer,
    CustomerMerge,
    Event,
    GroupMembership,
    Identity,
    Order,
    OrderLine,
    Product,
    Relationship,
    Staff,
    Transfer,
    TransferKind,
)


class StaffOutput(serializers.ModelSerializer):
    class Meta:
        model = Staff
        fields = ["id", "name", "wecom_userid", "department", "is_active", "created_at"]


class StaffInput(serializers.ModelSerializer):
    class Meta:
        model = Staff
        fields = ["name", "wecom_userid", "department", "is_active", "user"]


class ChannelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Channel
        fields = ["id", "code", "name", "kind", "created_at"]
        read_only_fields = ["created_at"]


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "sku", "name", "category", "price", "consumption_cycle_days", "is_active", "created_at"]
        read_only_fields = ["created_at"]


class IdentityOutput(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = ["kind", "namespace", "value"]


class RelationshipOutput(serializers.ModelSerializer):
    staff = StaffOutput()

    class Meta:
        model = Relationship
        fields = ["staff", "added_at", "add_way", "state", "remark", "status", "status_changed_at"]


class ConsentOutput(serializers.ModelSerializer):
    class Meta:
        model = Consent
        fields = ["channel", "status", "reason", "changed_at"]


class CustomerOutput(serializers.ModelSerializer):
    owner = serializers.PrimaryKeyRelatedField(read_only=True)
    source_channel = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Customer
        fields = [
            "id", "name", "gender", "birthday", "city", "occupation", "phone", "email", "time_zone",
            "attributes", "source_channel", "owner", "first_seen_at", "last_seen_at", "created_at", "updated_at",
        ]  # fmt: skip


class CustomerDetailOutput(CustomerOutput):
    identities = IdentityOutput(many=True)
    relationships = RelationshipOutput(many=True)
    consents = ConsentOutput(many=True)

    class Meta(CustomerOutput.Meta):
        fields = [*CustomerOutput.Meta.fields, "identities", "relationships", "consents"]


class CustomerInput(serializers.Serializer):
    """One customer; identities (wecom, unionid, phone, email, shop) match an existing one."""

    name = serializers.CharField(required=False, allow_blank=True)
    gender = serializers.CharField(required=False)
    birthday = serializers.CharField(required=False, allow_null=True)
    city = serializers.CharField(required=False, allow_blank=True)
    occupation = serializers.CharField(required=False, allow_blank=True)
    phone = serializers.CharField(required=False, allow_blank=True)
    email = serializers.CharField(required=False, allow_blank=True)
    time_zone = serializers.CharField(required=False, allow_blank=True)
    attributes = serializers.DictField(required=False)
    source_channel = serializers.CharField(required=False, help_text="Channel code.")
    owner = serializers.CharField(required=False, help_text="Staff id or WeCom userid.")
    wecom = serializers.CharField(required=False, help_text="WeCom external_userid.")
    unionid = serializers.CharField(required=False)
    shop = serializers.DictField(child=serializers.CharField(), required=False, help_text="Shop code → id.")


class OrderLineOutput(serializers.ModelSerializer):
    class Meta:
        model = OrderLine
        fields = ["product", "sku", "name", "quantity", "unit_price", "amount"]


class OrderOutput(serializers.ModelSerializer):
    lines = OrderLineOutput(many=True)
    channel = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id", "source", "external_id", "customer", "status", "ordered_at", "amount", "refunded_amount",
            "currency", "channel", "staff", "lines", "created_at", "updated_at",
        ]  # fmt: skip


class CustomerRefInput(serializers.Serializer):
    id = serializers.IntegerField(required=False)
    wecom = serializers.CharField(required=False)
    unionid = serializers.CharField(required=False)
    phone = serializers.CharField(required=False)
    email = serializers.CharField(required=False)
    shop_id = serializers.CharField(required=False, help_text="The customer's id in the order's source shop.")


class OrderLineInput(serializers.Serializer):
    sku = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    quantity = serializers.IntegerField(required=False, default=1)
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2, required=False)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, required=False)


class OrderInput(serializers.Serializer):
    source = serializers.CharField()
    external_id = serializers.CharField()
    customer = CustomerRefInput()
    status = serializers.CharField(required=False)
    ordered_at = serializers.DateTimeField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, required=False)
    refunded_amount = serializers.DecimalField(max_digits=12, decimal_places=2, required=False)
    currency = serializers.CharField(required=False)
    channel = serializers.CharField(required=False)
    staff = serializers.CharField(required=False)
    lines = OrderLineInput(many=True, required=False)


class EventOutput(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Event
        fields = ["id", "customer", "type", "occurred_at", "properties", "content_ref", "channel", "created_at"]


class EventInput(serializers.Serializer):
    customer = CustomerRefInput()
    type = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    properties = serializers.DictField(required=False)
    content_ref = serializers.CharField(required=False)
    channel = serializers.CharField(required=False)
    source = serializers.CharField(required=False)
    external_id = serializers.CharField(required=False, help_text="With source, makes re-sends idempotent.")


class BulkInput(serializers.Serializer):
    rows = serializers.ListField(child=serializers.DictField(), help_text="Up to 10,000 rows.")


class RowErrorOutput(serializers.Serializer):
    index = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class BulkOutput(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    errors = RowErrorOutput(many=True)


class GroupMemberOutput(serializers.ModelSerializer):
    class Meta:
        model = GroupMembership
        fields = ["customer", "joined_at", "left_at", "join_scene"]


class GroupSerializer(serializers.ModelSerializer):
    class Meta:
        model = CommunityGroup
        fields = ["id", "chat_id", "name", "group_type", "owner", "created_at", "dismissed_at"]


class MergeInput(serializers.Serializer):
    other = serializers.IntegerField(help_text="The customer merged into this one.")


class MergeOutput(serializers.ModelSerializer):
    class Meta:
        model = CustomerMerge
        fields = ["id", "survivor", "merged", "moved", "merged_fields", "merged_at", "undone_at"]


class TransferInput(serializers.Serializer):
    """Either `customers` (ids) or `from_staff` (their whole book, e.g. when they leave)."""

    customers = serializers.ListField(child=serializers.IntegerField(), max_length=10_000, required=False)
    from_staff = serializers.IntegerField(required=False)
    to_staff = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=[TransferKind.ON_JOB, TransferKind.DEPARTED], default=TransferKind.ON_JOB)
    reason = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if ("customers" in attrs) == ("from_staff" in attrs):
            raise serializers.ValidationError(_("Give either `customers` or `from_staff`."), code="transfer_scope")
        return attrs


class TransferOutput(serializers.ModelSerializer):
    class Meta:
        model = Transfer
        fields = ["customer", "from_staff", "to_staff", "kind", "reason", "transferred_at"]
