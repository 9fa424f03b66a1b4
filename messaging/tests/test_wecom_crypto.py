"""WeCom's callback crypto: our receiver (crypto.py) against WeCom's own published sample vectors and against the
independent sender (callback_sender.py) written from the documentation."""

import base64

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from messaging.wecom.callback_sender import CallbackSender, event_xml, new_encoding_aes_key
from messaging.wecom.crypto import (
    CallbackCrypto,
    ConfigurationError,
    MalformedMessageError,
    PaddingError,
    ReceiverError,
    SignatureError,
    StaleTimestampError,
    parse_envelope,
    parse_xml,
)

# The sample configuration and messages of WeCom's WXBizMsgCrypt documentation and SDK samples.
SAMPLE_TOKEN = "QDG6eK"
SAMPLE_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SAMPLE_CORP = "wx5823bf96d3bd56c7"
SAMPLE_VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
}
SAMPLE_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJ"
    "Ts3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2"
    "hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4"
    "EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ"
    "2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
SAMPLE_POST = {
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
}
SAMPLE_BODY = (
    f"<xml><ToUserName><![CDATA[{SAMPLE_CORP}]]></ToUserName><Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt>"
    "<AgentID><![CDATA[218]]></AgentID></xml>"
)
SAMPLE_MESSAGE = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>"
)

NOW = 1_795_000_000
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvuA"


@pytest.fixture
def receiver():
    return CallbackCrypto(token="tok3n", encoding_aes_key=KEY, receive_id="ww1234")


@pytest.fixture
def sender():
    return CallbackSender(token="tok3n", encoding_aes_key=KEY, corp_id="ww1234")


def sample_receiver(receive_id=SAMPLE_CORP):
    return CallbackCrypto(token=SAMPLE_TOKEN, encoding_aes_key=SAMPLE_KEY, receive_id=receive_id)


# ---------------------------------------------------------------------------------------- WeCom's sample vectors


def test_the_documented_url_verification_sample_decrypts_to_its_echo():
    echo = sample_receiver().verify_url(**SAMPLE_VERIFY, max_age=None)

    assert echo == "1616140317555161061"


def test_the_documented_message_sample_verifies_and_decrypts():
    message = sample_receiver().decrypt_message(**SAMPLE_POST, body=SAMPLE_BODY, max_age=None)

    assert message == SAMPLE_MESSAGE


def test_the_sender_reproduces_the_documented_echostr_from_its_random_prefix():
    sender = CallbackSender(token=SAMPLE_TOKEN, encoding_aes_key=SAMPLE_KEY, corp_id=SAMPLE_CORP)

    encrypted = sender.encrypt("1616140317555161061", random_prefix=b"c41b64491c2468d0")

    assert encrypted == SAMPLE_VERIFY["echostr"]
    assert sender.sign(SAMPLE_VERIFY["timestamp"], SAMPLE_VERIFY["nonce"], encrypted) == SAMPLE_VERIFY["msg_signature"]


# Computed by hand from the documented steps with openssl, independently of both modules:
#   plaintext = "0123456789abcdef" + 00 00 00 1e + "<xml><A>企业微信</A></xml>" (30 bytes) + "ww1234" = 56 bytes,
#   + eight 0x08 pad bytes = 64; key = base64decode(KEY + "="), iv = key[:16];
#   openssl enc -aes-256-cbc -K <key hex> -iv <iv hex> -nopad | base64
#   printf '%s\n' tok3n 1795000000 42 <ciphertext> | LC_ALL=C sort | tr -d '\n' | sha1sum
HAND_CIPHERTEXT = "Q3stYC6hdFzMh9T8HCvyDPF0jSqH/OJHR5POhSj6bbuBRdVsHkSzz9leNzl5atk7W2uJW6wTjKl0/9SN/DhMgQ=="
HAND_SIGNATURE = "46ead53e4f44a6fb0d97414154e6478d153b3815"


def test_a_vector_computed_by_hand_from_the_documented_steps(receiver, sender):
    encrypted = sender.encrypt("<xml><A>企业微信</A></xml>", random_prefix=b"0123456789abcdef")

    assert encrypted == HAND_CIPHERTEXT
    assert sender.sign("1795000000", "42", encrypted) == HAND_SIGNATURE
    assert receiver.signature("1795000000", "42", HAND_CIPHERTEXT) == HAND_SIGNATURE
    assert receiver.decrypt(HAND_CIPHERTEXT) == "<xml><A>企业微信</A></xml>"


# ----------------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("length", [0, 1, 11, 12, 43, 44, 1000])
def test_messages_of_every_padding_length_round_trip(receiver, sender, length):
    message = "x" * length

    request = sender.event(message, timestamp=NOW, nonce="7")

    assert receiver.decrypt_message(**request.params, body=request.body, now=NOW) == message


def test_an_event_round_trips_through_the_posted_envelope(receiver, sender):
    inner = event_xml(
        corp_id="ww1234",
        event="change_external_chat",
        change_type="update",
        create_time=NOW,
        ChatId="wrX",
        UpdateDetail="add_member",
        JoinScene=3,
        MemChangeList=["wmA", "wmB"],
    )

    request = sender.event(inner, agent_id="1000002", timestamp=NOW, nonce="99")

    envelope = parse_envelope(request.body)
    assert (envelope.to_user, envelope.agent_id) == ("ww1234", "1000002")
    assert request.method == "POST"
    assert receiver.decrypt_message(**request.params, body=request.body, now=NOW) == inner


def test_url_verification_round_trips(receiver, sender):
    request = sender.verification("echo-123", timestamp=NOW, nonce="5")

    assert request.method == "GET"
    assert receiver.verify_url(**request.params, now=NOW) == "echo-123"


def test_a_generated_key_is_one_wecom_accepts():
    key = new_encoding_aes_key()

    assert len(key) == 43
    CallbackCrypto(token="t", encoding_aes_key=key, receive_id="ww")


# -------------------------------------------------------------------------------------------------------- refusals


def test_a_wrong_signature_is_refused(receiver, sender):
    request = sender.event("<xml/>", timestamp=NOW, nonce="1")

    with pytest.raises(SignatureError):
        receiver.decrypt_message(**{**request.params, "msg_signature": "0" * 40}, body=request.body, now=NOW)


def test_a_message_signed_with_another_token_is_refused(receiver):
    other = CallbackSender(token="other", encoding_aes_key=KEY, corp_id="ww1234")
    request = other.event("<xml/>", timestamp=NOW, nonce="1")

    with pytest.raises(SignatureError):
        receiver.decrypt_message(**request.params, body=request.body, now=NOW)


def test_a_tampered_ciphertext_fails_the_signature(receiver, sender):
    request = sender.event("<xml/>", timestamp=NOW, nonce="1")
    encrypted = parse_envelope(request.body).encrypted
    tampered = request.body.replace(encrypted.encode(), sender.encrypt("<xml>evil</xml>").encode())

    with pytest.raises(SignatureError):
        receiver.decrypt_message(**request.params, body=tampered, now=NOW)


def test_a_message_for_another_corp_is_refused(receiver):
    other = CallbackSender(token="tok3n", encoding_aes_key=KEY, corp_id="ww9999")
    request = other.event("<xml/>", timestamp=NOW, nonce="1")

    with pytest.raises(ReceiverError):
        receiver.decrypt_message(**request.params, body=request.body, now=NOW)


def test_a_message_encrypted_with_another_key_fails_its_padding(receiver):
    other = CallbackSender(token="tok3n", encoding_aes_key=OTHER_KEY, corp_id="ww1234")
    request = other.event("<xml/>", timestamp=NOW, nonce="1", random_prefix=b"\x00" * 16)

    with pytest.raises(PaddingError):
        receiver.decrypt_message(**request.params, body=request.body, now=NOW)


def test_bad_padding_is_refused(receiver):
    # A valid block whose plaintext ends in a pad byte of 0x21 (33 > 32), encrypted with our key.
    aes_key = base64.b64decode(KEY + "=")
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16])).encryptor()
    encrypted = base64.b64encode(encryptor.update(b"\x21" * 32) + encryptor.finalize()).decode()

    with pytest.raises(PaddingError):
        receiver.decrypt(encrypted)


def test_inconsistent_padding_bytes_are_refused(receiver):
    aes_key = base64.b64decode(KEY + "=")
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16])).encryptor()
    encrypted = base64.b64encode(encryptor.update(b"a" * 29 + b"\x01\x02\x03") + encryptor.finalize()).decode()

    with pytest.raises(PaddingError):
        receiver.decrypt(encrypted)


def test_a_stale_timestamp_is_refused_even_when_signed(receiver, sender):
    request = sender.event("<xml/>", timestamp=NOW - 301, nonce="1")

    with pytest.raises(StaleTimestampError):
        receiver.decrypt_message(**request.params, body=request.body, now=NOW)


def test_a_timestamp_far_in_the_future_is_refused(receiver, sender):
    request = sender.event("<xml/>", timestamp=NOW + 301, nonce="1")

    with pytest.raises(StaleTimestampError):
        receiver.decrypt_message(**request.params, body=request.body, now=NOW)


def test_a_timestamp_within_five_minutes_is_accepted(receiver, sender):
    request = sender.event("<xml/>", timestamp=NOW - 300, nonce="1")

    assert receiver.decrypt_message(**request.params, body=request.body, now=NOW) == "<xml/>"


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b"<xml><ToUserName>x</ToUserName></xml>",
        b'<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>',
        b"<xml><Encrypt>" + b"A" * 70_000 + b"</Encrypt></xml>",
    ],
)
def test_malformed_bodies_are_refused_before_any_check(receiver, body):
    with pytest.raises(MalformedMessageError):
        receiver.decrypt_message(msg_signature="x", timestamp=str(NOW), nonce="1", body=body, now=NOW)


def test_a_ciphertext_that_is_not_base64_is_refused(receiver):
    with pytest.raises(MalformedMessageError):
        receiver.decrypt("not base64!")


def test_cdata_text_with_markup_still_parses():
    root = parse_xml("<xml><Content><![CDATA[<b>hi</b> <!-- not a comment -->]]></Content></xml>")

    assert root.find("Content").text == "<b>hi</b> <!-- not a comment -->"


@pytest.mark.parametrize(
    ("token", "key", "corp"),
    [("", KEY, "ww1"), ("t", KEY, ""), ("t", KEY[:42], "ww1"), ("t", KEY[:42] + "=", "ww1"), ("t", "", "ww1")],
)
def test_an_incomplete_configuration_is_refused(token, key, corp):
    with pytest.raises(ConfigurationError):
        CallbackCrypto(token=token, encoding_aes_key=key, receive_id=corp)
