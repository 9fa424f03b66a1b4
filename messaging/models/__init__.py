from messaging.models.integrations import (
    Delivery,
    DeliveryStatus,
    Subscription,
    WeComCallbackReceipt,
    WeComReminder,
)
from messaging.models.policy import CapPeriod, ContactPolicy, FrequencyCap, RateLimit
from messaging.models.templates import ChannelConfig, MessageTemplate, TemplateFormat
from messaging.models.touchpoints import (
    CLAIMABLE_STATUSES,
    FINAL_STATUSES,
    HANDED_OVER_STATUSES,
    CapAction,
    ConsoleMessage,
    ContactCounter,
    Touchpoint,
    TouchpointKind,
    TouchpointSource,
    TouchpointStatus,
)

__all__ = [
    "CLAIMABLE_STATUSES",
    "FINAL_STATUSES",
    "HANDED_OVER_STATUSES",
    "CapAction",
    "CapPeriod",
    "ChannelConfig",
    "ConsoleMessage",
    "ContactCounter",
    "ContactPolicy",
    "Delivery",
    "DeliveryStatus",
    "FrequencyCap",
    "MessageTemplate",
    "RateLimit",
    "Subscription",
    "TemplateFormat",
    "Touchpoint",
    "TouchpointKind",
    "TouchpointSource",
    "TouchpointStatus",
    "WeComCallbackReceipt",
    "WeComReminder",
]
