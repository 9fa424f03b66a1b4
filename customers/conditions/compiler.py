"""Reading a rule tree: validation with paths, compilation to one Q on Customer, and rendering in words."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from django.db.models import Q
from django.utils.translation import gettext as _

from customers.conditions import registry
from customers.conditions.registry import Checker, Context, RuleError

MAX_DEPTH = 12
MAX_NODES = 200


@dataclass(frozen=True)
class Node:
    """A checked rule: a group (`all`/`any`/`not`) of nodes, or a predicate with its clean parameters."""

    kind: str  # "all", "any", "not" or "predicate"
    children: tuple[Node, ...] = ()
    predicate: str = ""
    params: Any = None


def check(rule: Any) -> Node:
    """The rule, checked; RuleError lists every problem with its path (e.g. `all[1].value`)."""
    checker = Checker()
    counter = [0]
    node = _check(rule, "$", checker, 0, counter)
    if checker.issues:
        raise RuleError(checker.issues)
    return node


def _check(raw: Any, at: str, checker: Checker, depth: int, counter: list[int]) -> Node:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        if counter[0] == MAX_NODES + 1:
            checker.error(at, _("A rule has at most %(n)d conditions.") % {"n": MAX_NODES})
        return Node("all")
    if depth > MAX_DEPTH:
        checker.error(at, _("Rules nest at most %(n)d levels deep.") % {"n": MAX_DEPTH})
        return Node("all")
    if not isinstance(raw, dict):
        checker.error(at, _('Expected an object: {"all": [...]}, {"any": [...]}, {"not": {...}} or a predicate.'))
        return Node("all")
    groups = [key for key in ("all", "any", "not") if key in raw]
    if groups:
        if len(raw) != 1:
            checker.error(at, _("A group has exactly one key (all, any or not)."))
            return Node("all")
        kind = groups[0]
        if kind == "not":
            return Node("not", (_check(raw["not"], f"{at}.not", checker, depth + 1, counter),))
        children = raw[kind]
        if not isinstance(children, list) or not children:
            checker.error(f"{at}.{kind}", _("Expected a non-empty list of conditions."))
            return Node(kind)
        return Node(kind, tuple(_check(c, f"{at}.{kind}[{i}]", checker, depth + 1, counter)
                                for i, c in enumerate(children)))  # fmt: skip
    name = raw.get("predicate")
    predicate = registry.get(name) if isinstance(name, str) else None
    if predicate is None:
        checker.error(f"{at}.predicate", _("Unknown predicate %(name)r; expected one of %(names)s.")
                      % {"name": name, "names": ", ".join(registry.names())})  # fmt: skip
        return Node("all")
    return Node("predicate", predicate=name, params=predicate.check(raw, at, checker))


def to_q(node: Node, ctx: Context) -> Q:
    if node.kind == "predicate":
        return registry.get(node.predicate).q(node.params, ctx)
    if node.kind == "not":
        return ~to_q(node.children[0], ctx)
    if node.kind == "all":
        return _all_q(node, ctx)
    combined = Q()
    for child in node.children:
        combined |= to_q(child, ctx)
    return combined


def _scans(node: Node) -> bool:
    if node.kind == "predicate":
        return registry.get(node.predicate).scans_rows
    return any(_scans(child) for child in node.children)


def _scanning_predicates(node: Node) -> int:
    if node.kind == "predicate":
        return int(registry.get(node.predicate).scans_rows)
    return sum(_scanning_predicates(child) for child in node.children)


def _all_q(node: Node, ctx: Context) -> Q:
    """AND of the children. The aggregates among them read only the rows of the customers the cheap ones leave,
    and those over the same rows ("≥ 3 orders and over ¥1,000 in 365 days") share one GROUP BY. A customer in
    such a group has passed the cheap children already, so they are not tested a second time outside it."""
    cheap = [child for child in node.children if not _scans(child)]
    scanning = [child for child in node.children if _scans(child)]
    cheap_q = Q()
    for child in cheap:
        cheap_q &= to_q(child, ctx)
    narrowed = bool(scanning and cheap) and ctx.customer_ids is None
    by_rows: dict[str, list[registry.Aggregate]] = {}
    others = []  # scanning children that are not plain aggregates: a `not`, an `any`, "bought product X"
    for child in scanning:
        aggregate = registry.get(child.predicate).aggregate(child.params, ctx) if child.kind == "predicate" else None
        if aggregate is None:
            others.append(child)
        else:
            by_rows.setdefault(aggregate.source, []).append(aggregate)
    if narrowed:
        readers = len(by_rows) + sum(_scanning_predicates(child) for child in others)
        ctx = replace(ctx, candidates=cheap_q if ctx.candidates is None else ctx.candidates & cheap_q,
                      several_readers=readers > 1)  # fmt: skip
    combined = Q()
    for child in others:
        combined &= to_q(child, ctx)
    within_candidates = False  # some group selects only candidates (not the complement form)
    for aggregates in by_rows.values():
        combined &= registry.aggregates_q(aggregates, ctx)
        within_candidates |= not all(aggregate.empty_matches for aggregate in aggregates)
    # Correlated aggregates are evaluated for the customers the cheap conditions leave, in the same query.
    return combined if narrowed and within_candidates and not ctx.correlated else cheap_q & combined


def describe(node: Node, *, top: bool = True) -> str:
    if node.kind == "predicate":
        return registry.get(node.predicate).describe(node.params)
    if node.kind == "not":
        return _("NOT (%(rule)s)") % {"rule": describe(node.children[0], top=True)}
    joiner = _(" AND ") if node.kind == "all" else _(" OR ")
    text = joiner.join(describe(child, top=False) for child in node.children)
    return text if top or len(node.children) == 1 else f"({text})"


def predicates_of(node: Node) -> list[tuple[str, Any]]:
    """Every (predicate name, params) in the tree."""
    if node.kind == "predicate":
        return [(node.predicate, node.params)]
    return [found for child in node.children for found in predicates_of(child)]


def reacts_to(node: Node) -> frozenset[str]:
    """The domain event kinds that can change whether a customer matches ("*" for any)."""
    kinds: set[str] = set()
    for name, _params in predicates_of(node):
        kinds |= registry.get(name).reacts_to
    return frozenset(kinds)


def reactions_of(rule: Any) -> frozenset[str]:
    """`reacts_to` of a stored (already validated) rule, read from its JSON: no validation, no queries, so the
    consumers can ask it for every rule of every batch. An unknown predicate reacts to everything."""
    if not isinstance(rule, dict):
        return frozenset({"*"})
    if "not" in rule:
        return reactions_of(rule["not"])
    for group in ("all", "any"):
        if group in rule:
            return frozenset().union(*(reactions_of(child) for child in rule[group]))
    predicate = registry.get(rule.get("predicate"))
    return predicate.reacts_to if predicate is not None else frozenset({"*"})


def is_time_relative(node: Node) -> bool:
    return any(registry.get(name).is_time_relative(params) for name, params in predicates_of(node))


def leads_back(start: Any, dependencies: Iterable[Any], graph: Mapping[Any, Iterable[Any]]) -> bool:
    """Whether following `dependencies` (then `graph`: node → what its rule reads) comes back to `start`: a rule
    that depends on its own outcome (a tag's rule reading the tag, a segment built on itself) is refused."""
    stack, seen = list(dependencies), set()
    while stack:
        current = stack.pop()
        if current == start:
            return True
        if current not in seen:
            seen.add(current)
            stack.extend(graph.get(current, ()))
    return False
