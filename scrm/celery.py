"""The Celery application. The beat schedule lives here, each entry with when and why."""

import logging
import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

app = Celery("scrm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


def on_commit_once(func) -> None:
    """Run `func` once the current transaction commits, once however many times the transaction asks (a kick
    of the workers after a batch of writes)."""
    from django.db import connection, transaction

    if any(registered is func for _savepoints, registered, _robust in connection.run_on_commit):
        return
    transaction.on_commit(func)


def send_quietly(task, *args) -> bool:
    """Send `task`; a broker that is down is logged, never raised. For sends after a write has committed, whose
    work a periodic task catches up on (the broker settings make a dead Redis fail here within a second)."""
    options = {"args": list(args)} if args else {}
    try:
        task.apply_async(**options, retry=False)
    except Exception as exc:  # kombu/redis raise many kinds; none may fail a write that already committed
        logger.warning("celery.send_failed", extra={"task": task.name, "error": str(exc)})
        return False
    return True


app.conf.beat_schedule = {
    # Touchpoints: due messages whose after-commit kick was lost, retries whose backoff ended, deferrals that ended
    # and rows of a dead worker whose lease ran out are dispatched within two seconds.
    "messaging-dispatch": {"task": "messaging.dispatch_tick", "schedule": 2.0, "options": {"expires": 1.5}},
    # WeCom mass sends awaiting the rep's confirmation: confirmations and per-customer results, each send asked
    # about at most every few minutes (the channel's poll_seconds).
    "wecom-poll-mass-sends": {"task": "messaging.wecom.poll_mass_sends", "schedule": 60.0, "options": {"expires": 50}},
    # WeCom callback receipts older than the 5-minute replay window cannot be replayed: no need to keep them.
    "wecom-prune-callback-receipts": {
        "task": "messaging.wecom_callbacks.prune_receipts",
        "schedule": 600.0,
        "options": {"expires": 540},
    },
    # Event subscriptions: deliveries whose after-commit kick was lost, retries whose backoff ended, and rows of a
    # dead worker whose lease ended are sent within seconds.
    "messaging-send-deliveries": {
        "task": "messaging.integrations.send_deliveries",
        "schedule": 5.0,
        "options": {"expires": 4},
    },
    # Domain events whose after-commit task was lost (broker down, worker killed) are consumed within seconds.
    "sweep-domain-events": {"task": "customers.tasks.sweep_domain_events", "schedule": 5.0, "options": {"expires": 4}},
    # Auto-tag rules saved since their last full run: the run after saving was lost (broker down, worker killed).
    "tags-pending-rules": {"task": "tags.tasks.evaluate_pending_rules", "schedule": 60.0, "options": {"expires": 50}},
    # Auto-tag rules with windows relative to now ("last 30 days") change with the clock alone.
    "tags-time-relative-rules": {
        "task": "tags.tasks.evaluate_time_relative_rules",
        "schedule": crontab(minute=7),
        "options": {"expires": 3000},
    },
    # Segments whose rules use windows relative to now (and segments reading them) change with the clock (J44).
    "segments-time-relative": {
        "task": "segments.tasks.recompute_time_relative_segments",
        "schedule": crontab(minute=12),
        "options": {"expires": 3000},
    },
    # RFM, AIPL, lifecycle and ladder at night, before the full segment (03:37) and tag (03:17) rebuilds so that
    # rules reading the models see today's values; RFM's reference date is the day that just started.
    "segments-layers": {
        "task": "segments.tasks.recompute_layers",
        "schedule": crontab(hour=2, minute=47),
        "options": {"expires": 7200},
    },
    # Every dynamic segment in full at night, in dependency order.
    "segments-all": {
        "task": "segments.tasks.recompute_all_segments",
        "schedule": crontab(hour=3, minute=37),
        "options": {"expires": 3000},
    },
    # A recompute that crashed holds an expired lease: run it again instead of leaving it "calculating".
    "segments-retry-stalled": {
        "task": "segments.tasks.retry_stalled_recomputes",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    # Journeys: enrollments whose wait ended (and any whose after-commit kick was lost) advance within seconds.
    "journeys-advance": {"task": "journeys.advance", "schedule": 5.0, "options": {"expires": 4}},
    # Birthdays, dates in attributes and consumption cycles: each occurrence enrolls once, so running every ten
    # minutes only makes "at 10:00" mean 10:00-10:10.
    "journeys-date-triggers": {
        "task": "journeys.enroll_date_triggered",
        "schedule": 600.0,
        "options": {"expires": 540},
    },
    # Reps' tasks whose due time came: a task.due event for integrations, within a minute.
    "journeys-due-tasks": {"task": "journeys.announce_due_tasks", "schedule": 60.0, "options": {"expires": 50}},
    # Group plans (weekly SOP, new-group rhythm): the slots that came since the last run, every minute.
    "journeys-group-plans": {"task": "journeys.run_group_plans", "schedule": 60.0, "options": {"expires": 50}},
    # Every rule in full at night: the backstop behind incremental evaluation.
    "tags-all-rules": {
        "task": "tags.tasks.evaluate_all_rules",
        "schedule": crontab(hour=3, minute=17),
        "options": {"expires": 3000},
    },
}
