"""The built-in welcome SOP end to end in a browser (issue 6): an operator creates it from its template, reads its
flow, dry-runs and publishes it; a new WeCom contact arrives through the sandbox page; with time frozen, the outbox
shows her greeting, and the next day at 10:00 her group invitation; the report and her page show where she is.

Time stands still (tick=False) from the login on: the fake WeCom, the live server and the test share one process
and so one frozen clock, which keeps the 20-second welcome code and the callback's timestamp check valid, and
`move_to` jumps the three of them to the next morning together."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from celery.app.task import Task
from django.conf import settings as django_settings

from accounts.models import Role
from accounts.tests.factories import UserFactory
from customers import domain_events
from customers.models import CommunityGroup, Customer, Identity
from customers.tests.factories import CustomerFactory
from journeys.models import Enrollment, Journey, JourneyStatus
from journeys.services import runtime
from messaging.models import Touchpoint, TouchpointStatus
from messaging.services.dispatch import dispatch_due
from messaging.wecom.callback_tasks import fetch_contact, send_welcome
from messaging.wecom.fake import FakeWeCom

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_2PM = datetime.datetime(2026, 11, 23, 14, 0, tzinfo=SHANGHAI)
TUESDAY_10AM = datetime.datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)  # the welcome's "1 day later at 10:00"
TOKEN = "sandboxtoken"  # noqa: S105 - the fake WeCom's callback token, as in the sandbox tests
KEY = "SCRMsandboxEncodingAESKeyForDemos0123456789"
GREETING = "Lily，你好呀～我是你的专属顾问，很高兴认识你！"
INVITATION = "我们有一个新人福利群，每周分享实用的小知识"


@pytest.fixture
def wecom(live_server, settings, monkeypatch):
    """The fake WeCom calling back the live server, as in messaging/tests/test_wecom_sandbox.py. No Celery task
    reaches a broker: the channel's welcome and the profile fetch run at once, as their workers would (so the
    customer has her WeCom name); every other after-commit kick (domain events, journeys, dispatch) is dropped and
    the test does that work itself."""
    with FakeWeCom(corp_id="wwfakecorp", secret="fake-secret") as server:  # noqa: S106 - a fake
        settings.WECOM_SANDBOX = True
        settings.WECOM_SANDBOX_SITE_URL = live_server.url
        settings.MESSAGING_BACKENDS = {"wecom": "messaging.backends.wecom.WeComBackend"}
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**server.config(), "token": TOKEN, "encoding_aes_key": KEY},
        }
        monkeypatch.setattr(Task, "apply_async", lambda self, *args, **kwargs: None)
        for task in (send_welcome, fetch_contact):
            monkeypatch.setattr(task, "apply_async", lambda args, task=task, **options: task.apply(args=args))
        yield server


def log_in(live_server, page, username="operator"):
    """Sign in through the login form, the UI in English (the page fixture's browser asks for Chinese)."""
    page.context.add_cookies([{"name": django_settings.LANGUAGE_COOKIE_NAME, "value": "en", "url": live_server.url}])
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Overview')")


def work():
    """What the Celery workers would do now: consume the domain events, advance the journeys, dispatch."""
    domain_events.consume_all()
    while runtime.advance_due().claimed:
        pass
    dispatch_due()


def attribute(page, selector, name):
    return page.locator(selector).evaluate_all(f"items => items.map(item => item.getAttribute('{name}'))")


def create_and_publish_the_welcome_sop(live_server, page) -> Journey:
    page.goto(f"{live_server.url}/journeys/")
    page.wait_for_selector("h1:has-text('Journeys')")
    page.click("[data-testid=from-template]")
    page.click("[data-testid=sop-template][data-code=welcome] [data-testid=use-template]")
    page.wait_for_selector("[data-testid=journey-name]:has-text('Welcome new customers')")
    journey = Journey.objects.get()
    assert page.url == f"{live_server.url}/journeys/{journey.pk}/"
    assert "Journey created from the template: review it, then publish." in page.inner_text("main")
    assert page.inner_text("[data-testid=journey-status]") == "Draft"
    assert page.inner_text("[data-testid=trigger-text]") == "Customer created or added on WeCom"
    assert page.inner_text("[data-testid=goal-text]") == "Places an order · within 30 days"

    # The flow: what the graph draws (its nodes, on a canvas ECharts has drawn) and the step table under it.
    page.wait_for_selector("[data-testid=journey-graph] canvas")
    graph = page.evaluate("JSON.parse(document.getElementById('journey-graph-data').textContent)")
    group = CommunityGroup.objects.get(chat_id="sop-welcome-group")  # the template made the welcome group
    steps = [
        ("greet", "Send “{customer.name}，你好呀～我是你的…” to the customer on WeCom"),
        ("wait", "Wait 1 day(s), then at 10:00"),
        ("check", f"Branch by condition — 未入群: NOT (is in the group “{group.name}”)"),
        ("invite", "Invite to the group 新人福利群"),
    ]
    drawn = [(node["id"], node["text"]) for node in graph["nodes"] if node["family"] != "end"]
    assert drawn == [("trigger", "Customer created or added on WeCom"), *steps]
    assert {(link["source"], link["target"]) for link in graph["links"] if link["target"] in dict(steps)} == {
        ("trigger", "greet"), ("greet", "wait"), ("wait", "check"), ("check", "invite")}  # fmt: skip
    assert attribute(page, "[data-testid=step]", "data-step") == [step_id for step_id, _text in steps]
    assert page.locator("[data-testid=step-text]").all_inner_texts() == [text for _step_id, text in steps]
    assert "未入群: invite" in page.inner_text("[data-testid=step][data-step=check]")
    assert page.locator("[data-testid=step-issue]").count() == 0

    page.click("[data-testid=dry-run]")
    page.wait_for_selector("[data-testid=dry-run-result]")
    assert page.inner_text("[data-testid=dry-run-entering]") == "1"  # the customer already there, Old Friend
    assert "Nobody enters at publishing" in page.inner_text("[data-testid=dry-run-result]")
    counts = page.locator("[data-testid=dry-run-counts] tbody tr")
    assert attribute(page, "[data-testid=dry-run-counts] tbody tr", "data-step") == ["greet", "wait", "check", "invite"]
    assert [row.split("\t")[-1] for row in counts.all_inner_texts()] == ["1", "1", "1", "1"]
    assert "Old Friend · 4 steps" in page.inner_text("[data-testid=dry-run-sample]")
    assert Enrollment.objects.count() == Touchpoint.objects.count() == 0  # a dry run does nothing

    page.click("[data-testid=publish]")
    page.wait_for_selector("[data-testid=publish-form]")
    assert "The draft becomes version 1" in page.inner_text("[data-testid=publish-panel]")
    page.click("[data-testid=confirm-publish]")
    page.wait_for_selector("[data-testid=journey-status]:has-text('Active')")
    assert "Version 1 published." in page.inner_text("main")
    assert page.inner_text("[data-testid=journey-version]").startswith("Live: version 1")
    journey.refresh_from_db()
    assert (journey.status, journey.current_version.number) == (JourneyStatus.ACTIVE, 1)
    return journey


def add_a_wecom_contact(live_server, page, wecom) -> Customer:
    """Lily adds the staff member zhangsan, played on the sandbox page: the fake records her and POSTs the
    encrypted add_external_contact callback to the live server."""
    page.goto(f"{live_server.url}/messaging/wecom/sandbox/")
    page.wait_for_selector("h1:has-text('WeCom sandbox')")
    page.fill("#sb-userid", "zhangsan")
    page.fill("#sb-name", "Lily")
    page.click("[data-testid=sandbox-add] button[type=submit]")
    page.wait_for_selector(".alert:has-text('zhangsan; the callback was accepted.')")
    lily = Customer.objects.get(name="Lily")
    assert "Lily" in page.inner_text("[data-testid=sandbox-contacts] tbody")
    assert [welcome["text"]["content"] for welcome in wecom.welcomes] == [
        "Hello, thank you for adding me! Just send me a message whenever I can help."]  # fmt: skip
    return lily


def open_in_outbox(page, touchpoint):
    page.click(f"[data-testid=outbox-row][data-touchpoint='{touchpoint.pk}'] a")
    page.wait_for_selector(f"#outbox-detail [data-testid=touchpoint-detail][data-touchpoint='{touchpoint.pk}']")
    return page.inner_text("#outbox-detail")


def test_the_welcome_sop_greets_a_new_wecom_contact_then_invites_her_the_next_day(live_server, page, wecom):
    UserFactory(username="operator", role=Role.OPERATOR)
    CustomerFactory(name="Old Friend")

    with time_machine.travel(MONDAY_2PM, tick=False) as traveller:
        log_in(live_server, page)
        journey = create_and_publish_the_welcome_sop(live_server, page)
        lily = add_a_wecom_contact(live_server, page, wecom)
        work()

        welcome = Touchpoint.objects.get(source_ref="wecom:welcome")
        greeting = Touchpoint.objects.get(source_ref=journey.source_ref)
        assert (greeting.customer_id, greeting.status) == (lily.pk, TouchpointStatus.AWAITING_CONFIRMATION)
        page.goto(f"{live_server.url}/messaging/outbox/")
        page.wait_for_selector("h1:has-text('Outbox')")
        assert attribute(page, "[data-testid=outbox-row]", "data-touchpoint") == [str(greeting.pk), str(welcome.pk)]
        row = page.inner_text(f"[data-testid=outbox-row][data-touchpoint='{greeting.pk}']")
        assert "Lily" in row
        assert journey.name in row  # the outbox names the journey the message came from
        assert "Awaiting the rep's confirmation" in row  # a WeCom mass send: zhangsan confirms it in his WeCom
        assert f"Source\nJourney step · {journey.name} · its messages\n" in open_in_outbox(page, greeting)
        assert page.inner_text("[data-testid=rendered-content]").count(GREETING) == 1

        page.goto(f"{live_server.url}/journeys/{journey.pk}/report/")
        page.wait_for_selector("[data-testid=journey-totals]")
        assert page.inner_text("[data-testid=step-count][data-step=wait] [data-testid=step-active]") == "1"
        assert "Lily\tIn progress\twait" in page.inner_text("[data-testid=latest-enrollments] tbody")
        page.goto(f"{live_server.url}/customers/{lily.pk}/")
        enrollment = page.locator(f"[data-testid=customer-enrollment][data-journey='{journey.pk}']")
        assert enrollment.get_attribute("data-state") == "active"
        assert "Now: Wait 1 day(s), then at 10:00" in enrollment.inner_text()

        traveller.move_to(TUESDAY_10AM)
        work()

        invitation = Touchpoint.objects.filter(source_ref=journey.source_ref).exclude(pk=greeting.pk).get()
        assert (invitation.customer_id, invitation.scheduled_for) == (lily.pk, TUESDAY_10AM)
        page.goto(f"{live_server.url}/messaging/outbox/")
        page.wait_for_selector("h1:has-text('Outbox')")
        assert attribute(page, "[data-testid=outbox-row]", "data-touchpoint") == [
            str(invitation.pk), str(greeting.pk), str(welcome.pk)]  # fmt: skip
        row = page.inner_text(f"[data-testid=outbox-row][data-touchpoint='{invitation.pk}']")
        assert "Awaiting the rep's confirmation" in row
        open_in_outbox(page, invitation)
        assert INVITATION in page.inner_text("[data-testid=rendered-content]")

        page.goto(f"{live_server.url}/journeys/{journey.pk}/report/")
        page.wait_for_selector("[data-testid=journey-totals]")
        totals = {key: page.inner_text(f"[data-testid=total-{key}]") for key in ("enrolled", "active", "completed")}
        assert totals == {"enrolled": "1", "active": "0", "completed": "1"}
        latest = page.inner_text("[data-testid=latest-enrollments] tbody")
        assert "Lily\tCompleted · Reached the end" in latest
        assert page.inner_text("[data-testid=group-invite] td:nth-child(2)") == "1"  # invited to 新人福利群

        page.goto(f"{live_server.url}/customers/{lily.pk}/")
        enrollment = page.locator(f"[data-testid=customer-enrollment][data-journey='{journey.pk}']")
        assert enrollment.get_attribute("data-state") == "completed"
        assert "2026-11-24 10:00 · Reached the end" in enrollment.inner_text()

    # Both went to WeCom as zhangsan's mass sends to Lily, the greeting with her name filled in.
    external_userid = Identity.objects.get(customer=lily, kind="wecom").value
    sent = [(m.sender, m.recipients, m.text) for m in wecom.mass_sends.values()]
    assert [(sender, recipients, text[: len(start)]) for (sender, recipients, text), start in
            zip(sent, (GREETING, INVITATION), strict=True)] == [
        ("zhangsan", [external_userid], GREETING), ("zhangsan", [external_userid], INVITATION)]  # fmt: skip
