"""The segments app's domain-event consumers: incremental membership for the customers that just changed, and the
RFM rechecks (customers whose orders changed, for the next incremental RFM run)."""

from customers.conditions.predicates import ORDER_CHANGES
from customers.models import DomainEvent, DomainEventKind
from segments.services.layers.rfm import recheck
from segments.services.segments import update_for_customers

KINDS = frozenset({"*"})
# Orders placed, updated, refunded or deleted, and merges (the merged customer's orders move); an undone merge is
# a customer.updated with `merge_undone` (they move back).
RFM_KINDS = ORDER_CHANGES | {DomainEventKind.CUSTOMER_UPDATED}


def update_changed_customers(events: list[DomainEvent]) -> None:
    """Re-evaluate, for the changed customers, the dynamic segments whose rules react to these event kinds."""
    by_kind: dict[str, set[int]] = {}
    for event in events:
        by_kind.setdefault(event.kind, set()).add(event.customer_id)
    customers = set().union(*by_kind.values())
    update_for_customers(customers, kinds=set(by_kind))


def recheck_rfm(events: list[DomainEvent]) -> None:
    """Note the customers whose orders changed (both sides of a merge or its undoing) for the next RFM run."""
    customers: set[int] = set()
    for event in events:
        payload = event.payload or {}
        if event.kind == DomainEventKind.CUSTOMER_UPDATED and "merge_undone" not in payload:
            continue
        customers.add(event.customer_id)
        if event.kind == DomainEventKind.CUSTOMER_MERGED and payload.get("merged_id"):
            customers.add(int(payload["merged_id"]))
    recheck(customers)
