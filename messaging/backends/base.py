"""The interface every channel backend implements, and how dispatch finds a channel's backend and settings.

A backend gets plain `OutgoingMessage`s (the rendered content and the resolved address, never a model) and
returns one `DeliveryResult` per message, in order. It must pass `idempotency_key` to the provider where the
provider supports it, and must never raise for one message's failure: a temporary failure (5xx, timeout, 429)
is `TEMPORARY_ERROR` and is retried with backoff; anything else is `PERMANENT_ERROR` with the provider's code.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string


class Outcome(enum.StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # WeCom mass sends: the staff member must confirm
    TEMPORARY_ERROR = "temporary_error"
    PERMANENT_ERROR = "permanent_error"


@dataclass(frozen=True)
class OutgoingMessage:
    touchpoint_id: int
    idempotency_key: str
    channel: str
    kind: str
    content: Mapping[str, Any]  # {"format": "text", "text": …, "subject": …, "card": {…}}
    recipient: str  # phone, email, WeCom external_userid, group chat_id or the customer id (webhook)
    customer_id: int | None = None
    sender: str = ""  # the staff member's WeCom userid or the sending account
    is_group: bool = False


@dataclass
class DeliveryResult:
    outcome: Outcome
    provider_code: str = ""
    provider_message_id: str = ""
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def is_temporary(self) -> bool:
        return self.outcome == Outcome.TEMPORARY_ERROR


class ChannelBackend:
    """Base class: override `send`, or `send_many` when the provider takes batches."""

    def __init__(self, *, channel: str, config: Mapping[str, Any]) -> None:
        self.channel = channel
        self.config = config

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        raise NotImplementedError

    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        return [self.send(message) for message in messages]

    def close(self) -> None:
        """Release connections; called when settings change and at worker shutdown."""


def channel_config(channel: str) -> dict[str, Any]:
    """A channel's settings: settings.MESSAGING_CHANNELS[channel] (from the environment) over what operators
    saved in the UI (ChannelConfig, secrets decrypted)."""
    from messaging.models import ChannelConfig
    from messaging.secrets import decrypt

    config: dict[str, Any] = {}
    stored = ChannelConfig.objects.filter(channel=channel).first()
    if stored is not None:
        config.update(stored.options)
        if stored.secrets:
            config.update(decrypt(stored.secrets))
    config.update({key: value for key, value in settings.MESSAGING_CHANNELS.get(channel, {}).items() if value})
    return config


_BACKENDS: dict[str, ChannelBackend] = {}


_VERSION_KEY = "messaging:channels:version"
_VERSION_CHECK_SECONDS = 5.0
_seen_version: list[Any] = [None, 0.0]  # the config version this process's backends were built from, when checked


def _check_version() -> None:
    """Workers notice a channel's settings saved in the UI within seconds: the save bumps a version in the cache."""
    now = time.monotonic()
    if now - _seen_version[1] < _VERSION_CHECK_SECONDS:
        return
    _seen_version[1] = now
    try:
        version = cache.get(_VERSION_KEY)
    except Exception:  # the cache (Redis) is down: keep the backends we have
        return
    if version != _seen_version[0]:
        _seen_version[0] = version
        _close_all()


def backend_for(channel: str) -> ChannelBackend:
    """The backend instance of `channel` (one per process; rebuilt when settings or the channel's config change)."""
    _check_version()
    backend = _BACKENDS.get(channel)
    if backend is None:
        path = settings.MESSAGING_BACKENDS.get(channel, settings.MESSAGING_DEFAULT_BACKEND)
        backend = _BACKENDS[channel] = import_string(path)(channel=channel, config=channel_config(channel))
    return backend


def _close_all() -> None:
    while _BACKENDS:
        _channel, backend = _BACKENDS.popitem()
        backend.close()


def reset_backends() -> None:
    """Forget the backend instances here and, within seconds, in every worker, so the next send reads settings and
    stored credentials again."""
    _close_all()
    try:
        cache.set(_VERSION_KEY, time.time_ns(), timeout=None)
    except Exception:  # the cache (Redis) is down: the other processes pick the change up at their restart
        return


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("MESSAGING_", "WECOM_")):
        reset_backends()
