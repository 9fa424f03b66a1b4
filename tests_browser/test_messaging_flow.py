"""The messaging pages in a browser: a template with its live preview, the outbox with a failed and a sent message,
and the message history on the customer page."""

import pytest
from django.conf import settings

from accounts.models import Role
from accounts.tests.factories import UserFactory
from customers.models import MessageChannel
from customers.tests.factories import CustomerFactory
from messaging.models import ContactPolicy, MessageTemplate, Touchpoint, TouchpointKind, TouchpointStatus
from messaging.services.dispatch import dispatch_due
from messaging.services.scheduling import schedule_touchpoint

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(live_server, page, username="operator"):
    """Sign in through the login form, the UI in English (the page fixture's browser asks for Chinese)."""
    page.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": "en", "url": live_server.url}])
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Overview')")


def test_operator_creates_a_template_and_previews_it_for_a_customer(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR)
    CustomerFactory(name="Alice Zhang", city="Shanghai", phone="13800000001")
    CustomerFactory(name="Bob Wang", city="Hangzhou", phone="13800000002")

    log_in(live_server, page)
    page.goto(f"{live_server.url}/messaging/templates/")
    page.wait_for_selector("h1:has-text('Message templates')")
    assert "No message templates yet." in page.inner_text("[data-testid=template-table]")

    page.click("[data-testid=new-template]")
    page.wait_for_selector("h1:has-text('New message template')")
    page.wait_for_selector("[data-testid=preview-issues], [data-testid=preview-empty]")  # its first check, on load
    page.fill("#id_name", "Greeting")
    page.select_option("#id_channel", "sms")
    page.select_option("#id_format", "text")
    page.select_option("#id_language", "en")
    page.fill("#id_body", "Hi {{ customer.name }}")
    page.fill("#id_defaults_text", "customer.name = dear customer")

    page.fill("#preview-search", "Alice")
    page.wait_for_selector("[data-testid=preview-customer]:has-text('Alice Zhang')")
    assert page.locator("[data-testid=preview-customer]").count() == 1
    page.check("[data-testid=preview-customer] input[name=preview_customer]")
    page.wait_for_selector("[data-testid=preview-text]")
    assert "As Alice Zhang would receive it:" in page.inner_text("[data-testid=template-preview]")
    assert page.inner_text("[data-testid=preview-text]") == "Hi Alice Zhang"

    page.click("[data-testid=save-template]")
    page.wait_for_selector("h1:has-text('Edit “Greeting”')")
    assert "Template “Greeting” created." in page.inner_text("main")
    template = MessageTemplate.objects.get()
    assert (template.channel, template.body, template.defaults) == (
        "sms",
        "Hi {{ customer.name }}",
        {"customer.name": "dear customer"},
    )

    page.click(".breadcrumb >> text=Message templates")
    page.wait_for_selector("[data-testid=template-row]")
    row = page.inner_text("[data-testid=template-row]")
    assert "Greeting" in row
    assert "Hi {{ customer.name }}" in row


def send_two_messages(customer):
    """A message that is sent and one that fails rendering (a variable with no value and no default)."""
    ContactPolicy.objects.update_or_create(pk=1, defaults={"quiet_hours_enabled": False})
    greeting = MessageTemplate.objects.create(
        name="Greeting", channel="sms", language="en", body="Hi {{ customer.name }}",
        defaults={"customer.name": "dear customer"},
    )  # fmt: skip
    voucher = MessageTemplate.objects.create(
        name="Voucher", channel="sms", language="en", body="Your voucher: {{ customer.attributes.voucher }}"
    )
    sent, failed = (
        schedule_touchpoint(
            channel=MessageChannel.SMS,
            customer=customer,
            template=template,
            idempotency_key=key,
            kind=TouchpointKind.TRANSACTIONAL,  # no quiet hours for it either way
            source_ref="browser-test",
        )
        for template, key in ((greeting, "browser:greeting"), (voucher, "browser:voucher"))
    )
    assert dispatch_due().claimed == 2
    sent.refresh_from_db()
    failed.refresh_from_db()
    assert (sent.status, sent.rendered["text"]) == (TouchpointStatus.SENT, "Hi Alice Zhang")
    assert (failed.status, failed.reason) == (TouchpointStatus.FAILED, "render_error")
    return sent, failed


def test_operator_follows_messages_in_the_outbox_and_on_the_customer_page(live_server, page):
    UserFactory(username="operator", role=Role.OPERATOR)
    alice = CustomerFactory(name="Alice Zhang", city="Shanghai", phone="13800000001")
    sent, failed = send_two_messages(alice)

    log_in(live_server, page)
    page.goto(f"{live_server.url}/messaging/outbox/")
    page.wait_for_selector("h1:has-text('Outbox')")
    assert page.locator("[data-testid=outbox-row]").count() == 2

    page.select_option("[data-testid=status-filter]", "failed")
    page.wait_for_function("document.querySelectorAll('[data-testid=outbox-row]').length === 1")
    assert page.get_attribute("[data-testid=outbox-row]", "data-touchpoint") == str(failed.pk)
    assert "status=failed" in page.url  # the filter is pushed to the address bar
    assert "Alice Zhang" in page.inner_text("[data-testid=outbox-table]")

    page.click("[data-testid=outbox-row] >> text=Alice Zhang")
    page.wait_for_selector(f"#outbox-detail [data-testid=touchpoint-detail][data-touchpoint='{failed.pk}']")
    detail = page.inner_text("#outbox-detail")
    assert f"Message #{failed.pk}" in detail
    assert "13800000001" in detail
    step = page.locator("[data-testid=decision][data-step=render_error]")
    assert step.count() == 1
    log = step.inner_text()
    assert "The template could not be rendered" in log
    assert "Failed" in log
    assert "customer.attributes.voucher" in log
    assert "no default" in log
    assert "Not rendered yet" in page.inner_text("[data-testid=rendered-content]")
    assert page.locator("[data-testid=retry]").is_visible()

    page.select_option("[data-testid=status-filter]", "sent")
    page.wait_for_selector(f"[data-testid=outbox-row][data-touchpoint='{sent.pk}']")
    page.wait_for_function("document.querySelectorAll('[data-testid=outbox-row]').length === 1")
    page.click("[data-testid=outbox-row] >> text=Alice Zhang")
    page.wait_for_selector(f"#outbox-detail [data-testid=touchpoint-detail][data-touchpoint='{sent.pk}']")
    assert "Hi Alice Zhang" in page.inner_text("[data-testid=rendered-content]")
    steps = page.locator("[data-testid=decision]").evaluate_all("items => items.map(item => item.dataset.step)")
    assert steps == ["scheduled", "policy", "send"]

    page.click("#outbox-detail >> a:has-text('Alice Zhang')")
    page.wait_for_selector("[data-testid=customer-name]")
    assert page.url.endswith(f"/customers/{alice.pk}/")
    panel = page.locator("[data-testid=customer-messages]")
    assert panel.locator("[data-testid=customer-message]").count() == 2
    sent_row = panel.locator(f"[data-testid=customer-message][data-touchpoint='{sent.pk}']").inner_text()
    assert "Hi Alice Zhang" in sent_row
    assert "Greeting" in sent_row
    assert "Sent" in sent_row
    failed_row = panel.locator(f"[data-testid=customer-message][data-touchpoint='{failed.pk}']").inner_text()
    assert "Failed" in failed_row
    assert Touchpoint.objects.filter(customer=alice).count() == 2
