"""API shapes for tags. Output serializers are read-only; writes go through the tags services."""

from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from customers.conditions import RuleError, describe
from tags.models import (
    AnswerCode,
    Question,
    Questionnaire,
    QuestionnaireResponse,
    Tag,
    TagGroup,
    TagHistory,
    TagKind,
    TagRule,
)

MAX_BULK_CUSTOMERS = 10_000


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


class TagGroupSerializer(serializers.ModelSerializer):
    class Meta:
        model = TagGroup
        fields = ["id", "name", "description", "position"]


# ----------------------------------------------------------------------------------------------------- tags


class TagRuleBriefOutput(serializers.ModelSerializer):
    class Meta:
        model = TagRule
        fields = ["rule", "is_active", "is_time_relative", "updated_at", "last_run_at", "last_run_stats"]


class TagRuleOutput(TagRuleBriefOutput):
    description = serializers.SerializerMethodField(help_text=_("The rule in words; null if it no longer validates."))

    class Meta(TagRuleBriefOutput.Meta):
        fields = ["rule", "description", *TagRuleBriefOutput.Meta.fields[1:]]

    @extend_schema_field(OpenApiTypes.STR)
    def get_description(self, tag_rule: TagRule) -> str | None:
        try:
            return describe(tag_rule.rule)
        except RuleError:
            return None


class TagKindField(serializers.ChoiceField):
    def __init__(self, **kwargs) -> None:
        super().__init__(choices=TagKind.choices, **kwargs)


class TagKindFieldSchema(OpenApiSerializerFieldExtension):
    """Names the tag kinds' enum: spectacular's automatic naming collides with the channels' `kind` choices."""

    target_class = TagKindField

    def get_name(self) -> str:
        return "TagKindEnum"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": TagKind.values}


class TagListOutput(serializers.ModelSerializer):
    """A tag in a list. The rule's description is left out: wording a rule may look up the tags and attributes it
    names, which would cost queries per row; the tag's detail has it."""

    kind = TagKindField(read_only=True)
    customer_count = serializers.IntegerField(read_only=True, help_text=_("Customers you may see who carry it."))
    rule = TagRuleBriefOutput(read_only=True, allow_null=True)

    class Meta:
        model = Tag
        fields = ["id", "group", "name", "colour", "description", "kind", "customer_count", "rule", "created_at"]


class TagOutput(TagListOutput):
    rule = TagRuleOutput(read_only=True, allow_null=True)

    class Meta(TagListOutput.Meta):
        pass


class TagInput(serializers.ModelSerializer):
    colour = serializers.CharField(
        required=False,
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Expected a hex colour like #0d6efd."))],
    )

    class Meta:
        model = Tag
        fields = ["group", "name", "colour", "description"]


class RuleInput(serializers.Serializer):
    rule = serializers.JSONField(help_text=_("A condition tree of the rule language."))


class TagRuleInput(RuleInput):
    is_active = serializers.BooleanField(default=True)


class RuleIssueOutput(serializers.Serializer):
    path = serializers.CharField(help_text=_("Where in the rule, e.g. $.all[1].value."))
    message = serializers.CharField()


class RuleErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    issues = RuleIssueOutput(many=True)


class RuleValidOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    description = serializers.CharField()


class RulePreviewInput(RuleInput):
    sample = serializers.IntegerField(min_value=0, max_value=100, default=10)


class CustomerRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class RulePreviewOutput(serializers.Serializer):
    count = serializers.IntegerField()
    description = serializers.CharField()
    sample = CustomerRefOutput(many=True)


class RuleRunOutput(serializers.Serializer):
    matched = serializers.IntegerField()
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    seconds = serializers.FloatField()
    full = serializers.BooleanField()


# ------------------------------------------------------------------------------------------ customers' tags


class TagIdsInput(serializers.Serializer):
    tags = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=500)

    def validate_tags(self, tag_ids: list[int]) -> list[int]:
        wanted = set(tag_ids)
        known = set(Tag.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        if unknown := sorted(wanted - known):
            raise serializers.ValidationError(
                _("No tag with id %(ids)s.") % {"ids": ", ".join(map(str, unknown))}, code="unknown_tag"
            )
        return sorted(wanted)


class TagSourceOutput(serializers.Serializer):
    source = serializers.CharField()
    added_by = serializers.IntegerField(allow_null=True, help_text=_("The user who added it (null for rules)."))
    added_at = serializers.DateTimeField()


class CustomerTagOutput(serializers.Serializer):
    """A tag a customer carries, with every source that gives it."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    colour = serializers.CharField()
    group = serializers.IntegerField()
    sources = TagSourceOutput(many=True)


class TagBulkInput(TagIdsInput):
    """The customers are either those matching `rule` or the listed `customers`, always among those you may see."""

    action = serializers.ChoiceField(choices=["add", "remove"])
    rule = serializers.JSONField(required=False)
    customers = serializers.ListField(
        child=serializers.IntegerField(), allow_empty=False, max_length=MAX_BULK_CUSTOMERS, required=False
    )

    def validate(self, attrs):
        if ("rule" in attrs) == ("customers" in attrs):
            raise serializers.ValidationError(_("Give either `rule` or `customers`."), code="bulk_scope")
        return attrs


class TagBulkOutput(serializers.Serializer):
    affected = serializers.IntegerField(help_text=_("Customer tag links added or removed."))
    customers = serializers.IntegerField(help_text=_("Customers the action was applied to."))


class TagHistoryOutput(serializers.ModelSerializer):
    class Meta:
        model = TagHistory
        fields = ["id", "customer", "tag", "action", "source", "by", "at"]


# ------------------------------------------------------------------------------------------- questionnaires


class AnswerCodeSerializer(serializers.ModelSerializer):
    tag = serializers.PrimaryKeyRelatedField(queryset=Tag.objects.all(), allow_null=True, required=False)

    class Meta:
        model = AnswerCode
        fields = ["code", "label", "tag"]


class QuestionSerializer(serializers.ModelSerializer):
    codes = AnswerCodeSerializer(many=True, allow_empty=False)

    class Meta:
        model = Question
        fields = ["code", "text", "allows_many", "position", "codes"]

    def validate_codes(self, codes: list[dict]) -> list[dict]:
        if duplicates := _duplicates(code["code"] for code in codes):
            raise serializers.ValidationError(
                _("Answer codes repeat: %(codes)s.") % {"codes": ", ".join(duplicates)}, code="duplicate_code"
            )
        return codes


class QuestionnaireOutput(serializers.ModelSerializer):
    questions = QuestionSerializer(many=True, read_only=True)

    class Meta:
        model = Questionnaire
        fields = ["id", "name", "description", "is_active", "created_at", "questions"]


class QuestionnaireInput(serializers.ModelSerializer):
    """The whole questionnaire: its questions and their answer codes are replaced by what is sent, matched by
    code (so a question or answer code keeps its identity while its wording changes)."""

    questions = QuestionSerializer(many=True, allow_empty=False)

    class Meta:
        model = Questionnaire
        fields = ["name", "description", "is_active", "questions"]

    def validate_questions(self, questions: list[dict]) -> list[dict]:
        if duplicates := _duplicates(question["code"] for question in questions):
            raise serializers.ValidationError(
                _("Question codes repeat: %(codes)s.") % {"codes": ", ".join(duplicates)}, code="duplicate_code"
            )
        return questions


class AnswersInput(serializers.Serializer):
    customer = serializers.IntegerField()
    answers = serializers.JSONField(help_text=_('Question code → answer code, or a list where several are allowed: '
                                                '{"Q1": "3", "Q2": ["A", "D"]}.'))  # fmt: skip


class QuestionnaireResponseOutput(serializers.ModelSerializer):
    class Meta:
        model = QuestionnaireResponse
        fields = ["id", "questionnaire", "customer", "answers", "submitted_by", "submitted_at"]


def _duplicates(values) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated
