"""Random rules over random small datasets: the compiled SQL selects exactly what a plain Python reading of the
same rule selects. The Python evaluator below exists only here, as the oracle."""

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.conditions import Context, matching_customers, registry
from customers.models import (
    Channel,
    CommunityGroup,
    CustomAttribute,
    Customer,
    Event,
    GroupMembership,
    Order,
    OrderLine,
    Product,
    Staff,
)

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
CTX = Context(now=NOW)
CITIES = ["上海", "杭州", "Shanghai", ""]
STATUSES = ["paid", "completed", "refunded", "cancelled", "partially_refunded"]
PRODUCTS = [("MASK", "面膜"), ("SERUM", "精华"), ("WASH", "洁面")]
EVENT_TYPES = ["content_view", "share"]
TOPICS = ["成分", "安全"]
COUNTED = {"paid", "shipped", "completed", "partially_refunded"}


@dataclass
class Person:
    pk: int
    city: str
    gender: str
    birthday: date | None
    attributes: dict
    channel: str | None
    owner: int | None
    first_seen_at: datetime
    orders: list = field(default_factory=list)  # (status, amount, refunded, ordered_at, [(sku, category, amount)])
    events: list = field(default_factory=list)  # (type, properties, occurred_at)
    groups: list = field(default_factory=list)  # (group id, group type, left)


# ------------------------------------------------------------------------------------------------ the oracle


def compare(actual, op, value, *, blank_is_unset=False):
    unset = actual is None or (blank_is_unset and actual == "")
    if op == "is_set":
        return not unset
    if op == "not_set":
        return unset
    if op == "ne":
        return unset or actual != value
    if op == "not_in":
        return unset or actual not in value
    if unset:
        return False
    if op == "eq":
        return actual == value
    if op == "in":
        return actual in value
    if op == "contains":
        return value.upper() in actual.upper()
    if op == "starts_with":
        return actual.upper().startswith(value.upper())
    if op == "between":
        return value[0] <= actual <= value[1]
    return {"lt": actual < value, "lte": actual <= value, "gt": actual > value, "gte": actual >= value}[op]


def in_window(moment, window):
    if not window or window == "ever":
        return True
    if "last_days" in window:
        return moment >= NOW - timedelta(days=window["last_days"])
    if "since" in window and moment < CTX.start_of_day(date.fromisoformat(window["since"])):
        return False
    return not ("until" in window and moment >= CTX.start_of_day(date.fromisoformat(window["until"]) + timedelta(1)))


def line_matches(line, node):
    sku, category, _amount = line
    return sku in node.get("products", []) or category in node.get("categories", [])


def days_since(moment):
    return int((NOW - moment).total_seconds() // 86400)


def oracle(person: Person, node: dict) -> bool:
    if "all" in node:
        return all(oracle(person, child) for child in node["all"])
    if "any" in node:
        return any(oracle(person, child) for child in node["any"])
    if "not" in node:
        return not oracle(person, node["not"])
    kind = node["predicate"]
    op, value = node.get("op"), node.get("value")
    if kind == "attribute":
        name = node["field"]
        if name == "attributes.score":
            raw = person.attributes.get("score")
            actual = Decimal(raw) if isinstance(raw, int) and not isinstance(raw, bool) else None
            value = (
                [Decimal(v) for v in value]
                if isinstance(value, list)
                else (Decimal(value) if value is not None else None)
            )
            return compare(actual, op, value)
        if name == "birthday":
            value = (
                [date.fromisoformat(v) for v in value]
                if isinstance(value, list)
                else (date.fromisoformat(value) if value else None)
            )
            return compare(person.birthday, op, value)
        return compare(getattr(person, name), op, value, blank_is_unset=True)
    if kind == "date_relative":
        today = CTX.today()
        if "anniversary_within_days" in node:
            if person.birthday is None:
                return False
            for n in range(node["anniversary_within_days"] + 1):
                day = today + timedelta(days=n)
                if (person.birthday.month, person.birthday.day) == (day.month, day.day):
                    return True
                if (
                    (person.birthday.month, person.birthday.day) == (2, 29)
                    and (day.month, day.day) == (2, 28)
                    and not calendar.isleap(day.year)
                ):
                    return True
            return False
        cutoff = CTX.start_of_day(
            today - timedelta(days=node.get("more_than_days_ago", node.get("less_than_days_ago")))
        )
        return person.first_seen_at < cutoff if "more_than_days_ago" in node else person.first_seen_at >= cutoff
    if kind == "channel":
        return person.channel in node["in"]
    if kind == "owner":
        return (person.owner is not None) == node["is_set"] if "is_set" in node else person.owner in node["in"]
    if kind == "in_group":
        current = [(gid, gtype) for gid, gtype, left in person.groups if not left]
        if "groups" in node:
            return any(gid in node["groups"] for gid, _t in current)
        return any(gtype == node["group_type"] for _g, gtype in current)
    counted = [o for o in person.orders if o[0] in COUNTED and in_window(o[3], node.get("window"))]
    filtered = "products" in node or "categories" in node
    if kind in ("orders_count", "bought"):
        if filtered:
            counted = [o for o in counted if any(line_matches(line, node) for line in o[4])]
        return bool(counted) if kind == "bought" else compare(Decimal(len(counted)), op, value)
    if kind == "orders_sum":
        if filtered:
            total = sum((line[2] for o in counted for line in o[4] if line_matches(line, node)), Decimal(0))
        else:
            total = sum((o[1] - o[2] for o in counted), Decimal(0))
        return compare(total, op, value)
    if kind == "avg_order_value":
        if not counted:
            return False
        return compare(sum((o[1] - o[2] for o in counted), Decimal(0)) / len(counted), op, value)
    if kind == "days_since_last_order":
        times = [o[3] for o in person.orders if o[0] in COUNTED]
        if op in ("is_set", "not_set"):
            return bool(times) == (op == "is_set")
        return bool(times) and compare(Decimal(days_since(max(times))), op, value)
    events = [
        e
        for e in person.events
        if e[0] == node["type"] and all(e[1].get(k) == v for k, v in node.get("properties", {}).items())
    ]
    if kind == "event_count":
        return compare(Decimal(len([e for e in events if in_window(e[2], node.get("window"))])), op, value)
    if kind == "days_since_last_event":
        if op in ("is_set", "not_set"):
            return bool(events) == (op == "is_set")
        return bool(events) and compare(Decimal(days_since(max(e[2] for e in events))), op, value)
    raise AssertionError(kind)


# ------------------------------------------------------------------------------------------------ strategies

windows = st.one_of(
    st.just("ever"),
    st.builds(lambda n: {"last_days": n}, st.integers(1, 400)),
    st.builds(
        lambda a, b: {"since": str(NOW.date() - timedelta(a + b)), "until": str(NOW.date() - timedelta(a))},
        st.integers(0, 300),
        st.integers(0, 300),
    ),
)
counts = st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"]).flatmap(
    lambda op: st.fixed_dictionaries({"op": st.just(op), "value": st.integers(0, 3)})
) | st.builds(lambda a, b: {"op": "between", "value": [a, a + b]}, st.integers(0, 2), st.integers(0, 2))
money = st.sampled_from(["lt", "lte", "gt", "gte"]).flatmap(
    lambda op: st.fixed_dictionaries({"op": st.just(op), "value": st.integers(0, 900)})
)
product_filter = st.one_of(
    st.just({}),
    st.builds(lambda p: {"products": p}, st.lists(st.sampled_from([p for p, _c in PRODUCTS]), min_size=1, max_size=2)),
    st.builds(
        lambda c: {"categories": c}, st.lists(st.sampled_from([c for _p, c in PRODUCTS]), min_size=1, max_size=2)
    ),
)
text_compare = st.one_of(
    st.builds(
        lambda op, v: {"op": op, "value": v},
        st.sampled_from(["eq", "ne", "contains", "starts_with"]),
        st.sampled_from(["上海", "杭州", "shang", "SHANGHAI", "海"]),
    ),
    st.builds(
        lambda op, v: {"op": op, "value": v},
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(["上海", "杭州", "Shanghai"]), min_size=1, max_size=2),
    ),
    st.builds(lambda op: {"op": op}, st.sampled_from(["is_set", "not_set"])),
)
event_filter = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES)},
    optional={"properties": st.builds(lambda t: {"topic": t}, st.sampled_from(TOPICS))},
)


predicates = st.one_of(
    text_compare.map(lambda c: {"predicate": "attribute", "field": "city", **c}),
    st.builds(
        lambda op, v: {"predicate": "attribute", "field": "gender", "op": op, "value": v},
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(["female", "male"]),
    ),
    st.builds(
        lambda op, d: {"predicate": "attribute", "field": "birthday", "op": op, "value": str(d)},
        st.sampled_from(["lt", "gte", "eq", "ne"]),
        st.dates(date(1980, 1, 1), date(2000, 12, 31)),
    ),
    st.builds(
        lambda op: {"predicate": "attribute", "field": "birthday", "op": op}, st.sampled_from(["is_set", "not_set"])
    ),
    st.builds(lambda c: {"predicate": "attribute", "field": "attributes.score", **c}, counts),
    st.builds(
        lambda n: {"predicate": "date_relative", "field": "birthday", "anniversary_within_days": n}, st.integers(0, 120)
    ),
    st.builds(
        lambda key, n: {"predicate": "date_relative", "field": "first_seen_at", key: n},
        st.sampled_from(["more_than_days_ago", "less_than_days_ago"]),
        st.integers(0, 500),
    ),
    st.builds(lambda c: {"predicate": "channel", "in": c}, st.lists(st.sampled_from(["qr", "ad"]), min_size=1)),
    st.builds(lambda s: {"predicate": "owner", "is_set": s}, st.booleans()),
    st.builds(lambda t: {"predicate": "in_group", "group_type": t}, st.sampled_from(["宝妈群", "新客群"])),
    st.builds(lambda c, w, p: {"predicate": "orders_count", **c, "window": w, **p}, counts, windows, product_filter),
    st.builds(lambda c, w, p: {"predicate": "orders_sum", **c, "window": w, **p}, money, windows, product_filter),
    st.builds(lambda c, w: {"predicate": "avg_order_value", **c, "window": w}, money, windows),
    st.builds(lambda w, p: {"predicate": "bought", "window": w, **p}, windows, product_filter.filter(bool)),
    st.builds(
        lambda c: {"predicate": "days_since_last_order", **c},
        counts.map(
            lambda c: {
                **c,
                "value": c["value"] * 100 if c["op"] != "between" else [c["value"][0] * 100, c["value"][1] * 100],
            }
        )
        | st.builds(lambda op: {"op": op}, st.sampled_from(["is_set", "not_set"])),
    ),
    st.builds(lambda e, c, w: {"predicate": "event_count", **e, **c, "window": w}, event_filter, counts, windows),
    st.builds(lambda e, c: {"predicate": "days_since_last_event", **e, **c}, event_filter, money),
)
rules = st.recursive(
    predicates,
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=5,
)

moments = st.integers(0, 800).map(lambda d: NOW - timedelta(days=d, hours=d % 13))
orders = st.tuples(
    st.sampled_from(STATUSES),
    st.integers(0, 400),
    moments,
    st.lists(st.tuples(st.sampled_from(PRODUCTS), st.integers(0, 300)), min_size=1, max_size=2),
)
people = st.lists(
    st.fixed_dictionaries(
        {
            "city": st.sampled_from(CITIES),
            "gender": st.sampled_from(["female", "male", "unknown"]),
            "birthday": st.none() | st.dates(date(1980, 1, 1), date(2000, 12, 31)) | st.just(date(1992, 2, 29)),
            "attributes": st.one_of(
                st.just({}), st.builds(lambda s: {"score": s}, st.integers(0, 3)), st.just({"score": "high"})
            ),
            "channel": st.sampled_from([None, "qr", "ad"]),
            "owner": st.sampled_from([None, 0, 1]),
            "first_seen_days": st.integers(0, 800),
            "orders": st.lists(orders, max_size=4),
            "events": st.lists(
                st.tuples(
                    st.sampled_from(EVENT_TYPES), st.sampled_from([{}, {"topic": "成分"}, {"topic": "安全"}]), moments
                ),
                max_size=4,
            ),
            "groups": st.lists(st.tuples(st.integers(0, 1), st.booleans()), max_size=2, unique_by=lambda g: g[0]),
        }
    ),
    min_size=1,
    max_size=6,
)


def load(specs) -> list[Person]:
    channels = {code: Channel.objects.create(code=code, name=code) for code in ("qr", "ad")}
    staff = [Staff.objects.create(name=f"s{i}") for i in range(2)]
    groups = [
        CommunityGroup.objects.create(chat_id=f"g{i}", name=f"g{i}", group_type=t, created_at=NOW)
        for i, t in enumerate(["宝妈群", "新客群"])
    ]
    products = {sku: Product.objects.create(sku=sku, name=sku, category=category) for sku, category in PRODUCTS}
    result = []
    for n, spec in enumerate(specs):
        first_seen = NOW - timedelta(days=spec["first_seen_days"])
        customer = Customer.objects.create(
            name=f"c{n}",
            city=spec["city"],
            gender=spec["gender"],
            birthday=spec["birthday"],
            attributes=spec["attributes"],
            source_channel=channels.get(spec["channel"]),
            owner=staff[spec["owner"]] if spec["owner"] is not None else None,
            first_seen_at=first_seen,
        )
        person = Person(
            customer.pk,
            spec["city"],
            spec["gender"],
            spec["birthday"],
            spec["attributes"],
            spec["channel"],
            spec["owner"],
            first_seen,
        )
        for k, (status, amount, ordered_at, lines) in enumerate(spec["orders"]):
            refunded = {"refunded": amount, "partially_refunded": amount // 3}.get(status, 0)
            order = Order.objects.create(
                source="t",
                external_id=f"{n}-{k}",
                customer=customer,
                status=status,
                ordered_at=ordered_at,
                amount=amount,
                refunded_amount=refunded,
            )
            for (sku, _category), line_amount in lines:
                OrderLine.objects.create(order=order, product=products[sku], sku=sku, amount=line_amount)
            person.orders.append(
                (
                    status,
                    Decimal(amount),
                    Decimal(refunded),
                    ordered_at,
                    [(sku, category, Decimal(a)) for (sku, category), a in lines],
                )
            )
        for k, (kind, properties, occurred_at) in enumerate(spec["events"]):
            Event.objects.create(
                customer=customer, type=kind, properties=properties, occurred_at=occurred_at, dedupe_key=f"{n}-{k}"
            )
            person.events.append((kind, properties, occurred_at))
        for group_index, left in spec["groups"]:
            GroupMembership.objects.create(
                group=groups[group_index], customer=customer, joined_at=NOW, left_at=NOW if left else None
            )
            person.groups.append((groups[group_index].pk, groups[group_index].group_type, left))
        result.append(person)
    return result


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(specs=people, rule=rules)
@pytest.mark.parametrize("probe_up_to", [250_000, 0], ids=["candidates probed", "candidates semi-joined"])
def test_compiled_rules_select_what_the_oracle_selects(specs, rule, probe_up_to, monkeypatch):
    # Aggregates read the candidates' rows by lookup up to a size, by a semi-join above it: both give the oracle's set.
    monkeypatch.setattr(registry, "PROBE_CANDIDATES_UP_TO", probe_up_to)
    try:
        with transaction.atomic():
            CustomAttribute.objects.create(key="score", label="score", type="number")
            population = load(specs)
            expected = {p.pk for p in population if oracle(p, rule)}
            selected = set(matching_customers(rule, ctx=CTX).values_list("pk", flat=True))
            assert selected == expected, rule
            # Checking one customer is the same query restricted to them.
            for person in population[:2]:
                alone = matching_customers(rule, ctx=CTX, customer_ids=[person.pk]).exists()
                assert alone == (person.pk in expected), (rule, person.pk)
            raise _Rollback
    except _Rollback:
        pass


def shared_rows(window, products):
    """Aggregates over one set of rows, which compile to one GROUP BY: orders in the same window (counted, summed,
    averaged), or with a product filter, either the orders having such lines (counts) or those lines (sums)."""
    count = st.builds(lambda c: {"predicate": "orders_count", **c, "window": window, **products}, counts)
    total = st.builds(lambda c: {"predicate": "orders_sum", **c, "window": window, **products}, money)
    if products:
        return st.lists(count, min_size=2, max_size=3) | st.lists(total, min_size=2, max_size=3)
    average = st.builds(lambda c: {"predicate": "avg_order_value", **c, "window": window}, money)
    return st.lists(count | total | average, min_size=2, max_size=3)


siblings = st.tuples(windows, product_filter).flatmap(lambda wp: shared_rows(*wp))


@pytest.mark.django_db
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(specs=people, aggregates=siblings, others=st.lists(predicates, max_size=1))
def test_sibling_aggregates_over_the_same_rows_share_one_scan_and_select_what_the_oracle_selects(
    specs, aggregates, others
):
    rule = {"all": [*aggregates, *others]}
    try:
        with transaction.atomic():
            CustomAttribute.objects.create(key="score", label="score", type="number")
            scans = str(matching_customers(rule, ctx=CTX).query).count("GROUP BY")
            other_scans = str(matching_customers(others[0], ctx=CTX).query).count("GROUP BY") if others else 0
            assert scans <= 1 + other_scans
            population = load(specs)
            expected = {p.pk for p in population if oracle(p, rule)}
            assert set(matching_customers(rule, ctx=CTX).values_list("pk", flat=True)) == expected, rule
            person = population[0]
            alone = matching_customers(rule, ctx=CTX, customer_ids=[person.pk]).exists()
            assert alone == (person.pk in expected), (rule, person.pk)
            raise _Rollback
    except _Rollback:
        pass
