"""Finding customers by any of their identities, set-based, and creating the ones we do not know yet."""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from customers import domain_events
from customers.models import Customer, DomainEventKind, IdentityKind, Staff
from customers.services.rows import RowError, RowParser
from customers.visibility import sees_all_customers

Key = tuple[str, str, str]  # (kind, namespace, value)

_PHONE_STRIP = re.compile(r"[\s\-()]")
# Serialises batches that may create customers, so two requests never create the same person twice.
CREATE_LOCK_ID = 0x5C_0001

# Plain strings: comparing with enum members cost more than the rest of an identity's parsing.
_KIND_FIELDS = {
    "wecom": IdentityKind.WECOM_EXTERNAL_USERID.value,
    "unionid": IdentityKind.UNIONID.value,
    "phone": IdentityKind.PHONE.value,
    "email": IdentityKind.EMAIL.value,
}
_PHONE, _EMAIL, _SHOP = IdentityKind.PHONE.value, IdentityKind.EMAIL.value, IdentityKind.SHOP.value


def normalize_identity(kind: str, value: str) -> str:
    value = value.strip()
    if kind == _PHONE:
        value = _PHONE_STRIP.sub("", value)
        if value.startswith("+86"):
            value = value[3:]
        elif value.startswith("0086"):
            value = value[4:]
    elif kind == _EMAIL:
        value = value.lower()
    return value


@dataclass(slots=True)
class CustomerRef:
    customer_id: int | None = None
    keys: list[Key] = field(default_factory=list)


def parse_identities(p: RowParser, data: dict, *, shop_namespace: str | None, ref: CustomerRef) -> None:
    """Read identity fields (wecom, unionid, phone, email, shop_id, shop) from `data` into `ref.keys`."""
    for name, kind in _KIND_FIELDS.items():
        value = data.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str | int):
            p.error(name, _("Expected text."))
            continue
        value = normalize_identity(kind, str(value))
        if not value or len(value) > 128:
            p.error(name, _("Must be 1 to 128 characters."))
            continue
        ref.keys.append((kind, "", value))
    shop_id = data.get("shop_id")
    if shop_id not in (None, ""):
        if shop_namespace:
            ref.keys.append((_SHOP, shop_namespace[:32], str(shop_id).strip()[:128]))
        else:
            p.error("shop_id", _('A shop id needs the shop: use {"shop": {"<shop code>": "<id>"}}.'))
    shops = data.get("shop")
    if shops not in (None, ""):
        if not isinstance(shops, dict):
            p.error("shop", _("Expected an object of shop code → customer id."))
        else:
            for namespace, value in shops.items():
                if value in (None, ""):
                    continue
                if not namespace or len(namespace) > 32 or len(str(value)) > 128:
                    p.error(f"shop.{namespace}", _("Shop code up to 32 and id up to 128 characters."))
                    continue
                ref.keys.append((_SHOP, namespace, str(value).strip()))


def parse_customer_ref(p: RowParser, field_name: str = "customer", *, shop_namespace: str | None) -> CustomerRef | None:
    """A row's reference to its customer: {"id": 12} or identities ({"phone": …, "unionid": …, "shop_id": …})."""
    raw = p.row.get(field_name)
    if raw in (None, ""):
        p.error(field_name, _("This field is required."))
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"id": raw}
    if not isinstance(raw, dict):
        p.error(field_name, _("Expected an object with an id or identities."))
        return None
    sub = RowParser(raw, p.index, f"{p.prefix}{field_name}.")
    ref = CustomerRef(customer_id=sub.integer("id", minimum=1))
    parse_identities(sub, raw, shop_namespace=shop_namespace, ref=ref)
    p.errors.extend(sub.errors)
    if not sub.errors and ref.customer_id is None and not ref.keys:
        p.error(
            field_name, _("Give the customer's id or at least one identity (wecom, unionid, phone, email, shop_id).")
        )
    return None if sub.errors else ref


@dataclass(slots=True)
class Resolution:
    customer_ids: list[int | None]  # per row
    created_ids: set[int]
    errors: list[RowError]


def resolve_customers(
    refs: Sequence[CustomerRef | None],
    *,
    user,
    create: bool = True,
    row_indexes: Sequence[int] | None = None,
    seen_at: Sequence[datetime | None] | None = None,
) -> Resolution:
    """Map each row's reference to one customer id, creating customers for unknown identities.

    Rows that share an identity resolve to the same customer. Identities that point to two customers, or to a
    customer the user may not see, are row errors. New identities are attached to their customer; `seen_at`
    (per row) dates new customers. Call inside the caller's transaction.

    Batches whose identities are all known run concurrently; a batch with unknown identities takes a
    transaction-level advisory lock and looks again, so two requests never create the same person twice.
    """
    indexes = list(row_indexes) if row_indexes is not None else list(range(len(refs)))
    errors: list[RowError] = []
    all_keys = {key for ref in refs if ref for key in ref.keys}
    known = _lookup_identities(all_keys)
    if create and len(known) < len(all_keys):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CREATE_LOCK_ID])
        known = _lookup_identities(all_keys)
    explicit_ids = {ref.customer_id for ref in refs if ref and ref.customer_id}
    merged_map = dict(
        Customer.objects.filter(pk__in=explicit_ids, merged_into__isnull=False).values_list("pk", "merged_into_id")
    )

    # Union rows that share an identity: they are the same person.
    parent = list(range(len(refs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_row_of_key: dict[Key, int] = {}
    for i, ref in enumerate(refs):
        if not ref:
            continue
        for key in ref.keys:
            j = first_row_of_key.setdefault(key, i)
            if j != i:
                parent[find(i)] = find(j)

    component_customers: dict[int, set[int]] = {}
    for i, ref in enumerate(refs):
        if not ref:
            continue
        found = component_customers.setdefault(find(i), set())
        if ref.customer_id:
            found.add(merged_map.get(ref.customer_id, ref.customer_id))
        found.update(known[key] for key in ref.keys if key in known)

    candidate_ids = set().union(*component_customers.values()) if component_customers else set()
    if sees_all_customers(user):
        # Identities only ever point to current customers (a merge moves them), so only explicit ids need a look.
        by_identity = set(known.values())
        explicit = candidate_ids - by_identity
        visible = by_identity | set(Customer.objects.current().filter(pk__in=explicit).values_list("pk", flat=True))
    else:
        visible = set(Customer.objects.visible_to(user).filter(pk__in=candidate_ids).values_list("pk", flat=True))

    component_result: dict[int, int | None] = {}
    component_error: dict[int, tuple[str, str]] = {}
    new_components: list[int] = []
    for root, found in component_customers.items():
        if len(found) > 1:
            component_error[root] = (
                "customer",
                _(
                    "These identities, or rows sharing them in this request, belong to different customers "
                    "(%(ids)s); merge them first."
                )
                % {"ids": ", ".join(str(c) for c in sorted(found & visible)) or "…"},
            )
        elif len(found) == 1:
            (customer_id,) = found
            if customer_id in visible:
                component_result[root] = customer_id
            else:
                component_error[root] = ("customer", _("Customer not found."))
        elif create:
            new_components.append(root)
        else:
            component_error[root] = ("customer", _("Customer not found."))

    created_ids: set[int] = set()
    if new_components:
        new_ids = _create_customers(refs, new_components, find, user=user, seen_at=seen_at)
        component_result.update(new_ids)
        created_ids = set(new_ids.values())

    customer_ids: list[int | None] = []
    new_identity_rows: dict[Key, int] = {}
    for i, ref in enumerate(refs):
        if not ref:
            customer_ids.append(None)
            continue
        root = find(i)
        if root in component_error:
            field_name, message = component_error[root]
            errors.append(RowError(indexes[i], field_name, message))
            customer_ids.append(None)
            continue
        customer_id = component_result[root]
        customer_ids.append(customer_id)
        for key in ref.keys:
            if key not in known:
                new_identity_rows[key] = customer_id
    _attach_identities(new_identity_rows)
    return Resolution(customer_ids=customer_ids, created_ids=created_ids, errors=errors)


def _lookup_identities(keys: set[Key]) -> dict[Key, int]:
    if not keys:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.kind, i.namespace, i.value, i.customer_id
            FROM json_to_recordset(%s::json) AS k(k text, n text, v text)
            JOIN customers_identity i ON (i.kind, i.namespace, i.value) = (k.k, k.n, k.v)
            """,
            [json.dumps([{"k": k, "n": n, "v": v} for k, n, v in keys], ensure_ascii=False)],
        )
        return {(kind, ns, value): customer_id for kind, ns, value, customer_id in cursor.fetchall()}


def _create_customers(refs, roots: list[int], find, *, user, seen_at) -> dict[int, int]:
    """Insert one customer per component; phone and email identities also fill the profile fields."""
    owner_id = None
    if user is not None and getattr(user, "is_sales_rep", False):
        owner_id = Staff.objects.filter(user=user).values_list("pk", flat=True).first()
    phones: dict[int, str] = {}
    emails: dict[int, str] = {}
    now = timezone.now()
    first_seen: dict[int, datetime] = {}
    last_seen: dict[int, datetime] = {}
    for i, ref in enumerate(refs):
        if not ref:
            continue
        root = find(i)
        when = seen_at[i] if seen_at is not None else None
        if when is not None:
            first_seen[root] = min(first_seen.get(root, when), when)
            last_seen[root] = max(last_seen.get(root, when), when)
        for kind, _ns, value in ref.keys:
            if kind == IdentityKind.PHONE:
                phones.setdefault(root, value)
            elif kind == IdentityKind.EMAIL:
                emails.setdefault(root, value)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('customers_customer', 'id')) FROM generate_series(1, %s)",
            [len(roots)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            INSERT INTO customers_customer (id, name, gender, city, occupation, phone, email, time_zone, attributes,
                owner_id, first_seen_at, last_seen_at, created_at, updated_at)
            SELECT id, '', 'unknown', '', '', phone, email, '', '{}'::jsonb, %s, first_seen, last_seen, %s, %s
            FROM json_to_recordset(%s::json)
                AS n(id bigint, phone text, email text, first_seen timestamptz, last_seen timestamptz)
            """,
            [owner_id, now, now, json.dumps([
                {
                    "id": pk,
                    "phone": phones.get(root, "")[:32],
                    "email": emails.get(root, "")[:254],
                    "first_seen": min(first_seen.get(root, now), now).isoformat(),
                    "last_seen": last_seen.get(root, now).isoformat(),
                }
                for root, pk in zip(roots, ids, strict=True)
            ], ensure_ascii=False)],
        )  # fmt: skip
    domain_events.record(DomainEventKind.CUSTOMER_CREATED, ids)
    return dict(zip(roots, ids, strict=True))


def _attach_identities(rows: dict[Key, int]) -> None:
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO customers_identity (kind, namespace, value, customer_id, created_at)
            SELECT kind, namespace, value, customer_id, now()
            FROM json_to_recordset(%s::json) AS n(kind text, namespace text, value text, customer_id bigint)
            ON CONFLICT (kind, namespace, value) DO NOTHING
            """,
            [json.dumps([{"kind": k[0], "namespace": k[1], "value": k[2], "customer_id": c} for k, c in rows.items()],
                        ensure_ascii=False)],
        )  # fmt: skip
