import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from customers.tests.factories import CustomerFactory, OrderFactory, StaffFactory, UserFactory, sales_rep
from tags import services
from tags.models import CustomerTag, Tag, TagGroup, TagHistory, TagKind, TagRule, TagSource
from tags.tests.factories import AnswerCodeFactory, QuestionFactory, TagFactory, TagGroupFactory

pytestmark = pytest.mark.django_db

BIG_SPENDERS = {"predicate": "orders_sum", "op": "gt", "value": 1000, "window": {"last_days": 365}}


def login(role: str = Role.OPERATOR, username: str = "op") -> Client:
    client = Client()
    client.force_login(UserFactory(username=username, role=role))
    return client


def rep_client(rep) -> Client:
    client = Client()
    client.force_login(rep)
    return client


@pytest.fixture
def operator_client():
    return login()


def tags_of(customer) -> set[tuple[str, str]]:
    return set(CustomerTag.objects.filter(customer=customer).values_list("tag__name", "source"))


def big_spender(**fields):
    customer = CustomerFactory(**fields)
    OrderFactory(customer=customer, amount=Decimal("1500.00"), ordered_at=timezone.now())
    return customer


# ------------------------------------------------------------------------------------------------- /tags/


def test_tags_page_lists_groups_with_kinds_and_the_counts_of_customers_the_user_sees():
    rep = sales_rep("rep1")
    mine, theirs = CustomerFactory(owner=rep.staff), CustomerFactory(owner=StaffFactory())
    vip = TagFactory(name="高价值", group=TagGroupFactory(name="消费", position=2), colour="#dc3545", kind=TagKind.AUTO)
    mums = TagFactory(name="宝妈", group=TagGroupFactory(name="兴趣", position=1))
    services.add_tags([mine.pk, theirs.pk], [vip.pk], source=TagSource.RULE)
    services.add_tags([mine.pk], [vip.pk], source=TagSource.MANUAL)  # two sources, still one customer
    services.add_tags([theirs.pk], [mums.pk], source=TagSource.MANUAL)

    as_manager = login().get(reverse("tags:list"))
    as_rep = rep_client(rep).get(reverse("tags:list"))

    def counts(response):
        return [
            (group.name, [(tag.name, count) for tag, _chip, count in rows])
            for group, rows in response.context["groups"]
        ]

    assert counts(as_manager) == [("兴趣", [("宝妈", 1)]), ("消费", [("高价值", 2)])]
    assert counts(as_rep) == [("兴趣", [("宝妈", 0)]), ("消费", [("高价值", 1)])]
    body = as_manager.content.decode()
    assert "background-color: #dc3545; color: #ffffff;" in body
    assert "Automatic (rule)" in body
    assert "tag-form" in body
    assert "tag-form" not in as_rep.content.decode()


def test_tags_page_runs_a_fixed_number_of_queries_however_many_tags(operator_client, django_assert_num_queries):
    for n in range(12):
        tag = TagFactory(group=TagGroupFactory(name=f"组{n % 3}"))
        services.add_tags([CustomerFactory().pk], [tag.pk], source=TagSource.MANUAL)

    # session, user, the counts (one grouped query), the groups, their tags
    with django_assert_num_queries(5):
        operator_client.get(reverse("tags:list"))


def test_a_manager_creates_a_group_then_a_tag_and_lands_on_its_page(operator_client):
    response = operator_client.post(reverse("tags:create_group"), {"group-name": "生命周期", "group-position": "2"})
    assert response.status_code == 302
    group = TagGroup.objects.get(name="生命周期")

    response = operator_client.post(
        reverse("tags:create"),
        {"tag-group": group.pk, "tag-name": "沉睡客户", "tag-colour": "#6f42c1", "tag-description": "90 天未下单"},
    )

    tag = Tag.objects.get(name="沉睡客户")
    assert response["Location"] == reverse("tags:detail", args=[tag.pk])
    assert (tag.group, tag.colour, tag.kind) == (group, "#6f42c1", TagKind.MANUAL)


def test_tag_form_errors_are_shown_and_nothing_is_created(operator_client):
    existing = TagFactory(name="宝妈")

    response = operator_client.post(
        reverse("tags:create"), {"tag-group": existing.group_id, "tag-name": "宝妈", "tag-colour": "blue"}
    )

    assert response.status_code == 200
    form = response.context["tag_form"]
    assert form.errors["colour"] == ["Enter a hex colour like #0d6efd."]
    assert form.non_field_errors() == ["Tag with this Group and Name already exists."]
    assert "Tag with this Group and Name already exists." in response.content.decode()
    assert Tag.objects.count() == 1


@pytest.mark.parametrize("role", [Role.SALES, Role.ANALYST])
def test_only_managers_create_groups_and_tags(role):
    group = TagGroupFactory()
    client = login(role, "someone")

    assert client.post(reverse("tags:create_group"), {"group-name": "新组"}).status_code == 403
    assert client.post(reverse("tags:create"), {"tag-group": group.pk, "tag-name": "新标签"}).status_code == 403
    assert list(TagGroup.objects.values_list("name", flat=True)) == [group.name]
    assert Tag.objects.count() == 0


# -------------------------------------------------------------------------------------------- a tag's page


def test_tag_page_shows_count_and_history_of_visible_customers_only():
    rep = sales_rep("rep1")
    mine = CustomerFactory(owner=rep.staff, name="我的客户")
    theirs = CustomerFactory(owner=StaffFactory(), name="别人的客户")
    tag = TagFactory(name="宝妈", description="有孩子的客户")
    operator = UserFactory(username="op", first_name="小王")
    services.add_tags([mine.pk, theirs.pk], [tag.pk], source=TagSource.MANUAL, by=operator)

    response = rep_client(rep).get(reverse("tags:detail", args=[tag.pk]))

    body = response.content.decode()
    assert response.context["count"] == 1
    assert [entry.customer_id for entry in response.context["history"]] == [mine.pk]
    assert "我的客户" in body
    assert "别人的客户" not in body
    assert "有孩子的客户" in body
    assert "小王" in body
    assert "rule-builder" not in body


def test_non_managers_read_the_rule_in_words(operator_client):
    tag = TagFactory(name="高价值")
    services.save_rule(tag, BIG_SPENDERS)

    response = login(Role.ANALYST, "analyst").get(reverse("tags:detail", args=[tag.pk]))

    body = response.content.decode()
    assert response.context["rule_text"] == "spent > ¥1,000 in the last 365 days"
    assert "spent &gt; ¥1,000 in the last 365 days" in body
    assert "data-rule-builder" not in body
    assert "run-rule" not in body


def test_managers_get_the_builder_with_the_saved_rule_and_its_configuration(operator_client):
    tag = TagFactory(name="高价值")
    other = TagFactory(name="宝妈")
    services.save_rule(tag, BIG_SPENDERS)

    response = operator_client.get(reverse("tags:detail", args=[tag.pk]))

    assert json.loads(response.context["rule_json"]) == BIG_SPENDERS
    config = response.context["builder_config"]
    assert config["tags"] == [{"id": other.pk, "name": "宝妈", "group": other.group.name}]  # never the tag itself
    assert {"value": "city", "label": "city", "type": "text"} in config["fields"]
    assert 'id="rule-builder-config"' in response.content.decode()


def preview(client, tag, rule, **headers):
    return client.post(reverse("tags:preview_rule", args=[tag.pk]), {"rule": json.dumps(rule)}, **headers)


def test_preview_describes_the_rule_and_counts_and_samples_matching_customers(operator_client):
    tag = TagFactory()
    spenders = [big_spender(name=f"大客户{n}", city="上海") for n in range(12)]
    big_spender(city="杭州")
    CustomerFactory(city="上海")
    rule = {"all": [BIG_SPENDERS, {"predicate": "attribute", "field": "city", "op": "in", "value": ["上海"]}]}

    response = preview(operator_client, tag, rule, HTTP_HX_REQUEST="true")

    assert response.context["description"] == "spent > ¥1,000 in the last 365 days AND city is one of 上海"
    assert response.context["count"] == 12
    assert [c.pk for c in response.context["sample"]] == [c.pk for c in reversed(spenders)][:10]
    assert "<html" not in response.content.decode()


def test_preview_is_for_managers_only():
    tag = TagFactory()
    big_spender(owner=StaffFactory())

    response = preview(rep_client(sales_rep("rep1")), tag, BIG_SPENDERS)

    assert response.status_code == 403


def test_preview_shows_the_issues_with_their_paths(operator_client):
    tag = TagFactory()
    rule = {"all": [{"predicate": "orders_sum", "op": "gt", "value": "", "window": {"last_days": 365}},
                    {"any": [{"predicate": "attribute", "field": "shoe_size", "op": "eq", "value": "42"}]},
                    {"not": {"any": []}}]}  # fmt: skip

    response = preview(operator_client, tag, rule)

    issues = [(issue.path, issue.message) for issue in response.context["issues"]]
    assert issues == [
        ("$.all[0].value", "Expected a number."),
        ("$.all[1].any[0].field", "Unknown field; expected one of name, gender, city, occupation, phone, email, "
                                  "birthday, first_seen_at, last_seen_at, created_at or attributes.<key>."),
        ("$.all[2].not.any", "Expected a non-empty list of conditions."),
    ]  # fmt: skip
    assert 'data-issue-path="$.all[0].value"' in response.content.decode()


def test_preview_of_a_builder_without_conditions_asks_for_one(operator_client):
    response = preview(operator_client, TagFactory(), {"all": []})

    assert response.context["is_empty"] is True
    assert "Add a condition to see who matches." in response.content.decode()


def test_preview_of_text_that_is_not_json_says_so(operator_client):
    response = operator_client.post(reverse("tags:preview_rule", args=[TagFactory().pk]), {"rule": "{all"})

    assert [(issue.path, issue.message) for issue in response.context["issues"]] == [("$", "Enter a valid JSON.")]


def test_a_manager_saves_a_rule_and_the_tag_becomes_automatic(operator_client, django_capture_on_commit_callbacks):
    tag = TagFactory(name="高价值")

    with django_capture_on_commit_callbacks() as callbacks:
        response = operator_client.post(
            reverse("tags:save_rule", args=[tag.pk]), {"rule": json.dumps(BIG_SPENDERS), "is_active": "on"}
        )

    assert response["Location"] == reverse("tags:detail", args=[tag.pk])
    rule = TagRule.objects.get(tag=tag)
    assert (rule.rule, rule.is_active, rule.is_time_relative) == (BIG_SPENDERS, True, True)
    tag.refresh_from_db()
    assert tag.kind == TagKind.AUTO
    assert len(callbacks) == 1  # the full run, in a worker


@pytest.mark.parametrize("role", [Role.SALES, Role.ANALYST])
def test_only_managers_save_run_or_delete_rules(role):
    tag = TagFactory()
    customer = big_spender()
    client = login(role, "someone")

    saved = client.post(reverse("tags:save_rule", args=[tag.pk]), {"rule": json.dumps(BIG_SPENDERS)})
    assert saved.status_code == 403
    assert not TagRule.objects.exists()

    rule = services.save_rule(tag, BIG_SPENDERS)
    assert client.post(reverse("tags:run_rule", args=[tag.pk])).status_code == 403
    assert client.post(reverse("tags:delete_rule", args=[tag.pk])).status_code == 403
    rule.refresh_from_db()
    assert rule.last_run_at is None
    assert tags_of(customer) == set()


def test_saving_an_invalid_rule_shows_the_issues_next_to_the_builder_and_saves_nothing(operator_client):
    tag = TagFactory()
    rule = {"all": [{"predicate": "orders_count", "op": "more", "value": 3}]}

    response = operator_client.post(reverse("tags:save_rule", args=[tag.pk]), {"rule": json.dumps(rule)})

    assert response.status_code == 200
    assert [issue.path for issue in response.context["issues"]] == ["$.all[0].op"]
    assert json.loads(response.context["rule_json"]) == rule  # the builder reopens with what was sent
    assert 'data-testid="save-issues"' in response.content.decode()
    assert not TagRule.objects.exists()
    tag.refresh_from_db()
    assert tag.kind == TagKind.MANUAL


def test_a_rule_depending_on_its_own_tag_is_refused(operator_client):
    tag = TagFactory()

    response = operator_client.post(
        reverse("tags:save_rule", args=[tag.pk]), {"rule": json.dumps({"predicate": "has_tag", "tags": [tag.pk]})}
    )

    assert [(i.path, i.message) for i in response.context["issues"]] == [
        ("$", "The rule depends on its own tag (directly or through other rules).")
    ]
    assert not TagRule.objects.exists()


def test_run_now_applies_the_rule_and_shows_what_changed(operator_client):
    tag = TagFactory(name="高价值")
    spender, lapsed = big_spender(), CustomerFactory()
    services.add_tags([lapsed.pk], [tag.pk], source=TagSource.RULE)
    services.save_rule(tag, BIG_SPENDERS)

    response = operator_client.post(reverse("tags:run_rule", args=[tag.pk]), HTTP_HX_REQUEST="true")

    run = response.context["run"]
    assert (run.matched, run.added, run.removed, run.full) == (1, 1, 1, True)
    assert tags_of(spender) == {("高价值", "rule")}
    assert tags_of(lapsed) == set()
    rule = TagRule.objects.get(tag=tag)
    assert rule.last_run_stats["matched"] == 1
    body = response.content.decode()
    assert "Applied now: 1 match, 1 added, 1 removed" in body
    assert '<strong id="tag-count" data-testid="tag-count" hx-swap-oob="true">1</strong>' in body


def test_run_now_refuses_a_switched_off_rule(operator_client):
    tag = TagFactory()
    customer = big_spender()
    services.save_rule(tag, BIG_SPENDERS, is_active=False)

    response = operator_client.post(reverse("tags:run_rule", args=[tag.pk]), HTTP_HX_REQUEST="true")

    assert response.context["error"] == "The rule is switched off: switch it on and save it first."
    assert tags_of(customer) == set()


def test_deleting_the_rule_takes_its_tags_off_and_makes_the_tag_manual(operator_client):
    tag = TagFactory(name="高价值")
    customer = big_spender()
    services.apply_rule(services.save_rule(tag, BIG_SPENDERS))

    response = operator_client.post(reverse("tags:delete_rule", args=[tag.pk]))

    assert response.status_code == 302
    assert not TagRule.objects.exists()
    assert tags_of(customer) == set()
    tag.refresh_from_db()
    assert tag.kind == TagKind.MANUAL


# ----------------------------------------------------------------------------------------- the customer list


def test_customer_list_shows_coloured_tag_chips_on_each_row(operator_client):
    customer = CustomerFactory(name="林佳怡")
    tag = TagFactory(name="高价值", colour="#ffc107")
    services.add_tags([customer.pk], [tag.pk], source=TagSource.RULE)

    response = operator_client.get(reverse("customers:list"))

    [row] = response.context["rows"]
    assert [(chip.name, chip.is_auto) for chip in row.cells[0].value] == [("高价值", True)]
    body = response.content.decode()
    assert "background-color: #ffc107; color: #212529;" in body
    assert "<th>Tags</th>" in body


def test_customer_list_filters_by_any_of_the_chosen_tags(operator_client):
    mums, vip, other = TagFactory(name="宝妈"), TagFactory(name="高价值"), TagFactory(name="学生")
    mum, spender, both, neither = CustomerFactory(), CustomerFactory(), CustomerFactory(), CustomerFactory()
    services.add_tags([mum.pk, both.pk], [mums.pk], source=TagSource.MANUAL)
    services.add_tags([spender.pk, both.pk], [vip.pk], source=TagSource.RULE)
    services.add_tags([neither.pk], [other.pk], source=TagSource.MANUAL)

    response = operator_client.get(reverse("customers:list"), {"tag": [mums.pk, vip.pk]})
    fragment = operator_client.get(reverse("customers:list"), {"tag": [vip.pk]}, HTTP_HX_REQUEST="true")

    assert [c.pk for c in response.context["customers"]] == [both.pk, spender.pk, mum.pk]
    assert [c.pk for c in fragment.context["customers"]] == [both.pk, spender.pk]
    body = response.content.decode()
    assert f'name="tag" value="{mums.pk}" data-list-filter checked' in body
    assert f'name="tag" value="{other.pk}" data-list-filter>' in body
    assert f"tag={mums.pk}" in response.context["query"]  # kept by the paging links


def test_a_reps_tag_filter_still_shows_only_their_customers():
    rep = sales_rep("rep1")
    tag = TagFactory()
    mine, theirs = CustomerFactory(owner=rep.staff), CustomerFactory(owner=StaffFactory())
    services.add_tags([mine.pk, theirs.pk], [tag.pk], source=TagSource.MANUAL)

    response = rep_client(rep).get(reverse("customers:list"), {"tag": tag.pk})

    assert [c.pk for c in response.context["customers"]] == [mine.pk]


def list_queries(client, **params) -> int:
    with CaptureQueriesContext(connection) as context:
        client.get(reverse("customers:list"), params)
    return len(context)


def test_customer_list_query_count_does_not_grow_with_rows_or_tags(operator_client, django_assert_num_queries):
    tags = [TagFactory() for _ in range(3)]
    few = [CustomerFactory(owner=StaffFactory()) for _ in range(2)]
    services.add_tags([c.pk for c in few], [t.pk for t in tags], source=TagSource.MANUAL)
    operator_client.get(reverse("customers:list"))
    with_few = list_queries(operator_client)
    many = [CustomerFactory(owner=StaffFactory()) for _ in range(40)]
    services.add_tags([c.pk for c in many], [t.pk for t in tags], source=TagSource.MANUAL)
    services.add_tags([c.pk for c in many], [tags[0].pk], source=TagSource.RULE)

    with_many = list_queries(operator_client)
    filtered = list_queries(operator_client, tag=[tags[0].pk, tags[1].pk])

    assert with_few == with_many == filtered == 9
    # session, user, owners and channels for the filters, the page, the tags' filter control, the page's chips,
    # the tags of the bulk tag form, the segments' filter controls (one query for the segments' names)
    with django_assert_num_queries(9):
        operator_client.get(reverse("customers:list"), {"tag": tags[2].pk})


# --------------------------------------------------------------------------------------- a customer's page


def customer_page(client, customer):
    return client.get(reverse("customers:detail", args=[customer.pk]))


def test_customer_page_shows_tag_chips_with_their_sources_and_the_history(operator_client):
    customer = CustomerFactory()
    vip = TagFactory(name="高价值", kind=TagKind.AUTO)
    mums = TagFactory(name="宝妈")
    services.add_tags([customer.pk], [vip.pk], source=TagSource.RULE)
    services.add_tags([customer.pk], [mums.pk], source=TagSource.MANUAL)

    response = customer_page(operator_client, customer)

    [tags_panel] = [panel for panel in response.context["panels"] if panel.key == "tags"]
    chips = [(chip.name, chip.sources, chip.is_auto, chip.is_removable) for chip in tags_panel.context["chips"]]
    assert sorted(chips) == [("宝妈", ("manual",), False, True), ("高价值", ("rule",), True, False)]
    body = response.content.decode()
    assert body.count('data-testid="auto-marker"') == 1
    assert body.count('data-testid="remove-tag"') == 1  # the rule-given tag has no remove button
    assert "cannot be removed by hand" in body
    assert [entry.tag.name for entry in tags_panel.context["history"]] == ["宝妈", "高价值"]


def test_adding_a_tag_by_hand_returns_the_panel(operator_client):
    customer = CustomerFactory()
    tag = TagFactory(name="宝妈")

    response = operator_client.post(
        reverse("tags:add_to_customer", args=[customer.pk]), {"tag": tag.pk}, HTTP_HX_REQUEST="true"
    )

    assert tags_of(customer) == {("宝妈", "manual")}
    body = response.content.decode()
    assert body.lstrip().startswith('<div class="card mb-3" id="customer-tags-panel"')
    assert "Tagged “宝妈”." in body
    assert list(TagHistory.objects.values_list("action", "source", "by__username")) == [("added", "manual", "op")]


def test_an_automatic_tag_cannot_be_added_by_hand(operator_client):
    customer = CustomerFactory()
    tag = TagFactory(kind=TagKind.AUTO)

    response = operator_client.post(
        reverse("tags:add_to_customer", args=[customer.pk]), {"tag": tag.pk}, HTTP_HX_REQUEST="true"
    )

    assert response.context["panel"]["error"] == "Choose a manual tag: automatic tags follow their rule."
    assert tags_of(customer) == set()


def test_removing_a_chip_takes_off_the_hand_given_sources(operator_client):
    customer = CustomerFactory()
    tag = TagFactory(name="宝妈")
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.IMPORT)

    response = operator_client.post(
        reverse("tags:remove_from_customer", args=[customer.pk, tag.pk]), HTTP_HX_REQUEST="true"
    )

    assert tags_of(customer) == set()
    assert response.context["panel"]["notice"] == "Removed “宝妈”."


def test_a_rule_given_tag_cannot_be_removed_by_hand(operator_client):
    customer = CustomerFactory()
    tag = TagFactory(name="高价值", kind=TagKind.AUTO)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.RULE)

    response = operator_client.post(
        reverse("tags:remove_from_customer", args=[customer.pk, tag.pk]), HTTP_HX_REQUEST="true"
    )

    assert response.context["panel"]["error"] == "“高价值” is given by an auto-tag rule and cannot be removed by hand."
    assert tags_of(customer) == {("高价值", "rule")}
    assert not TagHistory.objects.filter(action="removed").exists()


def test_removing_a_tag_given_by_hand_and_by_a_rule_keeps_the_rules(operator_client):
    customer = CustomerFactory()
    tag = TagFactory(name="高价值")
    services.add_tags([customer.pk], [tag.pk], source=TagSource.RULE)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)

    response = operator_client.post(reverse("tags:remove_from_customer", args=[customer.pk, tag.pk]))

    assert response["Location"] == reverse("customers:detail", args=[customer.pk])
    assert tags_of(customer) == {("高价值", "rule")}


def test_a_rep_tags_their_own_customers_and_another_reps_are_not_found():
    rep = sales_rep("rep1")
    mine, theirs = CustomerFactory(owner=rep.staff), CustomerFactory(owner=StaffFactory())
    tag = TagFactory(name="宝妈")
    services.add_tags([theirs.pk], [tag.pk], source=TagSource.MANUAL)
    client = rep_client(rep)

    added = client.post(reverse("tags:add_to_customer", args=[mine.pk]), {"tag": tag.pk})
    refused = [
        client.post(reverse("tags:add_to_customer", args=[theirs.pk]), {"tag": tag.pk}).status_code,
        client.post(reverse("tags:remove_from_customer", args=[theirs.pk, tag.pk])).status_code,
        customer_page(client, theirs).status_code,
    ]

    assert added.status_code == 302
    assert refused == [404, 404, 404]
    assert tags_of(mine) == {("宝妈", "manual")}
    assert tags_of(theirs) == {("宝妈", "manual")}
    assert TagHistory.objects.filter(customer=theirs).count() == 1


def test_analysts_see_the_tags_but_cannot_change_them():
    customer = CustomerFactory()
    tag = TagFactory(name="宝妈")
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)
    client = login(Role.ANALYST, "analyst")

    page = customer_page(client, customer).content.decode()
    removed = client.post(reverse("tags:remove_from_customer", args=[customer.pk, tag.pk]))

    assert "宝妈" in page
    assert 'data-testid="add-tag"' not in page
    assert 'data-testid="remove-tag"' not in page
    assert removed.status_code == 403
    assert tags_of(customer) == {("宝妈", "manual")}


def test_customer_page_shows_questionnaire_answers_with_their_words(operator_client):
    customer = CustomerFactory()
    concern = QuestionFactory(code="Q3", text="您最关心的肌肤问题", allows_many=True)
    AnswerCodeFactory(question=concern, code="3", label="痘痘", tag=TagFactory(name="痘痘困扰"))
    AnswerCodeFactory(question=concern, code="5", label="敏感")
    services.submit_answers(concern.questionnaire, customer, {"Q3": ["3", "5"]})

    response = customer_page(operator_client, customer)

    body = response.content.decode()
    assert "Q3. 您最关心的肌肤问题" in body
    assert "3 · 痘痘、5 · 敏感" in body
    assert "痘痘困扰" in body  # the tag its code gives, among the chips


def test_navigation_has_tags_for_everyone():
    for role in (Role.ADMIN, Role.OPERATOR, Role.SALES, Role.ANALYST):
        response = login(role, f"user-{role}").get(reverse("dashboard"))
        assert {"label": "Tags", "url": "/tags/", "is_current": False} in response.context["nav_items"], role


# ------------------------------------------------------------------------------------- bulk from the customer list


def test_bulk_tagging_applies_to_every_customer_the_list_filters_select_not_just_the_page(operator_client):
    tag = TagFactory(name="上海会员")
    shanghai = [CustomerFactory(city="上海") for _n in range(60)]  # more than one page of 50
    hangzhou = CustomerFactory(city="杭州")

    response = operator_client.post(
        reverse("tags:bulk"), {"city": "上海", "bulk_tag": tag.pk, "bulk_action": "add"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert "Added “上海会员” to 60 customers." in response.content.decode()
    assert set(CustomerTag.objects.filter(tag=tag).values_list("customer_id", flat=True)) == {c.pk for c in shanghai}
    assert not CustomerTag.objects.filter(customer=hangzhou).exists()
    assert TagHistory.objects.filter(tag=tag, action="added", source="manual").count() == 60


def test_bulk_untagging_by_a_tag_filter_keeps_what_rules_give():
    rep = sales_rep("rep1")
    tag, marker = TagFactory(name="待跟进"), TagFactory(name="已联系")
    by_hand, by_rule = CustomerFactory(owner=rep.staff), CustomerFactory(owner=rep.staff)
    others = CustomerFactory(owner=StaffFactory())
    services.add_tags([by_hand.pk, by_rule.pk, others.pk], [marker.pk, tag.pk], source=TagSource.MANUAL)
    services.add_tags([by_rule.pk], [tag.pk], source=TagSource.RULE)

    response = rep_client(rep).post(
        reverse("tags:bulk"), {"tag": marker.pk, "bulk_tag": tag.pk, "bulk_action": "remove"}, HTTP_HX_REQUEST="true"
    )

    assert "Removed “待跟进” from 2 customers (tags given by rules stay)." in response.content.decode()
    assert tags_of(by_hand) == {("已联系", "manual")}
    assert tags_of(by_rule) == {("已联系", "manual"), ("待跟进", "rule")}
    assert ("待跟进", "manual") in tags_of(others)  # another rep's customer is not in a rep's set


def test_analysts_cannot_bulk_tag_and_see_no_bulk_form():
    analyst = login(Role.ANALYST, "analyst")
    tag = TagFactory()
    CustomerFactory()

    refused = analyst.post(reverse("tags:bulk"), {"bulk_tag": tag.pk, "bulk_action": "add"})

    assert refused.status_code == 403
    assert not CustomerTag.objects.exists()
    assert 'data-testid="bulk-tag"' not in analyst.get(reverse("customers:list")).content.decode()
