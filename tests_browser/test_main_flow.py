from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import UserFactory
from customers.tests.factories import (
    ChannelFactory,
    CommunityGroupFactory,
    CustomerFactory,
    EventFactory,
    GroupMembershipFactory,
    IdentityFactory,
    OrderFactory,
    OrderLineFactory,
    RelationshipFactory,
    StaffFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshot.png"


def demo_customers():
    staff = StaffFactory(name="李导购")
    channel = ChannelFactory(code="store-sh", name="门店二维码·上海静安")
    group = CommunityGroupFactory(name="静安宝妈群", group_type="宝妈群", owner=staff)
    now = timezone.now()
    for n, (name, city) in enumerate([("张晓雯", "上海"), ("王芳", "杭州"), ("陈静怡", "北京"), ("刘梦琪", "深圳")]):
        CustomerFactory(name=name, city=city, phone=f"1380000000{n}", owner=staff, source_channel=channel)
    chen = CustomerFactory(
        name="林佳怡", city="上海", phone="13912345678", gender="female", owner=staff, source_channel=channel,
        occupation="设计师", attributes={"skin_type": "敏感性", "member_level": "金卡", "children": 1},
        first_seen_at=now - timedelta(days=120), birthday=date(1992, 3, 8),
    )  # fmt: skip
    IdentityFactory(customer=chen, kind="wecom", value="wmQ3xK9aLinJY")
    IdentityFactory(customer=chen, kind="unionid", value="oUn1on8842")
    RelationshipFactory(customer=chen, staff=staff, state="store-sh", remark="林佳怡-静安店", add_way=1,
                        added_at=now - timedelta(days=120))  # fmt: skip
    GroupMembershipFactory(customer=chen, group=group, joined_at=now - timedelta(days=118))
    for days, (sku, name, price, quantity) in enumerate(
        [
            ("P0000", "玻尿酸补水面膜", "99.00", 2),
            ("P0100", "烟酰胺精华", "299.00", 1),
            ("P0300", "保湿面霜", "199.00", 1),
        ]
    ):
        order = OrderFactory(customer=chen, external_id=f"YZ2026{days}", ordered_at=now - timedelta(days=5 + 30 * days),
                             amount=Decimal(price) * quantity, status="completed")  # fmt: skip
        OrderLineFactory(order=order, sku=sku, name=name, quantity=quantity, unit_price=price,
                         amount=Decimal(price) * quantity)  # fmt: skip
    for hours, (kind, props) in enumerate([
        ("content_view", {"title": "敏感肌修护三步走", "topic": "护肤教程"}),
        ("content_view", {"title": "孕期护肤安全指南", "topic": "安全"}),
        ("cart_add", {"sku": "P0100"}),
        ("group_message", {}),
        ("content_view", {"title": "成分党必看：烟酰胺的正确用法", "topic": "成分"}),
    ]):  # fmt: skip
        EventFactory(customer=chen, type=kind, properties=props, occurred_at=now - timedelta(hours=3 + 20 * hours))
    return chen


def test_operator_logs_in_searches_and_opens_a_customer(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR, first_name="运营小王")
    chen = demo_customers()

    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=stat-customers]")
    assert page.inner_text("[data-testid=stat-customers]") == "5"

    page.click("nav >> text=客户")
    page.wait_for_selector("#customer-table tbody tr")
    assert page.locator("#customer-table tbody tr").count() == 5

    page.fill("input[name=q]", "13912345678")
    page.wait_for_function("document.querySelectorAll('#customer-table tbody tr').length === 1")
    assert "林佳怡" in page.inner_text("#customer-table")

    page.click("#customer-table >> text=林佳怡")
    page.wait_for_selector("[data-testid=customer-name]")
    assert page.url.endswith(f"/customers/{chen.pk}/")
    body = page.inner_text("main")
    for text in ("林佳怡", "wmQ3xK9aLinJY", "state=store-sh", "烟酰胺精华", "敏感肌修护三步走", "静安宝妈群", "金卡"):
        assert text in body
    page.screenshot(path=str(SCREENSHOT), full_page=False)


def test_language_switch_to_english(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR)

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_selector("text=概览")
    page.select_option("select[name=language]", "en")
    page.wait_for_selector("h1:has-text('Overview')")
    assert "Customers" in page.inner_text("nav")
