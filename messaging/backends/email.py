"""Email through Django's email framework (django.core.mail), so any Django email backend works: SMTP, console,
locmem in tests, or a provider's package.

Configuration (settings.MESSAGING_CHANNELS["email"] or the channel settings page): `from_email` (default
DEFAULT_FROM_EMAIL), optionally `backend` (a Django email backend's dotted path; default EMAIL_BACKEND) and the
SMTP options `host`, `port`, `username`, `password`, `use_tls`, `use_ssl`, `timeout` (default EMAIL_*).

Each message's Message-ID is derived from its idempotency key, so a retry carries the same Message-ID and mail
systems that deduplicate on it (and our fake SMTP server) show it once. One connection is opened per batch and
reused; after a connection error it is reopened for the next message. Temporary: an SMTP 4xx answer, a refused,
dropped or timed-out connection. Permanent: an SMTP 5xx answer (kept as the provider code, e.g. "550"), a missing
address.
"""

from __future__ import annotations

import contextlib
import hashlib
import smtplib
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.html import format_html, linebreaks

from messaging.backends.base import ChannelBackend, DeliveryResult, Outcome, OutgoingMessage

SMTP_OPTIONS = ("host", "port", "username", "password", "use_tls", "use_ssl", "timeout")


def message_id_for(idempotency_key: str, *, domain: str) -> str:
    """A stable RFC 5322 Message-ID for a touchpoint (a hash, so any key is a valid id)."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}@{domain}>"


class EmailBackend(ChannelBackend):
    def __init__(self, *, channel: str, config: Mapping[str, Any]) -> None:
        super().__init__(channel=channel, config=config)
        self.from_email = str(config.get("from_email") or settings.DEFAULT_FROM_EMAIL)
        self.domain = str(config.get("message_id_domain") or self.from_email.rpartition("@")[2].strip("> ") or "scrm")

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        return self.send_many([message])[0]

    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Results in input order over one connection; one address's refusal does not touch the others."""
        connection = self.connection()
        try:
            return [self._send_one(connection, message) for message in messages]
        finally:
            _close_quietly(connection)

    def connection(self) -> BaseEmailBackend:
        options: dict[str, Any] = {
            key: self.config[key] for key in SMTP_OPTIONS if self.config.get(key) not in (None, "")
        }
        if "port" in options:
            options["port"] = int(options["port"])
        if "timeout" in options:
            options["timeout"] = float(options["timeout"])
        elif settings.EMAIL_TIMEOUT is None:
            # Django's SMTP default waits forever; a hung server must not hold a dispatch batch.
            options["timeout"] = settings.MESSAGING_REQUEST_TIMEOUT
        for flag in ("use_tls", "use_ssl"):
            if flag in options:
                options[flag] = str(options[flag]).lower() in {"1", "true", "yes", "on"}
        return get_connection(self.config.get("backend") or None, fail_silently=False, **options)

    def build(self, message: OutgoingMessage, *, connection: BaseEmailBackend | None = None) -> EmailMultiAlternatives:
        content = message.content
        card = content.get("card") or {}
        text = str(content.get("text") or "")
        if card.get("url") and card["url"] not in text:
            text = f"{text}\n\n{card['url']}".strip()
        email = EmailMultiAlternatives(
            subject=_subject_of(content, text),
            body=text,
            from_email=self.from_email,
            to=[message.recipient],
            headers={"Message-ID": message_id_for(message.idempotency_key, domain=self.domain)},
            connection=connection,
        )
        html = _html_of(content)
        if html:
            email.attach_alternative(html, "text/html")
        return email

    def _send_one(self, connection: BaseEmailBackend, message: OutgoingMessage) -> DeliveryResult:
        if "@" not in message.recipient:
            return DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="no_email")
        email = self.build(message, connection=connection)
        message_id = email.extra_headers["Message-ID"]
        try:
            # Opened here, not by send(): a connection send() opens itself it also closes after the message.
            connection.open()
            email.send()
        except smtplib.SMTPRecipientsRefused as error:
            # {address: (code, text)}: one recipient per message, so its code is the message's. smtplib has reset
            # the session, so the connection serves the next message.
            code, text = next(iter(error.recipients.values()))
            return _result_of_code(code, text)
        except smtplib.SMTPResponseException as error:  # sender refused, data refused, auth failed, …
            _close_quietly(connection)  # the session may be unusable: reopen for the next message
            return _result_of_code(error.smtp_code, error.smtp_error)
        except (smtplib.SMTPException, OSError) as error:  # dropped, refused or timed-out connection
            _close_quietly(connection)
            return DeliveryResult(
                Outcome.TEMPORARY_ERROR, provider_code=type(error).__name__, response={"error": str(error)}
            )
        except ValueError as error:  # an address or header Django refuses to encode
            return DeliveryResult(Outcome.PERMANENT_ERROR, provider_code="invalid", response={"error": str(error)})
        return DeliveryResult(Outcome.SENT, provider_code="250", provider_message_id=message_id)


def _result_of_code(code: int, text: bytes | str) -> DeliveryResult:
    detail = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    outcome = Outcome.TEMPORARY_ERROR if 400 <= code < 500 else Outcome.PERMANENT_ERROR
    return DeliveryResult(outcome, provider_code=str(code), response={"error": detail})


def _close_quietly(connection: BaseEmailBackend) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        connection.close()


def _subject_of(content: Mapping[str, Any], text: str) -> str:
    card = content.get("card") or {}
    subject = str(content.get("subject") or card.get("title") or text.strip().split("\n", 1)[0][:78])
    return " ".join(subject.split())  # a newline in a header would be refused (header injection)


def _html_of(content: Mapping[str, Any]) -> str:
    """An HTML alternative for link and image cards; plain text messages go as text only."""
    card = content.get("card") or {}
    if content.get("format") not in {"link", "image"} or not (card.get("url") or card.get("image_url")):
        return ""
    parts = []
    if content.get("text"):
        parts.append(linebreaks(str(content["text"]), autoescape=True))
    if card.get("image_url"):
        parts.append(
            format_html(
                '<p><img src="{}" alt="{}" style="max-width:100%"></p>', card["image_url"], card.get("title", "")
            )
        )
    if card.get("url"):
        parts.append(
            format_html(
                '<p><a href="{}"><strong>{}</strong></a><br>{}</p>',
                card["url"],
                card.get("title") or card["url"],
                card.get("description", ""),
            )
        )
    return "\n".join(parts)
