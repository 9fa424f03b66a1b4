"""The channel settings page (secrets stored encrypted, never shown, environment first), the send-test button and
the contact policy page with its validation."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from accounts.models import Role
from customers.models import MessageChannel
from customers.tests.factories import CustomerFactory, UserFactory
from messaging.backends import Outcome, backend_for
from messaging.models import (
    ChannelConfig,
    ConsoleMessage,
    ContactPolicy,
    FrequencyCap,
    MessageTemplate,
    RateLimit,
    Touchpoint,
    TouchpointStatus,
)
from messaging.secrets import decrypt, encrypt
from messaging.services.dispatch import dispatch_due
from messaging.services.scheduling import schedule_touchpoint

pytestmark = pytest.mark.django_db
S = TouchpointStatus
NOON = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
NO_ENVIRONMENT = {"wecom": {}, "sms": {}, "email": {}, "webhook": {}}


@pytest.fixture(autouse=True)
def _no_environment(settings):
    settings.MESSAGING_CHANNELS = NO_ENVIRONMENT


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def save(client, channel, **fields):
    data = {f"{channel}-{name}": value for name, value in fields.items()}
    return client.post(reverse("messaging-channel-save", args=[channel]), data)


# ------------------------------------------------------------------------------------------------- channels


def test_the_channels_page_shows_each_channel_with_its_backend(operator_client, settings):
    settings.MESSAGING_BACKENDS = {"sms": "messaging.backends.sms.SmsGatewayBackend"}

    response = operator_client.get(reverse("messaging-channels"))

    panels = {panel.channel: panel for panel in response.context["panels"]}
    assert list(panels) == ["wecom", "sms", "email", "webhook"]
    assert (panels["sms"].backend, panels["sms"].is_console) == ("messaging.backends.sms.SmsGatewayBackend", False)
    assert (panels["email"].backend, panels["email"].is_console) == (
        "messaging.backends.console.ConsoleBackend",
        True,
    )


def test_values_from_the_environment_show_as_set_and_are_never_revealed(operator_client, settings):
    settings.MESSAGING_CHANNELS = {**NO_ENVIRONMENT, "wecom": {"corp_id": "wwcorp-env", "secret": "env-secret-value"}}

    response = operator_client.get(reverse("messaging-channels"))

    body = response.content.decode()
    wecom = response.context["panels"][0]
    assert wecom.environment == ["corp_id", "secret"]
    assert wecom.form.fields["secret"].disabled is True
    assert "Set in the environment (WECOM_SECRET)" in body
    assert "env-secret-value" not in body
    assert "wwcorp-env" not in body


def test_saving_stores_options_and_encrypts_secrets(operator_client):
    response = save(operator_client, "webhook", url="https://hooks.example.com/in", secret="s3cret-signing-key")

    config = ChannelConfig.objects.get(channel="webhook")
    assert response.status_code == 302
    assert config.options == {"url": "https://hooks.example.com/in"}
    assert "s3cret-signing-key" not in config.secrets
    assert decrypt(config.secrets) == {"secret": "s3cret-signing-key"}


def test_a_stored_secret_is_never_rendered_back(operator_client):
    save(operator_client, "sms", url="https://sms.example.com/send", app_key="key-1", app_secret="sms-secret-xyz")

    response = operator_client.get(reverse("messaging-channels"))

    body = response.content.decode()
    sms = response.context["panels"][1]
    assert "sms-secret-xyz" not in body
    assert sms.stored_secrets == ["app_secret"]
    assert "key-1" in body  # options are shown


def test_a_secret_left_blank_keeps_the_stored_one_and_the_checkbox_removes_it(operator_client):
    ChannelConfig.objects.create(
        channel="webhook", options={"url": "https://a.example/"}, secrets=encrypt({"secret": "old"})
    )

    save(operator_client, "webhook", url="https://b.example/", secret="")
    config = ChannelConfig.objects.get(channel="webhook")
    assert (config.options, decrypt(config.secrets)) == ({"url": "https://b.example/"}, {"secret": "old"})

    save(operator_client, "webhook", url="https://b.example/", secret="", clear_secret="on")
    config.refresh_from_db()
    assert config.secrets == ""


def test_a_value_set_in_the_environment_is_not_saved(operator_client, settings):
    settings.MESSAGING_CHANNELS = {**NO_ENVIRONMENT, "webhook": {"url": "https://env.example/"}}

    save(operator_client, "webhook", url="https://form.example/", secret="x")

    assert ChannelConfig.objects.get(channel="webhook").options == {}


def test_an_invalid_value_is_refused_with_a_field_error_and_nothing_is_saved(operator_client):
    response = save(operator_client, "sms", url="not a url", concurrency="0", app_secret="kept-out")

    form = next(panel.form for panel in response.context["panels"] if panel.channel == "sms")
    assert response.status_code == 200
    assert set(form.errors) == {"url", "concurrency"}
    assert "kept-out" not in response.content.decode()
    assert not ChannelConfig.objects.exists()


def test_saving_rebuilds_the_backends_from_the_new_settings(operator_client):
    before = backend_for("webhook")

    save(operator_client, "webhook", url="https://new.example/")

    after = backend_for("webhook")
    assert after is not before
    assert after.config["url"] == "https://new.example/"


def test_the_wecom_welcome_template_is_chosen_among_wecom_templates(operator_client):
    welcome = MessageTemplate.objects.create(name="欢迎语", channel="wecom", body="你好")
    MessageTemplate.objects.create(name="短信", channel="sms", body="x")

    page = operator_client.get(reverse("messaging-channels"))
    save(operator_client, "wecom", welcome_template_id=str(welcome.pk))

    choices = page.context["panels"][0].form.fields["welcome_template_id"].choices
    assert [label for _value, label in choices][1:] == ["欢迎语"]
    assert ChannelConfig.objects.get(channel="wecom").options == {"welcome_template_id": str(welcome.pk)}


@pytest.mark.parametrize("role", [Role.SALES, Role.ANALYST])
def test_channel_settings_are_for_admins_and_operators(client, role):
    client.force_login(UserFactory(username="someone", role=role))

    assert client.get(reverse("messaging-channels")).status_code == 403
    assert save(client, "webhook", url="https://x.example/").status_code == 403
    assert not ChannelConfig.objects.exists()


# ----------------------------------------------------------------------------------------------- send test


def test_send_test_sends_through_the_pipeline_and_shows_the_outcome(operator_client):
    customer = CustomerFactory(phone="13800000007")

    response = operator_client.post(reverse("messaging-channel-test"), {"channel": "sms", "customer": customer.pk})

    touchpoint = Touchpoint.objects.get()
    body = response.content.decode()
    assert (touchpoint.status, touchpoint.kind, touchpoint.source_ref) == (S.SENT, "transactional", "channel-test")
    assert touchpoint.idempotency_key.startswith("test:sms:")
    assert ConsoleMessage.objects.get().recipient == "13800000007"
    assert 'data-status="sent"' in body
    assert "Handed to the channel" in body


def test_send_test_shows_the_providers_refusal(operator_client, scripted):
    scripted.script["13800000008"] = [(Outcome.PERMANENT_ERROR, "InvalidPhoneNumber")]
    customer = CustomerFactory(phone="13800000008")

    response = operator_client.post(reverse("messaging-channel-test"), {"channel": "sms", "customer": customer.pk})

    body = response.content.decode()
    assert Touchpoint.objects.get().status == S.FAILED
    assert "InvalidPhoneNumber" in body
    assert "Refused by the provider" in body


def test_send_test_is_a_transactional_message_so_quiet_hours_do_not_hold_it(operator_client):
    customer = CustomerFactory(phone="13800000006")

    with time_machine.travel(NOON.replace(hour=23), tick=False):
        operator_client.post(reverse("messaging-channel-test"), {"channel": "sms", "customer": customer.pk})

    assert Touchpoint.objects.get().status == S.SENT


def test_send_test_without_a_customer_asks_for_one_and_sends_nothing(operator_client):
    response = operator_client.post(reverse("messaging-channel-test"), {"channel": "sms"})

    assert "Choose a customer" in response.content.decode()
    assert not Touchpoint.objects.exists()


def test_the_test_customer_search_finds_customers_by_name(operator_client):
    CustomerFactory(name="林小雨")
    CustomerFactory(name="王芳")

    response = operator_client.get(reverse("messaging-channel-test-customers"), {"q": "小雨"})

    assert [c.name for c in response.context["customers"]] == ["林小雨"]


# -------------------------------------------------------------------------------------------- contact policy


def post_policy(client, **fields):
    data = {"section": "policy", "quiet_hours_enabled": "on", "quiet_start": "21:00", "quiet_end": "08:00"}
    data.update(fields)
    return client.post(reverse("messaging-policy"), {k: v for k, v in data.items() if v is not None})


def formset(prefix, rows, *, initial=0):
    data = {"section": prefix, f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": str(initial)}
    for index, row in enumerate(rows):
        data.update({f"{prefix}-{index}-{name}": value for name, value in row.items()})
    return data


def test_the_policy_page_renders_for_an_operator(operator_client):
    response = operator_client.get(reverse("messaging-policy"))

    assert response.status_code == 200
    assert 'data-testid="policy-form"' in response.content.decode()


def test_quiet_hours_crossing_midnight_and_the_wecom_budget_are_saved(operator_client):
    response = post_policy(operator_client, quiet_start="22:30", quiet_end="07:00", wecom_monthly_receipts="4")

    policy = ContactPolicy.current()
    assert response.status_code == 302
    assert (policy.quiet_start, policy.quiet_end) == (datetime.time(22, 30), datetime.time(7, 0))
    assert policy.wecom_monthly_receipts == 4


def test_quiet_hours_that_end_when_they_start_are_refused(operator_client):
    response = post_policy(operator_client, quiet_start="21:00", quiet_end="21:00")

    assert response.context["policy_form"].errors == {
        "quiet_end": ["The quiet hours end when they start, so there would be none; turn them off instead."]
    }
    assert ContactPolicy.current().quiet_end == datetime.time(8, 0)


def test_a_wecom_budget_above_31_is_refused(operator_client):
    response = post_policy(operator_client, wecom_monthly_receipts="40")

    assert list(response.context["policy_form"].errors) == ["wecom_monthly_receipts"]
    assert ContactPolicy.current().wecom_monthly_receipts is None


def test_frequency_caps_are_added_edited_and_deleted(operator_client):
    daily = FrequencyCap.objects.create(channel="", period="day", limit=2)
    weekly = FrequencyCap.objects.create(channel="sms", period="week", limit=5)

    response = operator_client.post(
        reverse("messaging-policy"),
        formset(
            "caps",
            [
                {"id": daily.pk, "channel": "", "period": "day", "limit": "3", "is_active": "on"},
                {"id": weekly.pk, "channel": "sms", "period": "week", "limit": "5", "DELETE": "on"},
                {"channel": "wecom", "period": "month", "limit": "4", "is_active": "on"},
            ],
            initial=2,
        ),
    )

    assert response.status_code == 302
    assert sorted(FrequencyCap.objects.values_list("channel", "period", "limit")) == [
        ("", "day", 3),
        ("wecom", "month", 4),
    ]


def test_a_cap_of_zero_and_a_duplicate_cap_are_refused(operator_client):
    response = operator_client.post(
        reverse("messaging-policy"),
        formset(
            "caps",
            [
                {"channel": "", "period": "day", "limit": "0", "is_active": "on"},
                {"channel": "sms", "period": "week", "limit": "2", "is_active": "on"},
                {"channel": "sms", "period": "week", "limit": "3", "is_active": "on"},
            ],
        ),
    )

    caps = response.context["caps"]
    assert list(caps.forms[0].errors) == ["limit"]
    assert caps.non_form_errors() == ["Please correct the duplicate data for channel and period, which must be unique."]
    assert not FrequencyCap.objects.exists()


def test_rate_limits_are_saved_per_channel_and_sender(operator_client):
    response = operator_client.post(
        reverse("messaging-policy"),
        formset(
            "limits",
            [
                {"channel": "wecom", "sender": "", "per_minute": "600"},
                {"channel": "wecom", "sender": "zhangsan", "per_minute": "20"},
            ],
        ),
    )

    assert response.status_code == 302
    assert sorted(RateLimit.objects.values_list("channel", "sender", "per_minute")) == [
        ("wecom", "", 600),
        ("wecom", "zhangsan", 20),
    ]


def test_a_rate_limit_needs_at_least_one_a_minute(operator_client):
    response = operator_client.post(
        reverse("messaging-policy"), formset("limits", [{"channel": "sms", "sender": "", "per_minute": "0"}])
    )

    assert list(response.context["limits"].forms[0].errors) == ["per_minute"]
    assert not RateLimit.objects.exists()


def test_the_contact_policy_is_for_admins_and_operators(rep, client):
    client.force_login(rep)

    assert client.get(reverse("messaging-policy")).status_code == 403
    assert post_policy(client, quiet_hours_enabled=None).status_code == 403
    assert ContactPolicy.objects.filter(quiet_hours_enabled=False).count() == 0


def test_saving_the_policy_reaches_dispatch(operator_client):
    post_policy(operator_client, quiet_hours_enabled=None)

    customer = CustomerFactory(phone="13800000005")
    with time_machine.travel(NOON.replace(hour=23), tick=False):
        schedule_touchpoint(
            channel=MessageChannel.SMS, customer=customer, idempotency_key="late", content={"text": "晚安"}
        )
        dispatch_due()

    assert Touchpoint.objects.get().status == S.SENT
