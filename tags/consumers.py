"""The tags app's domain-event consumer: re-check auto-tag rules for the customers that just changed."""

from __future__ import annotations

from customers.conditions import reactions_of
from customers.models import DomainEvent
from tags.models import TagRule
from tags.services import apply_rule

# Every kind that can change a rule's outcome (the predicates say which matter to each rule).
KINDS = frozenset({"*"})


def apply_rules_to_changed_customers(events: list[DomainEvent]) -> None:
    """For each active rule, re-evaluate it for the customers whose events it reacts to (one query per rule)."""
    rules = list(TagRule.objects.filter(is_active=True).order_by("pk"))
    if not rules:
        return
    for rule in rules:
        kinds = reactions_of(rule.rule)
        affected = {e.customer_id for e in events if "*" in kinds or e.kind in kinds}
        if affected:
            apply_rule(rule, customer_ids=affected)
