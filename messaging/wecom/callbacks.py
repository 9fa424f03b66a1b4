"""WeCom's decrypted callback events turned into our data: customers, identities, staff, relationships, groups,
behaviour events and domain events.

Idempotent: WeCom re-delivers a callback it thinks we missed (with a new signature), so every write is an upsert
whose WHERE clause only lets a change through, behaviour events carry dedupe keys, and domain events are written
only for what actually changed. A repeated event changes nothing. Events are ordered by their CreateTime: an
older add never revives a relationship a later deletion ended.

The callback carries ids only; names, unionid, gender, add_way and remarks come from WeCom's API in follow-up
tasks (callback_tasks), enqueued after commit and after the welcome message.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from customers import domain_events
from customers.models import (
    Channel,
    CommunityGroup,
    Customer,
    DomainEventKind,
    Event,
    Identity,
    IdentityKind,
    Staff,
    Transfer,
    TransferKind,
)
from customers.services.identities import CREATE_LOCK_ID  # the lock ingest takes to create customers
from messaging.wecom.crypto import parse_xml, xml_fields

logger = logging.getLogger("messaging.wecom.callbacks")

CONTACT_EVENT = "change_external_contact"
CHAT_EVENT = "change_external_chat"
# WeCom's JoinScene codes, in the words our group memberships already use.
JOIN_SCENES = {"0": "invite", "1": "invite_link", "3": "qr"}
QUIT_SCENES = {"0": "left", "1": "removed"}
# external_userids start with "wm" or "wo"; group member lists mix them with staff userids.
EXTERNAL_PREFIXES = ("wm", "wo")


@dataclass
class CallbackResult:
    """What one event did: which customers it created or changed, and the follow-up work it asked for."""

    handled: str
    created_customer_ids: set[int] = field(default_factory=set)
    changed_customer_ids: set[int] = field(default_factory=set)
    welcome_touchpoint_id: int | None = None
    fetch_contacts: list[str] = field(default_factory=list)
    sync_chats: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # behaviour events, written after customer.*


def parse_event(inner_xml: str) -> dict[str, Any]:
    """The fields of a decrypted callback's XML, {tag: text} (member lists as lists)."""
    return xml_fields(parse_xml(inner_xml))


def handle_event(fields: Mapping[str, Any]) -> CallbackResult:
    """Apply one decrypted event, idempotently, inside the caller's transaction (the endpoint's, with the
    receipt). After commit: the welcome message first, then the profile fetch and group sync tasks."""
    event, change = str(fields.get("Event", "")), str(fields.get("ChangeType", ""))
    if event == CONTACT_EVENT and change in ("add_external_contact", "add_half_external_contact"):
        result = _contact_added(fields, change)
    elif event == CONTACT_EVENT and change == "edit_external_contact":
        result = _contact_edited(fields)
    elif event == CONTACT_EVENT and change in ("del_external_contact", "del_follow_user"):
        result = _contact_deleted(fields, change)
    elif event == CONTACT_EVENT and change == "transfer_fail":
        result = _transfer_failed(fields)
    elif event == CHAT_EVENT:
        result = _chat_changed(fields, change)
    else:
        logger.info("wecom.callback_ignored", extra={"event": event, "change_type": change})
        return CallbackResult(handled="ignored")
    # customer.created before the customer's first event.recorded, as ingest orders them.
    _record_customer_changes(result, fields)
    record_events(result.events)
    _enqueue_follow_ups(result)
    return result


# ----------------------------------------------------------------------------------------------------- contacts


def _contact_added(fields: Mapping[str, Any], change: str) -> CallbackResult:
    from messaging.wecom.welcome import schedule_welcome

    at = event_time(fields)
    userid, external = _text(fields, "UserID", 64), _text(fields, "ExternalUserID", 128)
    result = CallbackResult(handled=change)
    if not userid or not external:
        return result
    state = _text(fields, "State", 30)
    staff_id = ensure_staff([userid])[userid]
    channel_id = Channel.objects.filter(code=state).values_list("pk", flat=True).first() if state else None
    customers, created = ensure_customers([external], at=at, owner_id=staff_id, source_channel_id=channel_id)
    customer_id = customers[external]
    result.created_customer_ids |= created
    changed = _upsert_relationship(staff_id=staff_id, customer_id=customer_id, at=at, state=state)
    if customer_id not in created and _fill_known_customer(customer_id, staff_id=staff_id, channel_id=channel_id):
        changed = True
    # The welcome code is valid for 20 seconds: schedule it before any other work, and send it first after commit.
    if welcome_code := _text(fields, "WelcomeCode", 128):
        touchpoint = schedule_welcome(customer_id=customer_id, staff_id=staff_id, welcome_code=welcome_code)
        result.welcome_touchpoint_id = touchpoint.pk
    if changed or created:
        result.changed_customer_ids.add(customer_id)
        properties = {"staff": userid, "state": state, **({"half": True} if change.startswith("add_half") else {})}
        result.events.append(
            event_row(customer_id, "wecom_contact_added", at, properties, (userid, external), channel_id)
        )
    result.fetch_contacts.append(external)
    return result


def _contact_edited(fields: Mapping[str, Any]) -> CallbackResult:
    """The staff member edited the contact (remark, tags…): the callback says nothing of what, so fetch it."""
    result = CallbackResult(handled="edit_external_contact")
    if external := _text(fields, "ExternalUserID", 128):
        result.fetch_contacts.append(external)
    return result


def _contact_deleted(fields: Mapping[str, Any], change: str) -> CallbackResult:
    """del_external_contact: the staff member deleted the customer (or a transfer did, Source=DELETE_BY_TRANSFER);
    del_follow_user: the customer deleted the staff member. A pair we never knew is left alone."""
    at = event_time(fields)
    userid, external = _text(fields, "UserID", 64), _text(fields, "ExternalUserID", 128)
    result = CallbackResult(handled=change)
    if change == "del_follow_user":
        status, event_type = "deleted_by_customer", "wecom_deleted_by_customer"
    elif _text(fields, "Source", 32) == "DELETE_BY_TRANSFER":
        status, event_type = "transferred", ""
    else:
        status, event_type = "deleted_by_staff", "wecom_contact_deleted"
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE customers_relationship r SET status = %s, status_changed_at = %s
            FROM customers_staff s, customers_identity i
            WHERE s.wecom_userid = %s AND r.staff_id = s.id AND i.kind = 'wecom' AND i.namespace = ''
              AND i.value = %s AND r.customer_id = i.customer_id AND r.status = 'active' AND r.status_changed_at <= %s
            RETURNING r.customer_id
            """,
            [status, at, userid, external, at],
        )
        row = cursor.fetchone()
    if row is not None:
        result.changed_customer_ids.add(row[0])
        if event_type:
            result.events.append(event_row(row[0], event_type, at, {"staff": userid}, (userid, external)))
    return result


def _transfer_failed(fields: Mapping[str, Any]) -> CallbackResult:
    """WeCom could not move the customer to the takeover staff member (customer_refused, customer_limit_exceed):
    the customer stays with the previous one. Recorded on the trail, once, for operators to act on."""
    at = event_time(fields)
    userid, external = _text(fields, "UserID", 64), _text(fields, "ExternalUserID", 128)
    result = CallbackResult(handled="transfer_fail")
    customer_id = _known_customers([external]).get(external)
    if customer_id is not None:
        properties = {"staff": userid, "reason": _text(fields, "FailReason", 64)}
        row = event_row(customer_id, "wecom_transfer_failed", at, properties, (userid, external))
        if not Event.objects.filter(dedupe_key=row["dedupe_key"]).exists():
            result.events.append(row)
            result.changed_customer_ids.add(customer_id)
    return result


def _upsert_relationship(*, staff_id: int, customer_id: int, at: datetime, state: str) -> bool:
    """An active (staff, customer) pair: inserted, revived by an add later than its end, or given a state it
    lacked. Returns whether anything changed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_relationship AS r (staff_id, customer_id, added_at, add_way, state, remark, status,
                status_changed_at)
            VALUES (%s, %s, %s, 0, %s, '', 'active', %s)
            ON CONFLICT (staff_id, customer_id) DO UPDATE SET
                status = 'active',
                added_at = CASE WHEN r.status <> 'active' THEN EXCLUDED.added_at ELSE r.added_at END,
                state = CASE WHEN r.status <> 'active' OR r.state = '' THEN EXCLUDED.state ELSE r.state END,
                status_changed_at = CASE WHEN r.status <> 'active' THEN EXCLUDED.status_changed_at
                    ELSE r.status_changed_at END
            WHERE (r.status <> 'active' AND r.status_changed_at <= EXCLUDED.status_changed_at)
               OR (r.status = 'active' AND r.state = '' AND EXCLUDED.state <> '')
            RETURNING r.id
            """,
            [staff_id, customer_id, at, state, at],
        )
        return cursor.fetchone() is not None


def _fill_known_customer(customer_id: int, *, staff_id: int, channel_id: int | None) -> bool:
    """A known customer without an owner gets the staff member who added them (recorded as a first assignment),
    and one without a source channel the live code's. Returns whether anything changed."""
    current = (
        Customer.objects.select_for_update()
        .filter(pk=customer_id, merged_into__isnull=True)
        .values("owner_id", "source_channel_id")
        .first()
    )
    if current is None:
        return False
    changes: dict[str, Any] = {}
    if current["owner_id"] is None:
        changes["owner_id"] = staff_id
    if current["source_channel_id"] is None and channel_id is not None:
        changes["source_channel_id"] = channel_id
    if not changes:
        return False
    Customer.objects.filter(pk=customer_id).update(**changes, updated_at=timezone.now())
    if "owner_id" in changes:
        Transfer.objects.create(
            customer_id=customer_id, to_staff_id=staff_id, kind=TransferKind.ASSIGNED, reason="wecom"
        )
    return True


# -------------------------------------------------------------------------------------------------------- groups


def _chat_changed(fields: Mapping[str, Any], change: str) -> CallbackResult:
    at = event_time(fields)
    chat_id = _text(fields, "ChatId", 64)
    detail = _text(fields, "UpdateDetail", 32)
    result = CallbackResult(handled=f"chat_{change}" + (f"_{detail}" if detail else ""))
    if not chat_id:
        return result
    group_id = ensure_group(chat_id, at=at)
    members = fields.get("MemChangeList")
    member_ids = [m for m in members if m] if isinstance(members, list) else []
    if change == "dismiss":
        CommunityGroup.objects.filter(pk=group_id, dismissed_at__isnull=True).update(dismissed_at=at)
        left = leave_group(group_id, None, at=at)
        result.changed_customer_ids.update(left)
        return result
    if detail in ("add_member", "del_member") and member_ids:
        scene = (JOIN_SCENES if detail == "add_member" else QUIT_SCENES).get(
            _text(fields, "JoinScene" if detail == "add_member" else "QuitScene", 8), ""
        )
        external = [m for m in member_ids if m.startswith(EXTERNAL_PREFIXES)]
        if detail == "add_member":
            customers, created = ensure_customers(external, at=at)
            result.created_customer_ids |= created
            changed = join_group(group_id, [(c, at, scene) for c in customers.values()])
            event_type = "group_join"
        else:
            changed = leave_group(group_id, list(_known_customers(external).values()), at=at)
            event_type = "group_leave"
        result.changed_customer_ids.update(changed)
        properties = {"chat_id": chat_id, "scene": scene}
        result.events.extend(event_row(c, event_type, at, properties, (chat_id, str(c))) for c in sorted(changed))
    # Names, owners and member lists without ids (create, renames, older payloads) come from the API.
    if change == "create" or detail not in ("add_member", "del_member") or not member_ids:
        result.sync_chats.append(chat_id)
    return result


def ensure_group(chat_id: str, *, at: datetime) -> int:
    """The group's id, created (named by its chat_id until the sync fetches its name) when unknown."""
    group, _created = CommunityGroup.objects.get_or_create(
        chat_id=chat_id, defaults={"name": chat_id, "created_at": at}
    )
    return group.pk


def join_group(group_id: int, joins: Sequence[tuple[int, datetime, str]]) -> set[int]:
    """Memberships from (customer id, joined at, join scene), set-based: new ones, and rejoins after a leave
    before the join. Returns the customers who joined."""
    if not joins:
        return set()
    customer_ids, times, scenes = zip(*sorted(set(joins)), strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_groupmembership AS m (group_id, customer_id, joined_at, left_at, join_scene)
            SELECT DISTINCT ON (j.customer_id) %s, j.customer_id, j.joined_at, NULL, j.scene
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[]) AS j(customer_id, joined_at, scene)
            ORDER BY j.customer_id, j.joined_at
            ON CONFLICT (group_id, customer_id) DO UPDATE SET joined_at = EXCLUDED.joined_at, left_at = NULL,
                join_scene = EXCLUDED.join_scene
            WHERE m.left_at IS NOT NULL AND m.left_at <= EXCLUDED.joined_at
            RETURNING m.customer_id
            """,
            [group_id, list(customer_ids), list(times), list(scenes)],
        )
        return {row[0] for row in cursor.fetchall()}


def leave_group(
    group_id: int, customer_ids: Sequence[int] | None, *, at: datetime, keep: Iterable[int] = ()
) -> set[int]:
    """End these customers' memberships (every current one but `keep` when None) that began before `at`.
    Returns the customers who left."""
    if customer_ids is not None and not customer_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE customers_groupmembership SET left_at = %s
            WHERE group_id = %s AND left_at IS NULL AND joined_at <= %s
              AND (%s::bigint[] IS NULL OR customer_id = ANY(%s::bigint[])) AND NOT customer_id = ANY(%s::bigint[])
            RETURNING customer_id
            """,
            [at, group_id, at, customer_ids, customer_ids, sorted(set(keep))],
        )
        return {row[0] for row in cursor.fetchall()}


# ------------------------------------------------------------------------------------------ customers and staff


def ensure_staff(userids: Iterable[str]) -> dict[str, int]:
    """Staff ids by WeCom userid; an unknown userid gets a minimal Staff (named by the userid)."""
    wanted = sorted(set(userids))
    Staff.objects.bulk_create([Staff(name=u, wecom_userid=u) for u in wanted], ignore_conflicts=True)
    return dict(Staff.objects.filter(wecom_userid__in=wanted).values_list("wecom_userid", "pk"))


def _known_customers(external_ids: Iterable[str]) -> dict[str, int]:
    return dict(
        Identity.objects.filter(kind=IdentityKind.WECOM_EXTERNAL_USERID, namespace="", value__in=list(external_ids))
        .values_list("value", "customer_id")
    )  # fmt: skip


def ensure_customers(
    external_ids: Iterable[str], *, at: datetime, owner_id: int | None = None, source_channel_id: int | None = None
) -> tuple[dict[str, int], set[int]]:
    """Customer ids by external_userid, creating a customer and its wecom Identity for each unknown one.

    Takes ingest's customer-creation lock before looking again, so a callback and an import never create the
    same person twice. Returns (ids by external_userid, ids created). Domain events are the caller's."""
    wanted = sorted({e for e in external_ids if e})
    found = _known_customers(wanted)
    if len(found) == len(wanted):
        return found, set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CREATE_LOCK_ID])
        found = _known_customers(wanted)
        missing = [e for e in wanted if e not in found]
        if not missing:
            return found, set()
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('customers_customer', 'id')) FROM generate_series(1, %s)",
            [len(missing)],
        )
        new = dict(zip(missing, (row[0] for row in cursor.fetchall()), strict=True))
        rows = orjson.dumps([{"id": pk, "value": value} for value, pk in new.items()]).decode()
        cursor.execute(
            """
            WITH n AS (SELECT * FROM json_to_recordset(%s::json) AS n(id bigint, value text)),
            c AS (
                INSERT INTO customers_customer (id, name, gender, city, occupation, phone, email, time_zone,
                    attributes, source_channel_id, owner_id, first_seen_at, last_seen_at, created_at, updated_at)
                SELECT id, '', 'unknown', '', '', '', '', '', '{}'::jsonb, %s, %s, %s, %s, now(), now() FROM n
            )
            INSERT INTO customers_identity (kind, namespace, value, customer_id, created_at)
            SELECT 'wecom', '', value, id, now() FROM n
            """,
            [rows, source_channel_id, owner_id, at, at],
        )
    return {**found, **new}, set(new.values())


# ---------------------------------------------------------------------------------------------- events and outbox


def event_row(
    customer_id: int,
    event_type: str,
    at: datetime,
    properties: dict[str, Any],
    basis: tuple[str, ...],
    channel_id: int | None = None,
) -> dict[str, Any]:
    """A behaviour event row; its dedupe key is the event's own identity, so a re-delivered callback dedupes."""
    key = "\x1f".join(("wecom", event_type, *basis, str(int(at.timestamp()))))
    return {
        "customer_id": customer_id,
        "type": event_type,
        "occurred_at": at.isoformat(),
        "properties": properties,
        "channel_id": channel_id,
        "dedupe_key": hashlib.sha256(key.encode()).hexdigest(),
    }


_EVENT_OUTBOX = domain_events.outbox_sql(
    "written", f"'{DomainEventKind.EVENT_RECORDED}'", "jsonb_build_object('event_id', id, 'type', type)"
)
_INSERT_EVENTS = f"""
    WITH written AS (
        INSERT INTO customers_event (customer_id, type, occurred_at, properties, content_ref, channel_id,
            dedupe_key, created_at)
        SELECT r.customer_id, r.type, r.occurred_at, r.properties, '', r.channel_id, r.dedupe_key, now()
        FROM json_to_recordset(%s::json) AS r(customer_id bigint, type text, occurred_at timestamptz,
            properties jsonb, channel_id bigint, dedupe_key text)
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id, customer_id, type, occurred_at
    ),
    seen AS (
        UPDATE customers_customer c SET last_seen_at = s.latest
        FROM (SELECT customer_id, max(occurred_at) AS latest FROM written GROUP BY customer_id) s
        WHERE c.id = s.customer_id AND s.latest > c.last_seen_at
    ), {_EVENT_OUTBOX}
    SELECT customer_id FROM written
"""  # noqa: S608 - only the module's own constants are interpolated


def record_events(rows: list[dict[str, Any]]) -> set[int]:
    """Insert behaviour events, skipping ones already recorded, with their `event.recorded` domain events;
    returns the customers that got a new one."""
    if not rows:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_EVENTS, [orjson.dumps(rows).decode()])
        customers = {row[0] for row in cursor.fetchall()}
    if customers:
        domain_events.kick_after_commit()
    return customers


def _record_customer_changes(result: CallbackResult, fields: Mapping[str, Any]) -> None:
    """customer.created for the customers this event created, customer.updated for the others it changed."""
    payload = {"source": "wecom", "change": result.handled}
    if staff := _text(fields, "UserID", 64):
        payload["staff"] = staff
    if chat_id := _text(fields, "ChatId", 64):
        payload["chat_id"] = chat_id
    created = sorted(result.created_customer_ids)
    updated = sorted(result.changed_customer_ids - result.created_customer_ids)
    domain_events.record(DomainEventKind.CUSTOMER_CREATED, created, [payload] * len(created))
    domain_events.record(DomainEventKind.CUSTOMER_UPDATED, updated, [payload] * len(updated))


def _enqueue_follow_ups(result: CallbackResult) -> None:
    # Registered after the welcome's own after-commit send, so the welcome always goes out first.
    if not (result.fetch_contacts or result.sync_chats):
        return
    from messaging.wecom.callback_tasks import enqueue_follow_ups

    contacts, chats = list(result.fetch_contacts), list(result.sync_chats)
    transaction.on_commit(lambda: enqueue_follow_ups(contacts=contacts, chats=chats))


# --------------------------------------------------------------------------------------------------- fields


def event_time(fields: Mapping[str, Any]) -> datetime:
    """The event's CreateTime (aware); now when missing or garbled."""
    try:
        return datetime.fromtimestamp(int(str(fields.get("CreateTime", ""))), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return timezone.now()


def _text(fields: Mapping[str, Any], name: str, max_length: int) -> str:
    value = fields.get(name)
    return value.strip()[:max_length] if isinstance(value, str) else ""
