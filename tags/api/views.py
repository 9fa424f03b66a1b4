"""REST API for tags: groups, tags and their auto-tag rules, customers' tags, bulk tagging, history and
questionnaires. Every read is limited to the customers the user may see; writes go through tags.services."""

from __future__ import annotations

import django_filters
from django.db import transaction
from django.db.models import Count, OuterRef, Prefetch, ProtectedError, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiToken
from customers import selectors
from customers.conditions import RuleError, describe, matching_customers
from customers.models import Customer
from customers.querysets import correlated_count
from tags import services
from tags.api import serializers as s
from tags.models import (
    CustomerTag,
    Question,
    Questionnaire,
    QuestionnaireResponse,
    Tag,
    TagAction,
    TagGroup,
    TagHistory,
    TagRule,
    TagSource,
)
from tags.services import (
    MANUAL_SOURCES,
    TagError,
    add_tags,
    apply_rule,
    delete_rule,
    remove_tags,
    save_rule,
    submit_answers,
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = gettext_lazy("The request conflicts with the current state.")
    default_code = "conflict"


RULE_ERROR = OpenApiResponse(s.RuleErrorOutput, description="The rule does not validate; `issues` say where.")
CONFLICT = OpenApiResponse(s.ErrorOutput, description="Refused in the current state; `code` says why.")


def _invalid_rule(exc: RuleError) -> Response:
    """A RuleError as a 400 listing every issue with its path (returned, not raised: the exception handler keeps
    only `detail` and `code` of raised errors)."""
    body = {"detail": _("The rule is not valid."), "code": "invalid_rule", "issues": [i.as_dict() for i in exc.issues]}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _source_of(request: Request) -> str:
    """Integrations (API tokens) tag with source "api"; people in the browser tag "by hand"."""
    return TagSource.API if isinstance(request.auth, ApiToken) else TagSource.MANUAL


def _tags_with_counts(user) -> QuerySet[Tag]:
    """Tags with their rule joined and `customer_count`: the distinct customers carrying the tag that `user` may
    see, as one correlated subquery per returned row (evaluated after the page's LIMIT)."""
    carriers = CustomerTag.objects.visible_to(user).filter(tag=OuterRef("pk"))
    return Tag.objects.select_related("rule").annotate(
        customer_count=correlated_count(carriers, by="tag", count=Count("customer", distinct=True))
    )


# ------------------------------------------------------------------------------------------ groups and tags


class TagGroupViewSet(viewsets.ModelViewSet):
    """Tag groups: everyone reads, admins and operators change them."""

    write_requires_manage = True
    queryset = TagGroup.objects.all()
    serializer_class = s.TagGroupSerializer
    search_fields = ["name"]

    @extend_schema(responses={204: None, 409: CONFLICT})
    def destroy(self, request, *args, **kwargs):
        group = self.get_object()
        try:
            group.delete()
        except ProtectedError as exc:
            raise Conflict(_("The group still holds tags; move or delete them first."), code="group_not_empty") from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class TagViewSet(viewsets.ModelViewSet):
    """Tags, each with the number of customers you may see who carry it and its auto-tag rule, if any."""

    filterset_fields = ["group", "kind"]
    search_fields = ["name"]
    lookup_value_regex = r"\d+"

    @property
    def write_requires_manage(self) -> bool:
        # Bulk tagging is a write over the caller's own customers, open to reps; the tags themselves are managed.
        return self.action != "bulk"

    def get_queryset(self):
        return _tags_with_counts(self.request.user)

    def get_serializer_class(self):
        if self.action in ("create", "update", "partial_update"):
            return s.TagInput
        return s.TagListOutput if self.action == "list" else s.TagOutput

    def _output(self, tag: Tag, *, code: int = status.HTTP_200_OK) -> Response:
        return Response(s.TagOutput(self.get_queryset().get(pk=tag.pk)).data, status=code)

    @extend_schema(request=s.TagInput, responses={201: s.TagOutput})
    def create(self, request, *args, **kwargs):
        data = s.TagInput(data=request.data)
        data.is_valid(raise_exception=True)
        return self._output(data.save(), code=status.HTTP_201_CREATED)

    @extend_schema(request=s.TagInput, responses=s.TagOutput)
    def update(self, request, *args, **kwargs):
        data = s.TagInput(self.get_object(), data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        return self._output(data.save())

    @extend_schema(request=s.TagInput, responses=s.TagOutput)
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(responses={204: None, 409: CONFLICT})
    def destroy(self, request, *args, **kwargs):
        """Delete the tag and take it off every customer; refused while another tag's rule names it."""
        tag = self.get_object()
        if using := services.rules_using(tag):
            names = "、".join(tag_rule.tag.name for tag_rule in using)
            raise Conflict(
                _("The rules of %(tags)s use this tag; change them first.") % {"tags": names}, code="tag_in_use"
            )
        services.delete_tag(tag, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], request=None, responses={200: s.TagRuleOutput})
    @extend_schema(methods=["PUT"], request=s.TagRuleInput, responses={200: s.TagRuleOutput, 400: RULE_ERROR})
    @extend_schema(methods=["DELETE"], request=None, responses={204: None})
    @action(detail=True, methods=["get", "put", "delete"])
    def rule(self, request, pk=None):
        """The tag's auto-tag rule. PUT creates or replaces it (then it is evaluated in full by a worker); DELETE
        removes it with the tags it gave, and the tag becomes a manual one."""
        tag = self.get_object()
        if request.method == "PUT":
            data = s.TagRuleInput(data=request.data)
            data.is_valid(raise_exception=True)
            try:
                tag_rule = save_rule(
                    tag, data.validated_data["rule"], by=request.user, is_active=data.validated_data["is_active"]
                )
            except RuleError as exc:
                return _invalid_rule(exc)
            return Response(s.TagRuleOutput(tag_rule).data)
        tag_rule = _rule_of(tag)
        if request.method == "DELETE":
            delete_rule(tag_rule)
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.TagRuleOutput(tag_rule).data)

    @extend_schema(request=None, responses={200: s.RuleRunOutput, 400: RULE_ERROR, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        """Evaluate the tag's rule over every customer now; returns what changed."""
        tag_rule = _rule_of(self.get_object())
        if not tag_rule.is_active:
            raise Conflict(_("The rule is switched off."), code="rule_inactive")
        try:
            run = apply_rule(tag_rule)
        except RuleError as exc:
            return _invalid_rule(exc)
        return Response(s.RuleRunOutput(run.as_dict()).data)

    @extend_schema(request=s.TagBulkInput, responses={200: s.TagBulkOutput, 400: RULE_ERROR})
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """Add or remove tags on the customers matching a rule, or on listed customers, among those you may see.
        Removal takes off every source but rules."""
        data = s.TagBulkInput(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        visible = Customer.objects.visible_to(request.user)
        if "rule" in given:
            try:
                targets = matching_customers(given["rule"], base=visible)
            except RuleError as exc:
                return _invalid_rule(exc)
        else:
            wanted = set(given["customers"])
            targets = visible.filter(pk__in=wanted)
            if missing := sorted(wanted - set(targets.values_list("pk", flat=True))):
                raise ValidationError({"customers": [_("Customers not found: %(ids)s") % {"ids": missing[:20]}]})
        with transaction.atomic():
            customers = targets.count()
            if given["action"] == "add":
                affected = add_tags(targets, given["tags"], source=_source_of(request), by=request.user)
            else:
                affected = remove_tags(targets, given["tags"], sources=MANUAL_SOURCES, by=request.user)
        return Response({"affected": affected, "customers": customers})


def _rule_of(tag: Tag) -> TagRule:
    try:
        return tag.rule
    except TagRule.DoesNotExist:
        raise NotFound(_("This tag has no rule."), code="no_rule") from None


class RuleViewSet(viewsets.ViewSet):
    """Try a rule before saving it. Both are reads, open to everyone signed in (analysts too)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=s.RuleInput, responses={200: s.RuleValidOutput, 400: RULE_ERROR})
    @action(detail=False, methods=["post"])
    def validate(self, request):
        """Check a rule; a bad one answers 400 with every issue and its path."""
        data = s.RuleInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            description = describe(data.validated_data["rule"])
        except RuleError as exc:
            return _invalid_rule(exc)
        return Response({"valid": True, "description": description})

    @extend_schema(request=s.RulePreviewInput, responses={200: s.RulePreviewOutput, 400: RULE_ERROR})
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """How many of the customers you may see match a rule, with the newest few."""
        data = s.RulePreviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        rule, size = data.validated_data["rule"], data.validated_data["sample"]
        try:
            description = describe(rule)
            matches = matching_customers(rule, base=Customer.objects.visible_to(request.user))
        except RuleError as exc:
            return _invalid_rule(exc)
        sample = list(matches.order_by("-id").values("id", "name")[:size]) if size else []
        return Response({"count": matches.count(), "description": description, "sample": sample})


# ------------------------------------------------------------------------------------------ customers' tags


def _customer_tags(customer: Customer) -> list[dict]:
    """The customer's tags, each with its sources (who added it, when), in the tags' display order."""
    links = (
        CustomerTag.objects.filter(customer=customer)
        .select_related("tag")
        .order_by("tag__group__position", "tag__group__name", "tag__name", "tag_id", "added_at", "source")
    )
    tags: dict[int, dict] = {}
    for link in links:
        entry = tags.setdefault(link.tag_id, {"id": link.tag_id, "name": link.tag.name, "colour": link.tag.colour,
                                              "group": link.tag.group_id, "sources": []})  # fmt: skip
        entry["sources"].append({"source": link.source, "added_by": link.added_by_id, "added_at": link.added_at})
    return s.CustomerTagOutput(list(tags.values()), many=True).data


CUSTOMER_PK = OpenApiParameter("customer_pk", OpenApiTypes.INT, OpenApiParameter.PATH)
TAG_ID = OpenApiParameter("tag_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class CustomerTagViewSet(viewsets.ViewSet):
    """A customer's tags. Reps tag their own customers; a customer you may not see is 404."""

    lookup_field = "tag_id"
    lookup_value_regex = r"\d+"

    @extend_schema(parameters=[CUSTOMER_PK], responses=s.CustomerTagOutput(many=True))
    def list(self, request, customer_pk=None):
        return Response(_customer_tags(selectors.get_customer(request.user, customer_pk)))

    @extend_schema(parameters=[CUSTOMER_PK], request=s.TagIdsInput, responses={200: s.CustomerTagOutput(many=True)})
    def create(self, request, customer_pk=None):
        """Add tags (source "api" with an API token, "manual" in the browser); answers the customer's tags."""
        customer = selectors.get_customer(request.user, customer_pk)
        data = s.TagIdsInput(data=request.data)
        data.is_valid(raise_exception=True)
        add_tags([customer.pk], data.validated_data["tags"], source=_source_of(request), by=request.user)
        return Response(_customer_tags(customer))

    @extend_schema(parameters=[CUSTOMER_PK, TAG_ID], responses={204: None, 409: CONFLICT})
    def destroy(self, request, customer_pk=None, tag_id=None):
        """Remove the tag from every source but rules; 409 `tag_from_rule` if a rule still gives it."""
        customer = selectors.get_customer(request.user, customer_pk)
        links = CustomerTag.objects.filter(customer=customer, tag_id=int(tag_id))
        if not links.exists():
            raise NotFound(_("The customer does not carry this tag."))
        remove_tags([customer.pk], [int(tag_id)], sources=MANUAL_SOURCES, by=request.user)
        if links.filter(source=TagSource.RULE).exists():
            raise Conflict(
                _("An auto-tag rule gives this tag, so it stays; its other sources were removed."), code="tag_from_rule"
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TagHistoryFilter(django_filters.FilterSet):
    # Plain ids: a choice filter would tell "no such customer" (400) from "not yours" (empty list).
    customer = django_filters.NumberFilter(field_name="customer_id")
    tag = django_filters.NumberFilter(field_name="tag_id")
    action = django_filters.ChoiceFilter(choices=TagAction.choices)
    source = django_filters.ChoiceFilter(choices=TagSource.choices)

    class Meta:
        model = TagHistory
        fields = ["customer", "tag", "action", "source"]


class TagHistoryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Every add and remove on the customers you may see, newest first."""

    serializer_class = s.TagHistoryOutput
    filter_backends = [DjangoFilterBackend]
    filterset_class = TagHistoryFilter

    def get_queryset(self):
        return TagHistory.objects.visible_to(self.request.user)


# ------------------------------------------------------------------------------------------- questionnaires


@extend_schema_view(
    create=extend_schema(request=s.QuestionnaireInput, responses={201: s.QuestionnaireOutput}),
    update=extend_schema(request=s.QuestionnaireInput, responses=s.QuestionnaireOutput),
)
class QuestionnaireViewSet(viewsets.ModelViewSet):
    """Questionnaires with their questions and answer codes (the codebook mapping answers to tags), written as
    one nested payload by admins and operators. Anyone who may write submits answers for customers they see."""

    filterset_fields = ["is_active"]
    search_fields = ["name"]
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    @property
    def write_requires_manage(self) -> bool:
        return self.action != "answers"

    def get_queryset(self):
        codes = Prefetch("questions", queryset=Question.objects.prefetch_related("codes"))
        return Questionnaire.objects.prefetch_related(codes)

    def get_serializer_class(self):
        return s.QuestionnaireInput if self.action in ("create", "update") else s.QuestionnaireOutput

    def _output(self, questionnaire: Questionnaire, *, code: int = status.HTTP_200_OK) -> Response:
        return Response(s.QuestionnaireOutput(self.get_queryset().get(pk=questionnaire.pk)).data, status=code)

    def create(self, request, *args, **kwargs):
        data = s.QuestionnaireInput(data=request.data)
        data.is_valid(raise_exception=True)
        return self._output(services.save_questionnaire(None, data.validated_data), code=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        questionnaire = self.get_object()
        data = s.QuestionnaireInput(questionnaire, data=request.data)
        data.is_valid(raise_exception=True)
        return self._output(services.save_questionnaire(questionnaire, data.validated_data))

    @extend_schema(responses={204: None, 409: CONFLICT})
    def destroy(self, request, *args, **kwargs):
        """Refused once customers have answered (their tags hang on the answers): switch it off instead."""
        questionnaire = self.get_object()
        if questionnaire.responses.exists():
            raise Conflict(
                _("Customers have answered this questionnaire; switch it off instead."), code="questionnaire_answered"
            )
        questionnaire.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.AnswersInput, responses={200: s.QuestionnaireResponseOutput, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def answers(self, request, pk=None):
        """Store a customer's answers and give the tags their codes map to. Unknown questions or codes answer 400
        with every problem by field, and nothing is written."""
        questionnaire = self.get_object()
        data = s.AnswersInput(data=request.data)
        data.is_valid(raise_exception=True)
        customer = selectors.get_customer(request.user, data.validated_data["customer"])
        if not questionnaire.is_active:
            raise Conflict(_("The questionnaire is switched off."), code="questionnaire_inactive")
        try:
            response = submit_answers(questionnaire, customer, data.validated_data["answers"], by=request.user)
        except TagError as exc:
            raise ValidationError(exc.errors) from exc
        return Response(s.QuestionnaireResponseOutput(response).data)

    @extend_schema(
        parameters=[OpenApiParameter("customer", OpenApiTypes.INT, description="Only this customer's answers.")],
        responses=s.QuestionnaireResponseOutput(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def responses(self, request, pk=None):
        """Stored answers of the customers you may see, newest first."""
        questionnaire = self.get_object()
        answered = QuestionnaireResponse.objects.visible_to(request.user).filter(questionnaire=questionnaire)
        if customer := request.query_params.get("customer"):
            if not customer.isdigit():
                raise ValidationError({"customer": [_("Expected a customer id.")]})
            answered = answered.filter(customer_id=int(customer))
        page = self.paginate_queryset(answered)
        return self.get_paginated_response(s.QuestionnaireResponseOutput(page, many=True).data)
