"""The WeCom sandbox: an operator plays the platform against the local fake WeCom (messaging.wecom.fake, run by
`make run`) and this server, to see the whole flow without a corp account.

Each action does what WeCom would: it changes the fake's state through its admin endpoints (/sandbox/…) and
POSTs the encrypted, signed callback WeCom would send to our own /wecom/callback over real HTTP (to
settings.WECOM_SANDBOX_SITE_URL), so the callback goes through exactly the code a real one does: signature,
decryption, replay check, customers, the welcome fast path on its own worker. Sending goes the normal way too:
the WeCom backend calls the fake's API, mass sends wait for the "staff member" to confirm them here, and the
poller (or "poll now") moves them forward.

Only when settings.WECOM_SANDBOX is on (development and demos); the views answer 404 otherwise.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.translation import gettext as _

from customers.models import Customer, Identity, IdentityKind, MessageChannel, Relationship, RelationshipStatus, Staff
from messaging.backends import channel_config
from messaging.models import Touchpoint, TouchpointKind, TouchpointSource
from messaging.wecom import mass_send
from messaging.wecom.callback_sender import CallbackSender, event_xml

logger = logging.getLogger("messaging.wecom.sandbox")

DEFAULT_SITE_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 10.0
SOURCE_REF = "wecom:sandbox"
UNKNOWN_ACTION = 404  # the fake's errcode for an admin action it does not implement


class SandboxError(Exception):
    """The fake or our own callback endpoint could not be reached or refused the action."""


@dataclass(frozen=True)
class SandboxOutcome:
    """What one action did, for the page: a sentence and the details (callback answer, ids)."""

    action: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


def is_enabled() -> bool:
    return bool(getattr(settings, "WECOM_SANDBOX", False))


def site_url() -> str:
    """Where this server listens, as the sandbox's callbacks reach it."""
    return str(getattr(settings, "WECOM_SANDBOX_SITE_URL", "") or DEFAULT_SITE_URL).rstrip("/")


def fake_url() -> str:
    """The fake WeCom: the channel's api_base, which sandbox mode points at it."""
    return str(channel_config(MessageChannel.WECOM).get("api_base") or "").rstrip("/")


def new_external_userid() -> str:
    """An id shaped like WeCom's external_userid ("wm" + 30 characters)."""
    return "wm" + secrets.token_urlsafe(23)[:30].replace("-", "x").replace("_", "y")


# ----------------------------------------------------------------------------------------------- the platform


def fake_action(action: str, body: dict[str, Any] | None = None, *, required: bool = True) -> dict[str, Any]:
    """POST /sandbox/<action> on the fake; its answer. An action this fake does not implement is {} when not
    `required` (the platform event is still sent to our endpoint; only the fake's own bookkeeping is missing)."""
    try:
        response = httpx.post(f"{fake_url()}/sandbox/{action}", json=body or {}, timeout=TIMEOUT_SECONDS)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SandboxError(
            _("The fake WeCom at %(url)s did not answer (%(error)s). Is it running? `make run` starts it.")
            % {"url": fake_url() or "?", "error": str(error) or type(error).__name__}
        ) from error
    errcode = int(answer.get("errcode", 0))
    if errcode == UNKNOWN_ACTION and not required:
        return {}
    if errcode:
        raise SandboxError(
            _("The fake WeCom refused %(action)s: errcode %(errcode)d %(errmsg)s")
            % {"action": action, "errcode": errcode, "errmsg": answer.get("errmsg", "")}
        )
    return dict(answer)


def fake_state() -> dict[str, Any]:
    """The fake's recent activity (mass sends, welcomes received, deliveries, and the API calls when it lists
    them); {"error": …} when it cannot be reached, so the page still renders."""
    try:
        return fake_action("state")
    except SandboxError as error:
        return {"error": str(error)}


def post_callback(inner_xml: str) -> httpx.Response:
    """Encrypt, sign and POST one event to our own /wecom/callback, as WeCom's servers do."""
    config = channel_config(MessageChannel.WECOM)
    try:
        sender = CallbackSender(
            token=str(config.get("token") or ""),
            encoding_aes_key=str(config.get("encoding_aes_key") or ""),
            corp_id=str(config.get("corp_id") or ""),
        )
    except ValueError as error:  # binascii.Error included: a malformed EncodingAESKey
        raise SandboxError(_("The callback EncodingAESKey is not valid: see the WeCom setup check.")) from error
    request = sender.event(inner_xml)
    url = request.url(f"{site_url()}{reverse('wecom-callback')}")
    try:
        response = httpx.post(url, content=request.body, headers={"Content-Type": "text/xml"}, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        raise SandboxError(
            _("Could not post the callback to %(url)s (%(error)s): set WECOM_SANDBOX_SITE_URL to this server.")
            % {"url": site_url(), "error": str(error) or type(error).__name__}
        ) from error
    logger.info("wecom.sandbox_callback", extra={"status": response.status_code, "answer": response.text[:40]})
    if response.status_code != 200:
        raise SandboxError(
            _("Our callback endpoint refused the event: HTTP %(status)d %(answer)s")
            % {"status": response.status_code, "answer": response.text[:80]}
        )
    return response


def _corp_id() -> str:
    return str(channel_config(MessageChannel.WECOM).get("corp_id") or "")


# -------------------------------------------------------------------------------------------------- actions


def simulate_contact_added(
    *, userid: str, external_userid: str = "", name: str = "", state: str = ""
) -> SandboxOutcome:
    """A new contact adds staff member `userid` through a live code with `state`: the fake records the contact
    and issues a welcome code, and our endpoint gets the add_external_contact callback carrying it."""
    external_userid = external_userid or new_external_userid()
    answer = fake_action("contact", {"userid": userid, "external_userid": external_userid, "name": name})
    welcome_code = str(answer.get("welcome_code", ""))
    fields: dict[str, Any] = {"UserID": userid, "ExternalUserID": external_userid}
    if state:
        fields["State"] = state
    fields["WelcomeCode"] = welcome_code
    inner = event_xml(corp_id=_corp_id(), event="change_external_contact", change_type="add_external_contact", **fields)
    post_callback(inner)
    message = _("%(external)s added %(userid)s; the callback was accepted.") % {
        "external": external_userid,
        "userid": userid,
    }
    return SandboxOutcome(
        "contact_added", message, {"external_userid": external_userid, "welcome_code": welcome_code, "state": state}
    )


def simulate_customer_deleted_staff(*, userid: str, external_userid: str) -> SandboxOutcome:
    """The customer deletes staff member `userid` (del_follow_user)."""
    fake_action("remove_contact", {"userid": userid, "external_userid": external_userid}, required=False)
    inner = event_xml(
        corp_id=_corp_id(),
        event="change_external_contact",
        change_type="del_follow_user",
        UserID=userid,
        ExternalUserID=external_userid,
    )
    post_callback(inner)
    message = _("%(external)s deleted %(userid)s; the callback was accepted.") % {
        "external": external_userid,
        "userid": userid,
    }
    return SandboxOutcome("customer_deleted_staff", message, {"external_userid": external_userid})


def simulate_group_join(*, chat_id: str, owner: str, external_userid: str) -> SandboxOutcome:
    """The customer joins the group `chat_id` (owned by staff member `owner`) through its QR code."""
    fake_action("join_group", {"chat_id": chat_id, "owner": owner, "external_userid": external_userid}, required=False)
    inner = event_xml(
        corp_id=_corp_id(),
        event="change_external_chat",
        change_type="update",
        ChatId=chat_id,
        UpdateDetail="add_member",
        JoinScene=3,
        MemChangeCnt=1,
        MemChangeList=[external_userid],
    )
    post_callback(inner)
    message = _("%(external)s joined the group %(chat_id)s; the callback was accepted.") % {
        "external": external_userid,
        "chat_id": chat_id,
    }
    return SandboxOutcome("group_joined", message, {"chat_id": chat_id, "external_userid": external_userid})


def confirm_mass_send(*, msgid: str, userid: str = "") -> SandboxOutcome:
    """The staff member (every sender, without `userid`) confirms the mass send in their WeCom: the fake delivers
    it now; our touchpoints move when the poller next asks."""
    fake_action("confirm", {"msgid": msgid, **({"userid": userid} if userid else {})})
    return SandboxOutcome(
        "confirmed", _("Mass send %(msgid)s confirmed; poll to see it delivered.") % {"msgid": msgid}, {"msgid": msgid}
    )


def poll_now() -> SandboxOutcome:
    """Run the mass-send poller at once, for every pending mass send (the recent-poll marks are forgotten)."""
    msgids = set(Touchpoint.objects.filter(mass_send.awaiting_q()).values_list("provider_message_id", flat=True))
    cache.delete_many([f"{mass_send.POLL_MARK_PREFIX}:{msgid}" for msgid in msgids])
    report = mass_send.poll_mass_sends(poll_seconds=1)
    message = _("Polled %(count)d mass sends: %(moved)d status changes, %(errors)d errors.") % {
        "count": report.mass_sends,
        "moved": report.moved,
        "errors": report.errors,
    }
    return SandboxOutcome("polled", message, {"mass_sends": report.mass_sends, "moved": report.moved})


def queue_mass_send(
    *, customer_ids: Sequence[int], text: str, is_transactional: bool = False, created_by: Any = None
) -> list[Touchpoint]:
    """A WeCom message to each customer from the staff member who owns them, the way a journey or campaign sends:
    through schedule_touchpoint. The WeCom backend turns them into a mass send awaiting confirmation."""
    batch = uuid.uuid4().hex[:12]
    customers = Customer.objects.filter(pk__in=customer_ids, owner__wecom_userid__isnull=False).select_related("owner")
    from messaging.services.scheduling import schedule_touchpoint

    with transaction.atomic():
        return [
            schedule_touchpoint(
                channel=MessageChannel.WECOM,
                customer=customer,
                sender_staff=customer.owner,
                content={"format": "text", "text": text},
                kind=TouchpointKind.TRANSACTIONAL if is_transactional else TouchpointKind.MARKETING,
                source=TouchpointSource.MANUAL,
                source_ref=SOURCE_REF,
                idempotency_key=f"wecom-sandbox:{batch}:{customer.pk}",
                created_by=created_by,
            )
            for customer in customers.order_by("pk")
        ]


# --------------------------------------------------------------------------------------------------- reading


def staff_userids() -> list[str]:
    """Staff members the operator can play: those with a WeCom userid."""
    return list(
        Staff.objects.filter(wecom_userid__isnull=False, is_active=True)
        .exclude(wecom_userid="")
        .order_by("wecom_userid")
        .values_list("wecom_userid", flat=True)
    )


def recent_contacts(*, limit: int = 20) -> list[dict[str, Any]]:
    """The latest recorded (staff, customer) pairs with the customer's external_userid: whom the next action can
    be about. Newest record first, read backwards along the primary key until enough pairs have an
    external_userid (ordering by add time sorted every pair: 2.3 s at a million customers)."""
    external = Identity.objects.filter(
        customer_id=OuterRef("customer_id"), kind=IdentityKind.WECOM_EXTERNAL_USERID, namespace=""
    ).values("value")[:1]
    rows = list(
        Relationship.objects.filter(staff__wecom_userid__isnull=False)
        .annotate(external_userid=Subquery(external))
        .exclude(external_userid=None)
        .order_by("-pk")
        .values("customer_id", "customer__name", "external_userid", "staff__wecom_userid", "status", "state")[:limit]
    )
    for row in rows:
        row["status_label"] = RelationshipStatus(row["status"]).label
    return rows
