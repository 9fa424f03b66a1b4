"""The layering models' predicates for the condition engine: rfm_class, rfm_score, aipl_stage, lifecycle_stage and
ladder_level. They read the stored results (CustomerRfm, CustomerStage) with `Exists`, so a rule over them is one
query; the results change when a model is recomputed, which writes `segment.entered` / `segment.exited` events for
every class or stage change, so rules react to those kinds. (A score change within the same class writes no event:
rules on `rfm_score` catch up at the nightly full rebuild, which runs after the nightly recompute.)"""

from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext as _

from customers.conditions import Predicate, register
from customers.conditions.registry import (
    COUNT_OPERATORS,
    check_comparison,
    check_string_list,
    describe_comparison,
    reject_unknown,
    satisfies,
)
from segments.models import CustomerRfm, CustomerStage, LayerModel, RfmClass
from segments.services.layers.stages import AIPL_STAGES, LIFECYCLE_STAGES

MODEL_CHANGES = frozenset({"segment.entered", "segment.exited", "customer.merged"})
SCORES = range(1, 6)
LEVELS = range(1, 6)


def _check_choices(node, at, checker, choices: dict[str, Any]) -> list[str]:
    values = check_string_list(node, "in", at, checker, required=True)
    if unknown := [v for v in values if v not in choices]:
        checker.error(f"{at}.in", _("Unknown value %(values)s; expected some of %(choices)s.")
                      % {"values": ", ".join(unknown), "choices": ", ".join(choices)})  # fmt: skip
        return []
    return values


def _labels(values: list[str], choices: dict[str, Any]) -> str:
    return "、".join(f"“{choices[v]}”" for v in values)


def _levels_satisfying(params: dict[str, Any], levels: range) -> list[int]:
    return [level for level in levels if satisfies(level, params["op"], params["value"])]


def _check_level(node, at, checker, levels: range) -> dict[str, Any]:
    comparison = check_comparison(node, at, checker, "number", COUNT_OPERATORS)
    if comparison is None:
        return {}
    op, value = comparison
    bounds = value if op == "between" else (value,)
    if not all(b == int(b) and levels.start <= b < levels.stop for b in bounds):
        checker.error(f"{at}.value", _("Expected a whole number from %(low)d to %(high)d.")
                      % {"low": levels.start, "high": levels.stop - 1})  # fmt: skip
        return {}
    return {"op": op, "value": tuple(int(b) for b in value) if op == "between" else int(value)}


def _stage_exists(model: str, stages: list[str]) -> Q:
    return Q(Exists(CustomerStage.objects.filter(customer=OuterRef("pk"), model=model, stage__in=stages)))


RFM_CLASSES = dict(RfmClass.choices)


@register
class RfmClassPredicate(Predicate):
    """`{"predicate": "rfm_class", "in": ["important_value", "important_keep"]}`: the class at the last RFM
    recompute (no_purchase for customers without a purchase in the window)."""

    name = "rfm_class"
    params = frozenset({"in"})
    reacts_to = MODEL_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        return {"in": _check_choices(node, at, checker, RFM_CLASSES)}

    def q(self, params, ctx):
        return Q(Exists(CustomerRfm.objects.filter(customer=OuterRef("pk"), rfm_class__in=params["in"])))

    def describe(self, params):
        return _("RFM class is %(classes)s") % {"classes": _labels(params["in"], RFM_CLASSES)}


@register
class RfmScorePredicate(Predicate):
    """`{"predicate": "rfm_score", "dimension": "r", "op": "gte", "value": 4}`: the R, F or M score (1 to 5) at the
    last recompute. Customers without a purchase in the window have no scores and never match."""

    name = "rfm_score"
    params = frozenset({"dimension", "op", "value"})
    reacts_to = MODEL_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        dimension = node.get("dimension")
        if dimension not in ("r", "f", "m"):
            checker.error(f"{at}.dimension", _('Expected "r", "f" or "m".'))
            return {}
        level = _check_level(node, at, checker, SCORES)
        return {"dimension": dimension, **level} if level else {}

    def q(self, params, ctx):
        scores = _levels_satisfying(params, SCORES)
        if not scores:
            return Q(pk__in=[])
        field = f"{params['dimension']}_score__in"
        return Q(Exists(CustomerRfm.objects.filter(customer=OuterRef("pk"), **{field: scores})))

    def describe(self, params):
        label = {"r": _("RFM recency score"), "f": _("RFM frequency score"), "m": _("RFM monetary score")}
        return f"{label[params['dimension']]} {describe_comparison(params['op'], params['value'])}"


class _StagePredicate(Predicate):
    params = frozenset({"in"})
    reacts_to = MODEL_CHANGES
    model: str
    choices: dict[str, Any]

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        return {"in": _check_choices(node, at, checker, self.choices)}

    def q(self, params, ctx):
        return _stage_exists(self.model, params["in"])


@register
class AiplStagePredicate(_StagePredicate):
    """`{"predicate": "aipl_stage", "in": ["interest", "purchase"]}`"""

    name = "aipl_stage"
    model = LayerModel.AIPL
    choices = AIPL_STAGES

    def describe(self, params):
        return _("AIPL stage is %(stages)s") % {"stages": _labels(params["in"], self.choices)}


@register
class LifecycleStagePredicate(_StagePredicate):
    """`{"predicate": "lifecycle_stage", "in": ["dormant", "churned"]}` (stages of every preset are accepted)."""

    name = "lifecycle_stage"
    model = LayerModel.LIFECYCLE
    choices = LIFECYCLE_STAGES

    def describe(self, params):
        return _("lifecycle stage is %(stages)s") % {"stages": _labels(params["in"], self.choices)}


@register
class LadderLevelPredicate(Predicate):
    """`{"predicate": "ladder_level", "op": "gte", "value": 3}`: the relationship ladder level (1 to 5)."""

    name = "ladder_level"
    params = frozenset({"op", "value"})
    reacts_to = MODEL_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        return _check_level(node, at, checker, LEVELS)

    def q(self, params, ctx):
        levels = _levels_satisfying(params, LEVELS)
        if not levels:
            return Q(pk__in=[])
        return _stage_exists(LayerModel.LADDER, [str(level) for level in levels])

    def describe(self, params):
        return _("relationship ladder level %(comparison)s") % {
            "comparison": describe_comparison(params["op"], params["value"])
        }
