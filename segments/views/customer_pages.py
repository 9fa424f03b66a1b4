"""What the customer pages show through `customers.extensions`: filters of the customer list by segment, RFM
class, AIPL and lifecycle stage and ladder level (each an Exists through the condition predicate of the same name),
and the layers and segments panel of a customer's page."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _

from customers.conditions import Context, registry
from customers.models import Customer
from segments import selectors
from segments.models import LayerModel, RfmClass, Segment, SegmentKind
from segments.services.layers.stages import AIPL_STAGES, LADDER_LEVELS, LIFECYCLE_STAGES, STAGES
from segments.views.layers import RFM_ACTIONS, class_labels


def _chosen(values: list[str], allowed: Mapping[str, Any]) -> list[str]:
    return sorted({value for value in values if value in allowed})


def _options(param: str, label: str, hint: str, choices: list[tuple[str, str, str]], values: list[str]):
    """A checkbox dropdown of the customer list: (value, label, group) choices, the chosen ones ticked."""
    selected = set(values)
    groups: dict[str, list[tuple[str, str, bool]]] = {}
    for value, text, group in choices:
        groups.setdefault(group, []).append((value, text, value in selected))
    return {
        "param": param,
        "label": label,
        "hint": hint,
        "groups": list(groups.items()),
        "selected": len(selected & {value for value, _text, _group in choices}),
    }


def _predicate_q(name: str, params: dict[str, Any]) -> Q:
    """The registered condition predicate's own Exists, so the filter and rules mean the same thing."""
    return registry.get(name).q(params, Context.current())


def filter_by_segments(queryset: QuerySet, values: list[str], user) -> QuerySet:
    """Customers currently in any of the chosen segments."""
    ids = sorted({int(value) for value in values if value.isdigit()})
    return queryset.filter(_predicate_q("in_segment", {"segments": ids})) if ids else queryset


def segment_filter_choices(user, values: list[str]) -> Mapping[str, Any]:
    choices = [
        (str(pk), name, str(SegmentKind(kind).label))
        for pk, name, kind in Segment.objects.filter(is_archived=False)
        .order_by("kind", "name")
        .values_list("pk", "name", "kind")
    ]
    return _options("segment", _("Segments"), _("Customers in any of these segments"), choices, values)


def filter_by_rfm_class(queryset: QuerySet, values: list[str], user) -> QuerySet:
    classes = _chosen(values, dict(RfmClass.choices))
    return queryset.filter(_predicate_q("rfm_class", {"in": classes})) if classes else queryset


def rfm_filter_choices(user, values: list[str]) -> Mapping[str, Any]:
    choices = [(key, str(label), "") for key, label in RfmClass.choices]
    return _options("rfm_class", _("RFM class"), _("Customers in any of these classes"), choices, values)


def filter_by_aipl_stage(queryset: QuerySet, values: list[str], user) -> QuerySet:
    stages = _chosen(values, AIPL_STAGES)
    return queryset.filter(_predicate_q("aipl_stage", {"in": stages})) if stages else queryset


def aipl_filter_choices(user, values: list[str]) -> Mapping[str, Any]:
    choices = [(key, str(label), "") for key, label in AIPL_STAGES.items()]
    return _options("aipl_stage", _("AIPL stage"), _("Customers at any of these stages"), choices, values)


def filter_by_lifecycle_stage(queryset: QuerySet, values: list[str], user) -> QuerySet:
    stages = _chosen(values, LIFECYCLE_STAGES)
    return queryset.filter(_predicate_q("lifecycle_stage", {"in": stages})) if stages else queryset


def lifecycle_filter_choices(user, values: list[str]) -> Mapping[str, Any]:
    choices = [(key, str(label), "") for key, label in LIFECYCLE_STAGES.items()]
    return _options("lifecycle_stage", _("Lifecycle stage"), _("Customers at any of these stages"), choices, values)


def filter_by_ladder_level(queryset: QuerySet, values: list[str], user) -> QuerySet:
    levels = _chosen(values, LADDER_LEVELS)
    if not levels:
        return queryset
    return queryset.filter(
        reduce(or_, (_predicate_q("ladder_level", {"op": "eq", "value": int(level)}) for level in levels))
    )


def ladder_filter_choices(user, values: list[str]) -> Mapping[str, Any]:
    choices = [(key, str(label), "") for key, label in LADDER_LEVELS.items()]
    return _options("ladder_level", _("Ladder level"), _("Customers at any of these levels"), choices, values)


def segments_panel(request: HttpRequest, customer: Customer) -> dict[str, Any]:
    """The customer's RFM class and scores, their stage in each layering model since when, their segments now
    and before, and their latest RFM class changes. The customer page has checked the customer is visible."""
    current, past = selectors.customer_memberships(customer)
    layers = selectors.customer_layers(customer)
    stages = []
    for model, label in LayerModel.choices:
        stage = layers.stages.get(model)
        stages.append((label, stage, str(STAGES[model].get(stage.stage, stage.stage)) if stage else ""))
    classes = class_labels()
    return {
        "customer": customer,
        "rfm": layers.rfm,
        "rfm_action": RFM_ACTIONS.get(layers.rfm.rfm_class) if layers.rfm else "",
        "stages": stages,
        "current": current,
        "past": past,
        "transitions": [
            (t, classes.get(t.from_class, classes[selectors.UNCLASSIFIED]), classes.get(t.to_class))
            for t in layers.transitions
        ],
    }
