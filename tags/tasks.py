"""Celery entry points of the tags app: thin and idempotent."""

import logging

from celery import shared_task

from tags import services
from tags.models import TagRule

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def evaluate_rule(rule_id: int) -> None:
    """Full set-based evaluation of one auto-tag rule (after it is saved)."""
    rule = TagRule.objects.filter(pk=rule_id, is_active=True).first()
    if rule is None:
        return
    run = services.apply_rule(rule)
    logger.info("tags.rule_evaluated", extra={"rule": rule_id, **run.as_dict()})


@shared_task(ignore_result=True, expires=3000)
def evaluate_time_relative_rules() -> None:
    """Hourly: rules with windows relative to now change with the clock alone."""
    runs = services.apply_rules(time_relative_only=True)
    logger.info("tags.time_relative_rules_evaluated", extra={"rules": len(runs)})


@shared_task(ignore_result=True, expires=50)
def evaluate_pending_rules() -> None:
    """Every minute: rules saved since their last full run, whose run after saving was lost (broker down)."""
    runs = services.apply_rules(pending_only=True)
    if runs:
        logger.info("tags.pending_rules_evaluated", extra={"rules": len(runs)})


@shared_task(ignore_result=True, expires=3000)
def evaluate_all_rules() -> None:
    """Nightly: every active rule in full, the backstop for anything incremental evaluation could miss."""
    runs = services.apply_rules()
    logger.info("tags.rules_evaluated", extra={"rules": len(runs)})
