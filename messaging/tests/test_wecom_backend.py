import datetime
import itertools

import pytest
import time_machine

from messaging.backends.base import DeliveryResult, Outcome, OutgoingMessage
from messaging.backends.wecom import WeComBackend
from messaging.wecom.fake import FakeWeCom

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))
ADD = "externalcontact/add_msg_template"
WELCOME = "externalcontact/send_welcome_msg"
NEW_ARRIVALS = {"format": "text", "text": "春季新品到店"}
ids = itertools.count(1)


@pytest.fixture
def fake():
    with FakeWeCom() as server:
        for customer in ("wm_a", "wm_b", "wm_c"):
            server.add_contact("zhangsan", customer)
        server.add_contact("lisi", "wm_d")
        yield server


@pytest.fixture
def backend(fake):
    wecom = WeComBackend(channel="wecom", config=fake.config())
    yield wecom
    wecom.close()


def message(recipient, *, sender="zhangsan", content=NEW_ARRIVALS, key=None, is_group=False) -> OutgoingMessage:
    touchpoint_id = next(ids)
    return OutgoingMessage(
        touchpoint_id=touchpoint_id,
        idempotency_key=key or f"test-{touchpoint_id}",
        channel="wecom",
        kind="marketing",
        content=content,
        recipient=recipient,
        sender=sender,
        is_group=is_group,
    )


def welcome(code, *, key="welcome-1", recipient="wm_a") -> OutgoingMessage:
    content = {"format": "text", "text": "你好 我是你的专属顾问", "context": {"welcome_code": code}}
    return message(recipient, content=content, key=key)


def outcomes(results: list[DeliveryResult]) -> list[tuple[str, str]]:
    return [(r.outcome, r.provider_code) for r in results]


# --------------------------------------------------------------------------------------------------- welcome


def test_a_welcome_goes_out_at_once_with_its_code(fake, backend):
    code = fake.issue_welcome_code("zhangsan", "wm_a")

    [result] = backend.send_many([welcome(code)])

    assert (result.outcome, result.provider_code) == (Outcome.SENT, "0")
    assert fake.calls_to(WELCOME)[0].body == {"welcome_code": code, "text": {"content": "你好 我是你的专属顾问"}}
    assert fake.deliveries["wm_a"] == 1


def test_a_repeated_welcome_is_answered_from_memory_and_delivered_once(fake, backend):
    code = fake.issue_welcome_code("zhangsan", "wm_a")
    backend.send_many([welcome(code)])

    [repeat] = backend.send_many([welcome(code)])

    assert repeat.outcome == Outcome.SENT
    assert len(fake.calls_to(WELCOME)) == 1
    assert fake.deliveries["wm_a"] == 1


def test_a_used_welcome_code_is_refused_by_wecom_and_fails_permanently(fake, backend):
    code = fake.issue_welcome_code("zhangsan", "wm_a")
    backend.send_many([welcome(code, key="welcome-1")])

    [second] = backend.send_many([welcome(code, key="welcome-2")])

    assert (second.outcome, second.provider_code) == (Outcome.PERMANENT_ERROR, "41051")
    assert fake.deliveries["wm_a"] == 1


def test_an_expired_welcome_code_fails_permanently(fake, backend):
    code = fake.issue_welcome_code("zhangsan", "wm_a")
    fake.expire_welcome_code(code)

    [result] = backend.send_many([welcome(code)])

    assert (result.outcome, result.provider_code) == (Outcome.PERMANENT_ERROR, "41051")
    assert fake.deliveries["wm_a"] == 0


def test_a_busy_wecom_leaves_the_welcome_to_retry(fake, backend):
    code = fake.issue_welcome_code("zhangsan", "wm_a")
    fake.fail_next(1, errcode=-1, path=WELCOME)

    [busy] = backend.send_many([welcome(code)])
    [retried] = backend.send_many([welcome(code)])

    assert outcomes([busy, retried]) == [(Outcome.TEMPORARY_ERROR, "-1"), (Outcome.SENT, "0")]
    assert fake.deliveries["wm_a"] == 1


# ----------------------------------------------------------------------------------------------- mass sends


def test_messages_become_one_mass_send_per_sender_and_content(fake, backend):
    other_text = {"format": "text", "text": "会员日双倍积分"}
    messages = [
        message("wm_a"),
        message("wm_b"),
        message("wm_c", content=other_text),
        message("wm_d", sender="lisi"),
        message("wm_c"),
    ]

    results = backend.send_many(messages)

    assert len(fake.calls_to(ADD)) == 3
    assert [r.outcome for r in results] == [Outcome.AWAITING_CONFIRMATION] * 5
    by_msgid = {msgid: fake.mass_sends[msgid] for msgid in {r.provider_message_id for r in results}}
    assert sorted((m.sender, m.text, tuple(m.recipients)) for m in by_msgid.values()) == [
        ("lisi", "春季新品到店", ("wm_d",)),
        ("zhangsan", "会员日双倍积分", ("wm_c",)),
        ("zhangsan", "春季新品到店", ("wm_a", "wm_b", "wm_c")),
    ]
    assert results[0].provider_message_id == results[1].provider_message_id == results[4].provider_message_id
    assert results[0].response == {"msgid": results[0].provider_message_id, "sender": "zhangsan", "chat_type": "single"}


def test_a_recipient_wecom_refuses_fails_alone(fake, backend):
    results = backend.send_many([message("wm_a"), message("wm_stranger"), message("wm_b")])

    assert outcomes(results) == [
        (Outcome.AWAITING_CONFIRMATION, "0"),
        (Outcome.PERMANENT_ERROR, "fail_list"),
        (Outcome.AWAITING_CONFIRMATION, "0"),
    ]
    assert results[1].provider_message_id == ""
    assert fake.mass_sends[results[0].provider_message_id].recipients == ["wm_a", "wm_b"]


def test_a_repeated_idempotency_key_never_creates_a_second_mass_send(fake, backend):
    first = backend.send_many([message("wm_a", key="journey-7:step-2:cust-1"), message("wm_b", key="k-b")])

    repeat = backend.send_many([message("wm_a", key="journey-7:step-2:cust-1")])

    assert len(fake.calls_to(ADD)) == 1
    assert (repeat[0].outcome, repeat[0].provider_message_id) == (
        Outcome.AWAITING_CONFIRMATION,
        first[0].provider_message_id,
    )
    fake.confirm(first[0].provider_message_id)
    assert fake.deliveries["wm_a"] == 1


def test_group_touchpoints_are_a_group_mass_send(fake, backend):
    fake.add_group("wr_mums", owner="zhangsan")
    fake.add_group("wr_new", owner="zhangsan")

    results = backend.send_many([message("wr_mums", is_group=True), message("wr_new", is_group=True)])

    [call] = fake.calls_to(ADD)
    assert (call.body["chat_type"], call.body["chat_id_list"]) == ("group", ["wr_mums", "wr_new"])
    assert [r.outcome for r in results] == [Outcome.AWAITING_CONFIRMATION] * 2


def test_a_group_mass_send_without_a_sender_fails_without_calling_wecom(fake, backend):
    [result] = backend.send_many([message("wr_mums", is_group=True, sender="")])

    assert (result.outcome, result.provider_code) == (Outcome.PERMANENT_ERROR, "no_sender")
    assert fake.calls_to(ADD) == []


def test_a_busy_wecom_fails_one_mass_send_temporarily_and_not_the_others(fake, backend):
    fake.fail_next(1, errcode=45009, path=ADD)

    results = backend.send_many([message("wm_a"), message("wm_d", sender="lisi")])

    assert outcomes(results) == [(Outcome.TEMPORARY_ERROR, "45009"), (Outcome.AWAITING_CONFIRMATION, "0")]
    assert [m.sender for m in fake.mass_sends.values()] == ["lisi"]


def test_a_permanent_error_keeps_wecoms_errcode(fake, backend):
    [result] = backend.send_many([message("wm_a", sender="nobody")])

    assert (result.outcome, result.provider_code) == (Outcome.PERMANENT_ERROR, "60111")


@time_machine.travel(datetime.datetime(2026, 3, 2, 10, 15, 30, tzinfo=SHANGHAI), tick=False)
def test_the_rate_limit_defers_the_remaining_mass_sends_without_calling(fake):
    backend = WeComBackend(channel="wecom", config={**fake.config(), "rate_limits": {ADD: 1}})
    other_text = {"format": "text", "text": "会员日双倍积分"}

    results = backend.send_many([message("wm_a"), message("wm_b", content=other_text), message("wm_d", sender="lisi")])
    backend.close()

    assert outcomes(results) == [
        (Outcome.AWAITING_CONFIRMATION, "0"),
        (Outcome.TEMPORARY_ERROR, "rate_limited"),
        (Outcome.TEMPORARY_ERROR, "rate_limited"),
    ]
    assert results[1].response["retry_at"] == "2026-03-02T02:16:00+00:00"
    assert len(fake.calls_to(ADD)) == 1


def test_welcomes_and_mass_sends_in_one_batch_keep_their_order(fake, backend):
    code = fake.issue_welcome_code("zhangsan", "wm_c")

    results = backend.send_many([message("wm_a"), welcome(code, recipient="wm_c"), message("wm_b")])

    assert [r.outcome for r in results] == [Outcome.AWAITING_CONFIRMATION, Outcome.SENT, Outcome.AWAITING_CONFIRMATION]
    assert len(fake.calls_to(ADD)) == 1


def test_an_unreachable_wecom_is_temporary(backend, fake):
    fake.stop()

    [result] = backend.send_many([message("wm_a")])

    assert (result.outcome, result.provider_code) == (Outcome.TEMPORARY_ERROR, "ConnectError")


def test_without_redis_nothing_is_sent_and_every_message_waits(fake, backend, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    code = fake.issue_welcome_code("zhangsan", "wm_c")

    results = backend.send_many([message("wm_a"), welcome(code, recipient="wm_c")])

    assert outcomes(results) == [(Outcome.TEMPORARY_ERROR, "redis_unavailable")] * 2
    assert fake.calls == []
