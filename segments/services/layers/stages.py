"""AIPL, lifecycle and the relationship ladder, set-based: one statement per model computes every current
customer's stage into CustomerStage (rows whose stage did not change keep their `since` and are not written),
then the model's segments follow with history and events. The exact rules are in docs/segments.md.

Stages are evaluated top-down; the first that applies wins. Windows ("in the last N days") are relative to the
moment of the recompute, like the condition engine's `last_days`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.conditions.predicates import COUNTED_STATUSES
from customers.conditions.sets import refresh_statistics
from segments.models import LayeringSettings, LayerModel, default_aipl, default_ladder, default_lifecycle
from segments.services.layers.model_segments import ModelSegment, lock_model, set_work_mem, sync_model_segments

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- vocabulary

AIPL_STAGES = {
    "awareness": _("AIPL: awareness"),
    "interest": _("AIPL: interest"),
    "purchase": _("AIPL: purchase"),
    "loyalty": _("AIPL: loyalty"),
}
LIFECYCLE_STAGES = {
    "new": _("Lifecycle: new, not bought yet"),
    "first_purchase": _("Lifecycle: first purchase"),
    "repeat": _("Lifecycle: repeat buyer"),
    "vip": _("Lifecycle: VIP"),
    "dormant": _("Lifecycle: dormant"),
    "churned": _("Lifecycle: churned"),
    "lead": _("Lifecycle: lead"),
    "trial": _("Lifecycle: trial class"),
    "experience": _("Lifecycle: experience class"),
    "full_price": _("Lifecycle: full-price course"),
    "multi_course": _("Lifecycle: several courses"),
    "stranger": _("Lifecycle: stranger"),
    "potential": _("Lifecycle: potential (chatted)"),
    "intent": _("Lifecycle: intent (introduced, quoted)"),
    "ordered": _("Lifecycle: ordered"),
}
LIFECYCLE_PRESETS = {  # the stages each preset produces, along its transaction-node path
    "ecommerce": ["new", "first_purchase", "repeat", "vip", "dormant", "churned"],
    "education": ["lead", "trial", "experience", "full_price", "multi_course", "dormant", "churned"],
    "high_ticket": ["stranger", "potential", "intent", "ordered", "repeat", "vip", "dormant", "churned"],
}
LADDER_LEVELS = {
    "1": _("Ladder 1: basic (connected)"),
    "2": _("Ladder 2: member, no purchase in the period"),
    "3": _("Ladder 3: bought in the period"),
    "4": _("Ladder 4: repurchased in the period"),
    "5": _("Ladder 5: brand KOC"),
}
STAGES = {LayerModel.AIPL: AIPL_STAGES, LayerModel.LIFECYCLE: LIFECYCLE_STAGES, LayerModel.LADDER: LADDER_LEVELS}

# Settings the models read beyond models.py's defaults (education and high-ticket nodes; the ladder's repurchase).
LIFECYCLE_NODE_DEFAULTS: dict[str, Any] = {
    "trial_categories": ["试听课"],
    "trial_event_types": ["trial_class"],
    "experience_categories": ["体验课"],
    "experience_event_types": ["experience_class"],
    "course_categories": ["正价课"],
    "chat_event_types": ["reply"],
    "intent_event_types": ["product_intro", "price_quote"],
}
LADDER_DEFAULTS: dict[str, Any] = {"repurchase_orders": 2}


def aipl_settings(layering: LayeringSettings) -> dict[str, Any]:
    config = {**default_aipl(), **(layering.aipl or {})}
    _check_days(config, "aipl", ("interest_days", "purchase_days"))
    _check_whole(config, "aipl", "loyal_orders", 1)
    _check_texts(config, "aipl", ("engagement_types",))
    return config


def lifecycle_settings(layering: LayeringSettings) -> dict[str, Any]:
    config = {**default_lifecycle(), **LIFECYCLE_NODE_DEFAULTS, **(layering.lifecycle or {})}
    if config["preset"] not in LIFECYCLE_PRESETS:
        raise ValueError(f"lifecycle.preset: expected one of {', '.join(LIFECYCLE_PRESETS)}")
    _check_days(config, "lifecycle", ("dormant_days", "churned_days"))
    if config["churned_days"] <= config["dormant_days"]:
        raise ValueError("lifecycle.churned_days: expected more days than dormant_days")
    _check_whole(config, "lifecycle", "repeat_orders", 2)
    top = config["vip_top_percent"]
    if not isinstance(top, int | float) or isinstance(top, bool) or not 0 <= top <= 100:
        raise ValueError("lifecycle.vip_top_percent: expected a percentage from 0 to 100")
    _check_texts(config, "lifecycle", tuple(LIFECYCLE_NODE_DEFAULTS))
    return config


def ladder_settings(layering: LayeringSettings) -> dict[str, Any]:
    config = {**default_ladder(), **LADDER_DEFAULTS, **(layering.ladder or {})}
    _check_days(config, "ladder", ("period_days",))
    _check_whole(config, "ladder", "repurchase_orders", 2)
    return config


def _check_days(config: dict, name: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        _check_whole(config, name, key, 1)


def _check_whole(config: dict, name: str, key: str, minimum: int) -> None:
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}.{key}: expected a whole number of at least {minimum}")


def _check_texts(config: dict, name: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = config[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name}.{key}: expected a list of texts")


# --------------------------------------------------------------------------------------------------------- SQL

# Counted purchases (paid, shipped, completed, partly refunded) per customer; %(since)s bounds `recent`.
PURCHASES = """
    SELECT customer_id, count(*) AS orders, count(*) FILTER (WHERE ordered_at >= %(since)s) AS recent,
           max(ordered_at) AS last_at,
           percent_rank() OVER (ORDER BY sum(amount - refunded_amount) DESC) AS spend_rank
    FROM customers_order WHERE status = ANY(%(statuses)s::text[])
    GROUP BY customer_id
"""
# Customers (current) whose referral bought in the window: someone else's attributes.referred_by names them.
REFERRERS = """
    SELECT DISTINCT r.attributes ->> 'referred_by' AS referrer
    FROM customers_customer r JOIN purchases p ON p.customer_id = r.id
    WHERE r.merged_into_id IS NULL AND p.recent > 0 AND r.attributes ->> 'referred_by' <> r.id::text
"""

AIPL_SQL = f"""
WITH purchases AS ({PURCHASES}),
referrers AS ({REFERRERS}),
engaged AS (
    SELECT DISTINCT customer_id FROM customers_event
    WHERE type = ANY(%(engagement_types)s::text[]) AND occurred_at >= %(interest_since)s
),
computed AS (
    SELECT c.id AS customer_id,
           CASE WHEN p.recent >= %(loyal_orders)s OR (p.recent > 0 AND rf.referrer IS NOT NULL) THEN 'loyalty'
                WHEN p.recent > 0 THEN 'purchase'
                WHEN e.customer_id IS NOT NULL THEN 'interest'
                ELSE 'awareness' END AS stage
    FROM customers_customer c
    LEFT JOIN purchases p ON p.customer_id = c.id
    LEFT JOIN referrers rf ON rf.referrer = c.id::text
    LEFT JOIN engaged e ON e.customer_id = c.id
    WHERE c.merged_into_id IS NULL
)"""  # noqa: S608 - module constants only

LIFECYCLE_SQL = {
    "ecommerce": f"""
WITH purchases AS ({PURCHASES}),
computed AS (
    SELECT c.id AS customer_id,
           CASE WHEN p.customer_id IS NULL THEN 'new'
                WHEN p.last_at < %(churned_before)s THEN 'churned'
                WHEN p.last_at < %(dormant_before)s THEN 'dormant'
                WHEN p.spend_rank < %(vip_share)s THEN 'vip'
                WHEN p.orders >= %(repeat_orders)s THEN 'repeat'
                ELSE 'first_purchase' END AS stage
    FROM customers_customer c LEFT JOIN purchases p ON p.customer_id = c.id
    WHERE c.merged_into_id IS NULL
)""",  # noqa: S608 - module constants only
    "education": f"""
WITH purchases AS ({PURCHASES}),
courses AS (
    SELECT o.customer_id,
           count(DISTINCT o.id) FILTER (WHERE pr.category = ANY(%(course_categories)s::text[])) AS course_orders,
           bool_or(pr.category = ANY(%(experience_categories)s::text[])) AS experience,
           bool_or(pr.category = ANY(%(trial_categories)s::text[])) AS trial
    FROM customers_order o
    JOIN customers_orderline l ON l.order_id = o.id
    JOIN customers_product pr ON pr.id = l.product_id
    WHERE o.status = ANY(%(statuses)s::text[])
      AND pr.category = ANY(%(node_categories)s::text[])
    GROUP BY o.customer_id
),
attended AS (
    SELECT customer_id, bool_or(type = ANY(%(experience_event_types)s::text[])) AS experience,
           bool_or(type = ANY(%(trial_event_types)s::text[])) AS trial
    FROM customers_event WHERE type = ANY(%(node_event_types)s::text[])
    GROUP BY customer_id
),
computed AS (
    SELECT c.id AS customer_id,
           CASE WHEN p.last_at < %(churned_before)s THEN 'churned'
                WHEN p.last_at < %(dormant_before)s THEN 'dormant'
                WHEN k.course_orders >= %(repeat_orders)s THEN 'multi_course'
                WHEN k.course_orders >= 1 THEN 'full_price'
                WHEN k.experience OR a.experience THEN 'experience'
                WHEN k.trial OR a.trial THEN 'trial'
                ELSE 'lead' END AS stage
    FROM customers_customer c
    LEFT JOIN purchases p ON p.customer_id = c.id
    LEFT JOIN courses k ON k.customer_id = c.id
    LEFT JOIN attended a ON a.customer_id = c.id
    WHERE c.merged_into_id IS NULL
)""",  # noqa: S608 - module constants only
    "high_ticket": f"""
WITH purchases AS ({PURCHASES}),
talks AS (
    SELECT customer_id, bool_or(type = ANY(%(chat_event_types)s::text[])) AS chatted,
           bool_or(type = ANY(%(intent_event_types)s::text[])) AS intent
    FROM customers_event WHERE type = ANY(%(node_event_types)s::text[])
    GROUP BY customer_id
),
computed AS (
    SELECT c.id AS customer_id,
           CASE WHEN p.last_at < %(churned_before)s THEN 'churned'
                WHEN p.last_at < %(dormant_before)s THEN 'dormant'
                WHEN p.spend_rank < %(vip_share)s THEN 'vip'
                WHEN p.orders >= %(repeat_orders)s THEN 'repeat'
                WHEN p.orders >= 1 THEN 'ordered'
                WHEN t.intent THEN 'intent'
                WHEN t.chatted THEN 'potential'
                ELSE 'stranger' END AS stage
    FROM customers_customer c
    LEFT JOIN purchases p ON p.customer_id = c.id
    LEFT JOIN talks t ON t.customer_id = c.id
    WHERE c.merged_into_id IS NULL
)""",  # noqa: S608 - module constants only
}

LADDER_SQL = f"""
WITH purchases AS ({PURCHASES}),
referrers AS ({REFERRERS}),
shop_members AS (SELECT DISTINCT customer_id FROM customers_identity WHERE kind = 'shop'),
computed AS (
    SELECT c.id AS customer_id,
           CASE WHEN p.recent >= %(repurchase_orders)s AND rf.referrer IS NOT NULL THEN '5'
                WHEN p.recent >= %(repurchase_orders)s THEN '4'
                WHEN p.recent > 0 THEN '3'
                WHEN m.customer_id IS NOT NULL OR c.attributes @> '{{"member": true}}' THEN '2'
                ELSE '1' END AS stage
    FROM customers_customer c
    LEFT JOIN purchases p ON p.customer_id = c.id
    LEFT JOIN referrers rf ON rf.referrer = c.id::text
    LEFT JOIN shop_members m ON m.customer_id = c.id
    WHERE c.merged_into_id IS NULL
)"""  # noqa: S608 - module constants only

# Appended to a model's `computed` CTE: write only what changed, in one statement (all parts read the snapshot
# from before it). A changed stage restarts `since`; new customers are inserted; merged ones dropped.
WRITE_SQL = """,
n AS MATERIALIZED (
    SELECT x.customer_id, x.stage, old.stage AS old_stage
    FROM computed x LEFT JOIN segments_customerstage old ON old.customer_id = x.customer_id AND old.model = %(model)s
),
updated AS (
    UPDATE segments_customerstage t SET stage = n.stage, since = %(at)s
    FROM n WHERE n.old_stage <> n.stage AND t.customer_id = n.customer_id AND t.model = %(model)s
    RETURNING 1
),
inserted AS (
    INSERT INTO segments_customerstage (customer_id, model, stage, since)
    SELECT customer_id, %(model)s, stage, %(at)s FROM n WHERE n.old_stage IS NULL
    RETURNING 1
),
gone AS (
    DELETE FROM segments_customerstage t USING customers_customer c
    WHERE t.model = %(model)s AND c.id = t.customer_id AND c.merged_into_id IS NOT NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM n), (SELECT count(*) FROM updated), (SELECT count(*) FROM inserted),
       (SELECT count(*) FROM gone)
"""

ASSIGNMENT_SQL = "SELECT customer_id, model || ':' || stage FROM segments_customerstage WHERE model = %(model)s"


@dataclass(frozen=True)
class StageRun:
    model: str
    customers: int
    changed: int
    inserted: int
    removed: int
    entered: int
    exited: int
    duration_ms: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _statement(model: str, layering: LayeringSettings, at: datetime) -> tuple[str, dict[str, Any], list[str]]:
    """The model's SQL, its parameters, and the stages it produces."""
    values: dict[str, Any] = {"statuses": list(COUNTED_STATUSES), "model": model, "at": at}
    if model == LayerModel.AIPL:
        config = aipl_settings(layering)
        values.update(since=at - timedelta(days=config["purchase_days"]),
                      interest_since=at - timedelta(days=config["interest_days"]),
                      engagement_types=config["engagement_types"], loyal_orders=config["loyal_orders"])  # fmt: skip
        return AIPL_SQL, values, list(AIPL_STAGES)
    if model == LayerModel.LIFECYCLE:
        config = lifecycle_settings(layering)
        values.update(
            since=at,  # unused by the lifecycle
            churned_before=at - timedelta(days=config["churned_days"]),
            dormant_before=at - timedelta(days=config["dormant_days"]),
            vip_share=config["vip_top_percent"] / 100,
            repeat_orders=config["repeat_orders"],
            **{key: config[key] for key in LIFECYCLE_NODE_DEFAULTS},
            node_categories=sorted({c for key in LIFECYCLE_NODE_DEFAULTS if key.endswith("_categories")
                                    for c in config[key]}),
            node_event_types=sorted({t for key in LIFECYCLE_NODE_DEFAULTS if key.endswith("_event_types")
                                     for t in config[key]}),
        )  # fmt: skip
        return LIFECYCLE_SQL[config["preset"]], values, LIFECYCLE_PRESETS[config["preset"]]
    if model == LayerModel.LADDER:
        config = ladder_settings(layering)
        values.update(since=at - timedelta(days=config["period_days"]), repurchase_orders=config["repurchase_orders"])
        return LADDER_SQL, values, list(LADDER_LEVELS)
    raise ValueError(f"unknown layering model {model!r}")


def model_segments(model: str, stages: list[str]) -> list[ModelSegment]:
    labels = STAGES[LayerModel(model)]
    return [
        ModelSegment(f"{model}:{stage}", labels[stage], _("Kept by the layering model; see the segments guide."))
        for stage in stages
    ]


def recompute_stages(model: str, *, now: datetime | None = None, work_mem: str = "256MB") -> StageRun:
    """Recompute every current customer's stage in one model (aipl, lifecycle or ladder) and move its segments —
    one transaction under the model's lock. Idempotent: unchanged stages keep `since` and write nothing."""
    started = time.monotonic()
    at = now or timezone.now()
    with transaction.atomic(durable=True):
        lock_model(model)
        set_work_mem(work_mem)
        sql, values, stages = _statement(model, LayeringSettings.load(), at)
        with connection.cursor() as cursor:
            cursor.execute(sql + WRITE_SQL, values)
            customers, changed, inserted, removed = cursor.fetchone()
        refresh_statistics("segments_customerstage", inserted)  # a first run: rules read the stages at once
        changes = sync_model_segments(f"{model}:", model_segments(model, stages), at=at,
                                      assignment_sql=ASSIGNMENT_SQL, params={"model": model})  # fmt: skip
    run = StageRun(
        model=model, customers=customers, changed=changed, inserted=inserted, removed=removed,
        entered=sum(c.entered for c in changes.values()), exited=sum(c.exited for c in changes.values()),
        duration_ms=int((time.monotonic() - started) * 1000),
    )  # fmt: skip
    logger.info("segments.stages_recomputed", extra=run.as_dict())
    return run
