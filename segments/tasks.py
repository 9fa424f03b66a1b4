"""Celery entry points of the segments app: thin and idempotent (leases and unique keys make reruns safe)."""

import logging

from celery import shared_task

from segments.models import Segment
from segments.services import layers
from segments.services import segments as service

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def recompute_segment_task(segment_id: int) -> None:
    """Full rebuild of one segment (after it is saved, or on demand)."""
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is not None:
        change = service.recompute_segment(segment)
        logger.info("segments.recomputed", extra={"segment": segment_id, **(change.as_dict() if change else {})})


@shared_task(ignore_result=True, expires=3000)
def recompute_time_relative_segments() -> None:
    """Hourly: rules with windows relative to now change with the clock alone (J44)."""
    service.recompute_segments(time_relative_only=True)


@shared_task(ignore_result=True, expires=3000)
def recompute_all_segments() -> None:
    """Nightly: every dynamic segment in full, in dependency order."""
    service.recompute_segments()


@shared_task(ignore_result=True, expires=240)
def retry_stalled_recomputes() -> None:
    """Every few minutes: recomputes that crashed (lease expired) or failed run again."""
    if retried := service.retry_stalled():
        logger.info("segments.retried", extra={"segments": retried})


@shared_task(ignore_result=True, expires=7200)
def recompute_layers() -> None:
    """Nightly: RFM (incremental, full weekly), AIPL, lifecycle and ladder recomputed set-based; their model
    segments follow (idempotent)."""
    outcomes = layers.recompute_layers(incremental=True)
    logger.info("segments.layers_recomputed", extra={"outcomes": outcomes})
