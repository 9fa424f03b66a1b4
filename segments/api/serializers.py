"""API shapes for segments and the layering models. Output serializers are read-only; writes go through the
segments services (the layering settings, a single row, are validated here and saved by the view)."""

from itertools import pairwise

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from segments import selectors
from segments.models import (
    CustomerRfm,
    LayeringSettings,
    LayerModel,
    RfmClass,
    RfmMethod,
    RfmTransition,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentSize,
    default_aipl,
    default_ladder,
    default_lifecycle,
)

MAX_CUSTOMERS = 10_000


class SegmentKindField(serializers.ChoiceField):
    def __init__(self, **kwargs) -> None:
        super().__init__(choices=SegmentKind.choices, **kwargs)


class SegmentKindFieldSchema(OpenApiSerializerFieldExtension):
    """Names the segment kinds' enum: spectacular's automatic naming collides with other `kind` choices."""

    target_class = SegmentKindField

    def get_name(self) -> str:
        return "SegmentKindEnum"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": SegmentKind.values}


class RfmClassField(serializers.ChoiceField):
    def __init__(self, **kwargs) -> None:
        super().__init__(choices=RfmClass.choices, **kwargs)


class RfmClassFieldSchema(OpenApiSerializerFieldExtension):
    """One enum for every field holding an RFM class (the customer's, and both ends of a class change)."""

    target_class = RfmClassField

    def get_name(self) -> str:
        return "RfmClassEnum"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": RfmClass.values}


# ------------------------------------------------------------------------------------------------- segments


class LastRecomputeOutput(serializers.Serializer):
    started_at = serializers.DateTimeField(source="last_started_at")
    finished_at = serializers.DateTimeField(source="last_finished_at")
    duration_ms = serializers.IntegerField(source="last_duration_ms")
    counts = serializers.DictField(source="last_counts", help_text=_("matched, entered and exited in the last run."))
    error = serializers.CharField(source="last_error", help_text=_("Empty unless the last run failed."))


class SegmentOutput(serializers.ModelSerializer):
    kind = SegmentKindField(read_only=True)
    size = serializers.IntegerField(source="member_count", read_only=True, help_text=_("Current members you may see."))
    status = serializers.SerializerMethodField(
        help_text=_('"idle", "calculating", "failed", or "stalled": calculating, but the lease ran out (a crashed '
                    "run, retried by the sweep).")
    )  # fmt: skip
    last_recompute = LastRecomputeOutput(source="*", read_only=True)

    class Meta:
        model = Segment
        fields = [
            "id", "name", "description", "kind", "rule", "model_key", "depends_on", "is_time_relative", "size",
            "status", "last_recompute", "created_by", "created_at", "updated_at",
        ]  # fmt: skip

    @extend_schema_field(serializers.ChoiceField(choices=["idle", "calculating", "failed", "stalled"]))
    def get_status(self, segment: Segment) -> str:
        return "stalled" if selectors.is_stalled(segment) else segment.status


class SegmentInput(serializers.Serializer):
    """A dynamic segment has a rule (it may read other segments with `in_segment`, never itself); a static one
    is a list kept with members/ (a rule sent with it is ignored). Model segments are kept by their models."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=[SegmentKind.DYNAMIC, SegmentKind.STATIC], default=SegmentKind.DYNAMIC)
    rule = serializers.JSONField(required=False, allow_null=True, help_text=_("A condition tree of the rule language."))


class FreezeInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class CustomerIdsInput(serializers.Serializer):
    customers = serializers.ListField(
        child=serializers.IntegerField(), allow_empty=False, max_length=MAX_CUSTOMERS, help_text=_("Customer ids.")
    )


class ExclusionInput(CustomerIdsInput):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class MembershipChangeOutput(serializers.Serializer):
    matched = serializers.IntegerField(
        help_text=_("Customers in the new member set of those considered, before manual exclusions.")
    )
    entered = serializers.IntegerField()
    exited = serializers.IntegerField()
    size = serializers.IntegerField(help_text=_("Current members you may see, after the change."))


class MemberCustomerOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    city = serializers.CharField()
    owner = serializers.IntegerField(source="owner_id", allow_null=True)
    owner_name = serializers.CharField(source="owner.name", default=None, allow_null=True)


class MemberOutput(serializers.ModelSerializer):
    customer = MemberCustomerOutput()

    class Meta:
        model = SegmentMembership
        fields = ["customer", "entered_at", "entry_reason"]


class ExclusionOutput(serializers.Serializer):
    customer = serializers.IntegerField(source="customer_id")
    name = serializers.CharField(source="customer.name")
    reason = serializers.CharField()
    excluded_by = serializers.IntegerField(source="excluded_by_id", allow_null=True)
    excluded_at = serializers.DateTimeField()


class SegmentSizeOutput(serializers.ModelSerializer):
    size = serializers.IntegerField(source="visible_size", help_text=_("Members you may see at that moment."))
    entered = serializers.SerializerMethodField(help_text=_("Entered in that run (null for sales reps)."))
    exited = serializers.SerializerMethodField(help_text=_("Exited in that run (null for sales reps)."))

    class Meta:
        model = SegmentSize
        fields = ["at", "size", "entered", "exited"]

    @extend_schema_field(OpenApiTypes.INT)
    def get_entered(self, point: SegmentSize) -> int | None:
        return point.entered if self.context.get("sees_all") else None

    @extend_schema_field(OpenApiTypes.INT)
    def get_exited(self, point: SegmentSize) -> int | None:
        return point.exited if self.context.get("sees_all") else None


# ------------------------------------------------------------------------------------------- one customer


class SegmentRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = SegmentKindField()


class CurrentSegmentOutput(serializers.Serializer):
    segment = SegmentRefOutput()
    entered_at = serializers.DateTimeField()
    entry_reason = serializers.CharField()


class PastSegmentOutput(CurrentSegmentOutput):
    exited_at = serializers.DateTimeField()
    exit_reason = serializers.CharField()


class CustomerRfmOutput(serializers.ModelSerializer):
    rfm_class = RfmClassField()

    class Meta:
        model = CustomerRfm
        fields = ["recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_class", "computed_at"]


class StageOutput(serializers.Serializer):
    stage = serializers.CharField()
    since = serializers.DateTimeField()


class StagesOutput(serializers.Serializer):
    aipl = StageOutput(allow_null=True)
    lifecycle = StageOutput(allow_null=True)
    ladder = StageOutput(allow_null=True)


class RfmTransitionOutput(serializers.ModelSerializer):
    from_class = serializers.CharField(help_text=_("Blank for the customer's first class."))
    to_class = RfmClassField()

    class Meta:
        model = RfmTransition
        fields = ["from_class", "to_class", "at"]


class CustomerSegmentsOutput(serializers.Serializer):
    current = CurrentSegmentOutput(many=True)
    history = PastSegmentOutput(many=True, help_text=_("Past episodes, the latest exit first."))
    rfm = CustomerRfmOutput(allow_null=True)
    stages = StagesOutput()
    rfm_transitions = RfmTransitionOutput(many=True, help_text=_("The latest class changes, newest first."))


# --------------------------------------------------------------------------------------------------- layers


def _is_monotonic(values: list, *, ascending: bool) -> bool:
    pairs = list(pairwise(values))
    return all(a < b for a, b in pairs) if ascending else all(a > b for a, b in pairs)


class RfmThresholdsField(serializers.DictField):
    """{"r": [4 ascending day counts], "f": [4 descending counts], "m": [4 descending amounts]}: the bounds of
    scores 5, 4, 3 and 2 (recency: at most so many days; frequency and spend: at least); beyond the last, 1."""

    def __init__(self, **kwargs) -> None:
        super().__init__(child=serializers.ListField(child=serializers.FloatField(min_value=0)), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        errors = {}
        if missing := sorted({"r", "f", "m"} - set(value)):
            errors["missing"] = [_("Missing: %(keys)s.") % {"keys": ", ".join(missing)}]
        for key in sorted(value):
            bounds = value[key]
            if key not in ("r", "f", "m"):
                errors[key] = [_("Unknown dimension; expected r, f and m.")]
            elif len(bounds) != 4:
                errors[key] = [_("Expected 4 numbers, the bounds of scores 5, 4, 3 and 2.")]
            elif key == "r" and not _is_monotonic(bounds, ascending=True):
                errors[key] = [_("Expected strictly ascending numbers of days.")]
            elif key != "r" and not _is_monotonic(bounds, ascending=False):
                errors[key] = [_("Expected strictly descending numbers.")]
            else:
                value[key] = [int(b) if b == int(b) else b for b in bounds]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class HighFromField(serializers.DictField):
    """{"r": 3, "f": 3, "m": 3}: the score from which a dimension counts as high."""

    def __init__(self, **kwargs) -> None:
        super().__init__(child=serializers.IntegerField(min_value=1, max_value=5), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if set(value) != {"r", "f", "m"}:
            raise serializers.ValidationError(_("Expected exactly the keys r, f and m."))
        return value


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know (a misspelt setting would otherwise be dropped without a word)."""

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise serializers.ValidationError({key: [_("Unknown setting.")] for key in unknown})
        return super().to_internal_value(data)


def _days(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=3650, required=False, **kwargs)


def _names(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(max_length=60), required=False, **kwargs)


class AiplSettings(StrictSerializer):
    interest_days = _days(help_text=_("Engaged within so many days: interest."))
    engagement_types = _names(allow_empty=False, help_text=_("Event types that count as engagement."))
    purchase_days = _days(help_text=_("Bought within so many days: purchase."))
    loyal_orders = serializers.IntegerField(min_value=1, max_value=100, required=False)


class LifecycleSettings(StrictSerializer):
    preset = serializers.CharField(max_length=20, required=False, help_text=_("ecommerce, education or high_ticket."))
    dormant_days = _days()
    churned_days = _days()
    vip_top_percent = serializers.IntegerField(min_value=0, max_value=100, required=False)
    repeat_orders = serializers.IntegerField(min_value=2, max_value=100, required=False)
    trial_categories = _names()
    trial_event_types = _names()
    experience_categories = _names()
    experience_event_types = _names()
    course_categories = _names()
    chat_event_types = _names()
    intent_event_types = _names()

    def validate(self, attrs):
        if attrs.get("churned_days", 0) and attrs["churned_days"] <= attrs.get("dormant_days", 0):
            raise serializers.ValidationError({"churned_days": [_("Must be more than dormant_days.")]})
        return attrs

    def validate_preset(self, preset: str) -> str:
        from segments.services.layers.stages import LIFECYCLE_PRESETS

        if preset not in LIFECYCLE_PRESETS:
            raise serializers.ValidationError(
                _("Expected one of %(presets)s.") % {"presets": ", ".join(LIFECYCLE_PRESETS)}
            )
        return preset


class LadderSettings(StrictSerializer):
    period_days = _days()
    repurchase_orders = serializers.IntegerField(min_value=2, max_value=100, required=False)


class LayeringSettingsSerializer(serializers.ModelSerializer):
    """The layering settings. On PUT, fields left out keep their value, and so do the keys left out of `aipl`,
    `lifecycle` and `ladder`. The result is checked as the recompute will read it, so a saved setting never
    fails the nightly run."""

    rfm_method = serializers.ChoiceField(choices=RfmMethod.choices, required=False)
    rfm_thresholds = RfmThresholdsField(required=False)
    rfm_high_from = HighFromField(required=False)
    aipl = AiplSettings(required=False)
    lifecycle = LifecycleSettings(required=False)
    ladder = LadderSettings(required=False)

    class Meta:
        model = LayeringSettings
        fields = ["rfm_window_days", "rfm_as_of", "rfm_method", "rfm_thresholds", "rfm_high_from", "aipl",
                  "lifecycle", "ladder", "updated_at"]  # fmt: skip
        read_only_fields = ["updated_at"]
        extra_kwargs = {"rfm_window_days": {"min_value": 1, "max_value": 3650}}

    def validate(self, attrs):
        from segments.services.layers.rfm import parameters
        from segments.services.layers.stages import aipl_settings, ladder_settings, lifecycle_settings

        current = self.instance or LayeringSettings()
        defaults = {"aipl": default_aipl(), "lifecycle": default_lifecycle(), "ladder": default_ladder()}
        for key, default in defaults.items():
            if key in attrs:
                attrs[key] = {**default, **(getattr(current, key) or {}), **attrs[key]}
        merged = LayeringSettings(**{f: attrs.get(f, getattr(current, f)) for f in self.Meta.fields[:-1]})
        errors = {}
        for check in (parameters, aipl_settings, lifecycle_settings, ladder_settings):
            try:
                check(merged)
            except ValueError as exc:  # "lifecycle.preset: expected …" → under "lifecycle"
                errors[str(exc).split(":", 1)[0].split(".", 1)[0]] = [str(exc)]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class RfmClassOutput(serializers.Serializer):
    rfm_class = RfmClassField()
    label = serializers.CharField()
    r_high = serializers.BooleanField(allow_null=True, help_text=_("Recent (null for no_purchase)."))
    f_high = serializers.BooleanField(allow_null=True)
    m_high = serializers.BooleanField(allow_null=True)
    count = serializers.IntegerField()
    share = serializers.FloatField(help_text=_("Of the customers counted, 0 to 1."))
    gmv = serializers.DecimalField(max_digits=16, decimal_places=2, help_text=_("Spend in the window."))
    gmv_share = serializers.FloatField()
    avg_recency_days = serializers.FloatField(allow_null=True)
    avg_frequency = serializers.FloatField(allow_null=True)
    avg_monetary = serializers.DecimalField(max_digits=16, decimal_places=2, allow_null=True)


class RfmGridOutput(serializers.Serializer):
    customers = serializers.IntegerField()
    gmv = serializers.DecimalField(max_digits=16, decimal_places=2)
    classes = RfmClassOutput(many=True)


class RfmMigrationOutput(serializers.Serializer):
    classes = serializers.ListField(child=serializers.CharField())
    matrix = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text=_("Class on `from` → class on `to` → customers."),
    )
    customers = serializers.IntegerField()
    changed = serializers.IntegerField(help_text=_("Customers whose class differs between the two dates."))

    def get_fields(self):
        return {"from": serializers.DateField(), "to": serializers.DateField(), **super().get_fields()}


class RfmMigrationInput(serializers.Serializer):
    """`from` and `to` are Python keywords, hence the fields declared in get_fields."""

    def get_fields(self):
        return {"from": serializers.DateField(), "to": serializers.DateField()}

    def validate(self, attrs):
        if attrs["from"] > attrs["to"]:
            raise serializers.ValidationError({"to": [_("Must be on or after `from`.")]})
        return attrs


class StageCountOutput(serializers.Serializer):
    stage = serializers.CharField()
    label = serializers.CharField()
    count = serializers.IntegerField()
    share = serializers.FloatField()


class DistributionOutput(serializers.Serializer):
    model = serializers.CharField()
    customers = serializers.IntegerField()
    stages = StageCountOutput(many=True)


class FunnelStageOutput(StageCountOutput):
    reached = serializers.IntegerField(help_text=_("At this stage or a later one."))
    conversion = serializers.FloatField(allow_null=True, help_text=_("reached / the stage before's reached."))


class FunnelOutput(DistributionOutput):
    stages = FunnelStageOutput(many=True)


LAYER_MODELS = ["rfm", *LayerModel.values]


class LayersRecomputeInput(serializers.Serializer):
    models = serializers.ListField(
        child=serializers.ChoiceField(choices=LAYER_MODELS), allow_empty=False, required=False,
        help_text=_("Default: all four, RFM first."),
    )  # fmt: skip
    as_of = serializers.DateField(required=False, help_text=_("RFM's reference date (default: the settings')."))


class LayersRecomputeOutput(serializers.Serializer):
    queued = serializers.BooleanField(help_text=_("True: a worker recomputes every model; no outcomes yet."))
    outcomes = serializers.DictField(
        child=serializers.DictField(), help_text=_('Per model: its run\'s numbers, or {"error": "…"}.')
    )
