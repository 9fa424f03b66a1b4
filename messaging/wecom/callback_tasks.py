"""After a callback: the welcome send, and what the callback does not say (a contact's name, unionid, gender and
each rep's add_way and remark; a group's name, owner and members), fetched from WeCom's API and applied
idempotently. The tasks are thin; `apply_contact` and `apply_group_chat` are the services they call.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from celery import shared_task
from django.db import connection, transaction
from django.utils import timezone

from customers import domain_events
from customers.models import CommunityGroup, DomainEventKind, Gender, MessageChannel
from messaging.backends import channel_config
from messaging.models import WeComCallbackReceipt
from messaging.wecom.callbacks import (
    JOIN_SCENES,
    ensure_customers,
    ensure_staff,
    event_row,
    join_group,
    leave_group,
    record_events,
)
from messaging.wecom.crypto import MAX_AGE_SECONDS

logger = logging.getLogger("messaging.wecom.callback_tasks")

GENDERS = {1: Gender.MALE, 2: Gender.FEMALE}
EXTERNAL_MEMBER = 2  # member_list[].type: 1 staff, 2 external contact
FETCH_RETRIES = 5


# ------------------------------------------------------------------------------------------------------ tasks


@shared_task(name="messaging.wecom_callbacks.send_welcome", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)  # fmt: skip
def send_welcome(touchpoint_id: int) -> str:
    """Dispatch one welcome touchpoint at once (queue `messaging.welcome`); a no-op once it was handled."""
    from messaging.wecom.welcome import dispatch_welcome

    return dispatch_welcome(touchpoint_id)


@shared_task(name="messaging.wecom_callbacks.fetch_contact", bind=True, acks_late=True, ignore_result=True,
             max_retries=FETCH_RETRIES)  # fmt: skip
def fetch_contact(self, external_userid: str) -> None:
    """Fetch a contact's profile (externalcontact/get) and apply it; temporary WeCom errors retry with backoff."""
    response = _call_wecom(self, "get_external_contact", external_userid)
    if response is not None:
        apply_contact(response)


@shared_task(name="messaging.wecom_callbacks.sync_group_chat", bind=True, acks_late=True, ignore_result=True,
             max_retries=FETCH_RETRIES)  # fmt: skip
def sync_group_chat(self, chat_id: str) -> None:
    """Fetch a group (externalcontact/groupchat/get) and bring its name, owner and members up to date."""
    response = _call_wecom(self, "get_group_chat", chat_id)
    if response is not None:
        apply_group_chat(response)


@shared_task(name="messaging.wecom_callbacks.prune_receipts", ignore_result=True)
def prune_receipts() -> int:
    """Forget callback receipts too old to be replayed (a stale timestamp is refused anyway)."""
    cutoff = int(timezone.now().timestamp()) - 2 * MAX_AGE_SECONDS
    deleted, _ = WeComCallbackReceipt.objects.filter(timestamp__lt=cutoff).delete()
    return deleted


def enqueue_follow_ups(*, contacts: Sequence[str], chats: Sequence[str]) -> None:
    """After commit (and after the welcome): one fetch per contact, one sync per group. A broker that is down
    loses only these enrichments; the next callback about the contact or group asks again."""
    from scrm.celery import send_quietly

    for external_userid in dict.fromkeys(contacts):
        send_quietly(fetch_contact, external_userid)
    for chat_id in dict.fromkeys(chats):
        send_quietly(sync_group_chat, chat_id)


def _call_wecom(task: Any, method: str, argument: str) -> dict[str, Any] | None:
    from messaging.wecom.client import WeComClient, WeComError, WeComRateLimited

    config = channel_config(MessageChannel.WECOM)
    if not config.get("corp_id") or not config.get("secret"):
        logger.info("wecom.fetch_skipped", extra={"reason": "not configured", "method": method})
        return None
    client = WeComClient.from_config(config)
    try:
        return getattr(client, method)(argument)
    except WeComError as error:
        if not error.is_temporary:
            logger.warning("wecom.fetch_refused", extra={"method": method, "argument": argument, "code": error.code})
            return None
        if isinstance(error, WeComRateLimited):
            countdown = max((error.retry_at - timezone.now()).total_seconds(), 1.0)
        else:
            countdown = min(2 ** (task.request.retries + 2), 300)
        raise task.retry(exc=error, countdown=countdown) from error
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------- services


def apply_contact(response: Mapping[str, Any]) -> int | None:
    """Apply externalcontact/get's answer: the customer (created if unknown), their name and gender where ours
    are empty, the unionid identity, and one relationship per following rep (add_way, remark, state, add time).
    Never revives a relationship our callbacks ended. Idempotent; returns the customer id."""
    contact = response.get("external_contact") or {}
    external = str(contact.get("external_userid") or "")
    if not external:
        return None
    follows = [f for f in response.get("follow_user") or [] if f.get("userid")]
    added = {f["userid"]: _epoch(f.get("createtime")) for f in follows}
    first = min(added, key=lambda u: added[u]) if added else None
    with transaction.atomic():
        staff = ensure_staff(added)
        customers, created = ensure_customers(
            [external], at=min(added.values(), default=timezone.now()), owner_id=staff.get(first) if first else None
        )
        customer_id = customers[external]
        changed = _fill_profile(customer_id, contact)
        changed |= _add_unionid(customer_id, str(contact.get("unionid") or ""))
        rows = [
            {
                "staff_id": staff[f["userid"]],
                "added_at": added[f["userid"]].isoformat(),
                "add_way": int(f.get("add_way") or 0),
                "state": str(f.get("state") or "")[:30],
                "remark": str(f.get("remark") or "")[:100],
            }
            for f in follows
        ]
        changed |= _upsert_follows(customer_id, rows)
        payload = [{"source": "wecom", "change": "profile"}]
        if created:
            domain_events.record(DomainEventKind.CUSTOMER_CREATED, [customer_id], payload)
        elif changed:
            domain_events.record(DomainEventKind.CUSTOMER_UPDATED, [customer_id], payload)
    return customer_id


def _fill_profile(customer_id: int, contact: Mapping[str, Any]) -> bool:
    name = str(contact.get("name") or "")[:100]
    gender = GENDERS.get(int(contact.get("gender") or 0), Gender.UNKNOWN)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE customers_customer SET
                name = CASE WHEN name = '' THEN %(name)s ELSE name END,
                gender = CASE WHEN gender = 'unknown' THEN %(gender)s ELSE gender END, updated_at = now()
            WHERE id = %(id)s AND ((name = '' AND %(name)s <> '') OR (gender = 'unknown' AND %(gender)s <> 'unknown'))
            RETURNING id
            """,
            {"id": customer_id, "name": name, "gender": gender},
        )
        return cursor.fetchone() is not None


def _add_unionid(customer_id: int, unionid: str) -> bool:
    if not unionid:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_identity (kind, namespace, value, customer_id, created_at)
            VALUES ('unionid', '', %s, %s, now()) ON CONFLICT (kind, namespace, value) DO NOTHING RETURNING id
            """,
            [unionid[:128], customer_id],
        )
        if cursor.fetchone() is not None:
            return True
        cursor.execute("SELECT customer_id FROM customers_identity WHERE kind = 'unionid' AND value = %s", [unionid])
        owner = cursor.fetchone()
    if owner is not None and owner[0] != customer_id:
        # The same WeChat user under two records: a merge for an operator to confirm, never done silently.
        logger.warning("wecom.unionid_conflict", extra={"customer": customer_id, "other": owner[0]})
    return False


def _upsert_follows(customer_id: int, rows: list[dict[str, Any]]) -> bool:
    """Relationships as WeCom lists them: missing ones inserted active, known ones given WeCom's add time, way,
    remark and (when ours has none) state. Their status is the callbacks' to change."""
    if not rows:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_relationship AS r (staff_id, customer_id, added_at, add_way, state, remark, status,
                status_changed_at)
            SELECT f.staff_id, %s, f.added_at, f.add_way, f.state, f.remark, 'active', f.added_at
            FROM json_to_recordset(%s::json) AS f(staff_id bigint, added_at timestamptz, add_way int, state text,
                remark text)
            ON CONFLICT (staff_id, customer_id) DO UPDATE SET add_way = EXCLUDED.add_way, remark = EXCLUDED.remark,
                state = CASE WHEN r.state = '' THEN EXCLUDED.state ELSE r.state END,
                added_at = CASE WHEN r.status = 'active' THEN EXCLUDED.added_at ELSE r.added_at END
            WHERE (r.add_way, r.remark) IS DISTINCT FROM (EXCLUDED.add_way, EXCLUDED.remark)
               OR (r.state = '' AND EXCLUDED.state <> '')
               OR (r.status = 'active' AND r.added_at IS DISTINCT FROM EXCLUDED.added_at)
            RETURNING r.id
            """,
            [customer_id, orjson.dumps(rows).decode()],
        )
        return bool(cursor.fetchall())


def apply_group_chat(response: Mapping[str, Any]) -> int | None:
    """Apply externalcontact/groupchat/get's answer: the group's name, owner and creation time, memberships for
    its external members (customers created when unknown), and the end of memberships of those no longer in it.
    Joins and leaves it finds are recorded as group_join/group_leave events. Idempotent; returns the group id."""
    chat = response.get("group_chat") or {}
    chat_id = str(chat.get("chat_id") or "")
    if not chat_id:
        return None
    now = timezone.now()
    owner = str(chat.get("owner") or "")
    members = [m for m in chat.get("member_list") or [] if m.get("type") == EXTERNAL_MEMBER and m.get("userid")]
    with transaction.atomic():
        owner_id = ensure_staff([owner])[owner] if owner else None
        group, _created = CommunityGroup.objects.get_or_create(
            chat_id=chat_id, defaults={"name": chat_id, "created_at": _epoch(chat.get("create_time"), now)}
        )
        name = str(chat.get("name") or "")[:100] or group.name
        CommunityGroup.objects.filter(pk=group.pk).exclude(name=name, owner_id=owner_id).update(
            name=name, owner_id=owner_id
        )
        customers, created = ensure_customers([m["userid"] for m in members], at=now)
        joins = [
            (customers[m["userid"]], _epoch(m.get("join_time"), now), _scene(m.get("join_scene"))) for m in members
        ]
        joined = join_group(group.pk, joins)
        current = {customer_id for customer_id, _at, _scene_name in joins}
        left = leave_group(group.pk, None, at=now, keep=current)
        at_of = {customer_id: at for customer_id, at, _scene_name in joins}
        events = [event_row(c, "group_join", at_of[c], {"chat_id": chat_id}, (chat_id, str(c))) for c in sorted(joined)]
        events += [event_row(c, "group_leave", now, {"chat_id": chat_id}, (chat_id, str(c))) for c in sorted(left)]
        payload = [{"source": "wecom", "change": "group_sync", "chat_id": chat_id}]
        domain_events.record(DomainEventKind.CUSTOMER_CREATED, sorted(created), payload * len(created))
        updated = sorted((joined | left) - created)
        domain_events.record(DomainEventKind.CUSTOMER_UPDATED, updated, payload * len(updated))
        record_events(events)
    return group.pk


def _scene(code: object) -> str:
    return JOIN_SCENES.get(str(code), "")


def _epoch(value: object, default: datetime.datetime | None = None) -> datetime.datetime:
    """WeCom's epoch seconds as an aware datetime; 0 or nothing means `default` (now)."""
    try:
        seconds = int(str(value))
    except (TypeError, ValueError):
        seconds = 0
    if seconds <= 0:
        return default or timezone.now()
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
