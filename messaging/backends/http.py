"""What the HTTP backends share: one pooled client with the 5 s timeout, and the rule that sorts a provider's
answer into sent, temporary (5xx, 429, timeouts, connection errors: retried) and permanent (other 4xx)."""

from __future__ import annotations

import httpx
from django.conf import settings

from messaging.backends.base import DeliveryResult, Outcome


def make_client() -> httpx.Client:
    return httpx.Client(timeout=settings.MESSAGING_REQUEST_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=20))


def result_of_response(response: httpx.Response, *, message_id: str = "") -> DeliveryResult:
    """Sort an HTTP answer: 2xx sent; 429 and 5xx temporary; any other status permanent, keeping its code."""
    body = _body_of(response)
    if response.is_success:
        return DeliveryResult(
            Outcome.SENT, provider_code=str(response.status_code), provider_message_id=message_id, response=body
        )
    outcome = (
        Outcome.TEMPORARY_ERROR
        if response.status_code == 429 or response.status_code >= 500
        else (Outcome.PERMANENT_ERROR)
    )
    return DeliveryResult(outcome, provider_code=str(response.status_code), response=body)


def result_of_error(error: httpx.HTTPError) -> DeliveryResult:
    """A request that got no answer (timeout, refused connection) is temporary."""
    return DeliveryResult(Outcome.TEMPORARY_ERROR, provider_code=type(error).__name__, response={"error": str(error)})


def _body_of(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {"body": response.text[:1000]}
    return body if isinstance(body, dict) else {"body": body}
