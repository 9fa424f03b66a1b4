"""REST API for journeys and tasks: CRUD of drafts, publishing with a migration, lifecycle actions, dry runs,
manual enrollment, enrollments and tasks limited to what each person may see."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts.models import Role
from customers.models import Event
from customers.tests.factories import CustomerFactory, UserFactory
from journeys.models import Enrollment, Journey, JourneyStatus, JourneyVersion, Refusal, StepRun, Task, TaskStatus
from journeys.services import lifecycle
from journeys.services.enrollment import Candidate, enroll
from journeys.tests.factories import published, send, wait
from messaging.models import Touchpoint

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
JOURNEYS = "/api/v1/journeys/"
TASKS = "/api/v1/tasks/"
IN_SHANGHAI = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def url(journey, action: str = "") -> str:
    return f"{JOURNEYS}{journey.pk}/" + (f"{action}/" if action else "")


def a_draft(steps=None, **definition) -> Journey:
    draft = {"trigger": {"type": "manual"}, "steps": steps if steps is not None else [send("s1")], **definition}
    return Journey.objects.create(name="草稿", draft=draft)


def enter(journey, *customers):
    return enroll(journey, [Candidate(c.pk, "manual", f"t{c.pk}", NOW) for c in customers], now=NOW)


def a_task(customer, *, assignee=None, title="回访", status=TaskStatus.OPEN):
    return Task.objects.create(customer=customer, assignee=assignee, title=title, due_at=NOW, status=status,
                               idempotency_key=f"test:{customer.pk}:{title}")  # fmt: skip


# ------------------------------------------------------------------------------------------------ journeys


def test_everyone_reads_journeys_and_the_draft_is_in_the_detail(api, rep):
    active = published([send("s1")], name="欢迎 SOP")
    draft = a_draft()

    listed = api.get(JOURNEYS).json()["results"]
    detail = client_for(rep).get(url(active)).json()

    assert [(j["id"], j["status"], j["version"]) for j in listed] == [
        (draft.pk, "draft", None), (active.pk, "active", 1)
    ]  # fmt: skip
    assert "draft" not in listed[0]
    assert (detail["name"], detail["draft"]["steps"][0]["id"]) == ("欢迎 SOP", "s1")
    assert detail["definition"]["start"] == "s1"


def test_journeys_filter_by_status(api):
    published(name="进行中")
    draft = a_draft()

    listed = api.get(JOURNEYS, {"status": "draft"}).json()["results"]

    assert [j["id"] for j in listed] == [draft.pk]


def test_an_operator_creates_a_draft_saved_as_it_is(api, operator):
    body = {"name": "复购提醒", "priority": 5, "draft": {"trigger": {"type": "manual"}, "steps": []}}

    response = api.post(JOURNEYS, body, format="json")

    assert response.status_code == 201
    journey = Journey.objects.get()
    assert (journey.name, journey.priority, journey.status, journey.owner) == ("复购提醒", 5, "draft", operator)
    assert journey.draft == body["draft"]
    assert response.json()["draft"] == body["draft"]


def test_an_operator_creates_a_draft_from_an_sop_template(api, operator):
    response = api.post(JOURNEYS, {"template": "birthday", "name": "会员生日礼"}, format="json")

    assert response.status_code == 201
    journey = Journey.objects.get()
    assert (journey.name, journey.template_code, journey.owner) == ("会员生日礼", "birthday", operator)
    assert journey.draft["trigger"]["type"] == "birthday"
    unknown = api.post(JOURNEYS, {"template": "nope"}, format="json")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "invalid")
    assert Journey.objects.count() == 1


def test_a_rep_reads_but_does_not_change_journeys(rep, operator):
    journey = published(name="欢迎 SOP")
    client = client_for(rep)

    assert client.get(url(journey)).status_code == 200
    assert client.post(JOURNEYS, {"name": "x"}, format="json").status_code == 403
    assert client.patch(url(journey), {"name": "x"}, format="json").status_code == 403
    assert client.post(url(journey, "pause")).status_code == 403
    assert client.post(url(journey, "dry-run")).status_code == 403
    journey.refresh_from_db()
    assert (journey.name, journey.status) == ("欢迎 SOP", JourneyStatus.ACTIVE)


def test_updating_changes_the_draft_and_settings_but_not_the_published_version(api):
    journey = published([send("s1", "第一版")])
    new_draft = {**journey.draft, "steps": [send("s1", "第二版")]}

    response = api.patch(url(journey), {"draft": new_draft, "lateness_limit_hours": 6}, format="json")

    assert response.status_code == 200
    journey.refresh_from_db()
    assert (journey.draft["steps"][0]["text"], journey.lateness_limit_hours) == ("第二版", 6)
    assert journey.current_version.definition["steps"][0]["text"] == "第一版"


def test_an_archived_journey_is_not_edited(api):
    journey = a_draft()
    lifecycle.archive(journey)

    response = api.patch(url(journey), {"name": "新名字"}, format="json")

    assert (response.status_code, response.json()) == (409, {"detail": "An archived journey is not edited.",
                                                             "code": "archived"})  # fmt: skip


def test_only_a_draft_never_published_is_deleted(api):
    draft, active = a_draft(), published()

    assert api.delete(url(draft)).status_code == 204
    response = api.delete(url(active))

    assert (response.status_code, response.json()["code"]) == (409, "not_draft")
    assert list(Journey.objects.values_list("pk", flat=True)) == [active.pk]


def test_publishing_an_invalid_draft_lists_every_problem_and_changes_nothing(api):
    journey = a_draft([send("s1", next="nowhere"), {"id": "w", "type": "wait", "days": 0}])

    response = api.post(url(journey, "publish"), format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The journey definition is not valid.",
        "code": "invalid_definition",
        "errors": [
            {"path": "steps[1].days", "message": "A wait needs a length."},
            {"path": "steps[0]", "message": "“next” leads to a step that does not exist: nowhere."},
            {"path": "steps[1]", "message": "No path reaches this step."},
        ],
    }
    journey.refresh_from_db()
    assert (journey.status, JourneyVersion.objects.count()) == (JourneyStatus.DRAFT, 0)


@time_machine.travel(NOW, tick=False)
def test_publishing_activates_the_draft_and_a_migration_moves_customers_in_flight(api, operator):
    journey = published([wait("w", days=3, next="s1"), send("s1")])
    customer = CustomerFactory()
    enter(journey, customer)
    journey.draft = {**journey.draft, "steps": [wait("w2", days=3, next="s1"), send("s1")]}
    journey.save()

    refused = api.post(url(journey, "publish"), {"migration": {"map": {}}}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_definition")
    assert [e["path"] for e in refused.json()["errors"]] == ["migration.map.w"]
    assert journey.versions.count() == 1

    response = api.post(url(journey, "publish"), {"migration": {"map": {"w": "w2"}}}, format="json")

    assert (response.status_code, response.json()["version"], response.json()["status"]) == (200, 2, "active")
    enrollment = Enrollment.objects.get(customer=customer)
    assert (enrollment.version.number, enrollment.step, enrollment.next_run_at) == (
        2,
        "w2",
        NOW + datetime.timedelta(days=3),
    )
    assert journey.versions.get(number=2).published_by == operator


def test_pause_resume_stop_and_archive_move_the_journey_and_refuse_what_cannot_happen_now(api):
    journey = published()

    assert api.post(url(journey, "resume")).json()["code"] == "not_paused"
    assert api.post(url(journey, "pause")).json()["status"] == "paused"
    assert api.post(url(journey, "resume")).json()["status"] == "active"
    assert api.post(url(journey, "archive")).json() == {"detail": "Stop the journey before archiving it.",
                                                        "code": "not_stopped"}  # fmt: skip
    assert api.post(url(journey, "stop")).json()["status"] == "stopped"
    assert api.post(url(journey, "stop")).status_code == 409
    assert api.post(url(journey, "archive")).json()["status"] == "archived"
    assert api.post(url(journey, "pause")).json()["code"] == "not_active"


@time_machine.travel(NOW, tick=False)
def test_a_dry_run_answers_who_would_enter_and_when_each_step_would_run_writing_nothing(api):
    shanghai = CustomerFactory(name="小美", city="上海")
    CustomerFactory(city="北京")
    journey = a_draft([send("s1", next="w"), wait("w", mode="days_at", days=1, at="09:00")], entry_filter=IN_SHANGHAI)

    response = api.post(url(journey, "dry-run"), {"sample_size": 5}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "entering": 1,
        "on_trigger": True,
        "step_counts": {"s1": 1, "w": 1},
        "sample": [{"customer_id": shanghai.pk, "customer_name": "小美", "steps": [
            {"step_id": "s1", "description": "Send “您好 {customer.name}” to the customer on SMS",
             "at": "2026-11-23T10:00:00+08:00", "note": ""},
            {"step_id": "w", "description": "Wait 1 day(s), then at 09:00", "at": "2026-11-24T09:00:00+08:00",
             "note": ""},
        ]}],
    }  # fmt: skip
    assert (Enrollment.objects.count(), StepRun.objects.count(), Touchpoint.objects.count()) == (0, 0, 0)


def test_a_dry_run_of_an_invalid_draft_is_a_400_with_the_problems(api):
    journey = a_draft([])

    response = api.post(url(journey, "dry-run"), format="json")

    assert response.json() == {"detail": "The journey definition is not valid.", "code": "invalid_definition",
                               "errors": [{"path": "steps", "message": "Add at least one step."}]}  # fmt: skip


def test_manual_enrollment_lists_who_entered_and_who_was_refused_with_why(api):
    journey = published(entry_filter=IN_SHANGHAI)
    shanghai, beijing = CustomerFactory(city="上海"), CustomerFactory(city="北京")

    with time_machine.travel(NOW, tick=False):
        response = api.post(url(journey, "enroll"), {"customers": [beijing.pk, shanghai.pk]}, format="json")

    enrollment = Enrollment.objects.get()
    assert (enrollment.customer, enrollment.trigger) == (shanghai, "manual")
    assert response.json() == {
        "enrolled": [{"customer": shanghai.pk, "enrollment": enrollment.pk}],
        "refused": [{"customer": beijing.pk, "reason": "filter_not_matched",
                     "reason_label": "Entry filter not matched"}],
    }  # fmt: skip
    with time_machine.travel(NOW + datetime.timedelta(minutes=1), tick=False):
        again = api.post(url(journey, "enroll"), {"customers": [shanghai.pk]}, format="json").json()
    assert again == {"enrolled": [], "refused": [{"customer": shanghai.pk, "reason": "already_active",
                                                  "reason_label": "Already in this journey"}]}  # fmt: skip


def test_manual_enrollment_needs_an_active_journey_and_known_customers(api):
    customer = CustomerFactory()
    draft, active = a_draft(), published()

    not_active = api.post(url(draft, "enroll"), {"customers": [customer.pk]}, format="json")
    unknown = api.post(url(active, "enroll"), {"customers": [customer.pk, 999_999]}, format="json")

    assert (not_active.status_code, not_active.json()["code"]) == (409, "not_active")
    assert (unknown.status_code, unknown.json()["errors"]) == (400, {"customers": ["Customers not found: [999999]"]})
    assert (Enrollment.objects.count(), Refusal.objects.count()) == (0, 0)


# --------------------------------------------------------------------------------------------- enrollments


@time_machine.travel(NOW, tick=False)
def test_enrollments_are_filtered_by_state_and_step(api):
    journey = published([wait("w", days=3)])
    waiting, finished = CustomerFactory(name="等待中"), CustomerFactory()
    enter(journey, waiting, finished)
    Enrollment.objects.filter(customer=finished).update(state="exited", exit_reason="goal", next_run_at=None)

    active = api.get(url(journey, "enrollments"), {"state": "active"}).json()["results"]
    at_step = api.get(url(journey, "enrollments"), {"step": "w"}).json()["results"]

    assert [(e["customer"], e["customer_name"], e["state"], e["step"], e["version"]) for e in active] == [
        (waiting.pk, "等待中", "active", "w", 1)
    ]
    assert active[0]["next_run_at"] == "2026-11-26T10:00:00+08:00"
    assert {e["customer"] for e in at_step} == {waiting.pk, finished.pk}
    assert api.get(url(journey, "enrollments"), {"state": "exited"}).json()["results"][0]["exit_reason"] == "goal"


@time_machine.travel(NOW, tick=False)
def test_a_rep_sees_only_her_own_customers_enrollments(rep, other_rep):
    journey = published([wait("w", days=3)])
    mine, theirs = CustomerFactory(owner=rep.staff), CustomerFactory(owner=other_rep.staff)
    enter(journey, mine, theirs)

    listed = client_for(rep).get(url(journey, "enrollments")).json()["results"]

    assert [e["customer"] for e in listed] == [mine.pk]


@time_machine.travel(NOW, tick=False)
def test_the_enrollments_list_costs_the_same_queries_for_any_page(api, django_assert_max_num_queries):
    journey = published([wait("w", days=3)])
    enter(journey, *[CustomerFactory() for _index in range(3)])
    api.get(url(journey, "enrollments"))  # the token's first use
    enter(journey, *[CustomerFactory() for _index in range(40)])

    with django_assert_max_num_queries(3):  # the token, the journey, the page (names and version numbers joined)
        response = api.get(url(journey, "enrollments"), {"page_size": 50})

    assert len(response.json()["results"]) == 43


# ---------------------------------------------------------------------------------------------------- tasks


def test_a_rep_sees_her_customers_tasks_and_those_assigned_to_her_not_another_reps(rep, other_rep):
    mine = a_task(CustomerFactory(owner=rep.staff), title="我的客户")
    assigned = a_task(CustomerFactory(owner=other_rep.staff), assignee=rep.staff, title="转给我的")
    theirs = a_task(CustomerFactory(owner=other_rep.staff), assignee=other_rep.staff, title="别人的")
    client = client_for(rep)

    listed = client.get(TASKS).json()["results"]

    assert sorted(t["id"] for t in listed) == sorted([mine.pk, assigned.pk])
    assert client.get(f"{TASKS}{theirs.pk}/").status_code == 404
    assert client.post(f"{TASKS}{theirs.pk}/complete/", format="json").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == TaskStatus.OPEN


def test_the_tasks_list_costs_the_same_queries_for_any_page(rep, django_assert_max_num_queries):
    journey = published(name="回访 SOP")
    for index in range(30):
        Task.objects.create(customer=CustomerFactory(owner=rep.staff), assignee=rep.staff, journey=journey,
                            title=f"任务{index}", due_at=NOW, idempotency_key=f"k{index}")  # fmt: skip
    client = client_for(rep)

    with django_assert_max_num_queries(3):  # the session, the user, the page (customers, reps, journeys joined)
        response = client.get(TASKS)

    assert [t["journey_name"] for t in response.json()["results"]] == ["回访 SOP"] * 30


def test_tasks_filter_by_status_and_assignee(api, rep, other_rep):
    customer = CustomerFactory()
    open_mine = a_task(customer, assignee=rep.staff, title="一")
    a_task(customer, assignee=rep.staff, title="二", status=TaskStatus.DONE)
    a_task(customer, assignee=other_rep.staff, title="三")

    listed = api.get(TASKS, {"status": "open", "assignee": rep.staff.pk}).json()["results"]

    assert [(t["id"], t["assignee_name"], t["customer_name"]) for t in listed] == [
        (open_mine.pk, "rep_me", customer.name)
    ]


@time_machine.travel(NOW, tick=False)
def test_a_rep_completes_her_task_with_an_outcome_and_the_customer_gets_the_event(rep):
    customer = CustomerFactory(owner=rep.staff)
    task = a_task(customer, assignee=rep.staff)

    response = client_for(rep).post(f"{TASKS}{task.pk}/complete/", {"outcome": "已约到店"}, format="json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["outcome"]) == ("done", "已约到店")
    task.refresh_from_db()
    assert (task.status, task.completed_by, task.completed_at) == (TaskStatus.DONE, rep, NOW)
    assert Event.objects.get(customer=customer).type == "task_completed"
    again = client_for(rep).post(f"{TASKS}{task.pk}/complete/", {"outcome": "又一次"}, format="json")
    assert (again.status_code, again.json()["outcome"]) == (200, "已约到店")


def test_a_cancelled_task_is_not_completed_and_an_analyst_completes_nothing(api, rep):
    customer = CustomerFactory(owner=rep.staff)
    cancelled = a_task(customer, title="取消了", status=TaskStatus.CANCELLED)
    task = a_task(customer, title="待办")
    analyst = UserFactory(username="analyst", role=Role.ANALYST)

    refused = api.post(f"{TASKS}{cancelled.pk}/complete/", format="json")
    forbidden = client_for(analyst).post(f"{TASKS}{task.pk}/complete/", format="json")

    assert (refused.status_code, refused.json()["code"]) == (409, "cancelled")
    assert forbidden.status_code == 403
    assert list(Task.objects.order_by("pk").values_list("status", flat=True)) == ["cancelled", "open"]
    assert Event.objects.count() == 0
