"""The layering models, recomputed set-based in SQL: RFM (`rfm`), AIPL, lifecycle and the relationship ladder
(`stages`). Each model runs in its own transaction under its own lock and moves its model segments
("rfm:<class>", "aipl:<stage>", "lifecycle:<stage>", "ladder:<level>") with history and domain events.
Rules and settings: docs/segments.md."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from segments.models import LayerModel
from segments.services.layers.rfm import recompute_rfm
from segments.services.layers.stages import StageRun, recompute_stages

__all__ = ["MODELS", "StageRun", "recompute_layers", "recompute_rfm", "recompute_stages"]

logger = logging.getLogger(__name__)

MODELS = ("rfm", *LayerModel.values)


def recompute_layers(
    models: tuple[str, ...] | list[str] = MODELS,
    *,
    as_of: date | None = None,
    now: datetime | None = None,
    incremental: bool = False,
) -> dict[str, dict[str, Any]]:
    """Recompute the given models, RFM first (incrementally when asked and possible: the nightly run). A model
    that fails is logged and reported without stopping the others (each commits on its own). Returns, per model,
    its outcome or `{"error": …}`."""
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown layering models: {', '.join(unknown)}")
    outcomes: dict[str, dict[str, Any]] = {}
    for model in (m for m in MODELS if m in models):
        try:
            if model == "rfm":
                run = recompute_rfm(as_of=as_of, incremental=incremental)
                outcomes[model] = {"run": run.pk, "as_of": str(run.as_of), "full": run.full,
                                   "transitions": run.transitions, "duration_ms": run.duration_ms}  # fmt: skip
            else:
                outcomes[model] = recompute_stages(model, now=now).as_dict()
        except Exception as exc:
            logger.exception("segments.layer_failed", extra={"model": model})
            outcomes[model] = {"error": f"{type(exc).__name__}: {exc}"}
    return outcomes
