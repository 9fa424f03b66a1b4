"""Branches: by condition on the data current when she arrives (J22), and random splits / experiments that keep
a customer's arm on re-entry (J23) and send newcomers to the winner once the test is decided (J24)."""

from __future__ import annotations

import datetime
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from journeys.steps.base import Checker, Move, RunContext, Running, StepType, register
from journeys.steps.waits import matching_ids


@register
class Branch(StepType):
    """`{"branches": [{"label": "VIP", "rule": …, "next": "s5"}, …], "else_next": "s6"}`: the first branch whose
    rule she matches, else `else_next`."""

    type = "branch"
    label = gettext_lazy("Condition branch")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        branches = params.get("branches")
        if not isinstance(branches, list) or not branches:
            checker.error(f"{path}.branches", _("A condition branch needs at least one branch."))
            return
        for index, branch in enumerate(branches):
            if not isinstance(branch, dict):
                checker.error(f"{path}.branches[{index}]", _("Expected a branch with a rule."))
                continue
            checker.rule(branch, "rule", f"{path}.branches[{index}]")

    def targets(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        found = [
            (branch.get("label") or f"#{index + 1}", branch["next"])
            for index, branch in enumerate(params.get("branches") or [])
            if isinstance(branch, dict) and branch.get("next")
        ]
        if params.get("else_next"):
            found.append((str(_("else")), params["else_next"]))
        return found

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        moves: dict[int, Move] = {}
        remaining = list(batch)
        for index, branch in enumerate(params["branches"]):
            if not remaining:
                break
            matched = matching_ids(branch["rule"], remaining, ctx.now)
            for enrollment in remaining:
                if enrollment.customer_id in matched:
                    label = branch.get("label") or f"#{index + 1}"
                    moves[enrollment.id] = Move(f"branch:{index}", branch.get("next") or None, {"branch": label})
            remaining = [e for e in remaining if e.id not in moves]
        for enrollment in remaining:
            moves[enrollment.id] = Move("else", params.get("else_next") or None)
        return moves

    def describe(self, params: Mapping[str, Any]) -> str:
        from customers.conditions import describe

        parts = [
            f"{branch.get('label') or index + 1}: {describe(branch['rule'])}"
            for index, branch in enumerate(params.get("branches") or [])
        ]
        return _("Branch by condition") + " — " + " / ".join(parts)


@register
class Split(StepType):
    """`{"arms": [{"name": "A", "weight": 50, "next": …}, …], "experiment": {"test_days": 14, "fallback": "A",
    "confidence": 0.95}}`. The arm is a hash of the customer and the split's arms, so she gets the same arm on
    re-entry unless the split changes."""

    type = "split"
    label = gettext_lazy("Random split")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        arms = params.get("arms")
        if not isinstance(arms, list) or len(arms) < 2:
            checker.error(f"{path}.arms", _("A split needs at least two arms."))
            return
        names = [arm.get("name") for arm in arms if isinstance(arm, dict)]
        if len(set(names)) != len(arms) or not all(names):
            checker.error(f"{path}.arms", _("Every arm needs its own name."))
        for index, arm in enumerate(arms):
            if isinstance(arm, dict):
                checker.integer(arm, "weight", f"{path}.arms[{index}]", low=1, high=100)
        experiment = params.get("experiment")
        if experiment:
            checker.integer(experiment, "test_days", f"{path}.experiment", low=1, high=90)
            if experiment.get("fallback") not in names:
                checker.error(f"{path}.experiment.fallback", _("The fallback must be one of the arms."))
            confidence = experiment.get("confidence", 0.95)
            if not isinstance(confidence, int | float) or not 0.5 <= confidence < 1:
                checker.error(f"{path}.experiment.confidence", _("Expected a confidence between 0.5 and 0.99."))

    def targets(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [
            (str(arm.get("name")), arm["next"])
            for arm in params.get("arms") or []
            if isinstance(arm, dict) and arm.get("next")
        ]

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        arms = params["arms"]
        winner = self.winner(params, batch[0], ctx) if params.get("experiment") and batch else None
        moves = {}
        for enrollment in batch:
            if winner is not None:
                arm, detail = winner, {"winner": True}
            else:
                arm, detail = assign_arm(arms, enrollment.journey_id, ctx.step_id, enrollment.customer_id), {}
            chosen = next(a for a in arms if a["name"] == arm)
            moves[enrollment.id] = Move(f"arm:{arm}", chosen.get("next") or None, {"arm": arm, **detail}, arm=arm)
        return moves

    def winner(self, params: Mapping[str, Any], sample: Running, ctx: RunContext) -> str | None:
        """After the test window, the arm newcomers take: the better converting one if the difference is
        significant, else the fallback (J24). None while the test runs."""
        experiment = params["experiment"]
        started = ctx.version.published_at
        if ctx.now < started + datetime.timedelta(days=experiment["test_days"]):
            return None
        rates = arm_results(sample.journey_id, ctx.step_id, started)
        return decide_winner(rates, fallback=experiment["fallback"], confidence=experiment.get("confidence", 0.95))

    def describe(self, params: Mapping[str, Any]) -> str:
        arms = " / ".join(f"{a.get('name')} {a.get('weight')}%" for a in params.get("arms") or [])
        text = _("Random split %(arms)s") % {"arms": arms}
        if params.get("experiment"):
            text += " · " + _("experiment for %(days)s days, then the winner") % {
                "days": params["experiment"].get("test_days")
            }  # fmt: skip
        return text


def assign_arm(arms: list[Mapping[str, Any]], journey_id: int, step_id: str, customer_id: int) -> str:
    """The customer's arm: a stable hash of (journey, step, the split's arms, customer) into the weights."""
    salt = "|".join(f"{arm['name']}:{arm['weight']}" for arm in arms)
    digest = hashlib.blake2b(f"{journey_id}:{step_id}:{salt}:{customer_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") % 10_000
    total = sum(arm["weight"] for arm in arms)
    edge = 0.0
    for arm in arms:
        edge += arm["weight"] * 10_000 / total
        if point < edge:
            return arm["name"]
    return arms[-1]["name"]


def arm_results(journey_id: int, step_id: str, since: Any) -> dict[str, tuple[int, int]]:
    """Arm → (customers who took it during the test, of whom converted)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT r.detail->>'arm', count(*), count(*) FILTER (WHERE e.converted_at IS NOT NULL)
            FROM journeys_steprun r JOIN journeys_enrollment e ON e.id = r.enrollment_id
            WHERE e.journey_id = %s AND r.step = %s AND r.step_type = 'split' AND r.ran_at >= %s
              AND NOT (r.detail ? 'winner')
            GROUP BY 1
            """,
            [journey_id, step_id, since],
        )
        return {arm: (total, converted) for arm, total, converted in cursor.fetchall()}


def decide_winner(rates: Mapping[str, tuple[int, int]], *, fallback: str, confidence: float = 0.95) -> str:
    """The arm with the higher conversion rate when a two-proportion z-test says the difference is significant at
    `confidence` (two-sided); otherwise `fallback`."""
    ranked = sorted(
        ((converted / total if total else 0.0, arm, total, converted) for arm, (total, converted) in rates.items()),
        reverse=True,
    )
    if len(ranked) < 2:
        return fallback
    (p1, best, n1, c1), (p2, _second, n2, c2) = ranked[0], ranked[1]
    if not n1 or not n2:
        return fallback
    pooled = (c1 + c2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return fallback
    z = (p1 - p2) / spread
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return best if p_value < 1 - confidence else fallback
