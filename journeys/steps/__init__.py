"""Step types, registered by type name. See steps/base.py for what a step type is."""

from journeys.steps import actions, branches, waits  # noqa: F401  (register the built-in step types)
from journeys.steps.base import (
    REGISTRY,
    Checker,
    DefinitionError,
    Move,
    RunContext,
    Running,
    StepType,
    register,
    step_type,
)

__all__ = [
    "REGISTRY", "Checker", "DefinitionError", "Move", "RunContext", "Running", "StepType", "register", "step_type",
]  # fmt: skip
