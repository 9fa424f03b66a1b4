"""The WeCom setup check: each step against the fake WeCom, the exact fix for what is wrong, the callback URL
round trip over real HTTP against a live server, and who may see the page."""

import pytest
from django.urls import reverse

from accounts.models import Role
from customers.tests.factories import UserFactory
from messaging.models import ChannelConfig
from messaging.secrets import encrypt
from messaging.wecom import setup
from messaging.wecom.client import WeComPermanentError
from messaging.wecom.fake import FakeWeCom
from scrm.testing import free_port

pytestmark = pytest.mark.django_db
TOKEN = "cbT0ken"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OK, FAILED, SKIPPED, WARNING, INFO = "ok", "failed", "skipped", "warning", "info"


@pytest.fixture
def fake(settings):
    with FakeWeCom(corp_id="wwcorp0001", secret="s3cret-value") as server:
        server.add_staff("zhangsan", "lisi")
        settings.SITE_URL = ""
        settings.WECOM_SANDBOX = False
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**server.config(), "token": TOKEN, "encoding_aes_key": KEY},
        }
        yield server


def configure(settings, **values):
    settings.MESSAGING_CHANNELS = {
        **settings.MESSAGING_CHANNELS,
        "wecom": {**settings.MESSAGING_CHANNELS["wecom"], **values},
    }


def statuses(report):
    return {step.key: str(step.status) for step in report.steps}


def check():
    return setup.run_setup_check(request_base="https://scrm.example.com/")


# -------------------------------------------------------------------------------------------------- the steps


def test_a_good_configuration_passes_every_step(fake):
    report = check()

    assert statuses(report) == {
        "corp_id": OK,
        "secret": OK,
        "token": OK,
        "encoding_aes_key": OK,
        "access_token": OK,
        "customer_contact": OK,
        "trusted_ip": OK,
        "callback_url": INFO,
    }
    assert report.is_ok
    assert report.step("customer_contact").message == (
        "Customer contact works: 2 staff members may use it (lisi, zhangsan)."
    )
    assert report.callback_url == "https://scrm.example.com/wecom/callback"


def test_a_wrong_secret_fails_the_token_step_with_what_to_copy(fake, settings):
    configure(settings, secret="not-the-secret")

    report = check()

    step = report.step("access_token")
    assert (step.status, step.errcode) == (FAILED, 40001)
    assert step.fix == ("WeCom answered errcode 40001: invalid credential. " + str(setup.ERRCODE_FIXES[40001]))
    assert "not-the-secret" not in str(report)
    assert statuses(report)["customer_contact"] == SKIPPED
    assert not report.is_ok


def test_a_wrong_corp_id_is_explained_by_its_errcode(fake, settings):
    configure(settings, corp_id="wwsomeoneelse")

    step = check().step("access_token")

    assert (step.status, step.errcode) == (FAILED, 40013)
    assert step.fix.endswith(str(setup.ERRCODE_FIXES[40013]))


def test_the_trusted_ip_errcode_fails_the_trusted_ip_step_with_how_to_find_the_address(fake):
    fake.fail_next(errcode=60020, path="gettoken")

    report = check()

    assert (report.step("access_token").status, report.step("access_token").errcode) == (FAILED, 60020)
    trusted = report.step("trusted_ip")
    assert (trusted.status, trusted.errcode) == (FAILED, 60020)
    assert "curl -s https://ifconfig.me" in trusted.fix
    assert "企业可信IP" in trusted.fix


def test_the_trusted_ip_step_names_the_address_wecom_saw():
    errmsg = "not allow to access from your ip, hint: [1700000000_1_abc], from ip: 203.0.113.7, more info at …"
    error = WeComPermanentError("errcode 60020", errcode=60020, response={"errcode": 60020, "errmsg": errmsg})

    step = setup.trusted_ip_step(refused=error, reached=False)

    assert step.detail == {"ip": "203.0.113.7"}
    assert step.message.endswith("WeCom saw the call come from 203.0.113.7: add exactly that address.")


def test_a_secret_without_customer_contact_permission_fails_the_contact_step(fake):
    fake.fail_next(errcode=48002, path="externalcontact/get_follow_user_list")

    report = check()

    assert statuses(report)["access_token"] == OK
    step = report.step("customer_contact")
    assert (step.status, step.errcode) == (FAILED, 48002)
    assert step.fix.endswith(str(setup.ERRCODE_FIXES[48002]))


def test_no_staff_with_customer_contact_is_a_warning_saying_where_to_add_them(settings):
    with FakeWeCom(corp_id="wwcorp0001", secret="s3cret-value") as empty:
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**empty.config(), "token": TOKEN, "encoding_aes_key": KEY},
        }
        step = check().step("customer_contact")

    assert step.status == WARNING
    assert "使用范围" in step.fix


def test_an_unreachable_api_fails_the_token_step_naming_the_address(fake, settings):
    address = f"http://127.0.0.1:{free_port()}"
    configure(settings, api_base=address)

    step = check().step("access_token")

    assert (step.status, step.errcode) == (FAILED, None)
    assert step.fix.startswith(f"Could not reach {address} (")


def test_a_malformed_corp_id_skips_the_calls_to_wecom(fake, settings):
    configure(settings, corp_id="1000002")

    report = check()

    assert statuses(report) | {"callback_url": INFO} == {
        "corp_id": FAILED,
        "secret": OK,
        "token": OK,
        "encoding_aes_key": OK,
        "access_token": SKIPPED,
        "customer_contact": SKIPPED,
        "trusted_ip": INFO,
        "callback_url": INFO,
    }
    assert report.step("corp_id").message == "A corp ID starts with “ww” (or “wx” for older corps); this one does not."
    assert fake.calls == []


def test_missing_values_say_where_to_set_them(settings):
    settings.MESSAGING_CHANNELS = {**settings.MESSAGING_CHANNELS, "wecom": {}}

    report = check()

    assert [report.step(key).status for key in ("corp_id", "secret", "token", "encoding_aes_key")] == [FAILED] * 4
    assert report.step("secret").fix.startswith(
        "Set WECOM_SECRET in the environment or the secret on the channel settings page."
    )
    assert report.step("corp_id").source == "not set"


@pytest.mark.parametrize(
    ("key", "message", "fix_start"),
    [
        (KEY + "=", "The EncodingAESKey has 44 characters; it must have exactly 43.", "Remove the “=” at the end"),
        (KEY[:40], "The EncodingAESKey has 40 characters; it must have exactly 43.", "The EncodingAESKey field"),
        (
            f" {KEY[:42]}",
            "The EncodingAESKey contains characters that are not base64 (letters, digits, + and /).",
            "The EncodingAESKey field",
        ),
    ],
)
def test_a_malformed_encoding_aes_key_fails_with_the_fix(key, message, fix_start):
    step = setup.check_encoding_aes_key(key)

    assert (step.status, step.message) == (FAILED, message)
    assert step.fix.startswith(fix_start)


def test_a_well_formed_encoding_aes_key_decodes_to_32_bytes():
    step = setup.check_encoding_aes_key(KEY)

    assert (step.status, step.message) == (
        OK, "The EncodingAESKey is 43 characters of base64 and decodes to a 32-byte AES key.")  # fmt: skip


@pytest.mark.parametrize("token", ["ab", "x" * 33, "has space", "tok-en"])
def test_a_token_outside_3_to_32_letters_or_digits_fails(token):
    assert setup.check_token(token).status == FAILED


def test_where_each_value_comes_from(settings):
    settings.WECOM_SANDBOX = False
    settings.MESSAGING_CHANNELS = {**settings.MESSAGING_CHANNELS, "wecom": {"corp_id": "wwcorp0001"}}
    ChannelConfig.objects.create(channel="wecom", options={"api_base": ""}, secrets=encrypt({"secret": "s"}))

    sources = setup.value_sources()

    assert sources == {
        "corp_id": "environment (WECOM_CORP_ID)",
        "secret": "channel settings page",
        "token": "not set",
        "encoding_aes_key": "not set",
        "api_base": "not set",
    }


# ---------------------------------------------------------------------------------------------- callback URL


def test_the_callback_url_uses_site_url_when_set(settings):
    settings.SITE_URL = "https://crm.example.com/"

    assert setup.callback_url(request_base="http://127.0.0.1:8000/") == "https://crm.example.com/wecom/callback"


def test_a_local_callback_url_warns_that_wecom_cannot_reach_it():
    step = setup.callback_url_step("http://127.0.0.1:8000/wecom/callback")

    assert step.status == WARNING
    assert "Set SITE_URL to the public address" in step.message


@pytest.mark.django_db(transaction=True)
def test_the_round_trip_gets_the_echo_back_from_the_live_endpoint(fake, live_server):
    config = fake.config() | {"token": TOKEN, "encoding_aes_key": KEY}

    step = setup.verify_callback_url(f"{live_server.url}/wecom/callback", config=config)

    assert (step.status, step.detail["status"]) == (OK, 200)


@pytest.mark.django_db(transaction=True)
def test_the_round_trip_tells_a_token_mismatch_from_a_key_mismatch(fake, live_server):
    url = f"{live_server.url}/wecom/callback"
    config = fake.config() | {"token": TOKEN, "encoding_aes_key": KEY}
    other_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210abcdefg"

    wrong_token = setup.verify_callback_url(url, config=config | {"token": "another1"})
    wrong_key = setup.verify_callback_url(url, config=config | {"encoding_aes_key": other_key})

    assert (wrong_token.status, wrong_token.detail["status"]) == (FAILED, 403)
    assert wrong_token.fix.startswith("The server answering this URL has another callback token than this one")
    assert (wrong_key.status, wrong_key.detail["status"]) == (FAILED, 400)
    assert wrong_key.fix.startswith("The server answering this URL has another EncodingAESKey than this one")


def test_the_round_trip_to_a_closed_port_says_it_could_not_connect():
    url = f"http://127.0.0.1:{free_port()}/wecom/callback"

    step = setup.verify_callback_url(url, config={"corp_id": "wwcorp0001", "token": TOKEN, "encoding_aes_key": KEY})

    assert step.status == FAILED
    assert step.message.startswith(f"Could not connect to {url}")
    assert "SITE_URL" in step.fix


@pytest.mark.django_db(transaction=True)
def test_the_round_trip_button_tests_the_url_shown_on_the_page(fake, live_server, client, settings):
    settings.SITE_URL = live_server.url
    client.force_login(UserFactory(username="op", role=Role.OPERATOR))

    response = client.post(reverse("wecom-setup-round-trip"), headers={"HX-Request": "true"})

    assert response.templates[0].name == "messaging/wecom/setup_round_trip.html"
    assert response.context["step"].status == OK
    assert response.context["step"].detail["url"] == f"{live_server.url}/wecom/callback"


# ---------------------------------------------------------------------------------------------------- the page


def test_the_page_shows_every_step_and_never_a_secret(fake, client, operator):
    client.force_login(operator)

    response = client.get(reverse("wecom-setup"))

    assert response.status_code == 200
    assert [step.key for step in response.context["report"].steps] == [
        "corp_id", "secret", "token", "encoding_aes_key", "access_token", "customer_contact", "trusted_ip",
        "callback_url",
    ]  # fmt: skip
    html = response.content.decode()
    assert 'value="http://testserver/wecom/callback"' in html
    for secret in ("s3cret-value", TOKEN, KEY):
        assert secret not in html


@pytest.mark.parametrize("role", [Role.SALES, Role.ANALYST])
def test_only_operators_and_admins_may_run_the_check(fake, client, role):
    client.force_login(UserFactory(username="someone", role=role))

    page = client.get(reverse("wecom-setup"))
    round_trip = client.post(reverse("wecom-setup-round-trip"))

    assert (page.status_code, round_trip.status_code) == (403, 403)
    assert fake.calls == []
