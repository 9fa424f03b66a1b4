"""Celery entry points of the WeCom channel (imported by messaging.tasks; the beat entries live in scrm/celery.py)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from celery import shared_task

from messaging.wecom import mass_send

logger = logging.getLogger("messaging.wecom")


@shared_task(name="messaging.wecom.poll_mass_sends", ignore_result=True)
def poll_mass_sends() -> dict[str, Any]:
    """Move pending enterprise mass sends forward from WeCom's task and send-result APIs. Safe to overlap: each
    mass send is asked about by one poller at a time (a Redis mark), and status updates only move forward."""
    report = dataclasses.asdict(mass_send.poll_mass_sends())
    logger.info("wecom.polled", extra=report)
    return report
