"""The journeys panel of a customer's page (J7): her journeys past and present, refusals with their reasons,
her open tasks; a constant number of queries whatever her history."""

import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import Consent, ConsentStatus
from customers.tests.factories import CustomerFactory
from journeys.models import Enrollment, ExitReason, Task, TaskStatus
from journeys.services.enrollment import Candidate, enroll
from journeys.services.exits import convert, exit_enrollments
from journeys.services.runtime import advance_due
from journeys.tests.factories import published, send, wait
from journeys.views.customer_pages import journeys_panel
from tags.tests.factories import TagFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
DAY = datetime.timedelta(days=1)


def enter(journey, customer, key="t"):
    return enroll(journey, [Candidate(customer.pk, "manual", f"{key}{customer.pk}", NOW)], now=NOW)


def a_task(customer, title, *, due=NOW + DAY, status=TaskStatus.OPEN, journey=None):
    return Task.objects.create(customer=customer, assignee=customer.owner, title=title, due_at=due, status=status,
                               journey=journey, idempotency_key=f"panel:{customer.pk}:{title}")  # fmt: skip


def history(customer, journeys=1):
    """`journeys` journeys she is waiting in, one she finished converted, one she left, one that refused her, and
    an open and a done task per waiting journey."""
    for n in range(journeys):
        journey = published([wait("w", days=3, next="s"), send("s")], name=f"等待 SOP {n}")
        enter(journey, customer)
        a_task(customer, f"回访 {n}", journey=journey)
        a_task(customer, f"已做 {n}", status=TaskStatus.DONE)
    bought = published([wait("w", days=3)], name="复购 SOP", goal={"type": "order"})
    enter(bought, customer)
    convert(Enrollment.objects.get(journey=bought, customer=customer), at=NOW, amount=Decimal("199.00"), ref="o:1")
    left = published([wait("w", days=3)], name="离开的 SOP")
    enter(left, customer)
    exit_enrollments(Enrollment.objects.filter(journey=left, customer=customer), reason=ExitReason.MANUAL)
    Consent.objects.get_or_create(customer=customer, channel="sms", defaults={"status": ConsentStatus.OPTED_OUT})
    refused = published(name=f"短信 SOP {journeys}")
    enter(refused, customer)


def client_for(client, user):
    client.force_login(user)
    return client


@time_machine.travel(NOW, tick=False)
def test_the_panel_shows_her_journeys_now_and_before_refusals_with_reasons_and_open_tasks(client, rep):
    customer = CustomerFactory(owner=rep.staff)
    history(customer)
    advance_due(now=NOW)

    page = client_for(client, rep).get(f"/customers/{customer.pk}/")

    panel = next(p.context for p in page.context["panels"] if p.key == "journeys")
    assert [(e.journey.name, e.state, e.exit_reason, e.is_converted) for e in panel["enrollments"]] == [
        ("离开的 SOP", "exited", "manual", False), ("复购 SOP", "exited", "goal", True),
        ("等待 SOP 0", "active", "", False),
    ]  # fmt: skip
    assert panel["enrollments"][2].step_description == "Wait 3 days"
    assert [(r.journey.name, r.get_reason_display()) for r in panel["refusals"]] == [("短信 SOP 1", "Opted out")]
    assert [t.title for t in panel["tasks"]] == ["回访 0"]
    html = page.content.decode()
    assert 'data-testid="customer-journeys"' in html
    assert "Now: Wait 3 days" in html
    assert "Removed by an operator" in html
    assert "¥199.00" in html
    assert 'data-reason="opted_out"' in html
    assert f'href="/journeys/{panel["enrollments"][0].journey_id}/trace/{customer.pk}/"' in html


@time_machine.travel(NOW, tick=False)
def test_a_step_whose_description_reads_the_database_is_named_by_its_type_on_the_panel(client, operator):
    tag = TagFactory(name="高意向")
    journey = published([{"id": "t", "type": "add_tag", "tag": tag.pk, "next": "w"}, wait("w", days=1)],
                        name="打标 SOP")  # fmt: skip
    customer = CustomerFactory()
    enter(journey, customer)
    Enrollment.objects.filter(journey=journey).update(next_run_at=NOW + DAY)  # as if the step had failed once

    page = client_for(client, operator).get(f"/customers/{customer.pk}/")

    panel = next(p.context for p in page.context["panels"] if p.key == "journeys")
    assert panel["enrollments"][0].step_description == "Add a tag"


def test_the_panel_adds_the_same_number_of_queries_however_long_her_history(
    client, operator, django_assert_num_queries
):
    little, much = CustomerFactory(), CustomerFactory()
    with time_machine.travel(NOW, tick=False):
        history(little, journeys=1)
        history(much, journeys=4)
        advance_due(now=NOW)
    client = client_for(client, operator)
    with time_machine.travel(NOW, tick=False):
        client.get(f"/customers/{little.pk}/")  # warm the session
        with CaptureQueriesContext(connection) as small:
            client.get(f"/customers/{little.pk}/")

        with django_assert_num_queries(len(small.captured_queries)):
            page = client.get(f"/customers/{much.pk}/")

    panel = next(p.context for p in page.context["panels"] if p.key == "journeys")
    assert len(panel["enrollments"]) == 6
    assert len(panel["tasks"]) == 4


def test_the_journeys_panel_reads_three_queries(rf, operator, django_assert_num_queries):
    customer = CustomerFactory()
    with time_machine.travel(NOW, tick=False):
        history(customer, journeys=3)
    request = rf.get(f"/customers/{customer.pk}/")
    request.user = operator

    with django_assert_num_queries(3):  # enrollments with journey and version, refusals, open tasks
        panel = journeys_panel(request, customer)

    assert (len(panel["enrollments"]), len(panel["refusals"]), len(panel["tasks"])) == (5, 1, 3)


@time_machine.travel(NOW, tick=False)
def test_another_reps_customer_page_and_its_journeys_are_not_found(client, rep, other_rep):
    customer = CustomerFactory(owner=other_rep.staff)
    history(customer)

    page = client_for(client, rep).get(f"/customers/{customer.pk}/")

    assert page.status_code == 404
    assert "等待 SOP" not in page.content.decode()
