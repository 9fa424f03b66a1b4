"""The sending side of WeCom's callback scheme, as WeCom's servers do it: encrypt, sign and wrap a callback.

Written separately from crypto.py (and importing nothing from it) from WeCom's documentation, so that tests
prove our receiver against the documented scheme rather than against itself; the WeCom sandbox uses it to post
callbacks to our endpoint like the platform would.

    AESKey     = Base64_Decode(EncodingAESKey + "=")            32 bytes; IV = AESKey[0:16]
    plaintext  = random(16 B) + msg_len(4 B, network order) + msg + receiveid
    msg_encrypt = Base64_Encode(AES-256-CBC(PKCS#7 pad to 32 bytes(plaintext)))
    msg_signature = SHA1(sort(token, timestamp, nonce, msg_encrypt) joined)
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def new_encoding_aes_key() -> str:
    """A fresh EncodingAESKey, as the WeCom admin console generates one: 43 base64 characters."""
    return base64.b64encode(os.urandom(32)).decode()[:-1]


@dataclass(frozen=True)
class CallbackRequest:
    """What WeCom sends: the query string parameters and, for event callbacks, the XML body (POST)."""

    params: dict[str, str]
    body: bytes = b""

    @property
    def method(self) -> str:
        return "POST" if self.body else "GET"

    def url(self, base: str) -> str:
        return f"{base}{'&' if '?' in base else '?'}{urlencode(self.params)}"


class CallbackSender:
    """Builds callbacks for one corp's callback settings (token, EncodingAESKey) and corp id."""

    def __init__(self, *, token: str, encoding_aes_key: str, corp_id: str) -> None:
        self.token = token
        self.corp_id = corp_id
        self.aes_key = base64.b64decode(encoding_aes_key + "=")
        if len(self.aes_key) != 32:
            raise ValueError("an EncodingAESKey decodes to 32 bytes")

    def encrypt(self, message: str, *, random_prefix: bytes | None = None) -> str:
        body = message.encode()
        prefix = secrets.token_bytes(16) if random_prefix is None else random_prefix
        if len(prefix) != 16:
            raise ValueError("the random prefix is 16 bytes")
        plaintext = prefix + len(body).to_bytes(4, "big") + body + self.corp_id.encode()
        padder = padding.PKCS7(256).padder()  # 256 bits: WeCom pads to 32-byte blocks
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self.aes_key), modes.CBC(self.aes_key[:16])).encryptor()
        return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        parts = sorted((self.token, timestamp, nonce, encrypted))
        return hashlib.sha1("".join(parts).encode()).hexdigest()  # noqa: S324 - the documented scheme

    def verification(
        self, echo: str, *, timestamp: int | None = None, nonce: str | None = None, random_prefix: bytes | None = None
    ) -> CallbackRequest:
        """The GET WeCom sends when an admin saves the callback URL; the receiver must answer `echo`."""
        stamp, once = _stamp(timestamp), nonce or _nonce()
        echostr = self.encrypt(echo, random_prefix=random_prefix)
        return CallbackRequest(
            {"msg_signature": self.sign(stamp, once, echostr), "timestamp": stamp, "nonce": once, "echostr": echostr}
        )

    def event(
        self,
        inner_xml: str,
        *,
        agent_id: str = "",
        timestamp: int | None = None,
        nonce: str | None = None,
        random_prefix: bytes | None = None,
    ) -> CallbackRequest:
        """A POSTed callback carrying `inner_xml` (see `event_xml`)."""
        stamp, once = _stamp(timestamp), nonce or _nonce()
        encrypted = self.encrypt(inner_xml, random_prefix=random_prefix)
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<AgentID><![CDATA[{agent_id}]]></AgentID></xml>"
        )
        return CallbackRequest(
            {"msg_signature": self.sign(stamp, once, encrypted), "timestamp": stamp, "nonce": once},
            body.encode(),
        )


def event_xml(
    *, corp_id: str, event: str, change_type: str = "", create_time: int | None = None, **fields: object
) -> str:
    """An event's inner XML as WeCom writes it: CDATA text, numbers bare, a list as `<Item>`s.

    event_xml(corp_id="ww1", event="change_external_contact", change_type="add_external_contact",
              UserID="zhangsan", ExternalUserID="wmX", State="ch1", WelcomeCode="CODE")
    """
    parts = [
        ("ToUserName", corp_id),
        ("FromUserName", "sys"),
        ("CreateTime", int(time.time()) if create_time is None else create_time),
        ("MsgType", "event"),
        ("Event", event),
    ]
    if change_type:
        parts.append(("ChangeType", change_type))
    parts.extend(fields.items())
    return "<xml>" + "".join(_element(name, value) for name, value in parts) + "</xml>"


def _element(name: str, value: object) -> str:
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = "".join(f"<Item><![CDATA[{_cdata(str(item))}]]></Item>" for item in value)
        return f"<{name}>{items}</{name}>"
    if isinstance(value, Mapping):
        return f"<{name}>{''.join(_element(k, v) for k, v in value.items())}</{name}>"
    return f"<{name}><![CDATA[{_cdata(str(value))}]]></{name}>"


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside CDATA: split it across two sections.
    return text.replace("]]>", "]]]]><![CDATA[>") if "]]>" in text else text


def _stamp(timestamp: int | None) -> str:
    return str(int(time.time()) if timestamp is None else timestamp)


def _nonce() -> str:
    return "".join(secrets.choice(string.digits) for _ in range(10))
