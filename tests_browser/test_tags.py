from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import UserFactory
from customers.tests.factories import CustomerFactory, OrderFactory, StaffFactory
from tags import services
from tags.models import CustomerTag, TagRule, TagSource
from tags.tests.factories import TagFactory, TagGroupFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username: str = "operator") -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")


def tags_of(customer) -> set[tuple[str, str]]:
    return set(CustomerTag.objects.filter(customer=customer).values_list("tag__name", "source"))


def customer_with_spend(name: str, city: str, amount: str):
    staff = StaffFactory()
    customer = CustomerFactory(name=name, city=city, owner=staff)
    OrderFactory(customer=customer, amount=Decimal(amount), ordered_at=timezone.now() - timedelta(days=20))
    return customer


def wait_for_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent.trim() === text", arg=[selector, text]
    )


def condition(path: str, role: str) -> str:
    return f'[data-path="{path}"] [data-role={role}]'


def test_operator_builds_a_nested_rule_sees_the_live_count_saves_and_runs_it(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR)
    vip = TagFactory(name="高价值", group=TagGroupFactory(name="消费", position=1), colour="#dc3545")
    mums = TagFactory(name="宝妈", group=TagGroupFactory(name="兴趣", position=2), colour="#ffc107")
    lin = customer_with_spend("林佳怡", "上海", "1500.00")  # spent, in 上海
    wang = customer_with_spend("王芳", "杭州", "2000.00")  # spent, carries 宝妈
    customer_with_spend("陈静", "北京", "3000.00")  # spent, neither
    customer_with_spend("张三", "上海", "200.00")  # in 上海, spent too little
    services.add_tags([wang.pk], [mums.pk], source=TagSource.MANUAL)
    log_in(page, live_server)

    page.click("nav >> a[href='/tags/']")
    page.click(f"[data-testid=tag-row] >> [data-tag-chip='{vip.pk}']")
    page.wait_for_selector("[data-testid=rule-builder] .rule-group")
    page.wait_for_selector("[data-testid=preview-empty]")
    assert page.url.endswith(f"/tags/{vip.pk}/")

    # all: [orders_sum > 1000 in the last 365 days, any: [city in 上海, has_tag 宝妈]]
    page.click("#rule-builder > .rule-group > div > [data-role=add-condition]")
    page.select_option(condition("$.all[0]", "predicate"), "orders_sum")
    assert page.input_value(condition("$.all[0]", "op")) == "gt"
    assert page.input_value(condition("$.all[0]", "window")) == "last"
    assert page.input_value(condition("$.all[0]", "last-days")) == "365"
    page.fill(condition("$.all[0]", "value"), "1000")
    wait_for_text(page, "[data-testid=preview-count]", "3")

    page.click("#rule-builder > .rule-group > div > [data-role=add-group]")
    page.select_option(condition("$.all[1].any[0]", "field"), "city")
    page.select_option(condition("$.all[1].any[0]", "op"), "in")
    # an empty list is an issue, reported with its path and marked on the condition
    page.wait_for_selector('[data-testid=preview-issues] [data-issue-path="$.all[1].any[0].value"]')
    page.wait_for_selector('.rule-invalid[data-path="$.all[1].any[0]"] [data-role=issue]')
    page.fill(condition("$.all[1].any[0]", "value"), "上海")
    wait_for_text(page, "[data-testid=preview-count]", "1")

    page.click('[data-path="$.all[1]"] > div > [data-role=add-condition]')
    page.select_option(condition("$.all[1].any[1]", "predicate"), "has_tag")
    page.select_option(condition("$.all[1].any[1]", "tags"), label="宝妈")
    wait_for_text(page, "[data-testid=preview-count]", "2")
    assert page.locator(".rule-invalid").count() == 0
    sample = page.inner_text("[data-testid=preview-sample]")
    assert "林佳怡" in sample
    assert "王芳" in sample

    page.click("[data-testid=save-rule]")
    page.wait_for_selector("[data-testid=rule-text]")
    assert TagRule.objects.get(tag=vip).rule == {
        "all": [
            {"predicate": "orders_sum", "op": "gt", "value": 1000, "window": {"last_days": 365}},
            {"any": [
                {"predicate": "attribute", "field": "city", "op": "in", "value": ["上海"]},
                {"predicate": "has_tag", "tags": [mums.pk], "match": "any"},
            ]},
        ]
    }  # fmt: skip
    rule_text = page.inner_text("[data-testid=rule-text]")
    assert "上海" in rule_text
    assert "宝妈" in rule_text
    # the builder reopens with the saved rule
    assert page.input_value(condition("$.all[1].any[0]", "value")) == "上海"

    page.click("[data-testid=run-rule]")
    page.wait_for_selector("[data-testid=run-result]")
    wait_for_text(page, "#tag-count", "2")
    assert page.inner_text("[data-testid=last-run-matched]") == "2"
    assert tags_of(lin) == {("高价值", "rule")}
    assert tags_of(wang) == {("宝妈", "manual"), ("高价值", "rule")}

    page.goto(f"{live_server.url}/customers/{lin.pk}/")
    chip = page.locator(f"[data-testid=customer-tag][data-tag='{vip.pk}']")
    chip.wait_for()
    assert chip.locator("[data-testid=auto-marker]").count() == 1
    assert chip.locator("[data-testid=remove-tag]").count() == 0  # given by the rule: not removable by hand


def test_operator_adds_and_removes_a_manual_tag_and_filters_the_list_by_it(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR)
    mums = TagFactory(name="宝妈", colour="#ffc107")
    customer = CustomerFactory(name="林佳怡")
    CustomerFactory(name="王芳")
    log_in(page, live_server)

    page.goto(f"{live_server.url}/customers/{customer.pk}/")
    page.select_option("[data-testid=add-tag-select]", str(mums.pk))
    page.click("[data-testid=add-tag]")
    chip = f"[data-testid=customer-tag][data-tag='{mums.pk}']"
    page.wait_for_selector(chip)
    assert page.locator("[data-testid=tags-notice]").count() == 1
    assert tags_of(customer) == {("宝妈", "manual")}

    page.goto(f"{live_server.url}/customers/")
    page.wait_for_function("document.querySelectorAll('#customer-table tbody tr').length === 2")
    assert page.locator(f"#customer-table [data-tag-chip='{mums.pk}']").count() == 1
    page.click("[data-testid=tag-filter] summary")
    page.check(f"input[name=tag][value='{mums.pk}']")
    page.wait_for_function("document.querySelectorAll('#customer-table tbody tr').length === 1")
    assert "林佳怡" in page.inner_text("#customer-table")

    page.goto(f"{live_server.url}/customers/{customer.pk}/")
    page.click(f"{chip} [data-testid=remove-tag]")
    page.wait_for_selector(chip, state="detached")
    assert tags_of(customer) == set()
    history = page.inner_text("[data-testid=customer-tags] [data-testid=tag-history]")
    assert history.count("宝妈") == 2
