from decimal import Decimal

import pytest
import yaml
from django.utils import timezone
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from accounts.models import Role
from customers.models import DomainEvent
from customers.tests.factories import CustomerFactory, OrderFactory, UserFactory
from tags import services
from tags.models import (
    AnswerCode,
    CustomerTag,
    Question,
    Questionnaire,
    QuestionnaireResponse,
    Tag,
    TagGroup,
    TagHistory,
    TagKind,
    TagRule,
    TagSource,
)
from tags.tests.factories import AnswerCodeFactory, QuestionFactory, QuestionnaireFactory, TagFactory, TagGroupFactory

pytestmark = pytest.mark.django_db


def big_spender_rule(threshold=1000):
    return {"predicate": "orders_sum", "op": "gt", "value": threshold, "window": {"last_days": 365}}


def big_spender(**kwargs):
    customer = CustomerFactory(**kwargs)
    OrderFactory(customer=customer, amount=Decimal(3000), ordered_at=timezone.now())
    return customer


def tags_of(customer) -> set[tuple[int, str]]:
    return set(CustomerTag.objects.filter(customer=customer).values_list("tag_id", "source"))


def client_for(user) -> APIClient:
    """A browser session (what the dashboard's own pages use)."""
    client = APIClient()
    client.force_login(user)
    return client


# ----------------------------------------------------------------------------------------------- tag groups


def test_tag_groups_are_read_by_reps_and_written_only_by_managers(api, rep):
    group = TagGroupFactory(name="兴趣")

    listed = client_for(rep).get("/api/v1/tag-groups/")
    refused = client_for(rep).post("/api/v1/tag-groups/", {"name": "生命周期"}, format="json")
    created = api.post("/api/v1/tag-groups/", {"name": "生命周期", "position": 5}, format="json")

    assert [g["id"] for g in listed.json()["results"]] == [group.pk]
    assert refused.status_code == 403
    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], "name": "生命周期", "description": "", "position": 5}


def test_deleting_a_group_that_holds_tags_is_a_conflict_and_keeps_it(api):
    tag = TagFactory()

    response = api.delete(f"/api/v1/tag-groups/{tag.group_id}/")

    assert response.status_code == 409
    assert response.json()["code"] == "group_not_empty"
    assert TagGroup.objects.filter(pk=tag.group_id).exists()


# ----------------------------------------------------------------------------------------------------- tags


def test_create_a_tag_then_read_it_back(api):
    group = TagGroupFactory()

    created = api.post(
        "/api/v1/tags/", {"group": group.pk, "name": "高净值", "colour": "#0d6efd", "kind": "auto"}, format="json"
    )

    assert created.status_code == 201
    body = created.json()
    assert body == {
        "id": body["id"], "group": group.pk, "name": "高净值", "colour": "#0d6efd", "description": "",
        "kind": "manual", "customer_count": 0, "rule": None, "created_at": body["created_at"],
    }  # fmt: skip
    assert api.get(f"/api/v1/tags/{body['id']}/").json() == body


def test_a_tag_with_a_bad_colour_or_a_taken_name_gets_field_errors_and_is_not_created(api):
    taken = TagFactory(name="宝妈")

    bad_colour = api.post("/api/v1/tags/", {"group": taken.group_id, "name": "学生", "colour": "red"}, format="json")
    same_name = api.post("/api/v1/tags/", {"group": taken.group_id, "name": "宝妈"}, format="json")

    assert bad_colour.status_code == 400
    assert bad_colour.json()["errors"] == {"colour": ["Expected a hex colour like #0d6efd."]}
    assert same_name.status_code == 400
    assert same_name.json()["code"] == "invalid"
    assert list(Tag.objects.values_list("name", flat=True)) == ["宝妈"]


def test_reps_read_tags_but_may_not_change_them(rep):
    tag = TagFactory(name="宝妈")
    client = client_for(rep)

    assert client.get(f"/api/v1/tags/{tag.pk}/").status_code == 200
    assert client.patch(f"/api/v1/tags/{tag.pk}/", {"name": "x"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/tags/{tag.pk}/").status_code == 403
    tag.refresh_from_db()
    assert tag.name == "宝妈"


def test_tag_list_filters_by_group_kind_and_name(api):
    interests, lifecycle = TagGroupFactory(name="兴趣"), TagGroupFactory(name="生命周期")
    yoga = TagFactory(group=interests, name="瑜伽")
    TagFactory(group=interests, name="跑步")
    vip = TagFactory(group=lifecycle, name="高价值VIP")
    services.save_rule(vip, big_spender_rule())

    def ids(**params):
        return [t["id"] for t in api.get("/api/v1/tags/", params).json()["results"]]

    assert ids(group=lifecycle.pk) == [vip.pk]
    assert ids(kind="auto") == [vip.pk]
    assert ids(search="瑜") == [yoga.pk]


def test_customer_count_counts_each_visible_customer_once(api, rep, other_rep):
    tag = TagFactory()
    mine = CustomerFactory(owner=rep.staff)
    theirs = CustomerFactory(owner=other_rep.staff)
    services.add_tags([mine.pk, theirs.pk], [tag.pk], source=TagSource.MANUAL)
    services.add_tags([mine.pk], [tag.pk], source=TagSource.API)

    as_rep = client_for(rep).get("/api/v1/tags/").json()["results"]
    as_operator = api.get(f"/api/v1/tags/{tag.pk}/").json()

    assert [(t["id"], t["customer_count"]) for t in as_rep] == [(tag.pk, 1)]
    assert as_operator["customer_count"] == 2


def test_tag_list_runs_a_fixed_number_of_queries_however_many_tags_and_rules(api, django_assert_num_queries):
    customers = [c.pk for c in CustomerFactory.create_batch(3)]
    base = TagFactory()
    for _ in range(3):
        services.save_rule(TagFactory(), {"predicate": "has_tag", "tags": [base.pk]})
    services.add_tags(customers, [base.pk], source=TagSource.MANUAL)
    api.get("/api/v1/tags/")  # the token's last_used_at is refreshed at most once a minute
    with django_assert_num_queries(2):  # token, page with counts and rules
        few = api.get("/api/v1/tags/").json()["results"]

    for _ in range(20):
        tag = TagFactory()
        services.save_rule(tag, {"predicate": "has_tag", "tags": [base.pk]})
        services.add_tags(customers, [tag.pk], source=TagSource.MANUAL)
    with django_assert_num_queries(2):
        many = api.get("/api/v1/tags/").json()["results"]

    assert (len(few), len(many)) == (4, 24)
    assert many[0]["customer_count"] == 3
    assert many[0]["rule"]["rule"] == {"predicate": "has_tag", "tags": [base.pk]}


def test_tag_detail_has_its_rule_in_words(api):
    tag = TagFactory()
    services.save_rule(tag, big_spender_rule())

    rule = api.get(f"/api/v1/tags/{tag.pk}/").json()["rule"]

    assert rule["description"] == "spent > ¥1,000 in the last 365 days"
    assert (rule["is_active"], rule["is_time_relative"], rule["last_run_at"]) == (True, True, None)


def test_deleting_a_tag_takes_it_off_customers_with_tag_removed_events(api):
    tag = TagFactory()
    customer = CustomerFactory()
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)

    response = api.delete(f"/api/v1/tags/{tag.pk}/")

    assert response.status_code == 204
    assert not Tag.objects.filter(pk=tag.pk).exists()
    assert list(DomainEvent.objects.order_by("id").values_list("kind", flat=True)) == ["tag.added", "tag.removed"]


def test_deleting_a_tag_another_rule_names_is_a_conflict_and_keeps_it(api):
    named = TagFactory(name="宝妈")
    user = TagFactory(name="宝妈复购")
    services.save_rule(user, {"predicate": "has_tag", "tags": [named.pk]})

    response = api.delete(f"/api/v1/tags/{named.pk}/")

    assert response.status_code == 409
    assert response.json() == {"detail": "The rules of 宝妈复购 use this tag; change them first.", "code": "tag_in_use"}
    assert Tag.objects.filter(pk=named.pk).exists()


# ---------------------------------------------------------------------------------------------------- rules


def test_putting_a_rule_saves_it_and_makes_the_tag_automatic(api, operator):
    tag = TagFactory()

    response = api.put(f"/api/v1/tags/{tag.pk}/rule/", {"rule": big_spender_rule(), "is_active": True}, format="json")

    assert response.status_code == 200
    assert response.json()["description"] == "spent > ¥1,000 in the last 365 days"
    tag.refresh_from_db()
    assert tag.kind == TagKind.AUTO
    assert (tag.rule.rule, tag.rule.created_by) == (big_spender_rule(), operator)
    assert api.get(f"/api/v1/tags/{tag.pk}/rule/").json()["rule"] == big_spender_rule()


def test_a_bad_rule_answers_400_with_every_issue_and_its_path_and_saves_nothing(api):
    tag = TagFactory()
    rule = {"all": [{"predicate": "orders_count", "op": "bogus", "value": 3}, {"predicate": "nope"}]}

    response = api.put(f"/api/v1/tags/{tag.pk}/rule/", {"rule": rule}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["detail"]) == ("invalid_rule", "The rule is not valid.")
    assert [issue["path"] for issue in body["issues"]] == ["$.all[0].op", "$.all[1].predicate"]
    assert body["issues"][0]["message"] == "Expected one of eq, ne, lt, lte, gt, gte, between for number."
    assert not TagRule.objects.exists()
    tag.refresh_from_db()
    assert tag.kind == TagKind.MANUAL


def test_reps_may_not_change_or_run_rules(rep):
    tag = TagFactory()
    client = client_for(rep)

    assert client.put(f"/api/v1/tags/{tag.pk}/rule/", {"rule": big_spender_rule()}, format="json").status_code == 403
    assert client.post(f"/api/v1/tags/{tag.pk}/run/").status_code == 403
    assert not TagRule.objects.exists()


def test_a_tag_without_a_rule_has_no_rule_to_read_delete_or_run(api):
    tag = TagFactory()

    assert api.get(f"/api/v1/tags/{tag.pk}/rule/").json() == {"detail": "This tag has no rule.", "code": "no_rule"}
    assert api.delete(f"/api/v1/tags/{tag.pk}/rule/").status_code == 404
    assert api.post(f"/api/v1/tags/{tag.pk}/run/").status_code == 404


def test_deleting_a_rule_removes_the_tags_it_gave_and_keeps_the_hand_given(api):
    tag = TagFactory()
    ruled, hand_tagged = big_spender(), big_spender()
    services.add_tags([hand_tagged.pk], [tag.pk], source=TagSource.MANUAL)
    services.apply_rule(services.save_rule(tag, big_spender_rule()))

    response = api.delete(f"/api/v1/tags/{tag.pk}/rule/")

    assert response.status_code == 204
    assert tags_of(ruled) == set()
    assert tags_of(hand_tagged) == {(tag.pk, "manual")}
    tag.refresh_from_db()
    assert tag.kind == TagKind.MANUAL
    assert not TagRule.objects.exists()


def test_running_a_rule_tags_the_matching_customers_now_and_returns_the_stats(api):
    tag = TagFactory()
    spender = big_spender()
    CustomerFactory()
    services.save_rule(tag, big_spender_rule())

    response = api.post(f"/api/v1/tags/{tag.pk}/run/")

    assert response.status_code == 200
    assert {k: v for k, v in response.json().items() if k != "seconds"} == {
        "matched": 1, "added": 1, "removed": 0, "full": True
    }  # fmt: skip
    assert tags_of(spender) == {(tag.pk, "rule")}
    assert api.get(f"/api/v1/tags/{tag.pk}/").json()["rule"]["last_run_stats"]["added"] == 1


def test_running_a_switched_off_rule_is_a_conflict(api):
    tag = TagFactory()
    big_spender()
    services.save_rule(tag, big_spender_rule(), is_active=False)

    response = api.post(f"/api/v1/tags/{tag.pk}/run/")

    assert (response.status_code, response.json()["code"]) == (409, "rule_inactive")
    assert not CustomerTag.objects.exists()


def test_validate_describes_a_good_rule_and_lists_issues_of_a_bad_one(api):
    good = api.post("/api/v1/rules/validate/", {"rule": big_spender_rule()}, format="json")
    bad = api.post("/api/v1/rules/validate/", {"rule": {"all": []}}, format="json")

    assert good.json() == {"valid": True, "description": "spent > ¥1,000 in the last 365 days"}
    assert bad.status_code == 400
    assert bad.json()["issues"] == [{"path": "$.all", "message": "Expected a non-empty list of conditions."}]


def test_preview_counts_and_samples_only_the_reps_own_customers(rep, other_rep):
    mine = [big_spender(owner=rep.staff) for _ in range(3)]
    big_spender(owner=other_rep.staff)
    CustomerFactory(owner=rep.staff)

    response = client_for(rep).post("/api/v1/rules/preview/", {"rule": big_spender_rule(), "sample": 2}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "count": 3,
        "description": "spent > ¥1,000 in the last 365 days",
        "sample": [{"id": c.pk, "name": c.name} for c in (mine[2], mine[1])],
    }


def test_analysts_may_preview_rules():
    analyst = UserFactory(username="analyst", role=Role.ANALYST)
    big_spender()

    response = client_for(analyst).post("/api/v1/rules/preview/", {"rule": big_spender_rule()}, format="json")

    assert response.json()["count"] == 1


# ------------------------------------------------------------------------------------------ customers' tags


def test_a_customers_tags_list_every_source_with_who_and_when(rep):
    tag = TagFactory(name="宝妈", colour="#ff0000")
    customer = CustomerFactory(owner=rep.staff)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL, by=rep)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.RULE)
    added_at = DateTimeField().to_representation(CustomerTag.objects.get(source="manual").added_at)

    body = client_for(rep).get(f"/api/v1/customers/{customer.pk}/tags/").json()

    assert body == [{
        "id": tag.pk, "name": "宝妈", "colour": "#ff0000", "group": tag.group_id,
        "sources": [
            {"source": "manual", "added_by": rep.pk, "added_at": added_at},
            {"source": "rule", "added_by": None, "added_at": added_at},
        ],
    }]  # fmt: skip


def test_a_rep_tags_their_own_customer_in_the_browser_with_source_manual(rep):
    first, second = TagFactory(), TagFactory()
    customer = CustomerFactory(owner=rep.staff)

    response = client_for(rep).post(
        f"/api/v1/customers/{customer.pk}/tags/", {"tags": [first.pk, second.pk]}, format="json"
    )

    assert response.status_code == 200
    assert [t["id"] for t in response.json()] == [first.pk, second.pk]
    assert tags_of(customer) == {(first.pk, "manual"), (second.pk, "manual")}
    assert set(TagHistory.objects.values_list("by", flat=True)) == {rep.pk}


def test_tagging_with_an_api_token_records_source_api(api, operator):
    tag = TagFactory()
    customer = CustomerFactory()

    api.post(f"/api/v1/customers/{customer.pk}/tags/", {"tags": [tag.pk]}, format="json")

    assert list(CustomerTag.objects.values_list("tag", "source", "added_by")) == [(tag.pk, "api", operator.pk)]


def test_tagging_with_an_unknown_tag_is_400_and_adds_nothing(api):
    tag = TagFactory()
    customer = CustomerFactory()

    response = api.post(f"/api/v1/customers/{customer.pk}/tags/", {"tags": [tag.pk, 999999]}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"tags": ["No tag with id 999999."]}
    assert not CustomerTag.objects.exists()


def test_another_reps_customer_is_not_found_for_reading_tagging_or_untagging(rep, other_rep):
    tag = TagFactory()
    theirs = CustomerFactory(owner=other_rep.staff)
    services.add_tags([theirs.pk], [tag.pk], source=TagSource.MANUAL)
    client = client_for(rep)

    assert client.get(f"/api/v1/customers/{theirs.pk}/tags/").status_code == 404
    assert client.post(f"/api/v1/customers/{theirs.pk}/tags/", {"tags": [tag.pk]}, format="json").status_code == 404
    assert client.delete(f"/api/v1/customers/{theirs.pk}/tags/{tag.pk}/").status_code == 404
    assert tags_of(theirs) == {(tag.pk, "manual")}


def test_untagging_removes_every_source_but_rules(rep):
    tag = TagFactory()
    customer = CustomerFactory(owner=rep.staff)
    for source in (TagSource.MANUAL, TagSource.IMPORT, TagSource.QUESTIONNAIRE):
        services.add_tags([customer.pk], [tag.pk], source=source)

    response = client_for(rep).delete(f"/api/v1/customers/{customer.pk}/tags/{tag.pk}/")

    assert response.status_code == 204
    assert tags_of(customer) == set()
    assert TagHistory.objects.filter(action="removed", by=rep).count() == 3


def test_untagging_a_tag_a_rule_gives_is_409_and_the_rule_link_stays(rep):
    tag = TagFactory()
    customer = CustomerFactory(owner=rep.staff)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.RULE)

    response = client_for(rep).delete(f"/api/v1/customers/{customer.pk}/tags/{tag.pk}/")

    assert response.status_code == 409
    assert response.json()["code"] == "tag_from_rule"
    assert tags_of(customer) == {(tag.pk, "rule")}


def test_untagging_a_tag_the_customer_does_not_carry_is_404(api):
    tag = TagFactory()
    customer = CustomerFactory()

    response = api.delete(f"/api/v1/customers/{customer.pk}/tags/{tag.pk}/")

    assert response.status_code == 404
    assert not TagHistory.objects.exists()


# ----------------------------------------------------------------------------------------------------- bulk


def test_bulk_add_by_rule_tags_only_the_reps_matching_customers(rep, other_rep):
    tag = TagFactory()
    mine = big_spender(owner=rep.staff)
    theirs = big_spender(owner=other_rep.staff)
    small = CustomerFactory(owner=rep.staff)

    response = client_for(rep).post(
        "/api/v1/tags/bulk/", {"action": "add", "tags": [tag.pk], "rule": big_spender_rule()}, format="json"
    )

    assert response.json() == {"affected": 1, "customers": 1}
    assert tags_of(mine) == {(tag.pk, "manual")}
    assert tags_of(theirs) == tags_of(small) == set()


def test_bulk_add_by_list_with_a_token_uses_source_api_and_skips_links_already_there(api):
    first, second = TagFactory(), TagFactory()
    customers = CustomerFactory.create_batch(3)
    services.add_tags([customers[0].pk], [first.pk], source=TagSource.API)

    response = api.post(
        "/api/v1/tags/bulk/",
        {"action": "add", "tags": [first.pk, second.pk], "customers": [c.pk for c in customers]},
        format="json",
    )

    assert response.json() == {"affected": 5, "customers": 3}
    assert CustomerTag.objects.filter(source="api").count() == 6


def test_bulk_remove_by_list_keeps_rule_given_links(api):
    tag = TagFactory()
    customers = CustomerFactory.create_batch(2)
    services.add_tags([c.pk for c in customers], [tag.pk], source=TagSource.MANUAL)
    services.add_tags([customers[0].pk], [tag.pk], source=TagSource.RULE)

    response = api.post(
        "/api/v1/tags/bulk/", {"action": "remove", "tags": [tag.pk], "customers": [c.pk for c in customers]},
        format="json",
    )  # fmt: skip

    assert response.json() == {"affected": 2, "customers": 2}
    assert set(CustomerTag.objects.values_list("customer", "source")) == {(customers[0].pk, "rule")}


def test_bulk_with_unknown_tags_or_unseen_customers_is_400_with_field_errors_and_writes_nothing(rep, other_rep):
    tag = TagFactory()
    mine = CustomerFactory(owner=rep.staff)
    theirs = CustomerFactory(owner=other_rep.staff)
    client = client_for(rep)

    unknown_tag = client.post(
        "/api/v1/tags/bulk/", {"action": "add", "tags": [tag.pk, 999999], "customers": [mine.pk]}, format="json"
    )
    unseen = client.post(
        "/api/v1/tags/bulk/", {"action": "add", "tags": [tag.pk], "customers": [mine.pk, theirs.pk]}, format="json"
    )
    both = client.post(
        "/api/v1/tags/bulk/",
        {"action": "add", "tags": [tag.pk], "customers": [mine.pk], "rule": big_spender_rule()},
        format="json",
    )

    assert unknown_tag.json()["errors"] == {"tags": ["No tag with id 999999."]}
    assert unseen.json()["errors"] == {"customers": [f"Customers not found: [{theirs.pk}]"]}
    assert both.json()["errors"] == {"non_field_errors": ["Give either `rule` or `customers`."]}
    assert not CustomerTag.objects.exists()


def test_bulk_with_a_bad_rule_answers_400_with_issue_paths(api):
    tag = TagFactory()
    CustomerFactory()

    response = api.post(
        "/api/v1/tags/bulk/", {"action": "add", "tags": [tag.pk], "rule": {"predicate": "nope"}}, format="json"
    )

    assert response.status_code == 400
    assert [i["path"] for i in response.json()["issues"]] == ["$.predicate"]
    assert not CustomerTag.objects.exists()


# -------------------------------------------------------------------------------------------------- history


def test_tag_history_of_a_customer_is_cursor_paginated_newest_first(api):
    tag = TagFactory()
    customer, other = CustomerFactory(), CustomerFactory()
    services.add_tags([customer.pk, other.pk], [tag.pk], source=TagSource.MANUAL)
    services.remove_tags([customer.pk], [tag.pk], sources=[TagSource.MANUAL])

    first = api.get("/api/v1/tag-history/", {"customer": customer.pk, "page_size": 1}).json()
    second = api.get(first["next"]).json()

    assert [(h["customer"], h["action"]) for h in first["results"] + second["results"]] == [
        (customer.pk, "removed"), (customer.pk, "added"),
    ]  # fmt: skip
    assert second["next"] is None


def test_a_rep_sees_no_history_of_another_reps_customer(rep, other_rep):
    tag = TagFactory()
    theirs = CustomerFactory(owner=other_rep.staff)
    mine = CustomerFactory(owner=rep.staff)
    services.add_tags([theirs.pk, mine.pk], [tag.pk], source=TagSource.MANUAL)
    client = client_for(rep)

    assert client.get("/api/v1/tag-history/", {"customer": theirs.pk}).json()["results"] == []
    assert [h["customer"] for h in client.get("/api/v1/tag-history/").json()["results"]] == [mine.pk]


# ------------------------------------------------------------------------------------------- questionnaires


def skin_questionnaire_payload(acne: Tag, dry: Tag) -> dict:
    return {
        "name": "肌肤问卷",
        "questions": [
            {"code": "Q1", "text": "您最关心的肌肤问题", "codes": [
                {"code": "3", "label": "痘痘", "tag": acne.pk}, {"code": "4", "label": "干燥", "tag": dry.pk},
            ]},
            {"code": "Q2", "text": "您的年龄段", "position": 1, "codes": [{"code": "A", "label": "18-25"}]},
        ],
    }  # fmt: skip


def test_a_questionnaire_is_created_with_questions_and_codes_in_one_payload(api):
    acne, dry = TagFactory(name="痘痘困扰"), TagFactory(name="干皮")

    response = api.post("/api/v1/questionnaires/", skin_questionnaire_payload(acne, dry), format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["is_active"]) == ("肌肤问卷", True)
    assert body["questions"] == [
        {"code": "Q1", "text": "您最关心的肌肤问题", "allows_many": False, "position": 0, "codes": [
            {"code": "3", "label": "痘痘", "tag": acne.pk}, {"code": "4", "label": "干燥", "tag": dry.pk},
        ]},
        {"code": "Q2", "text": "您的年龄段", "allows_many": False, "position": 1, "codes": [
            {"code": "A", "label": "18-25", "tag": None},
        ]},
    ]  # fmt: skip


def test_replacing_a_questionnaire_keeps_codes_by_identity_and_drops_the_missing(api):
    acne, dry = TagFactory(), TagFactory()
    created = api.post("/api/v1/questionnaires/", skin_questionnaire_payload(acne, dry), format="json").json()
    kept_code = AnswerCode.objects.get(code="3")
    payload = {"name": "肌肤问卷 v2", "questions": [
        {"code": "Q1", "text": "肌肤问题", "codes": [{"code": "3", "label": "痘痘/粉刺", "tag": dry.pk}]},
    ]}  # fmt: skip

    response = api.put(f"/api/v1/questionnaires/{created['id']}/", payload, format="json")

    assert response.status_code == 200
    assert response.json()["questions"] == [
        {"code": "Q1", "text": "肌肤问题", "allows_many": False, "position": 0,
         "codes": [{"code": "3", "label": "痘痘/粉刺", "tag": dry.pk}]},
    ]  # fmt: skip
    assert list(AnswerCode.objects.values_list("pk", flat=True)) == [kept_code.pk]
    assert list(Question.objects.values_list("code", flat=True)) == ["Q1"]


def test_a_questionnaire_with_repeated_codes_gets_field_errors_and_is_not_created(api):
    question = {"code": "Q1", "text": "?", "codes": [{"code": "1", "label": "a"}]}
    repeated_answer = {**question, "codes": [{"code": "1", "label": "a"}, {"code": "1", "label": "b"}]}

    questions = api.post("/api/v1/questionnaires/", {"name": "问卷", "questions": [question, question]}, format="json")
    answers = api.post("/api/v1/questionnaires/", {"name": "问卷", "questions": [repeated_answer]}, format="json")

    assert questions.json()["errors"] == {"questions": ["Question codes repeat: Q1."]}
    assert answers.json()["errors"] == {"questions": {"0": {"codes": ["Answer codes repeat: 1."]}}}
    assert not Questionnaire.objects.exists()


def test_reps_read_questionnaires_but_may_not_write_them(rep):
    questionnaire = QuestionnaireFactory()
    client = client_for(rep)

    assert client.get(f"/api/v1/questionnaires/{questionnaire.pk}/").status_code == 200
    assert client.delete(f"/api/v1/questionnaires/{questionnaire.pk}/").status_code == 403
    assert Questionnaire.objects.filter(pk=questionnaire.pk).exists()


def test_a_rep_submits_answers_for_their_customer_and_the_codes_tags_are_given(rep):
    acne = TagFactory(name="痘痘困扰")
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3", tag=acne)
    customer = CustomerFactory(owner=rep.staff)

    response = client_for(rep).post(
        f"/api/v1/questionnaires/{question.questionnaire_id}/answers/",
        {"customer": customer.pk, "answers": {"Q1": "3"}},
        format="json",
    )

    assert response.status_code == 200
    assert (response.json()["answers"], response.json()["submitted_by"]) == ({"Q1": "3"}, rep.pk)
    assert tags_of(customer) == {(acne.pk, "questionnaire")}


def test_answers_with_unknown_questions_or_codes_are_400_by_field_and_write_nothing(api):
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3", tag=TagFactory())
    customer = CustomerFactory()

    response = api.post(
        f"/api/v1/questionnaires/{question.questionnaire_id}/answers/",
        {"customer": customer.pk, "answers": {"Q1": "9", "Q7": "1"}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "answers.Q1": ["Unknown answer code 9; expected one of 3."],
        "answers.Q7": ["No such question in this questionnaire."],
    }
    assert not QuestionnaireResponse.objects.exists()
    assert not CustomerTag.objects.exists()


def test_answers_for_another_reps_customer_are_not_found_and_write_nothing(rep, other_rep):
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3", tag=TagFactory())
    theirs = CustomerFactory(owner=other_rep.staff)

    response = client_for(rep).post(
        f"/api/v1/questionnaires/{question.questionnaire_id}/answers/",
        {"customer": theirs.pk, "answers": {"Q1": "3"}},
        format="json",
    )

    assert response.status_code == 404
    assert not QuestionnaireResponse.objects.exists()


def test_answers_to_a_switched_off_questionnaire_are_a_conflict(api):
    question = QuestionFactory(code="Q1", questionnaire=QuestionnaireFactory(is_active=False))
    AnswerCodeFactory(question=question, code="3")

    response = api.post(
        f"/api/v1/questionnaires/{question.questionnaire_id}/answers/",
        {"customer": CustomerFactory().pk, "answers": {"Q1": "3"}},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (409, "questionnaire_inactive")
    assert not QuestionnaireResponse.objects.exists()


def test_responses_show_only_the_reps_customers_and_filter_by_customer(rep, other_rep):
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3")
    mine, also_mine = CustomerFactory(owner=rep.staff), CustomerFactory(owner=rep.staff)
    theirs = CustomerFactory(owner=other_rep.staff)
    for customer in (mine, also_mine, theirs):
        services.submit_answers(question.questionnaire, customer, {"Q1": "3"})
    url = f"/api/v1/questionnaires/{question.questionnaire_id}/responses/"
    client = client_for(rep)

    assert [r["customer"] for r in client.get(url).json()["results"]] == [also_mine.pk, mine.pk]
    assert [r["customer"] for r in client.get(url, {"customer": mine.pk}).json()["results"]] == [mine.pk]
    assert client.get(url, {"customer": theirs.pk}).json()["results"] == []


def test_deleting_an_answered_questionnaire_is_a_conflict(api):
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3")
    services.submit_answers(question.questionnaire, CustomerFactory(), {"Q1": "3"})

    response = api.delete(f"/api/v1/questionnaires/{question.questionnaire_id}/")

    assert (response.status_code, response.json()["code"]) == (409, "questionnaire_answered")
    assert Questionnaire.objects.exists()


def test_openapi_schema_lists_the_tags_endpoints(api):
    paths = yaml.safe_load(api.get("/api/v1/schema/").content)["paths"]

    assert {
        "/api/v1/tag-groups/", "/api/v1/tags/", "/api/v1/tags/{id}/rule/", "/api/v1/tags/{id}/run/",
        "/api/v1/tags/bulk/", "/api/v1/rules/validate/", "/api/v1/rules/preview/",
        "/api/v1/customers/{customer_pk}/tags/", "/api/v1/customers/{customer_pk}/tags/{tag_id}/",
        "/api/v1/tag-history/", "/api/v1/questionnaires/{id}/answers/", "/api/v1/questionnaires/{id}/responses/",
    } <= set(paths)  # fmt: skip
