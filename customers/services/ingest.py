"""Bulk upserts of customers, orders and behaviour events: validated per row, written set-based.

Each call is one transaction: every good row lands, every bad row is reported (index, field, message) and
writes nothing. Re-sending the same rows changes nothing (orders match on (source, external_id), events on
their dedupe key, customers on any identity).
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext as _

from customers import domain_events
from customers.models import Channel, DomainEventKind, Gender, OrderStatus, Staff
from customers.services.identities import CustomerRef, parse_customer_ref, parse_identities, resolve_customers
from customers.services.rows import RowError, RowParser, paused_gc

ORDER_STATUSES = set(OrderStatus.values)
GENDERS = set(Gender.values)
# Plain strings: enum attribute lookups cost more than the rest of a row's parsing.
PAID, REFUNDED = OrderStatus.PAID.value, OrderStatus.REFUNDED.value
CENT = Decimal("0.01")


class TooManyRows(ValueError):
    pass


@dataclass(slots=True)
class BulkResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ids: list[int | None] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def landed(self) -> int:
        return self.created + self.updated + self.unchanged

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": len({e.index for e in self.errors}),
            "ids": self.ids,
            "errors": [e.as_dict() for e in self.errors],
        }


def _check_size(rows: Sequence[Any]) -> None:
    if len(rows) > settings.BULK_MAX_ROWS:
        raise TooManyRows(
            _("At most %(max)d rows per request (got %(n)d).") % {"max": settings.BULK_MAX_ROWS, "n": len(rows)}
        )


def _encode_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


def _json(rows: list[dict[str, Any]]) -> str:
    """One JSON document for a whole batch (orjson: the encoding was a tenth of the request's time)."""
    return orjson.dumps(rows, default=_encode_default).decode()


def _lookup_codes(model, field_name: str, values: set[str]) -> dict[str, int]:
    if not values:
        return {}
    return dict(model.objects.filter(**{f"{field_name}__in": values}).values_list(field_name, "pk"))


def _lookup_staff(refs: set[str | int]) -> dict[str | int, int]:
    ids = {r for r in refs if isinstance(r, int)}
    codes = {r for r in refs if isinstance(r, str)}
    found: dict[str | int, int] = {}
    if ids:
        found.update({pk: pk for pk in Staff.objects.filter(pk__in=ids).values_list("pk", flat=True)})
    if codes:
        found.update(_lookup_codes(Staff, "wecom_userid", codes))
    return found


def _staff_ref(p: RowParser, field_name: str) -> str | int | None:
    value = p.row.get(field_name)
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit() and not value.strip().startswith("0"):
        return int(value)
    if isinstance(value, str) and len(value.strip()) <= 64:
        return value.strip()
    p.error(field_name, _("Expected a staff id or WeCom userid."))
    return None


@dataclass(slots=True)
class _Parsed:
    """Rows that passed validation, with their index in the request."""

    indexes: list[int] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    refs: list[CustomerRef | None] = field(default_factory=list)


def _parse_all(
    rows: Sequence[Any], indexes: Sequence[int] | None, parse: Callable[[RowParser], tuple[dict, CustomerRef | None]]
) -> tuple[_Parsed, list[RowError]]:
    parsed, errors = _Parsed(), []
    for position, row in enumerate(rows):
        index = indexes[position] if indexes is not None else position
        p = RowParser(row, index)
        if p.errors:  # not an object: nothing more to say about it
            errors.extend(p.errors)
            continue
        values, ref = parse(p)
        if p.errors:
            errors.extend(p.errors)
            continue
        parsed.indexes.append(index)
        parsed.values.append(values)
        parsed.refs.append(ref)
    return parsed, errors


def _resolve_refs(
    parsed: _Parsed,
    errors: list[RowError],
    *,
    user,
    resolve: dict[str, tuple[Callable, str]],
    seen_field: str | None = None,
) -> tuple[list[int], set[int]]:
    """Resolve customers and code lookups; drop rows that fail. `seen_field` dates new customers.

    Returns the positions (into `parsed`) that survive, and the ids of the customers created on the way.
    """
    seen_at = [v[seen_field] for v in parsed.values] if seen_field else None
    resolution = resolve_customers(parsed.refs, user=user, row_indexes=parsed.indexes, seen_at=seen_at)
    errors.extend(resolution.errors)
    lookups = {}
    for field_name, (lookup, _label) in resolve.items():
        wanted = {v[field_name] for v in parsed.values if v.get(field_name) is not None}
        lookups[field_name] = lookup(wanted)
    keep = []
    for position, values in enumerate(parsed.values):
        customer_id = resolution.customer_ids[position]
        ok = customer_id is not None or parsed.refs[position] is None
        for field_name, (_lookup, label) in resolve.items():
            wanted = values.get(field_name)
            if wanted is None:
                values[field_name + "_id"] = None
                continue
            found = lookups[field_name].get(wanted)
            if found is None:
                errors.append(RowError(parsed.indexes[position], field_name, label % {"value": wanted}))
                ok = False
            values[field_name + "_id"] = found
        if ok:
            values["customer_id"] = customer_id
            keep.append(position)
    return keep, resolution.created_ids


def _channel_lookup(codes: set[str]) -> dict[str, int]:
    return _lookup_codes(Channel, "code", codes)


_UNKNOWN_CHANNEL = _("Unknown channel code %(value)r.")
_UNKNOWN_STAFF = _("Unknown staff member %(value)r.")


# ----------------------------------------------------------------------------------------------------- orders


def _parse_order(p: RowParser, currency: str) -> tuple[dict, CustomerRef | None]:
    source = p.str("source", max_length=32, required=True)
    values: dict[str, Any] = {
        "source": source,
        "external_id": p.str("external_id", max_length=64, required=True),
        "status": p.choice("status", ORDER_STATUSES, default=PAID),
        "ordered_at": p.datetime("ordered_at", required=True),
        "currency": (p.str("currency", max_length=3, default=currency) or "").upper(),
        "channel": p.str("channel", max_length=30) or None,
        "staff": _staff_ref(p, "staff"),
    }
    ref = parse_customer_ref(p, shop_namespace=source)
    lines = []
    for lp in p.nested("lines"):
        quantity = lp.integer("quantity", minimum=1)
        quantity = 1 if quantity is None else quantity
        unit_price = lp.decimal("unit_price")
        amount = lp.decimal("amount")
        if amount is None and unit_price is not None:
            amount = unit_price * quantity
        if unit_price is None and amount is not None:
            unit_price = (amount / quantity).quantize(CENT)
        line = {
            "sku": lp.str("sku", max_length=64),
            "name": lp.str("name", max_length=200),
            "quantity": quantity,
            "unit_price": unit_price or Decimal(0),
            "amount": amount or Decimal(0),
        }
        if not line["sku"] and not line["name"]:
            lp.error("sku", _("A line needs a sku or a name."))
        p.errors.extend(lp.errors)
        lines.append(line)
    amount = p.decimal("amount", required=not lines)
    if amount is None and lines:
        amount = sum((line["amount"] for line in lines), Decimal(0))
    refunded = p.decimal("refunded_amount")
    if refunded is None:
        refunded = amount if values["status"] == REFUNDED and amount is not None else Decimal(0)
    if amount is not None and refunded > amount:
        p.error("refunded_amount", _("Cannot exceed the order amount (%(amount)s).") % {"amount": amount})
    values.update(amount=amount, refunded_amount=refunded, lines=lines)
    return values, ref


@paused_gc()
def bulk_upsert_orders(rows: Sequence[Any], *, user, indexes: Sequence[int] | None = None) -> BulkResult:
    """Insert or update orders by (source, external_id), creating unknown customers. Idempotent; one transaction."""
    _check_size(rows)
    currency = settings.CURRENCY
    parsed, errors = _parse_all(rows, indexes, lambda p: _parse_order(p, currency))
    result = BulkResult(errors=errors)
    with transaction.atomic():
        keep, _created = _resolve_refs(
            parsed,
            errors,
            user=user,
            resolve={"channel": (_channel_lookup, _UNKNOWN_CHANNEL), "staff": (_lookup_staff, _UNKNOWN_STAFF)},
            seen_field="ordered_at",
        )
        # The same order twice in one request: the later row wins, as if sent one after the other.
        last_position: dict[tuple[str, str], int] = {}
        for position in keep:
            v = parsed.values[position]
            last_position[(v["source"], v["external_id"])] = position
        records = [parsed.values[position] for position in last_position.values()]
        ids_by_key = _write_orders(records, result) if records else {}
    ids_by_index = {
        parsed.indexes[pos]: ids_by_key[(parsed.values[pos]["source"], parsed.values[pos]["external_id"])]
        for pos in keep
    }
    result.unchanged += len(keep) - len(records)
    result.ids = [ids_by_index.get(i) for i in (indexes if indexes is not None else range(len(rows)))]
    result.errors.sort(key=lambda e: (e.index, e.field))
    return result


def _write_orders(records: list[dict[str, Any]], result: BulkResult) -> dict[tuple[str, str], int]:
    header = [{k: v for k, v in r.items() if k != "lines"} for r in records]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH written AS (
            INSERT INTO customers_order AS o (source, external_id, customer_id, status, ordered_at, amount,
                refunded_amount, currency, channel_id, staff_id, created_at, updated_at)
            SELECT r.source, r.external_id, r.customer_id, r.status, r.ordered_at, r.amount, r.refunded_amount,
                r.currency, r.channel_id, r.staff_id, now(), now()
            FROM json_to_recordset(%s::json) AS r(source text, external_id text, customer_id bigint, status text,
                ordered_at timestamptz, amount numeric, refunded_amount numeric, currency text, channel_id bigint,
                staff_id bigint)
            ON CONFLICT (source, external_id) DO UPDATE SET
                customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, ordered_at = EXCLUDED.ordered_at,
                amount = EXCLUDED.amount, refunded_amount = EXCLUDED.refunded_amount, currency = EXCLUDED.currency,
                channel_id = EXCLUDED.channel_id, staff_id = EXCLUDED.staff_id, updated_at = now()
            WHERE (o.customer_id, o.status, o.ordered_at, o.amount, o.refunded_amount, o.currency, o.channel_id,
                   o.staff_id)
                IS DISTINCT FROM (EXCLUDED.customer_id, EXCLUDED.status, EXCLUDED.ordered_at, EXCLUDED.amount,
                   EXCLUDED.refunded_amount, EXCLUDED.currency, EXCLUDED.channel_id, EXCLUDED.staff_id)
            RETURNING o.id, o.source, o.external_id, (o.xmax = 0) AS inserted, o.customer_id, o.ordered_at,
                o.status, o.amount, o.refunded_amount
            ), {_EXTEND_SEEN.format(time_field="ordered_at")}, {_ORDER_OUTBOX}
            SELECT id, source, external_id, inserted FROM written
            """,  # noqa: S608 - only the module's own constant is interpolated
            [_json(header)],
        )
        written = {(source, ext): (pk, inserted) for pk, source, ext, inserted in cursor.fetchall()}
        if written:
            domain_events.kick_after_commit()
        ids = {key: pk for key, (pk, _inserted) in written.items()}
        result.created += sum(1 for _pk, inserted in written.values() if inserted)
        result.updated += sum(1 for _pk, inserted in written.values() if not inserted)
        missing = [r for r in records if (r["source"], r["external_id"]) not in ids]
        result.unchanged += len(missing)
        if missing:
            cursor.execute(
                """
                SELECT o.id, o.source, o.external_id FROM customers_order o
                JOIN unnest(%s::text[], %s::text[]) AS k(source, external_id) USING (source, external_id)
                """,
                [[r["source"] for r in missing], [r["external_id"] for r in missing]],
            )
            ids.update({(source, ext): pk for pk, source, ext in cursor.fetchall()})
        # Lines follow their order: replaced whenever the order was written with lines.
        changed = [
            written[(r["source"], r["external_id"])]
            for r in records
            if (r["source"], r["external_id"]) in written and r["lines"]
        ]
        if updated_ids := [pk for pk, inserted in changed if not inserted]:
            cursor.execute("DELETE FROM customers_orderline WHERE order_id = ANY(%s::bigint[])", [updated_ids])
        changed = [r for r in records if (r["source"], r["external_id"]) in written and r["lines"]]
        if changed:
            lines = [{"order_id": ids[(r["source"], r["external_id"])], **line} for r in changed for line in r["lines"]]
            cursor.execute(
                """
                INSERT INTO customers_orderline (order_id, product_id, sku, name, quantity, unit_price, amount)
                SELECT l.order_id, p.id, coalesce(l.sku, ''), coalesce(nullif(l.name, ''), p.name, ''), l.quantity,
                    l.unit_price, l.amount
                FROM json_to_recordset(%s::json) AS l(order_id bigint, sku text, name text, quantity int,
                    unit_price numeric, amount numeric)
                LEFT JOIN customers_product p ON p.sku = l.sku
                """,
                [_json(lines)],
            )
    return ids


# The domain events of written orders: placed when new, refunded when an update refunds, updated otherwise.
_ORDER_OUTBOX = domain_events.outbox_sql(
    "written",
    f"""CASE WHEN inserted THEN '{DomainEventKind.ORDER_PLACED}'
        WHEN status IN ('refunded', 'partially_refunded') THEN '{DomainEventKind.ORDER_REFUNDED}'
        ELSE '{DomainEventKind.ORDER_UPDATED}' END""",
    "jsonb_build_object('order_id', id, 'status', status, 'amount', amount, 'refunded_amount', refunded_amount)",
)
_EVENT_OUTBOX = domain_events.outbox_sql(
    "written", f"'{DomainEventKind.EVENT_RECORDED}'", "jsonb_build_object('event_id', id, 'type', type)"
)


# Appended to a statement whose CTE `written` returns the rows it wrote: moves their customers' first/last seen
# to cover them, in the same round trip (new customers were already dated at creation, so they do not match).
_EXTEND_SEEN = """
    seen AS (
        UPDATE customers_customer c SET last_seen_at = greatest(c.last_seen_at, s.latest),
            first_seen_at = least(c.first_seen_at, s.earliest)
        FROM (SELECT customer_id, min({time_field}) AS earliest, max({time_field}) AS latest
              FROM written GROUP BY customer_id) s
        WHERE c.id = s.customer_id AND (s.latest > c.last_seen_at OR s.earliest < c.first_seen_at)
    )"""


# ----------------------------------------------------------------------------------------------------- events


def event_dedupe_key(values: dict[str, Any]) -> str:
    if values.get("external_id"):
        basis = f"x\x1f{values['source'] or ''}\x1f{values['external_id']}"
    else:
        occurred = values["occurred_at"].astimezone(UTC).isoformat()
        props = json.dumps(values["properties"], sort_keys=True, default=str, ensure_ascii=False)
        basis = f"h\x1f{values['customer_id']}\x1f{values['type']}\x1f{occurred}\x1f{props}"
    return hashlib.sha256(basis.encode()).hexdigest()


def _parse_event(p: RowParser) -> tuple[dict, CustomerRef | None]:
    source = p.str("source", max_length=32)
    values = {
        "type": p.str("type", max_length=64, required=True),
        "occurred_at": p.datetime("occurred_at", required=True),
        "properties": p.mapping("properties") or {},
        "content_ref": p.str("content_ref", max_length=200),
        "channel": p.str("channel", max_length=30) or None,
        "source": source,
        "external_id": p.str("external_id", max_length=64),
    }
    ref = parse_customer_ref(p, shop_namespace=source or None)
    return values, ref


@paused_gc()
def bulk_record_events(rows: Sequence[Any], *, user, indexes: Sequence[int] | None = None) -> BulkResult:
    """Record behaviour events, creating unknown customers; a re-sent event is recorded once. One transaction."""
    _check_size(rows)
    parsed, errors = _parse_all(rows, indexes, _parse_event)
    result = BulkResult(errors=errors)
    ids_by_index: dict[int, int] = {}
    with transaction.atomic():
        keep, _created = _resolve_refs(
            parsed,
            errors,
            user=user,
            resolve={"channel": (_channel_lookup, _UNKNOWN_CHANNEL)},
            seen_field="occurred_at",
        )
        records: dict[str, dict[str, Any]] = {}
        key_of_position = {}
        for position in keep:
            v = parsed.values[position]
            key = event_dedupe_key(v)
            key_of_position[position] = key
            records.setdefault(
                key,
                {
                    "customer_id": v["customer_id"],
                    "type": v["type"],
                    "occurred_at": v["occurred_at"],
                    "properties": v["properties"],
                    "content_ref": v["content_ref"] or "",
                    "channel_id": v["channel_id"],
                    "dedupe_key": key,
                },
            )
        ids = _write_events(list(records.values()), result) if records else {}
        result.unchanged += len(keep) - len(records)
        ids_by_index = {parsed.indexes[pos]: ids[key] for pos, key in key_of_position.items()}
    result.ids = [ids_by_index.get(i) for i in (indexes if indexes is not None else range(len(rows)))]
    result.errors.sort(key=lambda e: (e.index, e.field))
    return result


def _write_events(records: list[dict[str, Any]], result: BulkResult) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH written AS (
            INSERT INTO customers_event (customer_id, type, occurred_at, properties, content_ref, channel_id,
                dedupe_key, created_at)
            SELECT r.customer_id, r.type, r.occurred_at, coalesce(r.properties, '{{}}'::jsonb), r.content_ref,
                r.channel_id, r.dedupe_key, now()
            FROM json_to_recordset(%s::json) AS r(customer_id bigint, type text, occurred_at timestamptz,
                properties jsonb, content_ref text, channel_id bigint, dedupe_key text)
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id, dedupe_key, customer_id, occurred_at, type
            ), {_EXTEND_SEEN.format(time_field="occurred_at")}, {_EVENT_OUTBOX}
            SELECT id, dedupe_key FROM written
            """,  # noqa: S608 - only the module's own constant is interpolated
            [_json(records)],
        )
        ids = {key: pk for pk, key in cursor.fetchall()}
        if ids:
            domain_events.kick_after_commit()
        result.created += len(ids)
        missing = [r["dedupe_key"] for r in records if r["dedupe_key"] not in ids]
        result.unchanged += len(missing)
        if missing:
            cursor.execute("SELECT id, dedupe_key FROM customers_event WHERE dedupe_key = ANY(%s::text[])", [missing])
            ids.update({key: pk for pk, key in cursor.fetchall()})
    return ids


# -------------------------------------------------------------------------------------------------- customers

_CUSTOMER_OUTBOX = domain_events.outbox_sql("updated", f"'{DomainEventKind.CUSTOMER_UPDATED}'", "'{}'::jsonb")
_PROFILE_FIELDS = ("name", "gender", "birthday", "city", "occupation", "phone", "email", "time_zone")


def _parse_customer(p: RowParser) -> tuple[dict, CustomerRef | None]:
    ref = CustomerRef(customer_id=p.integer("id", minimum=1))
    parse_identities(p, p.row, shop_namespace=None, ref=ref)
    if ref.customer_id is None and not ref.keys and not p.errors:
        p.error("id", _("Give the customer's id or at least one identity (wecom, unionid, phone, email, shop)."))
    values: dict[str, Any] = {}
    readers = {
        "name": lambda: p.str("name", max_length=100),
        "gender": lambda: p.choice("gender", GENDERS, default=Gender.UNKNOWN),
        "birthday": lambda: p.date("birthday"),
        "city": lambda: p.str("city", max_length=50),
        "occupation": lambda: p.str("occupation", max_length=50),
        "phone": lambda: next((k[2] for k in ref.keys if k[0] == "phone"), ""),
        "email": lambda: next((k[2] for k in ref.keys if k[0] == "email"), ""),
        "time_zone": lambda: _time_zone(p),
        "attributes": lambda: p.mapping("attributes"),
    }
    for name, read in readers.items():
        if p.has(name):
            values[name] = read()
    values["source_channel"] = p.str("source_channel", max_length=30) or None
    values["owner"] = _staff_ref(p, "owner")
    return values, ref


def _time_zone(p: RowParser) -> str:
    name = p.str("time_zone", max_length=64)
    if name:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            p.error("time_zone", _("Unknown time zone %(value)r (use names like Asia/Shanghai).") % {"value": name})
    return name or ""


@paused_gc()
def bulk_upsert_customers(rows: Sequence[Any], *, user, indexes: Sequence[int] | None = None) -> BulkResult:
    """Create or update customers matched by id or any identity; only the fields a row gives change.

    Attributes merge key by key. An owner change records a Transfer. Idempotent; one transaction.
    """
    _check_size(rows)
    parsed, errors = _parse_all(rows, indexes, _parse_customer)
    result = BulkResult(errors=errors)
    with transaction.atomic():
        keep, created_ids = _resolve_refs(
            parsed,
            errors,
            user=user,
            resolve={
                "source_channel": (_channel_lookup, _UNKNOWN_CHANNEL),
                "owner": (_lookup_staff, _UNKNOWN_STAFF),
            },
        )
        if getattr(user, "is_sales_rep", False):
            own = Staff.objects.filter(user=user).values_list("pk", flat=True).first()
            for position in list(keep):
                owner_id = parsed.values[position]["owner_id"]
                if owner_id is not None and owner_id != own:
                    errors.append(
                        RowError(parsed.indexes[position], "owner", _("Sales reps cannot assign other owners."))
                    )
                    keep.remove(position)
        changes: dict[int, dict[str, Any]] = {}
        for position in keep:
            v = parsed.values[position]
            change = changes.setdefault(v["customer_id"], {"attributes": {}})
            for name in _PROFILE_FIELDS:
                if name in v and v[name] is not None:
                    change[name] = v[name]
            change["attributes"].update(v.get("attributes") or {})
            if v["source_channel_id"] is not None:
                change["source_channel_id"] = v["source_channel_id"]
            if v["owner_id"] is not None:
                change["owner_id"] = v["owner_id"]
        changed = _write_customers(changes, user=user) if changes else set()
    result.created = len(created_ids)
    result.updated = len(changed - created_ids)
    result.unchanged = len(changes) - result.created - result.updated
    ids_by_index = {parsed.indexes[p]: parsed.values[p]["customer_id"] for p in keep}
    result.ids = [ids_by_index.get(i) for i in (indexes if indexes is not None else range(len(rows)))]
    result.errors.sort(key=lambda e: (e.index, e.field))
    return result


def _write_customers(changes: dict[int, dict[str, Any]], *, user) -> set[int]:
    payload = [{"id": pk, "f": change} for pk, change in changes.items()]
    user_id = user.pk if user is not None and user.is_authenticated else None
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_transfer (customer_id, from_staff_id, to_staff_id, kind, reason,
                transferred_by_id, transferred_at)
            SELECT c.id, c.owner_id, (r.f->>'owner_id')::bigint,
                CASE WHEN c.owner_id IS NULL THEN 'assigned' ELSE 'on_job' END, 'import', %s, now()
            FROM json_to_recordset(%s::json) AS r(id bigint, f jsonb)
            JOIN customers_customer c ON c.id = r.id
            WHERE r.f ? 'owner_id' AND c.owner_id IS DISTINCT FROM (r.f->>'owner_id')::bigint
            """,
            [user_id, _json(payload)],
        )
        cursor.execute(
            f"""
            WITH r AS (SELECT id, f FROM json_to_recordset(%s::json) AS r(id bigint, f jsonb)),
            new AS (
                SELECT c.id,
                    CASE WHEN r.f ? 'name' THEN r.f->>'name' ELSE c.name END AS name,
                    CASE WHEN r.f ? 'gender' THEN r.f->>'gender' ELSE c.gender END AS gender,
                    CASE WHEN r.f ? 'birthday' THEN (r.f->>'birthday')::date ELSE c.birthday END AS birthday,
                    CASE WHEN r.f ? 'city' THEN r.f->>'city' ELSE c.city END AS city,
                    CASE WHEN r.f ? 'occupation' THEN r.f->>'occupation' ELSE c.occupation END AS occupation,
                    CASE WHEN r.f ? 'phone' THEN r.f->>'phone' ELSE c.phone END AS phone,
                    CASE WHEN r.f ? 'email' THEN r.f->>'email' ELSE c.email END AS email,
                    CASE WHEN r.f ? 'time_zone' THEN r.f->>'time_zone' ELSE c.time_zone END AS time_zone,
                    c.attributes || coalesce(r.f->'attributes', '{{}}'::jsonb) AS attributes,
                    CASE WHEN r.f ? 'source_channel_id' THEN (r.f->>'source_channel_id')::bigint
                        ELSE c.source_channel_id END AS source_channel_id,
                    CASE WHEN r.f ? 'owner_id' THEN (r.f->>'owner_id')::bigint ELSE c.owner_id END AS owner_id
                FROM customers_customer c JOIN r ON r.id = c.id
            ),
            updated AS (
            UPDATE customers_customer c SET name = new.name, gender = new.gender, birthday = new.birthday,
                city = new.city, occupation = new.occupation, phone = new.phone, email = new.email,
                time_zone = new.time_zone, attributes = new.attributes, source_channel_id = new.source_channel_id,
                owner_id = new.owner_id, updated_at = now()
            FROM new
            WHERE c.id = new.id AND (c.name, c.gender, c.birthday, c.city, c.occupation, c.phone, c.email,
                    c.time_zone, c.attributes, c.source_channel_id, c.owner_id)
                IS DISTINCT FROM (new.name, new.gender, new.birthday, new.city, new.occupation, new.phone,
                    new.email, new.time_zone, new.attributes, new.source_channel_id, new.owner_id)
            RETURNING c.id AS customer_id
            ), {_CUSTOMER_OUTBOX}
            SELECT customer_id FROM updated
            """,  # noqa: S608 - only the module's own constant is interpolated
            [_json(payload)],
        )
        changed = {row[0] for row in cursor.fetchall()}
    if changed:
        domain_events.kick_after_commit()
    return changed


def record_order_changes(orders: Sequence[tuple[int, int]], *, deleted: bool = False) -> int:
    """Write `order.updated` events for orders changed or deleted outside the bulk upsert (the API's DELETE, the
    admin), `orders` being (customer id, order id) pairs, in the caller's transaction: whatever reads orders (auto
    tags, segments, RFM) hears of it."""
    payloads = [{"order_id": order_id, **({"deleted": True} if deleted else {})} for _customer, order_id in orders]
    return domain_events.record(DomainEventKind.ORDER_UPDATED, [customer for customer, _order in orders], payloads)


def delete_order(order) -> None:
    """Delete an order (its lines go with it) and tell the consumers, in one transaction."""
    with transaction.atomic():
        record_order_changes([(order.customer_id, order.pk)], deleted=True)
        order.delete()
