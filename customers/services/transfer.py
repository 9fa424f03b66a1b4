"""Moving customers between reps (on the job, or after a departure) while keeping all history."""

from collections.abc import Iterable

from django.db import connection, transaction

from customers import domain_events
from customers.models import AddWay, DomainEventKind, Staff, TransferKind


def transfer_customers(
    customer_ids: Iterable[int], *, to_staff: Staff, kind: str = TransferKind.ON_JOB, by=None, reason: str = ""
) -> int:
    """Make `to_staff` the owner of these customers, set-based; returns how many changed owner.

    Records a Transfer per customer, marks the previous owner's WeCom pair `transferred`, and gives the new
    owner an active pair. Notes, tags, orders and history stay on the customer. Idempotent: customers already
    owned by `to_staff` are left alone.
    """
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id, owner_id FROM customers_customer
            WHERE id = ANY(%s::bigint[]) AND owner_id IS DISTINCT FROM %s ORDER BY id FOR UPDATE
            """,
            [ids, to_staff.pk],
        )
        moving = cursor.fetchall()
        if not moving:
            return 0
        moving_ids = [row[0] for row in moving]
        cursor.execute(
            """
            INSERT INTO customers_transfer (customer_id, from_staff_id, to_staff_id, kind, reason,
                transferred_by_id, transferred_at)
            SELECT id, owner_id, %s, CASE WHEN owner_id IS NULL THEN %s ELSE %s END, %s, %s, now()
            FROM customers_customer WHERE id = ANY(%s::bigint[])
            """,
            [to_staff.pk, TransferKind.ASSIGNED, kind, reason[:200], getattr(by, "pk", None), moving_ids],
        )
        cursor.execute(
            """
            UPDATE customers_relationship r SET status = 'transferred', status_changed_at = now()
            FROM customers_customer c
            WHERE c.id = r.customer_id AND r.staff_id = c.owner_id AND r.status = 'active'
              AND c.id = ANY(%s::bigint[])
            """,
            [moving_ids],
        )
        cursor.execute(
            """
            INSERT INTO customers_relationship (staff_id, customer_id, added_at, add_way, state, remark, status,
                status_changed_at)
            SELECT %s, id, now(), %s, '', '', 'active', now() FROM unnest(%s::bigint[]) AS id
            ON CONFLICT (staff_id, customer_id) DO UPDATE SET status = 'active', status_changed_at = now()
            """,
            [to_staff.pk, AddWay.ADMIN_ASSIGNED, moving_ids],
        )
        cursor.execute(
            "UPDATE customers_customer SET owner_id = %s, updated_at = now() WHERE id = ANY(%s::bigint[])",
            [to_staff.pk, moving_ids],
        )
        payload = {"owner_id": to_staff.pk, "transfer": kind}
        domain_events.record(DomainEventKind.CUSTOMER_UPDATED, moving_ids, [payload] * len(moving_ids))
    return len(moving_ids)
