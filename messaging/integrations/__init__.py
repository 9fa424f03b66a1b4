"""Event subscriptions for integrations: signed webhooks of domain events to the URLs integrators register.

Queueing (queueing.py): the domain-event consumer registered by `ready()` turns each batch of events into Delivery
rows, one per (active subscription wanting the kind, event), with one INSERT … SELECT in the consuming
transaction. The event key is f"de:{event.id}" and unique per subscription, so a batch handled twice (a crash
replays it) adds nothing. The sender is kicked after commit.

Sending (sending.py): `send_due()` claims due pending rows with FOR UPDATE SKIP LOCKED and a lease (a token and
`next_attempt_at` pushed to the lease's end, committed before any request), so two workers never hold the same
row and a dead worker's rows are claimed again when the lease ends. Each row is POSTed with X-SCRM-Event,
X-SCRM-Delivery (the delivery id), X-SCRM-Timestamp and X-SCRM-Signature (hex HMAC-SHA256 of f"{timestamp}.{body}"
with the subscription's secret); 2xx is delivered, anything else is retried with exponential backoff and jitter
(10 s, 20 s, 40 s …) and failed after 8 attempts. A worker never starts a request its lease might not cover, and
records answers only for rows it still holds. Delivery is at least once (a worker that dies between the request
and the record sends again): receivers de-duplicate on the payload's `id`.

Replays are new rows (event_key f"{original}~r{n}", the same payload and `id`), so every attempt keeps its record.
A test event (`subscription.test`) is sent at once, once, even to a switched-off subscription.

The body is a stable JSON document (keys sorted): {"id", "kind", "occurred_at" (UTC, microseconds, "Z"),
"customer" ({id, name, phone, email, city, owner_id, merged_into_id} as of queueing; null for group events),
"data" (the domain event's payload)}.
"""

from messaging.integrations.queueing import (
    iso_utc,
    kick_after_commit,
    kick_sender,
    queue_deliveries,
    ready,
    replay_delivery,
    send_test_event,
)
from messaging.integrations.sending import SendReport, claim, max_attempts, retry_delay, send_due, send_pending, sign
from messaging.integrations.subscriptions import (
    EVENT_KINDS,
    REPLAY_MARK,
    TEST_KIND,
    DeliveryError,
    create_subscription,
    delete_subscription,
    rotate_secret,
    update_subscription,
    validate_kinds,
    validate_secret,
    validate_url,
    wanted_kinds,
)

__all__ = [
    "EVENT_KINDS", "REPLAY_MARK", "TEST_KIND", "DeliveryError", "SendReport", "claim", "create_subscription",
    "delete_subscription", "iso_utc", "kick_after_commit", "kick_sender", "max_attempts", "queue_deliveries",
    "ready", "replay_delivery", "retry_delay", "rotate_secret", "send_due", "send_pending", "send_test_event",
    "sign", "update_subscription", "validate_kinds", "validate_secret", "validate_url", "wanted_kinds",
]  # fmt: skip
