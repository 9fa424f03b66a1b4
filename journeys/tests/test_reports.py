"""Journey reports: where customers are, daily flow, totals and GMV, split arms, message outcomes, reps'
confirmations, group invitations, one customer's trace; the report and trace pages."""

import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from accounts.models import Role
from customers.tests.factories import (
    CommunityGroupFactory,
    CustomerFactory,
    GroupMembershipFactory,
    StaffFactory,
    UserFactory,
    sales_rep,
)
from journeys import reports
from journeys.models import Enrollment, ExitReason, Journey, RefusalReason
from journeys.services.enrollment import Candidate, enroll
from journeys.services.exits import convert, exit_enrollments
from journeys.services.runtime import advance_due
from journeys.steps.branches import assign_arm
from journeys.tests.factories import published, send, wait
from messaging.models import Touchpoint

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)  # a Monday morning
DAY = datetime.timedelta(days=1)
ARMS = [{"name": "A", "weight": 50, "next": "sa"}, {"name": "B", "weight": 50, "next": "sb"}]


@pytest.fixture(autouse=True)
def _workspace_zone(settings):
    """Days are counted in the workspace's time zone."""
    settings.TIME_ZONE = "Asia/Shanghai"


def tick(now):
    while advance_due(now=now).claimed:
        pass


def ab_journey():
    """Split A/B: A gets a WeCom message, B an SMS; then a 3-day wait. Goal: an order."""
    return published(
        [
            {"id": "ab", "type": "split", "arms": ARMS},
            send("sa", "A 方案", next="w", channel="wecom"),
            send("sb", "B 方案", next="w"),
            wait("w", days=3),
        ],
        name="新客 A/B",
        goal={"type": "order"},
    )


def customers_by_arm(journey, owners, a=3, b=2):
    """Customers the split puts in A (`a` of them, owned in turn by `owners`) and in B: the arm is a hash of the
    customer, so we make customers until each arm has its share."""
    wanted, found = {"A": a, "B": b}, {"A": [], "B": []}
    while any(len(found[arm]) < n for arm, n in wanted.items()):
        customer = CustomerFactory()
        arm = assign_arm(ARMS, journey.pk, "ab", customer.pk)
        if len(found[arm]) < wanted[arm]:
            customer.owner = owners[len(found[arm]) * len(owners) // wanted[arm]] if arm == "A" else None
            customer.save()
            found[arm].append(customer)
        else:
            customer.delete()
    return found["A"], found["B"]


def touchpoint_of(journey, customer):
    return Touchpoint.objects.get(source_ref=journey.source_ref, customer=customer)


def enrollment_of(journey, customer):
    return Enrollment.objects.get(journey=journey, customer=customer)


@pytest.fixture
def book():
    """Five customers through the A/B journey: A (3, two of rep 王's and one of rep 李's) on WeCom, B (2) by SMS.
    Their messages end sent / awaiting / failed and delivered / capped. A day later a1 buys for 100.00 and b1 for
    50.50 (goal: exited, converted), b2 is removed by hand; three days after entering a2 and a3 complete."""
    wang, li = StaffFactory(name="王"), StaffFactory(name="李")
    journey = ab_journey()
    (a1, a2, a3), (b1, b2) = customers_by_arm(journey, [wang, wang, li])
    with time_machine.travel(NOW, tick=False):
        enroll(journey, [Candidate(c.pk, "manual", f"t{c.pk}", NOW) for c in (a1, a2, a3, b1, b2)], now=NOW)
        tick(NOW)
    for customer, status in ((a1, "sent"), (a2, "awaiting_confirmation"), (a3, "failed"), (b1, "delivered"),
                             (b2, "capped")):  # fmt: skip
        Touchpoint.objects.filter(pk=touchpoint_of(journey, customer).pk).update(status=status)
    later = NOW + DAY
    with time_machine.travel(later, tick=False):
        convert(enrollment_of(journey, a1), at=later, amount=Decimal("100.00"), ref="order:1")
        convert(enrollment_of(journey, b1), at=later, amount=Decimal("50.50"), ref="order:2")
        exit_enrollments(Enrollment.objects.filter(journey=journey, customer=b2), reason=ExitReason.MANUAL, at=later)
    return {"journey": journey, "a": (a1, a2, a3), "b": (b1, b2), "wang": wang, "li": li}


def finish(book):
    with time_machine.travel(NOW + 3 * DAY, tick=False):
        tick(NOW + 3 * DAY)


# ------------------------------------------------------------------------------------------------------- figures


def test_customers_at_each_step_now_list_every_step_of_the_current_version_with_its_description(book):
    rows = reports.step_counts(book["journey"])

    assert [(r.version, r.step, r.active) for r in rows] == [(1, "ab", 0), (1, "sa", 0), (1, "sb", 0), (1, "w", 2)]
    assert rows[0].description == "Random split A 50% / B 50%"
    assert rows[1].description == "Send “A 方案” to the customer on WeCom"
    assert rows[3].description == "Wait 3 days"


def test_customers_still_on_an_older_version_are_counted_at_its_steps(book):
    journey = book["journey"]
    journey.draft = {**journey.draft, "steps": [send("s1", "新版")]}
    journey.save()
    from journeys.services import lifecycle

    lifecycle.publish(Journey.objects.get(pk=journey.pk))

    rows = reports.step_counts(Journey.objects.get(pk=journey.pk))

    assert [(r.version, r.step, r.active, r.is_current_version) for r in rows] == [
        (2, "s1", 0, True), (1, "w", 2, False),
    ]  # fmt: skip


def test_totals_count_enrollments_by_state_exits_by_reason_conversions_and_the_journeys_gmv(book):
    finish(book)

    totals = reports.totals(book["journey"])

    assert (totals.enrolled, totals.active, totals.completed, totals.exited, totals.converted) == (5, 0, 2, 3, 2)
    assert totals.conversion_percent == 40.0
    assert totals.gmv == Decimal("150.50")
    assert [(e.reason, e.label, e.count) for e in totals.exits] == [
        ("goal", "Goal reached", 2), ("manual", "Removed by an operator", 1),
    ]  # fmt: skip


def test_the_daily_flow_counts_entries_exits_completions_and_conversions_per_local_day_with_zeros(book):
    finish(book)

    days = reports.daily_flow(book["journey"], since=datetime.date(2026, 11, 22), until=datetime.date(2026, 11, 26))

    assert [(d.day.day, d.entered, d.exited, d.completed, d.converted) for d in days] == [
        (22, 0, 0, 0, 0), (23, 5, 0, 0, 0), (24, 0, 3, 0, 2), (25, 0, 0, 0, 0), (26, 0, 0, 2, 0),
    ]  # fmt: skip


def test_the_daily_flow_puts_a_late_evening_entry_on_its_local_day():
    journey = published([wait("w", days=1)])
    customer = CustomerFactory()
    evening = datetime.datetime(2026, 11, 23, 23, 30, tzinfo=SHANGHAI)  # 15:30 UTC
    with time_machine.travel(evening, tick=False):
        enroll(journey, [Candidate(customer.pk, "manual", "t", evening)], now=evening)

    days = reports.daily_flow(journey, since=datetime.date(2026, 11, 23), until=datetime.date(2026, 11, 24))

    assert [(d.day.day, d.entered) for d in days] == [(23, 1), (24, 0)]


def test_split_results_give_each_arm_its_customers_conversions_rate_and_gmv(book):
    arms = reports.split_results(book["journey"])

    assert [(a.step, a.arm, a.customers, a.converted, a.conversion_percent, a.gmv, a.took_winner) for a in arms] == [
        ("ab", "A", 3, 1, 33.3, Decimal("100.00"), 0), ("ab", "B", 2, 1, 50.0, Decimal("50.50"), 0),
    ]  # fmt: skip


def test_message_outcomes_count_the_journeys_touchpoints_by_status(book):
    outcomes = reports.touchpoint_outcomes(book["journey"])

    assert [(o.status, o.label, o.count) for o in outcomes] == [
        ("awaiting_confirmation", "Awaiting the rep's confirmation", 1), ("sent", "Sent", 1),
        ("delivered", "Delivered", 1), ("failed", "Failed", 1), ("capped", "Frequency-capped", 1),
    ]  # fmt: skip


def test_reps_confirmation_rates_count_the_journeys_wecom_messages_per_sending_rep(book):
    reps = reports.rep_confirmations(book["journey"])

    assert [(r.staff_id, r.name, r.total, r.confirmed, r.awaiting, r.confirmation_percent) for r in reps] == [
        (book["li"].pk, "李", 1, 0, 0, None), (book["wang"].pk, "王", 2, 1, 1, 50.0),
    ]  # fmt: skip


def test_group_invitations_count_who_joined_afterwards_and_who_was_a_member_already():
    group = CommunityGroupFactory(name="宝妈群")
    journey = published([{"id": "g", "type": "invite_group", "group": group.pk, "text": "欢迎加群"}])
    joins, stays_out, member = CustomerFactory(), CustomerFactory(), CustomerFactory()
    GroupMembershipFactory(group=group, customer=member, joined_at=NOW - DAY)
    with time_machine.travel(NOW, tick=False):
        enroll(journey, [Candidate(c.pk, "manual", f"t{c.pk}", NOW) for c in (joins, stays_out, member)], now=NOW)
        tick(NOW)
    GroupMembershipFactory(group=group, customer=joins, joined_at=NOW + datetime.timedelta(hours=2))

    invites = reports.group_invites(journey)

    assert [(i.group_id, i.group, i.invited, i.joined, i.already_members, i.join_percent) for i in invites] == [
        (group.pk, "宝妈群", 2, 1, 1, 50.0)
    ]


def test_a_customers_trace_shows_each_step_run_with_its_outcome_and_message_and_her_refusals(book):
    journey, (a1, _a2, _a3) = book["journey"], book["a"]
    with time_machine.travel(NOW + 2 * DAY, tick=False):
        enroll(journey, [Candidate(a1.pk, "manual", "again", NOW + 2 * DAY)], now=NOW + 2 * DAY)

    trace = reports.customer_trace(journey, a1)

    (entry,) = trace.enrollments
    assert (entry.version_number, entry.enrollment.state, entry.enrollment.exit_reason) == (1, "exited", "goal")
    assert [(r.run.step, r.run.outcome, r.outcome, r.run.next_step) for r in entry.runs] == [
        ("ab", "arm:A", "Arm A", "sa"),
        ("sa", "queued", "Message queued", "w"),
    ]
    assert entry.runs[1].description == "Send “A 方案” to the customer on WeCom"
    assert entry.runs[0].touchpoint is None
    assert (entry.runs[1].touchpoint.status, entry.runs[1].touchpoint.decisions[0]["step"]) == ("sent", "scheduled")
    assert entry.current_description == ""
    assert [r.reason for r in trace.refusals] == [RefusalReason.REENTRY_NOT_ALLOWED]


def test_an_active_customers_trace_says_where_she_is_now(book):
    trace = reports.customer_trace(book["journey"], book["a"][1])

    (entry,) = trace.enrollments
    assert entry.enrollment.state == "active"
    assert entry.current_description == "Wait 3 days"
    assert [r.run.step for r in entry.runs] == ["ab", "sa"]


# --------------------------------------------------------------------------------------------------------- pages


def client_for(client, user):
    client.force_login(user)
    return client


def test_the_report_page_shows_the_numbers_and_the_charts_data(client, operator, book):
    finish(book)

    page = client_for(client, operator).get(f"/journeys/{book['journey'].pk}/report/?since=2026-11-23&until=2026-11-26")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="total-enrolled">5<' in html
    assert 'data-testid="total-converted">2<' in html
    assert 'data-testid="total-conversion-rate">40.0%<' in html
    assert 'data-testid="total-gmv">¥150.50<' in html
    daily = page.context["daily"]
    assert daily == {
        "days": ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"],
        "entered": [5, 0, 0, 0], "completed": [0, 0, 0, 2], "exited": [0, 3, 0, 0], "converted": [0, 2, 0, 0],
    }  # fmt: skip
    assert 'id="journey-daily"' in html
    assert "vendor/echarts.min.js" in html
    assert 'data-arm="B"' in html
    assert 'data-status="capped"' in html
    assert "王" in html


def test_the_report_page_runs_a_fixed_number_of_queries_however_many_customers(
    client, operator, book, django_assert_max_num_queries
):
    journey = book["journey"]
    more_a, more_b = customers_by_arm(journey, [book["wang"]], a=4, b=4)
    with time_machine.travel(NOW, tick=False):
        enroll(journey, [Candidate(c.pk, "manual", f"more{c.pk}", NOW) for c in more_a + more_b], now=NOW)
        tick(NOW)
    client = client_for(client, operator)

    # session, user, journey, step counts, versions, daily, totals, arms, messages, reps, invites, latest
    with django_assert_max_num_queries(12):
        page = client.get(f"/journeys/{journey.pk}/report/")

    assert page.status_code == 200


@pytest.mark.parametrize(("role", "status"), [(Role.ANALYST, 200), (Role.ADMIN, 200), (Role.SALES, 403)])
def test_operators_and_analysts_see_reports_reps_do_not(client, role, status):
    journey = published()
    user = UserFactory(username=f"u-{role}", role=role)

    assert client_for(client, user).get(f"/journeys/{journey.pk}/report/").status_code == status


def test_the_report_of_a_journey_that_does_not_exist_is_not_found(client, operator):
    assert client_for(client, operator).get("/journeys/999999/report/").status_code == 404


def test_the_report_form_opens_a_customers_trace(client, operator, book):
    journey, customer = book["journey"], book["a"][0]

    page = client_for(client, operator).get(f"/journeys/{journey.pk}/report/?customer={customer.pk}")

    assert page.status_code == 302
    assert page["Location"] == f"/journeys/{journey.pk}/trace/{customer.pk}/"


def test_a_rep_sees_the_trace_of_her_own_customer_but_another_reps_is_not_found(client, book):
    rep, other = sales_rep("rep_trace"), sales_rep("rep_else")
    journey, (a1, a2, _a3) = book["journey"], book["a"]
    a1.owner = rep.staff
    a1.save()
    a2.owner = other.staff
    a2.save()
    client = client_for(client, rep)

    mine = client.get(f"/journeys/{journey.pk}/trace/{a1.pk}/")
    theirs = client.get(f"/journeys/{journey.pk}/trace/{a2.pk}/")

    assert mine.status_code == 200
    html = mine.content.decode()
    assert "Arm A" in html
    assert "Message queued" in html
    assert 'data-testid="trace-conversion"' in html
    assert theirs.status_code == 404
    assert "Arm" not in theirs.content.decode()


def test_the_trace_page_runs_a_fixed_number_of_queries_however_many_rotations(
    client, operator, django_assert_max_num_queries
):
    journey = published([send("s1", "您好", next="w"), wait("w", days=1)], reentry={"policy": "every"})
    customer = CustomerFactory()
    for n in range(3):
        at = NOW + n * 2 * DAY
        with time_machine.travel(at, tick=False):
            enroll(journey, [Candidate(customer.pk, "manual", f"r{n}", at)], now=at)
            tick(at)
            tick(at + DAY)
    client = client_for(client, operator)

    # session, user, customer, journey, enrollments, step runs, touchpoints, refusals
    with django_assert_max_num_queries(8):
        page = client.get(f"/journeys/{journey.pk}/trace/{customer.pk}/")

    assert page.status_code == 200
    assert page.content.decode().count('data-testid="trace-enrollment"') == 3
