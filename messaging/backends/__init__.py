"""Channel backends, chosen per channel in settings.MESSAGING_BACKENDS like Django's email backends."""

from messaging.backends.base import (
    ChannelBackend,
    DeliveryResult,
    Outcome,
    OutgoingMessage,
    backend_for,
    channel_config,
)

__all__ = ["ChannelBackend", "DeliveryResult", "Outcome", "OutgoingMessage", "backend_for", "channel_config"]
