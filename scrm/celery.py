"""The Celery application. The beat schedule lives here, each entry with when and why."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

app = Celery("scrm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Domain events whose after-commit task was lost (broker down, worker killed) are consumed within seconds.
    "sweep-domain-events": {"task": "customers.tasks.sweep_domain_events", "schedule": 5.0, "options": {"expires": 4}},
}
