from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import UserFactory
from customers.tests.factories import CustomerFactory, OrderFactory, StaffFactory
from segments.models import CustomerRfm, Segment, SegmentKind, SegmentMembership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username: str = "operator") -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")


def customer_with_orders(name: str, city: str, *days_ago: int):
    customer = CustomerFactory(name=name, city=city, owner=StaffFactory())
    for days in days_ago:
        OrderFactory(customer=customer, amount=Decimal("300.00"), ordered_at=timezone.now() - timedelta(days=days))
    return customer


def wait_for_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent.trim() === text", arg=[selector, text]
    )


def condition(path: str, role: str) -> str:
    return f'[data-path="{path}"] [data-role={role}]'


def current_members(segment) -> set[str]:
    current = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
    return set(current.values_list("customer__name", flat=True))


def member_names(page) -> list[str]:
    return [name.strip() for name in page.locator("[data-testid=member] td:first-child").all_inner_texts()]


def test_operator_builds_a_segment_recomputes_freezes_it_and_reads_the_rfm_grid(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR)
    customer_with_orders("林佳怡", "上海", 3, 12)  # twice in 30 days, in 上海
    customer_with_orders("王芳", "杭州", 5, 9)  # twice in 30 days, elsewhere
    customer_with_orders("陈静", "上海", 4)  # once
    customer_with_orders("张三", "上海", 40, 45)  # twice, but long ago
    log_in(page, live_server)

    page.click("nav >> a[href='/segments/']")
    page.click("[data-testid=new-dynamic-segment]")
    page.wait_for_selector("[data-testid=rule-builder] .rule-group")
    page.wait_for_selector("[data-testid=preview-empty]")
    page.fill("#id_name", "上海复购")

    # all: [orders_count ≥ 2 in the last 30 days, city in 上海]
    page.click("#rule-builder > .rule-group > div > [data-role=add-condition]")
    page.select_option(condition("$.all[0]", "predicate"), "orders_count")
    page.select_option(condition("$.all[0]", "op"), "gte")
    page.fill(condition("$.all[0]", "value"), "2")
    page.fill(condition("$.all[0]", "last-days"), "30")
    wait_for_text(page, "[data-testid=preview-count]", "2")
    page.click("#rule-builder > .rule-group > div > [data-role=add-condition]")
    page.select_option(condition("$.all[1]", "field"), "city")
    page.select_option(condition("$.all[1]", "op"), "in")
    page.wait_for_selector('[data-testid=preview-issues] [data-issue-path="$.all[1].value"]')
    page.fill(condition("$.all[1]", "value"), "上海")
    wait_for_text(page, "[data-testid=preview-count]", "1")
    assert "林佳怡" in page.inner_text("[data-testid=preview-sample]")

    page.click("[data-testid=save-segment]")
    page.wait_for_selector("[data-testid=segment-name]")
    segment = Segment.objects.get(name="上海复购")
    assert segment.rule == {
        "all": [
            {"predicate": "orders_count", "op": "gte", "value": 2, "window": {"last_days": 30}},
            {"predicate": "attribute", "field": "city", "op": "in", "value": ["上海"]},
        ]
    }
    assert page.url.endswith(f"/segments/{segment.pk}/")
    assert "上海" in page.inner_text("[data-testid=rule-text]")

    page.click("[data-testid=recompute]")
    page.wait_for_selector("#size-chart canvas")
    assert page.inner_text("[data-testid=members] tbody").count("林佳怡") == 1
    assert member_names(page) == ["林佳怡"]
    wait_for_text(page, "[data-testid=segment-size]", "1")
    assert current_members(segment) == {"林佳怡"}

    page.fill("[data-testid=freeze-form] input[name=name]", "上海复购快照")
    page.click("[data-testid=freeze]")
    page.wait_for_selector("[data-testid=add-members-form]")
    frozen = Segment.objects.get(name="上海复购快照")
    assert frozen.kind == SegmentKind.STATIC
    assert page.url.endswith(f"/segments/{frozen.pk}/")
    assert member_names(page) == ["林佳怡"]
    assert current_members(frozen) == {"林佳怡"}

    page.click("nav >> a[href='/layers/']")
    page.wait_for_selector("[data-testid=rfm-grid]")
    page.click("[data-testid=recompute-layers]")
    page.wait_for_selector("[data-testid=rfm-grid]")
    assert page.locator("[data-testid=rfm-cell]").count() == 9
    counts = [int(text.replace(",", "")) for text in page.locator("[data-testid=rfm-count]").all_inner_texts()]
    assert sum(counts) == CustomerRfm.objects.count() == 4
    assert "重要价值客户" in page.inner_text("[data-testid=rfm-grid]")  # the browser asks for Chinese
    page.wait_for_selector("[data-testid=migration-matrix]")  # loaded after the page
    assert page.locator("[data-testid=migration-matrix]").count() == 1


def test_operator_adds_a_condition_on_an_rfm_class_which_the_builder_keeps_as_json(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR)
    keep, value = CustomerFactory(name="林佳怡", city="上海"), CustomerFactory(name="王芳", city="上海")
    CustomerRfm.objects.create(customer=keep, frequency=6, monetary=4200, rfm_class="important_keep",
                               computed_at=timezone.now())  # fmt: skip
    CustomerRfm.objects.create(customer=value, frequency=9, monetary=8800, rfm_class="important_value",
                               computed_at=timezone.now())  # fmt: skip
    log_in(page, live_server)
    page.goto(f"{live_server.url}/segments/new/")
    page.fill("#id_name", "挽回重要保持")

    page.click("[data-testid=add-layer-condition] summary")
    page.select_option("select[name=rfm_classes]", "important_keep")
    page.click("[data-testid=add-rfm_class]")
    page.wait_for_selector('[data-path="$.all[0]"] [data-role=json]')
    wait_for_text(page, "[data-testid=preview-count]", "1")
    assert page.input_value("#id_name") == "挽回重要保持"

    page.click("[data-testid=save-segment]")
    page.wait_for_selector("[data-testid=segment-name]")
    segment = Segment.objects.get(name="挽回重要保持")
    assert segment.rule == {"all": [{"predicate": "rfm_class", "in": ["important_keep"]}]}
