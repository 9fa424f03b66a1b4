"""The segments app's domain-event consumer: incremental membership for the customers that just changed."""

from customers.models import DomainEvent
from segments.services.segments import update_for_customers

KINDS = frozenset({"*"})


def update_changed_customers(events: list[DomainEvent]) -> None:
    """Re-evaluate, for the changed customers, the dynamic segments whose rules react to these event kinds."""
    by_kind: dict[str, set[int]] = {}
    for event in events:
        by_kind.setdefault(event.kind, set()).add(event.customer_id)
    customers = set().union(*by_kind.values())
    update_for_customers(customers, kinds=set(by_kind))
