"""Reps' tasks: completing records a `task_completed` event journeys react to; the tasks page and its HTMX
actions, limited to what each person may see."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Role
from customers import domain_events
from customers.models import DomainEvent, DomainEventKind, Event
from customers.tests.factories import CustomerFactory, StaffFactory, UserFactory
from journeys.models import StepRun, Task, TaskStatus
from journeys.services.enrollment import Candidate, enroll
from journeys.services.runtime import advance_due
from journeys.services.tasks import cancel_task, complete_task
from journeys.tests.factories import published, send
from messaging.models import Touchpoint

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
HOUR = datetime.timedelta(hours=1)


def a_task(customer, *, assignee=None, title="回访", due=NOW + HOUR, script="", journey=None, key=None):
    return Task.objects.create(
        customer=customer, assignee=assignee, title=title, script=script, due_at=due, journey=journey,
        idempotency_key=key or f"test:{customer.pk}:{title}:{due.timestamp()}", created_at=NOW,
    )  # fmt: skip


def client_for(client, user):
    client.force_login(user)
    return client


# -------------------------------------------------------------------------------------------------- services


@time_machine.travel(NOW, tick=False)
def test_completing_a_task_marks_it_done_and_records_a_task_completed_event_with_its_domain_event(rep):
    journey = published(name="回购 SOP")
    customer = CustomerFactory(owner=rep.staff)
    task = a_task(customer, assignee=rep.staff, journey=journey)

    done = complete_task(task, by=rep, outcome=" 已约到店 ")

    task.refresh_from_db()
    assert (task.status, task.completed_at, task.completed_by, task.outcome) == (TaskStatus.DONE, NOW, rep, "已约到店")
    assert done == task
    event = Event.objects.get(customer=customer)
    assert (event.type, event.occurred_at) == ("task_completed", NOW)
    assert event.properties == {"task_id": task.pk, "journey_id": journey.pk, "title": "回访"}
    recorded = DomainEvent.objects.get(kind=DomainEventKind.EVENT_RECORDED, customer_id=customer.pk)
    assert recorded.payload == {"event_id": event.pk, "type": "task_completed"}


def test_completing_a_task_twice_changes_nothing(rep):
    customer = CustomerFactory(owner=rep.staff)
    task = a_task(customer, assignee=rep.staff)
    with time_machine.travel(NOW, tick=False):
        complete_task(task, by=rep, outcome="第一次")
    with time_machine.travel(NOW + HOUR, tick=False):
        again = complete_task(task, by=UserFactory(username="op2"), outcome="第二次")

    assert (again.status, again.completed_at, again.completed_by) == (TaskStatus.DONE, NOW, rep)
    assert again.outcome == "第一次"
    assert Event.objects.filter(customer=customer).count() == 1
    assert DomainEvent.objects.filter(kind=DomainEventKind.EVENT_RECORDED, customer_id=customer.pk).count() == 1


@time_machine.travel(NOW, tick=False)
def test_a_rep_completes_a_task_assigned_to_her_after_the_customer_moved_to_another_rep(rep, other_rep):
    customer = CustomerFactory(owner=other_rep.staff)
    task = a_task(customer, assignee=rep.staff)

    complete_task(task, by=rep)

    assert Event.objects.filter(customer=customer, type="task_completed").count() == 1


@time_machine.travel(NOW, tick=False)
def test_cancelling_a_task_records_nothing_and_a_done_task_cannot_be_cancelled(operator):
    customer = CustomerFactory()
    open_task, done_task = a_task(customer, title="甲"), a_task(customer, title="乙")
    complete_task(done_task, by=operator)

    cancelled = cancel_task(open_task, by=operator)
    still_done = cancel_task(done_task, by=operator)

    assert (cancelled.status, cancelled.completed_by) == (TaskStatus.CANCELLED, operator)
    assert still_done.status == TaskStatus.DONE
    assert Event.objects.filter(customer=customer).count() == 1


def test_completing_the_journeys_task_takes_the_wait_for_event_branch(rep):
    journey = published(
        [
            {"id": "t", "type": "task", "title": "电话回访", "script": "问问用得怎么样", "due_hours": 24, "next": "w"},
            {"id": "w", "type": "wait_event", "event_type": "task_completed", "timeout_hours": 72, "next": "yes",
             "timeout_next": "no"},
            send("yes", "谢谢您的反馈"),
            send("no", "还没联系上您"),
        ],
        name="回访 SOP",
    )  # fmt: skip
    customer = CustomerFactory(owner=rep.staff)
    with time_machine.travel(NOW, tick=False):
        enroll(journey, [Candidate(customer.pk, "manual", "t1", NOW)], now=NOW)
        advance_due(now=NOW)
    task = Task.objects.get(customer=customer)
    assert (task.assignee, task.journey, task.script, task.due_at) == (rep.staff, journey, "问问用得怎么样",
                                                                       NOW + 24 * HOUR)  # fmt: skip

    done_at = NOW + 2 * HOUR
    with time_machine.travel(done_at, tick=False):
        complete_task(task, by=rep, outcome="很满意")
        domain_events.consume_all()
        advance_due()

    run = StepRun.objects.get(enrollment__customer=customer, step="w")
    assert (run.outcome, run.next_step, run.ran_at) == ("event", "yes", done_at)
    texts = Touchpoint.objects.filter(customer=customer).values_list("content__text", flat=True)
    assert list(texts) == ["谢谢您的反馈"]


# ------------------------------------------------------------------------------------------------------- pages


@time_machine.travel(NOW, tick=False)
def test_a_rep_sees_her_customers_tasks_and_those_assigned_to_her_due_first_overdue_marked(client, rep, other_rep):
    mine, moved, theirs = (CustomerFactory(owner=rep.staff, name="小美"), CustomerFactory(owner=other_rep.staff),
                           CustomerFactory(owner=other_rep.staff, name="别人的"))  # fmt: skip
    late = a_task(mine, assignee=rep.staff, title="已逾期", due=NOW - HOUR, script="先道歉\n再问需求")
    soon = a_task(moved, assignee=rep.staff, title="转走的客户", due=NOW + HOUR)
    a_task(theirs, assignee=other_rep.staff, title="不是我的")
    done = a_task(mine, assignee=rep.staff, title="做完了", due=NOW - 2 * HOUR)
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.DONE)

    page = client_for(client, rep).get("/tasks/")

    assert page.status_code == 200
    assert [t.pk for t in page.context["tasks"]] == [late.pk, soon.pk]
    html = page.content.decode()
    assert f'data-task="{late.pk}" data-status="open" data-overdue' in html
    assert f'data-task="{soon.pk}" data-status="open">' in html
    assert "先道歉<br>再问需求" in html
    assert "不是我的" not in html
    assert 'data-testid="task-overdue-count"' in html
    assert 'data-testid="task-assignee-filter"' not in html


@time_machine.travel(NOW, tick=False)
def test_operators_see_every_task_and_filter_by_assignee(client, operator, rep, other_rep):
    a_task(CustomerFactory(), assignee=rep.staff, title="甲的")
    theirs = a_task(CustomerFactory(), assignee=other_rep.staff, title="乙的")
    nobody = a_task(CustomerFactory(), title="没人管")
    client = client_for(client, operator)

    everyone = client.get("/tasks/")
    filtered = client.get(f"/tasks/?assignee={other_rep.staff.pk}", HTTP_HX_REQUEST="true")
    unassigned = client.get("/tasks/?assignee=none", HTTP_HX_REQUEST="true")

    assert len(everyone.context["tasks"]) == 3
    assert 'data-testid="task-assignee-filter"' in everyone.content.decode()
    assert [t.pk for t in filtered.context["tasks"]] == [theirs.pk]
    assert [t.pk for t in unassigned.context["tasks"]] == [nobody.pk]
    assert "<html" not in filtered.content.decode()


def test_the_tasks_page_runs_a_fixed_number_of_queries_however_many_tasks(
    client, operator, rep, django_assert_max_num_queries
):
    journey = published()
    for n in range(15):
        a_task(CustomerFactory(owner=rep.staff), assignee=rep.staff if n % 2 else None, title=f"任务{n}",
               journey=journey)  # fmt: skip
    operator_client = client_for(client, operator)

    with django_assert_max_num_queries(5):  # session, user, staff for the filter, counts, the page
        assert operator_client.get("/tasks/").status_code == 200
    rep_client = client_for(client, rep)
    with django_assert_max_num_queries(4):  # session, user, counts, the page
        assert rep_client.get("/tasks/").status_code == 200


@time_machine.travel(NOW, tick=False)
def test_completing_on_the_page_with_htmx_returns_the_done_row(client, rep):
    task = a_task(CustomerFactory(owner=rep.staff), assignee=rep.staff, title="回访")

    response = client_for(client, rep).post(f"/tasks/{task.pk}/complete/", {"outcome": "已下单"},
                                             HTTP_HX_REQUEST="true")  # fmt: skip

    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith("<tr")
    assert f'data-task="{task.pk}" data-status="done"' in html
    assert "已下单" in html
    assert 'data-testid="complete-task"' not in html
    task.refresh_from_db()
    assert (task.status, task.outcome, task.completed_by) == (TaskStatus.DONE, "已下单", rep)


def test_completing_without_htmx_goes_back_to_the_tasks(client, rep):
    task = a_task(CustomerFactory(owner=rep.staff), assignee=rep.staff)

    response = client_for(client, rep).post(f"/tasks/{task.pk}/complete/")

    assert (response.status_code, response["Location"]) == (302, "/tasks/")


def test_another_reps_task_is_not_found_and_stays_open(client, rep, other_rep):
    task = a_task(CustomerFactory(owner=other_rep.staff), assignee=other_rep.staff)

    response = client_for(client, rep).post(f"/tasks/{task.pk}/complete/", HTTP_HX_REQUEST="true")

    assert response.status_code == 404
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN
    assert not Event.objects.exists()


def test_analysts_read_tasks_but_cannot_complete_them(client):
    analyst = UserFactory(username="analyst", role=Role.ANALYST)
    task = a_task(CustomerFactory(), assignee=StaffFactory())
    client = client_for(client, analyst)

    assert client.get("/tasks/").status_code == 200
    assert client.post(f"/tasks/{task.pk}/complete/").status_code == 403
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN


def test_only_operators_cancel_tasks(client, operator, rep):
    task = a_task(CustomerFactory(owner=rep.staff), assignee=rep.staff)

    by_rep = client_for(client, rep).post(f"/tasks/{task.pk}/cancel/", HTTP_HX_REQUEST="true")
    by_operator = client_for(client, operator).post(f"/tasks/{task.pk}/cancel/", HTTP_HX_REQUEST="true")

    assert by_rep.status_code == 403
    assert by_operator.status_code == 200
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED


def test_a_sales_rep_login_without_a_staff_record_sees_no_tasks(client):
    loner = UserFactory(username="loner", role=Role.SALES)
    a_task(CustomerFactory())

    page = client_for(client, loner).get("/tasks/")

    assert page.context["tasks"] == []


def test_a_task_records_task_due_once_when_its_time_comes_and_task_done_when_completed():
    from customers.models import DomainEvent
    from journeys.models import Task
    from journeys.services.tasks import announce_due_tasks, complete_task

    customer = CustomerFactory()
    due = timezone.now() + datetime.timedelta(hours=1)
    task = Task.objects.create(customer=customer, title="回访", due_at=due, idempotency_key="t-due")

    assert announce_due_tasks(now=due - datetime.timedelta(minutes=1)) == 0
    assert announce_due_tasks(now=due) == 1
    assert announce_due_tasks(now=due + datetime.timedelta(minutes=5)) == 0
    complete_task(task, by=None, outcome="已回访")

    events = list(DomainEvent.objects.filter(kind__startswith="task.").order_by("id").values_list("kind", "payload"))
    assert [kind for kind, _payload in events] == ["task.due", "task.done"]
    assert events[1][1]["outcome"] == "已回访"
    assert events[0][1]["task_id"] == task.pk
