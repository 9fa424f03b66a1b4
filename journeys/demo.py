"""Demo journeys for `make run`: the built-in welcome, repurchase and group weekly SOPs published, a few hundred
demo customers taken through the welcome journey over three days (greeting, next-day invitation, some of them
ordering), so the list, the builder, the report and the customer pages have something to show."""

import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from customers import domain_events
from customers.models import Customer
from customers.services.ingest import bulk_upsert_orders
from customers.visibility import WORKSPACE
from journeys.models import Journey
from journeys.services import lifecycle, runtime
from journeys.services.enrollment import Candidate, enroll
from journeys.sop_templates import create_from_template

PUBLISHED = ("welcome", "repurchase", "group_weekly")
DRAFTS = ("birthday",)
ENROLLED = 300
BUYERS = 40


def seed_journeys_demo() -> str:
    if Journey.objects.filter(template_code__in=PUBLISHED).exists():
        return "journeys already there"
    operator = User.objects.filter(role=Role.OPERATOR).order_by("id").first()
    journeys = {}
    with transaction.atomic():
        for code in (*PUBLISHED, *DRAFTS):
            journeys[code] = create_from_template(code, by=operator)
        for code in PUBLISHED:
            lifecycle.publish(journeys[code], by=operator)
    welcome = journeys["welcome"]
    customers = list(Customer.objects.current().order_by("-id").values_list("pk", flat=True)[:ENROLLED])
    started = timezone.now() - datetime.timedelta(days=3)
    with transaction.atomic():
        enroll(welcome, [Candidate(pk, "manual", f"demo:{pk}", started) for pk in customers], now=started)
    runs = _advance(started)
    runs += _advance(started + datetime.timedelta(days=2))  # the next-day invitations
    bought = started + datetime.timedelta(days=2, hours=6)
    rows = [
        {"source": "demo-journey", "external_id": f"J{pk}", "customer": {"id": pk}, "ordered_at": bought.isoformat(),
         "amount": "268.00"}
        for pk in customers[:BUYERS]
    ]  # fmt: skip
    bulk_upsert_orders(rows, user=WORKSPACE)
    domain_events.consume_all()
    return f"{len(journeys)} journeys, {len(customers)} customers in the welcome SOP, {runs} step runs"


def _advance(now: datetime.datetime) -> int:
    runs = 0
    while (result := runtime.advance_due(now=now)).claimed:
        runs += result.step_runs
    return runs
