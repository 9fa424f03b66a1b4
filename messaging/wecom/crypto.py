"""WeCom's callback encryption (WXBizMsgCrypt), the receiving side: verify and decrypt what WeCom sends us.

As WeCom documents it: the EncodingAESKey (43 characters) is base64 of the 32-byte AES key without its final
"="; messages are AES-256-CBC with IV = the key's first 16 bytes, padded PKCS#7 to 32-byte blocks; the plaintext
is 16 random bytes + the message length (4 bytes, big-endian) + the message + the receive id (our corp id);
`msg_signature` is the SHA1 hex of the sorted concatenation of token, timestamp, nonce and the ciphertext.

Every refusal raises a subclass of `CallbackError` whose `code` says which check failed, so the endpoint can log
it and the setup check can tell an operator exactly what is misconfigured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_SIZE = 32  # WeCom pads to 32 bytes, not AES's 16
MAX_AGE_SECONDS = 300  # older (or further in the future) callbacks are refused as replays
MAX_BODY_BYTES = 64 * 1024  # event callbacks are a few hundred bytes; anything far larger is not WeCom
_KEY_PATTERN = re.compile(r"[A-Za-z0-9+/]{43}")
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class CallbackError(Exception):
    """A callback we refuse; `code` is stable, for logs and the setup check."""

    code = "invalid"


class ConfigurationError(CallbackError):
    code = "bad_configuration"


class MalformedMessageError(CallbackError):
    code = "malformed"


class SignatureError(CallbackError):
    code = "bad_signature"


class StaleTimestampError(CallbackError):
    code = "stale_timestamp"


class PaddingError(CallbackError):
    code = "bad_padding"


class ReceiverError(CallbackError):
    code = "bad_receive_id"


@dataclass(frozen=True)
class EncryptedMessage:
    """The outer XML WeCom POSTs: `<xml><ToUserName/><Encrypt/><AgentID/></xml>`."""

    encrypted: str
    to_user: str = ""
    agent_id: str = ""


def parse_xml(body: bytes | str) -> ET.Element:
    """Parse a small XML document from outside; a DTD (the door to entity expansion and external entities) or an
    oversized body is refused before the parser sees it."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise MalformedMessageError("body too large")
    if _DECLARATION.search(raw):
        raise MalformedMessageError("DTDs and entity declarations are not accepted")
    try:
        return ET.fromstring(raw)  # noqa: S314 - no DTD can reach here, so no entity can be declared
    except ET.ParseError as exc:
        raise MalformedMessageError(f"not XML: {exc}") from exc


def xml_fields(root: ET.Element) -> dict[str, Any]:
    """The element's children as {tag: text}; a child with children of its own (MemChangeList) becomes the list
    of their texts."""
    fields: dict[str, Any] = {}
    for child in root:
        if len(child):
            fields[child.tag] = [(item.text or "").strip() for item in child]
        else:
            fields[child.tag] = (child.text or "").strip()
    return fields


def parse_envelope(body: bytes | str) -> EncryptedMessage:
    fields = xml_fields(parse_xml(body))
    encrypted = fields.get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise MalformedMessageError("no Encrypt element")
    return EncryptedMessage(
        encrypted=encrypted, to_user=str(fields.get("ToUserName", "")), agent_id=str(fields.get("AgentID", ""))
    )


class CallbackCrypto:
    """Verifies and decrypts callbacks for one (token, EncodingAESKey, receive id) configuration."""

    def __init__(self, *, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if not token or not receive_id:
            raise ConfigurationError("the callback token and the corp id are required")
        if not _KEY_PATTERN.fullmatch(encoding_aes_key or ""):
            raise ConfigurationError("the EncodingAESKey must be 43 characters of letters, digits, + and /")
        self.token = token
        self.receive_id = receive_id
        self.key = base64.b64decode(encoding_aes_key + "=")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CallbackCrypto:
        """From messaging.backends.channel_config("wecom"): `token`, `encoding_aes_key`, `corp_id`."""
        return cls(
            token=str(config.get("token") or ""),
            encoding_aes_key=str(config.get("encoding_aes_key") or ""),
            receive_id=str(config.get("corp_id") or ""),
        )

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, encrypted])).encode()).hexdigest()  # noqa: S324 - WeCom's scheme

    def verify_signature(
        self,
        *,
        msg_signature: str,
        timestamp: str,
        nonce: str,
        encrypted: str,
        now: float | None = None,
        max_age: int | None = MAX_AGE_SECONDS,
    ) -> None:
        """Refuse a wrong signature, then (the timestamp being signed) one outside `max_age` of now."""
        expected = self.signature(timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, (msg_signature or "").lower()):
            raise SignatureError("msg_signature does not match")
        if max_age is not None:
            try:
                sent_at = int(timestamp)
            except ValueError as exc:
                raise MalformedMessageError("timestamp is not a number") from exc
            if abs((time.time() if now is None else now) - sent_at) > max_age:
                raise StaleTimestampError(f"timestamp {sent_at} is more than {max_age} s from now")

    def decrypt(self, encrypted: str) -> str:
        """The message inside `encrypted`; refuses bad padding, a garbled length and another receiver."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedMessageError("ciphertext is not base64") from exc
        if not data or len(data) % 16:
            raise MalformedMessageError("ciphertext is not whole AES blocks")
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        pad = padded[-1]
        # PKCS#7 to 32-byte blocks: 1..32 copies of the pad length.
        if not 1 <= pad <= BLOCK_SIZE or padded[-pad:] != bytes([pad]) * pad:
            raise PaddingError("bad PKCS#7 padding (wrong EncodingAESKey?)")
        plain = padded[:-pad]
        if len(plain) < 20:
            raise MalformedMessageError("plaintext shorter than its header")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise MalformedMessageError("message length exceeds the plaintext")
        message, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise ReceiverError("the message is for another corp id")
        try:
            return message.decode()
        except UnicodeDecodeError as exc:
            raise MalformedMessageError("message is not UTF-8") from exc

    def verify_url(
        self,
        *,
        msg_signature: str,
        timestamp: str,
        nonce: str,
        echostr: str,
        now: float | None = None,
        max_age: int | None = MAX_AGE_SECONDS,
    ) -> str:
        """WeCom's URL verification (GET): the decrypted `echostr`, to be answered as plain text."""
        self.verify_signature(
            msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, encrypted=echostr, now=now, max_age=max_age
        )
        return self.decrypt(echostr)

    def decrypt_message(
        self,
        *,
        msg_signature: str,
        timestamp: str,
        nonce: str,
        body: bytes | str,
        now: float | None = None,
        max_age: int | None = MAX_AGE_SECONDS,
    ) -> str:
        """A POSTed callback: verifies the signature over the body's `Encrypt` and returns the inner XML."""
        envelope = parse_envelope(body)
        self.verify_signature(
            msg_signature=msg_signature,
            timestamp=timestamp,
            nonce=nonce,
            encrypted=envelope.encrypted,
            now=now,
            max_age=max_age,
        )
        return self.decrypt(envelope.encrypted)
