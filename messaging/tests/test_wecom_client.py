import datetime

import httpx
import pytest
import redis
import time_machine
from django.conf import settings
from django.core.cache import cache

from messaging.wecom.client import (
    WeComClient,
    WeComPermanentError,
    WeComRateLimited,
    WeComTemporaryError,
    message_payload,
)
from messaging.wecom.fake import FakeWeCom

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))
GETTOKEN = "gettoken"
ADD = "externalcontact/add_msg_template"


@pytest.fixture
def fake():
    with FakeWeCom() as server:
        server.add_contact("zhangsan", "wm_a", name="王女士")
        server.add_contact("zhangsan", "wm_b")
        yield server


@pytest.fixture
def wecom(fake):
    client = WeComClient.from_config(fake.config())
    yield client
    client.close()


def closed_port() -> int:
    with FakeWeCom() as server:
        return server.server.server_address[1]


# ---------------------------------------------------------------------------------------------- access token


def test_one_token_serves_many_calls_and_every_worker(fake, wecom):
    other_worker = WeComClient.from_config(fake.config())

    for _ in range(5):
        wecom.get_external_contact("wm_a")
    other_worker.get_external_contact("wm_b")
    other_worker.close()

    assert len(fake.calls_to(GETTOKEN)) == 1
    assert len(fake.calls_to("externalcontact/get")) == 6


def test_an_expired_token_is_fetched_again_once_and_the_call_retried(fake, wecom):
    wecom.get_external_contact("wm_a")
    fake.expire_tokens()

    answer = wecom.get_external_contact("wm_a")
    wecom.get_external_contact("wm_b")

    assert answer["external_contact"]["name"] == "王女士"
    assert len(fake.calls_to(GETTOKEN)) == 2
    assert [c.answer["errcode"] for c in fake.calls_to("externalcontact/get")] == [0, 42001, 0, 0]


def test_a_token_still_refused_after_the_refresh_is_a_permanent_error(fake, wecom):
    fake.fail_next(2, errcode=40014, path="externalcontact/get")

    with pytest.raises(WeComPermanentError) as raised:
        wecom.get_external_contact("wm_a")

    assert raised.value.errcode == 40014
    assert len(fake.calls_to("externalcontact/get")) == 2


def test_the_token_is_cached_until_five_minutes_before_it_expires():
    with FakeWeCom(token_seconds=1200) as fake:
        client = WeComClient.from_config(fake.config())
        client.access_token()
        client.close()

    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(cache.make_and_validate_key(client.token_key))
    assert 895 <= ttl <= 900


def test_wrong_credentials_are_permanent_and_not_retried(fake):
    client = WeComClient.from_config({**fake.config(), "secret": "wrong"})

    with pytest.raises(WeComPermanentError) as raised:
        client.get_external_contact("wm_a")
    client.close()

    assert raised.value.errcode == 40001
    assert len(fake.calls_to(GETTOKEN)) == 1
    assert fake.calls_to("externalcontact/get") == []


# -------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_system_busy_and_frequency_limits_are_temporary(fake, wecom, errcode):
    fake.fail_next(1, errcode=errcode, path=ADD)

    with pytest.raises(WeComTemporaryError) as raised:
        wecom.add_msg_template(sender="zhangsan", external_userids=["wm_a"], text="hi")

    assert (raised.value.errcode, raised.value.code) == (errcode, str(errcode))
    assert fake.mass_sends == {}


def test_a_server_error_is_temporary(fake, wecom):
    fake.fail_next(1, http_status=503, path=ADD)

    with pytest.raises(WeComTemporaryError) as raised:
        wecom.add_msg_template(sender="zhangsan", external_userids=["wm_a"], text="hi")

    assert (raised.value.errcode, raised.value.code) == (None, "http_503")


def test_an_unreachable_server_is_temporary():
    client = WeComClient(corp_id="ww1", secret="s", api_base=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(WeComTemporaryError) as raised:
        client.access_token()
    client.close()

    assert raised.value.code == "ConnectError"


def test_other_errcodes_are_permanent_and_keep_the_errcode(fake, wecom):
    with pytest.raises(WeComPermanentError) as raised:
        wecom.get_external_contact("wm_nobody")

    assert (raised.value.errcode, raised.value.code, raised.value.is_temporary) == (84061, "84061", False)


@time_machine.travel(datetime.datetime(2026, 3, 2, 10, 15, 30, tzinfo=SHANGHAI), tick=False)
def test_the_per_api_rate_limit_defers_the_call_without_making_it(fake):
    client = WeComClient.from_config({**fake.config(), "rate_limits": {ADD: 2}})
    for _ in range(2):
        client.add_msg_template(sender="zhangsan", external_userids=["wm_a"], text="hi")

    with pytest.raises(WeComRateLimited) as raised:
        client.add_msg_template(sender="zhangsan", external_userids=["wm_a"], text="hi")
    other_api = client.get_external_contact("wm_a")
    client.close()

    assert raised.value.retry_at == datetime.datetime(2026, 3, 2, 10, 16, tzinfo=SHANGHAI)
    assert raised.value.is_temporary is True
    assert len(fake.calls_to(ADD)) == 2
    assert other_api["errcode"] == 0


# ------------------------------------------------------------------------------------------- the API shapes


def test_add_msg_template_sends_the_documented_body_and_returns_msgid_and_fail_list(fake, wecom):
    text, attachments = message_payload(
        {"format": "link", "text": "春季新品", "card": {"title": "新品", "url": "https://shop.example/new"}}
    )

    created = wecom.add_msg_template(
        sender="zhangsan", external_userids=["wm_a", "wm_stranger"], text=text, attachments=attachments
    )

    assert fake.calls_to(ADD)[0].body == {
        "chat_type": "single",
        "allow_select": False,
        "sender": "zhangsan",
        "external_userid": ["wm_a", "wm_stranger"],
        "text": {"content": "春季新品"},
        "attachments": [
            {
                "msgtype": "link",
                "link": {"title": "新品", "picurl": "", "desc": "", "url": "https://shop.example/new"},
            }
        ],
    }
    assert created.msgid == next(iter(fake.mass_sends))
    assert created.fail_list == ["wm_stranger"]


def test_a_group_mass_send_names_its_groups_in_chat_id_list(fake, wecom):
    fake.add_group("wr_mums", owner="zhangsan", name="宝妈群")

    created = wecom.add_msg_template(chat_type="group", sender="zhangsan", chat_ids=["wr_mums"], text="周三答疑")

    assert fake.calls_to(ADD)[0].body["chat_id_list"] == ["wr_mums"]
    assert fake.mass_sends[created.msgid].recipients == ["wr_mums"]


def test_tasks_and_send_results_are_read_page_by_page(fake, wecom):
    for n in range(5):
        fake.add_contact("zhangsan", f"wm_{n}")
    created = wecom.add_msg_template(sender="zhangsan", external_userids=[f"wm_{n}" for n in range(5)], text="hi")
    fake.confirm(created.msgid, "zhangsan")

    tasks = list(wecom.iter_groupmsg_tasks(created.msgid, page_size=2))
    results = list(wecom.iter_groupmsg_send_results(created.msgid, "zhangsan", page_size=2))

    assert [(t["userid"], t["status"]) for t in tasks] == [("zhangsan", 2)]
    assert [(r["external_userid"], r["status"]) for r in results] == [(f"wm_{n}", 1) for n in range(5)]
    assert len(fake.calls_to("externalcontact/get_groupmsg_send_result")) == 3


def test_group_chat_and_reminder_calls(fake, wecom):
    fake.add_group("wr_mums", owner="zhangsan", name="宝妈群", members=["wm_a"])
    created = wecom.add_msg_template(sender="zhangsan", external_userids=["wm_a"], text="hi")

    chat = wecom.get_group_chat("wr_mums")
    wecom.remind_groupmsg_send(created.msgid)

    assert (chat["group_chat"]["name"], chat["group_chat"]["member_list"][0]["userid"]) == ("宝妈群", "wm_a")
    assert fake.mass_sends[created.msgid].reminders == 1


@pytest.mark.parametrize(
    ("content", "attachment"),
    [
        (
            {"format": "image", "card": {"image_url": "https://wework.qpic.cn/a.png"}},
            {"msgtype": "image", "image": {"pic_url": "https://wework.qpic.cn/a.png"}},
        ),
        (
            {"format": "miniprogram", "card": {"title": "领券", "appid": "wx123", "page": "/coupon", "media_id": "M1"}},
            {
                "msgtype": "miniprogram",
                "miniprogram": {"title": "领券", "pic_media_id": "M1", "appid": "wx123", "page": "/coupon"},
            },
        ),
    ],
)
def test_cards_become_wecom_attachments(content, attachment):
    assert message_payload(content) == ("", [attachment])


def test_the_client_is_plain_httpx_with_the_messaging_timeout(wecom):
    assert isinstance(wecom.http, httpx.Client)
    assert wecom.http.timeout.read == settings.MESSAGING_REQUEST_TIMEOUT


def test_redis_unreachable_is_a_temporary_error_and_nothing_is_sent(fake, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    client = WeComClient.from_config(fake.config())

    with pytest.raises(WeComTemporaryError) as raised:
        client.add_msg_template(sender="zhangsan", external_userids=["wm_a"], text="hi")
    client.close()

    assert raised.value.code == "redis_unavailable"
    assert fake.calls == []
