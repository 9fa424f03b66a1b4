"""The journey list and builder pages: counts in one query, new journeys, editing the draft's steps, validation,
publishing with the migration of customers in flight (J39-J41), the lifecycle buttons, and who may do it."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from customers.tests.factories import CommunityGroupFactory, CustomerFactory, ProductFactory
from journeys.models import Enrollment, EnrollmentState, Journey, JourneyStatus, JourneyVersion
from journeys.services.enrollment import Candidate, enroll
from journeys.tests.factories import published, send, wait
from journeys.views import builder_graph
from tags.tests.factories import TagFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
VIP = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def client(operator):
    client = Client()
    client.force_login(operator)
    return client


def draft_journey(steps, **definition):
    draft = {"trigger": {"type": "manual"}, "entry_filter": None, "reentry": {"policy": "never"},
             "exit": {"policy": "goal"}, "goal": None, "start": steps[0]["id"] if steps else "", "steps": steps,
             **definition}  # fmt: skip
    return Journey.objects.create(name="欢迎", draft=draft)


def steps_of(journey):
    journey.refresh_from_db()
    return journey.draft["steps"]


def add_enrollment(journey, *, state=EnrollmentState.ACTIVE, converted=False, step="s1"):
    return Enrollment.objects.create(
        journey=journey, version=journey.current_version, customer=CustomerFactory(), state=state, step=step,
        converted_at=NOW if converted else None,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------- list


def test_the_list_shows_status_trigger_version_and_counts_of_each_journey(client):
    tag = TagFactory(name="VIP")
    journey = published(trigger={"type": "tag_added", "tag": tag.pk}, name="新客欢迎", priority=5)
    add_enrollment(journey)
    add_enrollment(journey, state=EnrollmentState.COMPLETED, converted=True)
    add_enrollment(journey, state=EnrollmentState.EXITED)
    draft = draft_journey([send("s1")])

    response = client.get(reverse("journeys:list"))

    body = response.content.decode()
    row = body[body.index(f'data-journey="{journey.pk}"') :]
    row = row[: row.index("</tr>")]
    assert response.status_code == 200
    assert "新客欢迎" in row
    assert "Active" in row
    assert "Tag added" in row
    assert "v1" in row
    assert [
        row.split(f'data-testid="journey-{name}">')[1].split("<")[0]
        for name in ("enrolled", "active", "completed", "converted")
    ] == ["3", "1", "1", "1"]
    assert f'data-journey="{draft.pk}"' in body


def test_the_list_runs_a_fixed_number_of_queries_however_many_journeys(client, django_assert_max_num_queries):
    for index in range(2):
        add_enrollment(published(name=f"SOP {index}"))
    client.get(reverse("journeys:list"))  # the session, once

    with django_assert_max_num_queries(3):  # session, user, the journeys with their counts
        few = client.get(reverse("journeys:list"))
    for index in range(6):
        add_enrollment(published(name=f"More {index}"))
        draft_journey([send("s1")])
    with django_assert_max_num_queries(3):
        many = client.get(reverse("journeys:list"))

    assert few.content.decode().count('data-testid="journey-row"') == 2
    assert many.content.decode().count('data-testid="journey-row"') == 14


def test_the_list_filters_by_status_and_hides_archived_journeys_unless_asked(client):
    active = published(name="进行中")
    archived = draft_journey([send("s1")])
    Journey.objects.filter(pk=archived.pk).update(status=JourneyStatus.ARCHIVED)

    default = client.get(reverse("journeys:list")).content.decode()
    only_archived = client.get(reverse("journeys:list"), {"status": "archived"}).content.decode()

    assert f'data-journey="{active.pk}"' in default
    assert f'data-journey="{archived.pk}"' not in default
    assert f'data-journey="{archived.pk}"' in only_archived
    assert f'data-journey="{active.pk}"' not in only_archived


def test_new_journey_creates_a_blank_draft_owned_by_the_operator_and_opens_the_builder(client, operator):
    response = client.post(reverse("journeys:create"), {"name": "复购提醒"})

    journey = Journey.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("journeys:builder", args=[journey.pk])
    assert (journey.name, journey.owner, journey.status) == ("复购提醒", operator, JourneyStatus.DRAFT)
    assert journey.draft == {"trigger": {"type": "manual"}, "entry_filter": None, "reentry": {"policy": "never"},
                             "exit": {"policy": "goal"}, "goal": None, "start": "", "steps": []}  # fmt: skip
    assert client.get(response["Location"]).status_code == 200


def test_from_template_lists_the_templates_and_creates_a_draft_from_one(client, operator):
    listed = client.get(reverse("journeys:templates"), **HTMX)

    response = client.post(reverse("journeys:use_template", args=["birthday"]))

    journey = Journey.objects.get()
    assert 'data-code="welcome"' in listed.content.decode()
    assert 'data-code="birthday"' in listed.content.decode()
    assert response["Location"] == reverse("journeys:builder", args=[journey.pk])
    assert (journey.template_code, journey.owner, journey.status) == ("birthday", operator, JourneyStatus.DRAFT)
    assert client.post(reverse("journeys:use_template", args=["nope"])).status_code == 404


# ---------------------------------------------------------------------------------------------------- builder


def test_the_builder_draws_the_flow_with_each_steps_words_and_labelled_links(client):
    journey = draft_journey([
        {"id": "b1", "type": "branch", "branches": [{"label": "上海", "rule": VIP, "next": "s2"}], "else_next": "w3"},
        send("s2"),
        wait("w3", mode="duration", days=2),
    ])  # fmt: skip

    response = client.get(reverse("journeys:builder", args=[journey.pk]))

    graph = json.loads(response.content.decode().split('id="journey-graph-data" type="application/json">')[1]
                       .split("</script>")[0])  # fmt: skip
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert set(nodes) == {"trigger", "b1", "s2", "w3", "end:s2:next", "end:w3:next"}
    assert [nodes[step]["y"] for step in ("trigger", "b1", "s2", "w3", "end:s2:next")] == [0, 130, 260, 260, 325]
    assert nodes["s2"]["x"] < nodes["b1"]["x"] < nodes["w3"]["x"]  # the branches side by side, under it
    assert nodes["w3"]["text"] == "Wait 2 days"
    assert nodes["s2"]["url"] == reverse("journeys:step", args=[journey.pk, "s2"])
    assert {(link["source"], link["target"], link["label"]) for link in graph["links"]} == {
        ("trigger", "b1", ""), ("b1", "s2", "上海"), ("b1", "w3", "else"),
        ("s2", "end:s2:next", ""), ("w3", "end:w3:next", ""),
    }  # fmt: skip
    assert nodes["end:w3:next"]["url"] == reverse("journeys:add_step", args=[journey.pk]) + "?source=w3&slot=next"


def test_layout_centres_each_layer_and_puts_steps_no_path_reaches_to_the_right():
    split = {"id": "s1", "type": "split", "arms": [{"name": "A", "weight": 50, "next": "a"},
                                                   {"name": "B", "weight": 50, "next": "b"}]}  # fmt: skip
    draft = {"start": "s1", "steps": [split, send("a", next="c"), send("b", next="c"), send("c"),
                                      send("lost", next="also_lost"), send("also_lost")]}  # fmt: skip

    assert builder_graph.layout(draft) == {
        "s1": (0, 1), "a": (-0.5, 2), "b": (0.5, 2), "c": (0, 3), "lost": (1.5, 1), "also_lost": (1.5, 2),
    }  # fmt: skip


def test_adding_a_step_after_a_step_puts_it_between_it_and_what_followed(client):
    journey = draft_journey([send("s1", next="s2"), wait("s2", mode="duration", days=1)])

    chooser = client.get(reverse("journeys:add_step", args=[journey.pk]), {"source": "s1", "slot": "next"}, **HTMX)
    form = client.get(reverse("journeys:add_step", args=[journey.pk]),
                      {"source": "s1", "slot": "next", "type": "wait"}, **HTMX)  # fmt: skip
    response = client.post(
        reverse("journeys:add_step", args=[journey.pk]),
        {"source": "s1", "slot": "next", "type": "wait", "mode": "days_at", "days": "1", "at": "09:00", "next": "s2"},
        **HTMX,
    )

    assert 'data-type="wait_event"' in chooser.content.decode()
    assert '<option value="s2" selected>' in form.content.decode()  # on to where "after s1" led
    assert response.status_code == 200
    assert 'hx-swap-oob="true"' in response.content.decode()  # the flow and the summary are drawn again
    assert steps_of(journey) == [
        send("s1", next="s3"),
        {"id": "s3", "type": "wait", "mode": "days_at", "days": 1, "at": "09:00", "next": "s2"},
        wait("s2", mode="duration", days=1),
    ]


def test_adding_a_step_as_the_target_of_a_branch_exit(client):
    tag = TagFactory(name="高意向")
    journey = draft_journey([
        {"id": "b1", "type": "branch", "branches": [{"label": "上海", "rule": VIP}], "else_next": "s2"},
        send("s2"),
    ])  # fmt: skip

    client.post(reverse("journeys:add_step", args=[journey.pk]),
                {"source": "b1", "slot": "branches.0", "type": "add_tag", "tag": tag.pk, "next": ""})  # fmt: skip

    assert steps_of(journey) == [
        {"id": "b1", "type": "branch", "branches": [{"label": "上海", "rule": VIP, "next": "s3"}], "else_next": "s2"},
        {"id": "s3", "type": "add_tag", "tag": tag.pk},
        send("s2"),
    ]  # fmt: skip


def test_the_first_step_of_an_empty_journey_becomes_its_start(client):
    journey = draft_journey([])

    client.post(reverse("journeys:add_step", args=[journey.pk]),
                {"type": "task", "title": "打电话回访", "script": "", "due_hours": "24"})  # fmt: skip

    journey.refresh_from_db()
    assert journey.draft["start"] == "s1"
    assert journey.draft["steps"] == [
        {"id": "s1", "type": "task", "title": "打电话回访", "script": "", "due_hours": 24}
    ]


def test_editing_a_step_changes_its_settings_and_keeps_what_its_form_does_not_edit(client):
    journey = draft_journey([send("s1", next="s2", window={"weekdays": [0], "start": "09:00", "end": "17:00"}),
                             send("s2")])  # fmt: skip

    data = {"channel": "wecom", "text": "新品到了", "to": "customer", "kind": "transactional", "next": ""}

    client.post(reverse("journeys:step", args=[journey.pk, "s1"]), data)

    assert steps_of(journey)[0] == {
        "id": "s1", "type": "send", "channel": "wecom", "to": "customer", "kind": "transactional", "text": "新品到了",
        "window": {"weekdays": [0], "start": "09:00", "end": "17:00"},
    }  # fmt: skip


def test_a_step_whose_settings_do_not_check_is_not_saved_and_the_problem_shows_at_its_field(client):
    journey = draft_journey([wait("s1", mode="duration", days=1)])

    response = client.post(reverse("journeys:step", args=[journey.pk, "s1"]), {"mode": "duration", "hours": "9000"},
                           **HTMX)  # fmt: skip

    body = response.content.decode()
    assert 'data-field="days">A wait may last at most 366 days.' in body
    assert steps_of(journey) == [wait("s1", mode="duration", days=1)]


def test_editing_a_branch_keeps_its_rows_in_order_and_refuses_a_rule_that_does_not_validate(client):
    journey = draft_journey([
        {"id": "b1", "type": "branch", "branches": [{"label": "上海", "rule": VIP, "next": "s2"}]}, send("s2"),
    ])  # fmt: skip
    url = reverse("journeys:step", args=[journey.pk, "b1"])
    rows = {"branch_0_label": "上海", "branch_0_rule": json.dumps(VIP), "branch_0_next": "s2",
            "branch_1_label": "其他城市", "branch_1_next": ""}  # fmt: skip

    refused = client.post(url, {**rows, "branch_1_rule": '{"predicate": "nope"}', "else_next": "s2"}, **HTMX)
    client.post(url, {**rows, "branch_1_rule": json.dumps({"not": VIP}), "else_next": ""})

    assert 'data-field="branch_1_rule"' in refused.content.decode()
    assert steps_of(journey)[0] == {
        "id": "b1", "type": "branch",
        "branches": [{"label": "上海", "rule": VIP, "next": "s2"}, {"label": "其他城市", "rule": {"not": VIP}}],
    }  # fmt: skip


def test_deleting_a_step_relinks_its_predecessor_to_its_next(client):
    journey = draft_journey([send("s1", next="w2"), wait("w2", next="s3", mode="duration", days=1), send("s3")])

    response = client.post(reverse("journeys:delete_step", args=[journey.pk, "w2"]))

    assert response.status_code == 302
    assert steps_of(journey) == [send("s1", next="s3"), send("s3")]


def test_deleting_the_first_step_makes_its_next_the_start(client):
    journey = draft_journey([send("s1", next="s2"), send("s2")])

    client.post(reverse("journeys:delete_step", args=[journey.pk, "s1"]))

    journey.refresh_from_db()
    assert (journey.draft["start"], journey.draft["steps"]) == ("s2", [send("s2")])


def test_moving_a_step_up_and_down_in_a_straight_chain(client):
    journey = draft_journey([send("s1", next="s2"), wait("s2", next="s3", mode="duration", days=1), send("s3")])
    url = reverse("journeys:move_step", args=[journey.pk, "s2"])

    client.post(url, {"direction": "up"})
    after_up = steps_of(journey)
    journey.refresh_from_db()
    start = journey.draft["start"]
    client.post(url, {"direction": "down"})

    assert start == "s2"
    assert after_up == [wait("s2", next="s1", mode="duration", days=1), send("s1", next="s3"), send("s3")]
    assert steps_of(journey) == [send("s1", next="s2"), wait("s2", next="s3", mode="duration", days=1), send("s3")]


def test_a_step_after_a_branch_cannot_be_moved_up(client):
    steps = [{"id": "b1", "type": "branch", "branches": [{"label": "上海", "rule": VIP, "next": "s2"}]}, send("s2")]
    journey = draft_journey(steps)

    response = client.post(reverse("journeys:move_step", args=[journey.pk, "s2"]), {"direction": "up"}, **HTMX)

    assert "Only a step in a straight chain" in response.content.decode()
    assert steps_of(journey) == steps


def test_the_trigger_form_saves_only_the_chosen_types_settings_and_shows_what_is_missing(client):
    tag = TagFactory(name="VIP")
    journey = draft_journey([send("s1")])
    url = reverse("journeys:trigger", args=[journey.pk])

    missing = client.post(url, {"type": "tag_added", "event_type": "content_view"}, **HTMX)
    client.post(url, {"type": "tag_added", "tag": tag.pk, "event_type": "content_view"})
    tagged = Journey.objects.get(pk=journey.pk).draft["trigger"]
    ProductFactory(sku="MASK01")
    client.post(url, {"type": "consumption_cycle", "cycle_product": "MASK01", "days_before": "3", "at": "10:00"})

    assert 'data-field="tag">Choose a tag.' in missing.content.decode()
    assert tagged == {"type": "tag_added", "tag": tag.pk}
    assert Journey.objects.get(pk=journey.pk).draft["trigger"] == {
        "type": "consumption_cycle", "at": "10:00", "days_before": 3, "product": "MASK01",
    }  # fmt: skip


def test_the_trigger_form_keeps_a_weekly_group_plan_without_its_empty_rows(client):
    CommunityGroupFactory(group_type="customer")
    journey = draft_journey([])

    client.post(reverse("journeys:trigger", args=[journey.pk]), {
        "type": "group_weekly", "group_type": "customer",
        "plan_0_weekday": "0", "plan_0_at": "20:00", "plan_0_text": "周一知识分享",
        "plan_1_weekday": "", "plan_1_at": "", "plan_1_text": "",
        "plan_2_weekday": "4", "plan_2_at": "20:00", "plan_2_text": "周五福利",
    })  # fmt: skip

    assert Journey.objects.get(pk=journey.pk).draft["trigger"] == {
        "type": "group_weekly", "group_type": "customer",
        "plan": [{"at": "20:00", "weekday": 0, "text": "周一知识分享"},
                 {"at": "20:00", "weekday": 4, "text": "周五福利"}],
    }  # fmt: skip


def test_entry_exit_and_goal_forms_save_their_part_of_the_draft(client):
    journey = draft_journey([send("s1")])

    client.post(
        reverse("journeys:policies", args=[journey.pk]),
        {"entry_filter": json.dumps(VIP), "reentry": "after_days", "reentry_days": "30", "exit": "either"},
    )
    client.post(reverse("journeys:goal", args=[journey.pk]),
                {"type": "order", "window_days": "14", "min_amount": "199"})  # fmt: skip
    page = client.get(reverse("journeys:builder", args=[journey.pk])).content.decode()

    draft = Journey.objects.get(pk=journey.pk).draft
    assert (draft["entry_filter"], draft["reentry"], draft["exit"]) == (
        VIP, {"policy": "after_days", "days": 30}, {"policy": "either"}
    )  # fmt: skip
    assert draft["goal"] == {"type": "order", "window_days": 14, "min_amount": "199"}
    assert "上海" in page.split('data-testid="entry-filter-text">')[1].split("</div>")[0]


def test_validate_shows_every_problem_next_to_the_step_it_concerns(client):
    journey = draft_journey([send("s1", next="s9"), {"id": "w2", "type": "wait", "mode": "duration"}],
                            goal={"type": "event", "window_days": 30})  # fmt: skip

    response = client.post(reverse("journeys:validate", args=[journey.pk]), **HTMX)

    body = response.content.decode()
    s1, w2 = (body.split(f'data-step="{step}"')[1].split("</tr>")[0] for step in ("s1", "w2"))
    assert "3 problems to fix" not in body
    assert "4 problems to fix before publishing." in body
    assert "leads to a step that does not exist: s9" in s1
    assert "A wait needs a length." in w2
    assert "No path reaches this step." in w2
    assert "<code>goal.event_type</code> This setting is required." in body


def test_a_valid_draft_validates(client):
    journey = draft_journey([send("s1")])

    response = client.post(reverse("journeys:validate", args=[journey.pk]), **HTMX)

    assert 'data-testid="validation-ok"' in response.content.decode()


def every_step_type():
    """For each step type: what its form is given, and the settings it must make."""
    from customers.models import CustomAttribute
    from messaging.models import MessageTemplate
    from segments.models import Segment, SegmentKind

    tag = TagFactory(name="已购面膜")
    segment = Segment.objects.create(name="直播名单", kind=SegmentKind.STATIC)
    group = CommunityGroupFactory(name="新人福利群")
    template = MessageTemplate.objects.create(name="欢迎语", channel="wecom", body="您好")
    CustomAttribute.objects.create(key="member_level", label="会员等级")
    CustomAttribute.objects.create(key="points", label="积分", type="number")
    other = draft_journey([send("s1")])
    return {
        "wait": ({"mode": "weekday_at", "weekday": "5", "at": "15:15", "window_weekdays": ["0", "1", "2", "3", "4"],
                  "window_start": "09:00", "window_end": "17:00", "days": "9"},
                 {"mode": "weekday_at", "weekday": 5, "at": "15:15",
                  "window": {"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}}),
        "wait_event": ({"event_type": "content_view", "properties": '{"page": "serum"}', "timeout_hours": "72",
                        "timeout_next": "s1"},
                       {"event_type": "content_view", "properties": {"page": "serum"}, "timeout_hours": 72,
                        "timeout_next": "s1"}),
        "wait_condition": ({"rule": json.dumps(VIP), "check_every_minutes": "30", "timeout_hours": ""},
                           {"rule": VIP, "check_every_minutes": 30}),
        "branch": ({"branch_0_label": "上海", "branch_0_rule": json.dumps(VIP), "branch_0_next": "s1",
                    "branch_1_label": "", "branch_1_rule": "", "else_next": ""},
                   {"branches": [{"label": "上海", "rule": VIP, "next": "s1"}]}),
        "split": ({"arm_0_name": "A", "arm_0_weight": "70", "arm_1_name": "B", "arm_1_weight": "30", "arm_2_name": "",
                   "experiment": "on", "test_days": "14", "fallback": "A", "confidence": "0.9"},
                  {"arms": [{"name": "A", "weight": 70}, {"name": "B", "weight": 30}],
                   "experiment": {"test_days": 14, "fallback": "A", "confidence": 0.9}}),
        "send": ({"channel": "wecom", "template": template.pk, "text": "", "to": "group", "kind": "marketing",
                  "wait_confirmation": "on", "confirmation_timeout_hours": "24"},
                 {"channel": "wecom", "to": "group", "kind": "marketing", "template": template.pk,
                  "wait_confirmation": True, "confirmation_timeout_hours": 24}),
        "add_tag": ({"tag": tag.pk}, {"tag": tag.pk}),
        "remove_tag": ({"tag": tag.pk}, {"tag": tag.pk}),
        "add_to_segment": ({"segment": segment.pk}, {"segment": segment.pk}),
        "remove_from_segment": ({"segment": segment.pk}, {"segment": segment.pk}),
        "invite_group": ({"group": group.pk, "channel": "wecom", "text": "欢迎进群", "join_url": "https://x.cn/j"},
                         {"group": group.pk, "channel": "wecom", "text": "欢迎进群", "join_url": "https://x.cn/j"}),
        "task": ({"title": "电话回访", "script": "问问用后感受", "due_hours": "48"},
                 {"title": "电话回访", "script": "问问用后感受", "due_hours": 48}),
        "update_attribute": ({"attribute": "points", "value": "120"}, {"attribute": "points", "value": 120}),
        "enter_journey": ({"journey": other.pk}, {"journey": other.pk}),
        "exit": ({}, {}),
    }  # fmt: skip


def test_every_step_type_has_a_form_whose_settings_validate(client):
    from journeys import definition as definitions
    from journeys.forms import STEP_FORMS

    cases = every_step_type()
    journey = draft_journey([send("s1")])
    made = {}
    for kind, (data, _settings) in cases.items():
        url = reverse("journeys:add_step", args=[journey.pk])
        shown = client.get(url, {"source": "s1", "type": kind}, **HTMX)
        assert shown.status_code == 200
        client.post(url, {"source": "s1", "slot": "next", "type": kind, "next": "", **data})
        journey.refresh_from_db()
        added = journey.draft["steps"][1]
        made[kind] = {key: value for key, value in added.items() if key not in ("id", "type", "next")}
        Journey.objects.filter(pk=journey.pk).update(draft={**journey.draft, "steps": [send("s1")]})

    assert set(cases) == set(STEP_FORMS) == set(definitions.REGISTRY)
    assert made == {kind: settings for kind, (_data, settings) in cases.items()}
    for kind, settings in made.items():
        definitions.validate({"trigger": {"type": "manual"}, "steps": [{"id": "s1", "type": kind, **settings}]})


# ---------------------------------------------------------------------------------------------------- publish


def test_publishing_creates_version_1_and_activates_the_journey(client, operator):
    journey = draft_journey([send("s1")])

    form = client.get(reverse("journeys:publish", args=[journey.pk]), **HTMX)
    response = client.post(reverse("journeys:publish", args=[journey.pk]), {})

    journey.refresh_from_db()
    assert "Publish version 1" in form.content.decode()
    assert response["Location"] == reverse("journeys:builder", args=[journey.pk])
    assert (journey.status, journey.current_version.number, journey.current_version.published_by) == (
        JourneyStatus.ACTIVE, 1, operator
    )  # fmt: skip
    page = client.get(response["Location"]).content.decode()
    assert "Version 1 published." in page
    assert 'data-number="1"' in page


def test_publishing_a_draft_with_problems_publishes_nothing_and_marks_them(client):
    journey = draft_journey([send("s1", next="nowhere")])

    response = client.get(reverse("journeys:publish", args=[journey.pk]), **HTMX)

    assert 'data-testid="publish-blocked"' in response.content.decode()
    assert "leads to a step that does not exist: nowhere" in response.content.decode()
    assert not JourneyVersion.objects.filter(journey=journey).exists()


@time_machine.travel(NOW, tick=False)
def test_publishing_v2_without_a_step_where_customers_wait_is_refused_until_they_may_finish_on_v1(client):
    journey = published([wait("w1", next="s2", mode="duration", days=3), send("s2")])
    customer = CustomerFactory()
    enroll(journey, [Candidate(customer.pk, "manual", "t1", NOW)])
    Journey.objects.filter(pk=journey.pk).update(draft={**journey.draft, "steps": [send("s2")], "start": "s2"})
    url = reverse("journeys:publish", args=[journey.pk])

    form = client.get(url, **HTMX).content.decode()
    refused = client.post(url, {"mode": "migrate", "map_w1": ""}, **HTMX).content.decode()
    versions_after_refusal = JourneyVersion.objects.filter(journey=journey).count()
    accepted = client.post(url, {"mode": "migrate", "map_w1": "__old__"})

    enrollment = Enrollment.objects.get(journey=journey, customer=customer)
    assert "1 customer(s) at w1 go to" in form
    assert '<option value="__old__">Finish on the old version' in form
    assert 'data-field="map_w1">Customers wait at w1, which the new version removes' in refused
    assert versions_after_refusal == 1
    assert accepted.status_code == 302
    assert Journey.objects.get(pk=journey.pk).current_version.number == 2
    assert (enrollment.version.number, enrollment.step) == (1, "w1")  # finishes on v1 (J41)


@time_machine.travel(NOW, tick=False)
def test_publishing_v2_can_move_customers_in_flight_to_a_step_of_the_new_version(client):
    journey = published([wait("w1", next="s2", mode="duration", days=3), send("s2")])
    customer = CustomerFactory()
    enroll(journey, [Candidate(customer.pk, "manual", "t1", NOW)])
    draft = {**journey.draft, "steps": [wait("w9", next="s2", mode="duration", days=5), send("s2")], "start": "w9"}
    Journey.objects.filter(pk=journey.pk).update(draft=draft)

    client.post(reverse("journeys:publish", args=[journey.pk]), {"mode": "migrate", "map_w1": "w9"})

    enrollment = Enrollment.objects.get(journey=journey, customer=customer)
    assert (enrollment.version.number, enrollment.step) == (2, "w9")  # J40: time already waited counts
    assert enrollment.next_run_at == datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


@time_machine.travel(NOW, tick=False)
def test_publishing_v2_may_keep_customers_in_flight_on_their_version(client):
    journey = published([wait("w1", next="s2", mode="duration", days=3), send("s2")])
    customer = CustomerFactory()
    enroll(journey, [Candidate(customer.pk, "manual", "t1", NOW)])
    Journey.objects.filter(pk=journey.pk).update(draft={**journey.draft, "steps": [send("s2")], "start": "s2"})

    client.post(reverse("journeys:publish", args=[journey.pk]), {"mode": "keep"})

    enrollment = Enrollment.objects.get(journey=journey, customer=customer)
    assert Journey.objects.get(pk=journey.pk).current_version.number == 2
    assert (enrollment.version.number, enrollment.step) == (1, "w1")  # J39
    page = client.get(reverse("journeys:builder", args=[journey.pk])).content.decode()
    v1 = page.split('data-number="1"')[1].split("</tr>")[0]
    assert 'data-testid="version-active">1<' in v1


# -------------------------------------------------------------------------------------------------- lifecycle


def test_pause_resume_stop_and_archive_buttons_change_the_journeys_status(client):
    journey = published([wait("w1", mode="duration", days=3)])
    add_enrollment(journey, step="w1")
    url = reverse("journeys:builder", args=[journey.pk])

    page = client.get(url).content.decode()
    client.post(reverse("journeys:pause", args=[journey.pk]))
    paused = Journey.objects.get(pk=journey.pk).status
    client.post(reverse("journeys:resume", args=[journey.pk]))
    resumed = Journey.objects.get(pk=journey.pk).status
    client.post(reverse("journeys:stop", args=[journey.pk]))
    stopped = Journey.objects.get(pk=journey.pk).status
    client.post(reverse("journeys:archive", args=[journey.pk]))

    assert 'data-testid="pause"' in page
    assert 'data-confirm="Pause this journey?' in page
    assert (paused, resumed) == (JourneyStatus.PAUSED, JourneyStatus.ACTIVE)
    assert stopped == JourneyStatus.STOPPED
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.ARCHIVED
    assert Enrollment.objects.get(journey=journey).exit_reason == "journey_stopped"


def test_a_lifecycle_action_that_cannot_happen_now_is_shown_as_a_message(client):
    journey = draft_journey([send("s1")])

    response = client.post(reverse("journeys:resume", args=[journey.pk]), follow=True)

    assert "Only a paused journey can be resumed." in response.content.decode()
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.DRAFT


@time_machine.travel(NOW, tick=False)
def test_the_dry_run_panel_says_who_would_enter_and_where_they_would_go(client):
    journey = draft_journey([send("s1", next="w2"), wait("w2", mode="duration", days=1)])
    CustomerFactory(name="王小美")

    response = client.get(reverse("journeys:dry_run", args=[journey.pk]), **HTMX)

    body = response.content.decode()
    assert 'data-testid="dry-run-entering">1<' in body
    assert "Nobody enters at publishing" in body  # a manual journey: she would enter when enrolled
    assert '<tr data-step="s1"><td><code>s1</code></td>' in body
    assert "王小美" in body


def test_a_sales_rep_cannot_reach_the_journeys_pages(rep):
    journey = draft_journey([send("s1")])
    client = Client()
    client.force_login(rep)

    statuses = [
        client.get(reverse("journeys:list")).status_code,
        client.get(reverse("journeys:builder", args=[journey.pk])).status_code,
        client.get(reverse("journeys:step", args=[journey.pk, "s1"])).status_code,
        client.post(reverse("journeys:create")).status_code,
        client.post(reverse("journeys:delete_step", args=[journey.pk, "s1"])).status_code,
        client.post(reverse("journeys:publish", args=[journey.pk])).status_code,
        client.post(reverse("journeys:pause", args=[journey.pk])).status_code,
    ]

    assert statuses == [403] * 7
    assert Journey.objects.count() == 1
    assert steps_of(journey) == [send("s1")]
    assert not JourneyVersion.objects.exists()
