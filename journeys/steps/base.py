"""What a step type is: how its settings are checked, where it can lead, when a customer arriving at it is next
looked at, and what running it does to a batch of enrollments (set-based: one query for the batch, not one
per customer)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from django.utils.translation import gettext_lazy as _

from journeys import timing


class DefinitionError(ValueError):
    """A journey definition that cannot be published; `issues` maps a path ("steps[2].next") to a message."""

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in issues))
        self.issues = issues

    def as_list(self) -> list[dict[str, str]]:
        return [{"path": path, "message": str(message)} for path, message in self.issues]


@dataclass
class Checker:
    issues: list[tuple[str, str]] = field(default_factory=list)

    def error(self, path: str, message: Any) -> None:
        self.issues.append((path, str(message)))

    def require(self, params: Mapping[str, Any], key: str, path: str) -> Any:
        value = params.get(key)
        if value in (None, "", []):
            self.error(f"{path}.{key}", _("This setting is required."))
        return value

    def integer(self, params: Mapping[str, Any], key: str, path: str, *, low: int = 0, high: int | None = None,
                default: int | None = None) -> int | None:  # fmt: skip
        value = params.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            bound = f"{low}-{high}" if high is not None else f"≥ {low}"
            self.error(f"{path}.{key}", _("Expected a whole number %(bound)s.") % {"bound": bound})
            return None
        return value

    def clock(self, params: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> None:
        value = params.get(key)
        if value in (None, "") and not required:
            return
        try:
            clock = timing.parse_clock(str(value))
        except (TypeError, ValueError):
            clock = None
        if clock is None or not isinstance(value, str):
            self.error(f"{path}.{key}", _("Expected a time of day such as 09:00."))

    def rule(self, params: Mapping[str, Any], key: str, path: str) -> None:
        from customers.conditions import RuleError, validate

        try:
            validate(params.get(key))
        except RuleError as exc:
            for issue in exc.issues:
                self.error(f"{path}.{key}{issue.path.removeprefix('$')}", issue.message)


@dataclass
class Running:
    """One enrollment as a step sees it."""

    id: int
    customer_id: int
    journey_id: int
    version_id: int
    rotation: int
    seq: int
    step_entered_at: datetime.datetime
    due: datetime.datetime  # when this run was due: the idempotency basis of what it sends
    tz: ZoneInfo
    wait: dict[str, Any]
    arms: dict[str, Any]
    context: dict[str, Any]
    owner_id: int | None = None


@dataclass
class Move:
    """What running a step did for one enrollment: `next_step` None ends the journey; `stay_until` keeps her at
    this step until then (a wait for an event or a condition that is not met yet)."""

    outcome: str = "done"
    next_step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    touchpoint_id: int | None = None
    stay_until: datetime.datetime | None = None
    wait: dict[str, Any] | None = None  # the step's state to keep while she stays
    arm: str | None = None
    exit_reason: str | None = None  # the exit step


@dataclass
class RunContext:
    now: datetime.datetime
    step_id: str
    journey: Any
    version: Any
    definition: Mapping[str, Any]


class StepType:
    """A kind of step. Subclasses set `type`, `label`, and override what they need."""

    type: ClassVar[str]
    label: ClassVar[Any]
    # Settings naming other steps: "next" (the default path) and, per type, its other exits.
    exits: ClassVar[tuple[str, ...]] = ("next",)
    sends: ClassVar[bool] = False

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        """Record problems with this step's settings (not its links: the definition checks those)."""

    def targets(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(label, step id) for every step this one can lead to."""
        return [(name, params[name]) for name in self.exits if params.get(name)]

    def arrive(
        self, params: Mapping[str, Any], at: datetime.datetime, tz: ZoneInfo
    ) -> tuple[datetime.datetime, dict[str, Any]]:
        """When a customer who arrived at `at` is first looked at (at once, inside the step's send window unless
        the step waits), and the state the step keeps meanwhile."""
        return with_window(params, at, tz), {}

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        """Run the step for a batch of enrollments at it; every enrollment gets a Move."""
        return {e.id: Move(next_step=params.get("next") or None) for e in batch}

    def describe(self, params: Mapping[str, Any]) -> str:
        return str(self.label)


REGISTRY: dict[str, StepType] = {}


def register(step_type: type[StepType]) -> type[StepType]:
    instance = step_type()
    if not getattr(instance, "type", None) or not getattr(instance, "label", None):
        raise ValueError(f"{step_type.__name__} needs a type and a label")
    REGISTRY[instance.type] = instance
    return step_type


def step_type(name: str) -> StepType:
    return REGISTRY[name]


def with_window(params: Mapping[str, Any], due: datetime.datetime, tz: ZoneInfo) -> datetime.datetime:
    """`due` moved into the step's send window, if it has one (J16)."""
    window = timing.window_of(params)
    return timing.in_window(due, tz, **window) if window else due
