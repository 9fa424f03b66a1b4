"""Predicates of the rule language, their registry, and the parameter checks they share.

A predicate is a small class: `check(node, at)` turns a JSON node into clean parameters (or records precise
errors), `q(params, ctx)` builds a `Q` on Customer, `describe(params)` renders it in the active language.
Apps add their own predicates with `register(...)` in `AppConfig.ready()`; the engine never imports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, ClassVar

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import BooleanField, F, Func, OuterRef, Q
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    In,
    IsNull,
    IStartsWith,
    LessThan,
    LessThanOrEqual,
)
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

TYPES = ("text", "number", "date", "datetime", "boolean")
OPERATORS: dict[str, tuple[str, ...]] = {
    "text": ("eq", "ne", "in", "not_in", "contains", "starts_with", "is_set", "not_set"),
    "number": ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "is_set", "not_set"),
    "date": ("eq", "ne", "lt", "lte", "gt", "gte", "between", "is_set", "not_set"),
    "datetime": ("lt", "lte", "gt", "gte", "between", "is_set", "not_set"),
    "boolean": ("eq", "is_set", "not_set"),
}
COUNT_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "between")
SYMBOLS = {"eq": "=", "ne": "≠", "lt": "<", "lte": "≤", "gt": ">", "gte": "≥"}


@dataclass(frozen=True)
class RuleIssue:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class RuleError(ValueError):
    """A rule that does not validate; `issues` says where and what was expected."""

    def __init__(self, issues: list[RuleIssue]) -> None:
        super().__init__("; ".join(f"{i.path}: {i.message}" for i in issues))
        self.issues = issues


@dataclass
class Checker:
    """Collects issues while a rule is read; `at(path)` gives a child's path."""

    issues: list[RuleIssue] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.issues.append(RuleIssue(path or "$", message))


# Up to this many candidates (the planner's estimate), aggregates look each candidate's rows up by index; above it,
# one scan of the rows is cheaper than as many lookups.
PROBE_CANDIDATES_UP_TO = 250_000


def _estimated_rows(queryset) -> int:
    """The planner's estimate of a queryset's rows (EXPLAIN, nothing run)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


@dataclass(frozen=True)
class Context:
    """What a rule is evaluated against: the moment (so 'last 30 days' is exact), and optionally the only
    customers asked about, so every aggregate subquery reads just their rows (checking one customer after an
    order is then an index lookup, not an aggregate over the whole base)."""

    now: datetime
    customer_ids: tuple[int, ...] | None = None
    # Inside an `all`, the customers its cheap conditions (profile, tags, segments) leave: aggregates over orders
    # and events read only their rows. Customers outside fail the `all` anyway, whatever the aggregate says.
    candidates: Q | None = None
    # Whether more than one subquery reads the candidates' rows (aggregates over orders and over events, say).
    several_readers: bool = False

    @classmethod
    def current(cls, customer_ids: tuple[int, ...] | None = None) -> Context:
        return cls(now=timezone.now(), customer_ids=customer_ids)

    def scope(self, rows, customer_field: str = "customer_id"):
        """Limit a queryset of per-customer rows to the customers asked about, or the candidates, if any.

        Few candidates (at most PROBE_CANDIDATES_UP_TO, the planner's estimate) have their rows looked up, an index
        lookup each (index-only where an index covers the aggregate): read by one subquery, the candidates drive
        it, `customer_id = ANY(ARRAY(candidates))` (`IN (…)` was planned as a semi-join over every row); read by
        several, each would select the candidates again, so the subqueries are correlated instead, by the customer
        of the query around them, which selects the candidates once (`correlated`). Many candidates: one scan of
        the rows, restricted to them by a semi-join, is cheaper than as many lookups."""
        if self.customer_ids is not None:
            return rows.filter(**{f"{customer_field}__in": self.customer_ids})
        if self.candidates is None:
            return rows
        if self.correlated:
            return rows.filter(**{customer_field: OuterRef("pk")})
        if self._few_candidates:
            return rows.filter(Func(
                F(customer_field), ArraySubquery(self._candidates), arg_joiner=" = ANY(",
                template="(%(expressions)s))", output_field=BooleanField(),
            ))  # fmt: skip
        return rows.filter(**{f"{customer_field}__in": self._candidates})

    @property
    def correlated(self) -> bool:
        """Whether the subqueries reading the candidates' rows are correlated with the customers' query, which then
        has to test the candidates' conditions itself."""
        return self.candidates is not None and self.several_readers and self._few_candidates

    @cached_property
    def _few_candidates(self) -> bool:
        """At most PROBE_CANDIDATES_UP_TO candidates expected: one EXPLAIN per context."""
        return _estimated_rows(self._candidates) <= PROBE_CANDIDATES_UP_TO

    @property
    def _candidates(self):
        from customers.models import Customer

        return Customer.objects.filter(self.candidates).values("pk")

    def start_of_day(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())

    def today(self) -> date:
        return timezone.localtime(self.now).date()


@dataclass(frozen=True)
class Aggregate:
    """`expression op value` over each customer's rows (orders, events, order lines), customers without rows
    having `empty` (None: no value, so they never match). Siblings in an `all` aggregating the same rows are read
    by one GROUP BY with the comparisons ANDed in its HAVING (see `aggregates_q`)."""

    rows: Any  # a queryset of per-customer rows, not yet scoped to the candidates
    expression: Any
    op: str
    value: Any
    empty: Any = None
    customer_field: str = "customer_id"  # the path to the customer in `rows`, which expose it as `customer_id`

    @property
    def source(self) -> str:
        """Equal for aggregates over the very same rows (same table, same filters and parameters)."""
        return repr((self.customer_field, *self.rows.order_by().query.sql_with_params()))

    @property
    def empty_matches(self) -> bool:
        return self.empty is not None and satisfies(self.empty, self.op, self.value)


def aggregates_q(aggregates: list[Aggregate], ctx: Context) -> Q:
    """Customers for whom every aggregate (all over the same rows) compares true: one `GROUP BY customer_id
    HAVING …` subquery, or its complement when customers without rows match every comparison (`orders_count < 2`
    includes people who never ordered)."""
    first = aggregates[0]
    names = {f"agg{i}": aggregate.expression for i, aggregate in enumerate(aggregates)}
    grouped = ctx.scope(first.rows, first.customer_field).order_by().values("customer_id").annotate(**names)
    tests = Q()
    for name, aggregate in zip(names, aggregates, strict=True):
        tests &= compare_q(F(name), aggregate.op, aggregate.value)
    if all(aggregate.empty_matches for aggregate in aggregates):
        return ~Q(pk__in=grouped.filter(~tests).values("customer_id"))
    return Q(pk__in=grouped.filter(tests).values("customer_id"))


class Predicate:
    name: ClassVar[str]
    params: ClassVar[frozenset[str]] = frozenset()
    # Domain event kinds after which a customer's result may change ("*": any), so incremental evaluation can
    # skip rules an event cannot affect.
    reacts_to: ClassVar[frozenset[str]] = frozenset({"*"})
    # Aggregates over many rows (orders, events): inside an `all`, they read only the candidates' rows.
    scans_rows: ClassVar[bool] = False

    def is_time_relative(self, params: dict[str, Any]) -> bool:
        """Whether the result can change with the clock alone (then hourly sweeps re-evaluate it)."""
        return False

    def check(self, node: dict[str, Any], at: str, checker: Checker) -> dict[str, Any]:
        raise NotImplementedError

    def q(self, params: dict[str, Any], ctx: Context) -> Q:
        aggregate = self.aggregate(params, ctx)
        if aggregate is None:
            raise NotImplementedError
        return aggregates_q([aggregate], ctx)

    def aggregate(self, params: dict[str, Any], ctx: Context) -> Aggregate | None:
        """A comparison on one aggregate over per-customer rows, when that is what the predicate is (then `q` need
        not be written, and siblings over the same rows share their scan); None otherwise."""
        return None

    def describe(self, params: dict[str, Any]) -> str:
        raise NotImplementedError


_REGISTRY: dict[str, Predicate] = {}


def register(predicate: type[Predicate]) -> type[Predicate]:
    """Add a predicate (usable as a class decorator). Names are unique; the class must implement the three methods."""
    name = getattr(predicate, "name", "")
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"predicate {predicate!r} needs a snake_case name")
    for method in ("check", "describe"):
        if getattr(predicate, method) is getattr(Predicate, method):
            raise ValueError(f"predicate {name} must implement {method}()")
    if predicate.q is Predicate.q and predicate.aggregate is Predicate.aggregate:
        raise ValueError(f"predicate {name} must implement q() or aggregate()")
    if name in _REGISTRY and type(_REGISTRY[name]) is not predicate:
        raise ValueError(f"predicate {name} is already registered by {type(_REGISTRY[name]).__name__}")
    _REGISTRY[name] = predicate()
    return predicate


def get(name: str) -> Predicate | None:
    return _REGISTRY.get(name)


def names() -> list[str]:
    return sorted(_REGISTRY)


# ---------------------------------------------------------------------------------------------- parameters


def reject_unknown(node: dict, allowed: frozenset[str], at: str, checker: Checker) -> None:
    for key in sorted(set(node) - allowed - {"predicate"}):
        checker.error(f"{at}.{key}", _("Unknown parameter for this predicate."))


def parse_scalar(value: Any, value_type: str) -> Any:
    """A JSON value as `value_type`, or ValueError."""
    if value_type == "text":
        if not isinstance(value, str):
            raise ValueError
        return value
    if value_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError from None
        if not number.is_finite():
            raise ValueError
        return number
    if value_type == "date":
        if not isinstance(value, str):
            raise ValueError
        return date.fromisoformat(value)
    if value_type == "datetime":
        if not isinstance(value, str):
            raise ValueError
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else timezone.make_aware(parsed)
    if value_type == "boolean":
        if not isinstance(value, bool):
            raise ValueError
        return value
    raise ValueError


EXPECTED = {
    "text": gettext_noop("text"),
    "number": gettext_noop("a number"),
    "date": gettext_noop("a date like 2026-05-01"),
    "datetime": gettext_noop("a date and time like 2026-05-01T10:00:00+08:00"),
    "boolean": gettext_noop("true or false"),
}


def check_comparison(
    node: dict, at: str, checker: Checker, value_type: str, operators: tuple[str, ...] | None = None
) -> tuple[str, Any] | None:
    """`op` and `value` of a comparison, typed; None (with issues recorded) when they are wrong."""
    allowed = operators or OPERATORS[value_type]
    op = node.get("op")
    if op not in allowed:
        checker.error(f"{at}.op", _("Expected one of %(ops)s for %(type)s.") % {"ops": ", ".join(allowed),
                                                                                 "type": value_type})  # fmt: skip
        return None
    if op in ("is_set", "not_set"):
        return op, None
    value = node.get("value")
    try:
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise ValueError
            return op, [parse_scalar(v, value_type) for v in value]
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise ValueError
            low, high = (parse_scalar(v, value_type) for v in value)
            if low > high:
                checker.error(f"{at}.value", _("The lower bound is above the upper bound."))
                return None
            return op, (low, high)
        return op, parse_scalar(value, value_type)
    except (ValueError, TypeError):
        shape = {"in": _("a non-empty list of %s"), "not_in": _("a non-empty list of %s"),
                 "between": _("a list of two values, each %s")}.get(op, "%s")  # fmt: skip
        checker.error(f"{at}.value", _("Expected %(what)s.") % {"what": shape % _(EXPECTED[value_type])})
        return None


def compare_q(lhs: Any, op: str, value: Any, *, blank_is_unset: bool = False) -> Q:
    """`lhs op value` as a two-valued Q: never SQL's "unknown", so `not` means what it says.

    Unset values (NULL, or '' where `blank_is_unset`) satisfy only ne, not_in and not_set.
    """
    unset = Q(IsNull(lhs, True))
    if blank_is_unset:
        unset |= Q(Exact(lhs, ""))
    if op == "is_set":
        return ~unset
    if op == "not_set":
        return unset
    if op == "ne":
        return unset | (~unset & ~Q(Exact(lhs, value)))
    if op == "not_in":
        return unset | (~unset & ~Q(In(lhs, list(value))))
    if op == "eq":
        test = Q(Exact(lhs, value))
    elif op == "in":
        test = Q(In(lhs, list(value)))
    elif op == "contains":
        test = Q(IContains(lhs, value))
    elif op == "starts_with":
        test = Q(IStartsWith(lhs, value))
    elif op == "between":
        test = Q(GreaterThanOrEqual(lhs, value[0])) & Q(LessThanOrEqual(lhs, value[1]))
    else:
        lookup = {"lt": LessThan, "lte": LessThanOrEqual, "gt": GreaterThan, "gte": GreaterThanOrEqual}[op]
        test = Q(lookup(lhs, value))
    return ~unset & test  # FALSE AND unknown is FALSE


def satisfies(actual: Any, op: str, value: Any) -> bool:
    """The comparison in Python, for a set value (used to know whether zero/no rows satisfies a count rule)."""
    if op == "eq":
        return actual == value
    if op == "ne":
        return actual != value
    if op == "between":
        return value[0] <= actual <= value[1]
    return {"lt": actual < value, "lte": actual <= value, "gt": actual > value, "gte": actual >= value}[op]


def describe_comparison(op: str, value: Any, *, fmt: Callable[[Any], str] = str) -> str:
    """The comparison in words; `fmt` renders each value (e.g. as money)."""
    if op == "is_set":
        return _("is set")
    if op == "not_set":
        return _("is not set")
    if op == "in":
        return _("is one of %(values)s") % {"values": "、".join(fmt(v) for v in value)}
    if op == "not_in":
        return _("is none of %(values)s") % {"values": "、".join(fmt(v) for v in value)}
    if op == "contains":
        return _("contains “%(value)s”") % {"value": value}
    if op == "starts_with":
        return _("starts with “%(value)s”") % {"value": value}
    if op == "between":
        return _("between %(low)s and %(high)s") % {"low": fmt(value[0]), "high": fmt(value[1])}
    return f"{SYMBOLS[op]} {fmt(value)}"


def money(value: Any) -> str:
    return f"¥{value:,}"


# ------------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    last_days: int | None = None
    since: date | None = None
    until: date | None = None

    def bounds(self, ctx: Context) -> tuple[datetime | None, datetime | None]:
        """[start, end) for the window, or (None, None) for 'ever'."""
        if self.last_days is not None:
            return ctx.now - timedelta(days=self.last_days), None
        start = ctx.start_of_day(self.since) if self.since else None
        end = ctx.start_of_day(self.until + timedelta(days=1)) if self.until else None
        return start, end

    def filter(self, field_name: str, ctx: Context) -> Q:
        start, end = self.bounds(ctx)
        q = Q()
        if start is not None:
            q &= Q(**{f"{field_name}__gte": start})
        if end is not None:
            q &= Q(**{f"{field_name}__lt": end})
        return q

    def describe(self) -> str:
        if self.last_days is not None:
            return _("in the last %(days)d days") % {"days": self.last_days}
        if self.since and self.until:
            return _("between %(since)s and %(until)s") % {"since": self.since, "until": self.until}
        if self.since:
            return _("since %(since)s") % {"since": self.since}
        if self.until:
            return _("until %(until)s") % {"until": self.until}
        return _("ever")


def check_window(node: dict, at: str, checker: Checker) -> Window:
    raw = node.get("window")
    if raw in (None, "ever"):
        return Window()
    if not isinstance(raw, dict) or not raw or set(raw) - {"last_days", "since", "until"}:
        checker.error(f"{at}.window", _('Expected "ever", {"last_days": N} or {"since": date, "until": date}.'))
        return Window()
    if "last_days" in raw:
        days = raw["last_days"]
        if set(raw) != {"last_days"} or not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
            checker.error(f"{at}.window.last_days", _("Expected a whole number of days from 1 to 3650, alone."))
            return Window()
        return Window(last_days=days)
    try:
        since = date.fromisoformat(raw["since"]) if "since" in raw else None
        until = date.fromisoformat(raw["until"]) if "until" in raw else None
    except (TypeError, ValueError):
        checker.error(f"{at}.window", _("Expected dates like 2026-05-01."))
        return Window()
    if since and until and since > until:
        checker.error(f"{at}.window", _("The window starts after it ends."))
    return Window(since=since, until=until)


def check_string_list(node: dict, key: str, at: str, checker: Checker, *, required: bool = False) -> list[str]:
    raw = node.get(key)
    if raw is None:
        if required:
            checker.error(f"{at}.{key}", _("This parameter is required."))
        return []
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
        checker.error(f"{at}.{key}", _("Expected a non-empty list of texts."))
        return []
    return list(raw)


def check_int_list(node: dict, key: str, at: str, checker: Checker) -> list[int]:
    raw = node.get(key)
    if not isinstance(raw, list) or not raw or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        checker.error(f"{at}.{key}", _("Expected a non-empty list of ids."))
        return []
    return list(raw)


Describer = Callable[[dict[str, Any]], str]
