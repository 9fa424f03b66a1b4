"""The rule language: one JSON condition tree for tag rules, segments, journey triggers and campaign audiences.

    rule = {"all": [{"predicate": "orders_count", "op": "gte", "value": 3, "window": {"last_days": 365}},
                    {"predicate": "attribute", "field": "city", "op": "in", "value": ["上海", "杭州"]}]}
    validate(rule)                      # RuleError with every issue's path, or the checked tree
    matching_customers(rule)            # one queryset on Customer; .filter(pk=x).exists() checks one person
    describe(rule)                      # "placed orders ≥ 3 times in the last 365 days AND 城市 is one of …"

Grammar and predicates: docs/rules.md. Other apps register predicates with `register` (see registry.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Q, QuerySet

from customers.conditions import predicates  # noqa: F401  (registers the customers app's predicates)
from customers.conditions.compiler import (
    Node,
    check,
    is_time_relative,
    leads_back,
    predicates_of,
    reactions_of,
    reacts_to,
    to_q,
)
from customers.conditions.compiler import describe as describe_node
from customers.conditions.registry import Context, Predicate, RuleError, RuleIssue, register

__all__ = [
    "Context", "Node", "Predicate", "RuleError", "RuleIssue", "compile_rule", "describe", "is_time_relative",
    "leads_back", "matching_customers", "predicates_of", "reactions_of", "reacts_to", "register", "validate",
]  # fmt: skip


def validate(rule: Any) -> Node:
    """Check a rule; raises RuleError listing every problem with its path."""
    return check(rule)


def compile_rule(rule: Any, *, ctx: Context | None = None) -> Q:
    """The rule as one Q on Customer, evaluated at `ctx.now` (default: now)."""
    return to_q(check(rule), ctx or Context.current())


def matching_customers(
    rule: Any, *, base: QuerySet | None = None, ctx: Context | None = None, customer_ids: Iterable[int] | None = None
) -> QuerySet:
    """Customers (current, not merged) matching the rule: one set-based query.

    With `customer_ids`, only those customers are considered, down to every subquery: the incremental check
    after a change to one customer is that same query restricted to them.
    """
    from customers.models import Customer

    queryset = base if base is not None else Customer.objects.current()
    if customer_ids is not None:
        ids = tuple(sorted(set(customer_ids)))
        ctx = Context(now=(ctx or Context.current()).now, customer_ids=ids)
        queryset = queryset.filter(pk__in=ids)
    return queryset.filter(compile_rule(rule, ctx=ctx))


def describe(rule: Any) -> str:
    """The rule in words, in the active language."""
    return describe_node(check(rule))
