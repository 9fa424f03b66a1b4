"""The customers app's own predicates: profile attributes, dates, channel, owner, groups, orders and behaviour.

Aggregates over orders and events are `Aggregate`s: they compile to uncorrelated `pk IN (SELECT customer_id …
GROUP BY … HAVING …)` subqueries (hash semi-joins over the whole base, and Postgres pushes a `pk = X` check into
them), or to their complement when zero rows satisfy the comparison (`orders_count < 2` includes people who never
ordered); siblings over the same rows share one subquery (registry.aggregates_q). Inside an `all` they read only
the candidates' rows (`Context.scope`); they count `count(*)`, so a covering index answers them alone.
"""

from __future__ import annotations

import calendar
from datetime import timedelta
from typing import Any

from django.db.models import (
    BooleanField,
    Case,
    Count,
    DateField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Max,
    OuterRef,
    Q,
    Sum,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.db.models.lookups import Exact, In, Regex
from django.utils.translation import gettext as _

from customers.conditions.registry import (
    COUNT_OPERATORS,
    Aggregate,
    Context,
    Predicate,
    check_comparison,
    check_int_list,
    check_string_list,
    check_window,
    compare_q,
    describe_comparison,
    money,
    register,
    reject_unknown,
)
from customers.models import Channel, CommunityGroup, CustomAttribute, Event, GroupMembership, Order, OrderLine

PROFILE_CHANGES = frozenset({"customer.created", "customer.updated", "customer.merged"})
ORDER_CHANGES = frozenset({"order.placed", "order.updated", "order.refunded", "customer.merged"})
EVENT_CHANGES = frozenset({"event.recorded", "customer.merged"})

# Profile fields a rule may compare, with their type; `attributes.<key>` reaches declared custom attributes.
PROFILE_FIELDS: dict[str, str] = {
    "name": "text",
    "gender": "text",
    "city": "text",
    "occupation": "text",
    "phone": "text",
    "email": "text",
    "birthday": "date",
    "first_seen_at": "datetime",
    "last_seen_at": "datetime",
    "created_at": "datetime",
}
# Orders that count as purchases: paid, shipped, completed or partially refunded (a full refund is no purchase).
COUNTED_STATUSES = ("paid", "shipped", "completed", "partially_refunded")
_MONEY = DecimalField(max_digits=14, decimal_places=2)


def field_label(field_name: str) -> str:
    from customers.models import Customer

    if field_name.startswith("attributes."):
        key = field_name.removeprefix("attributes.")
        return CustomAttribute.objects.filter(key=key).values_list("label", flat=True).first() or key
    return str(Customer._meta.get_field(field_name).verbose_name)


def attribute_expression(key: str, value_type: str) -> Any:
    """The custom attribute `key` as a typed SQL value; values of another JSON type read as unset."""
    text = KeyTextTransform(key, "attributes")
    json_type = Func(F("attributes"), Value(key), function="jsonb_typeof", template="jsonb_typeof(%(expressions)s)",
                     arg_joiner=" -> ", output_field=TextField())  # fmt: skip
    if value_type == "text":
        return Case(When(Q(In(json_type, ["string", "number"])), then=text), default=None, output_field=TextField())
    if value_type == "number":
        return Case(When(Q(Exact(json_type, "number")), then=Cast(text, _MONEY)), default=None, output_field=_MONEY)
    if value_type == "boolean":
        return Case(When(Q(Exact(json_type, "boolean")), then=Cast(text, BooleanField())), default=None,
                    output_field=BooleanField())  # fmt: skip
    is_date = Q(Exact(json_type, "string")) & Q(Regex(text, r"^\d{4}-\d{2}-\d{2}$"))
    return Case(When(is_date, then=Cast(text, DateField())), default=None, output_field=DateField())


@register
class AttributePredicate(Predicate):
    """`{"predicate": "attribute", "field": "city", "op": "in", "value": ["上海", "杭州"]}`"""

    name = "attribute"
    params = frozenset({"field", "op", "value"})
    reacts_to = PROFILE_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        field_name = node.get("field")
        if not isinstance(field_name, str):
            checker.error(f"{at}.field", _("Expected a profile field or attributes.<key>."))
            return {}
        if field_name.startswith("attributes."):
            key = field_name.removeprefix("attributes.")
            declared = CustomAttribute.objects.filter(key=key).values_list("type", flat=True).first()
            if declared is None:
                checker.error(f"{at}.field", _("No custom attribute “%(key)s” is declared.") % {"key": key})
                return {}
            value_type = declared
        elif field_name in PROFILE_FIELDS:
            value_type = PROFILE_FIELDS[field_name]
        else:
            checker.error(f"{at}.field", _("Unknown field; expected one of %(fields)s or attributes.<key>.")
                          % {"fields": ", ".join(PROFILE_FIELDS)})  # fmt: skip
            return {}
        comparison = check_comparison(node, at, checker, value_type)
        if comparison is None:
            return {}
        return {"field": field_name, "type": value_type, "op": comparison[0], "value": comparison[1]}

    def q(self, params, ctx):
        field_name, value_type = params["field"], params["type"]
        if field_name.startswith("attributes."):
            lhs = attribute_expression(field_name.removeprefix("attributes."), value_type)
            return compare_q(lhs, params["op"], params["value"])
        return compare_q(F(field_name), params["op"], params["value"], blank_is_unset=value_type == "text")

    def describe(self, params):
        return f"{field_label(params['field'])} {describe_comparison(params['op'], params['value'])}"


@register
class DateRelativePredicate(Predicate):
    """Dates relative to today: `{"predicate": "date_relative", "field": "birthday", "anniversary_within_days": 7}`
    or `{"predicate": "date_relative", "field": "first_seen_at", "more_than_days_ago": 30}` (or less_than_days_ago).
    """

    name = "date_relative"
    params = frozenset({"field", "anniversary_within_days", "more_than_days_ago", "less_than_days_ago"})
    reacts_to = PROFILE_CHANGES

    def is_time_relative(self, params):
        return True

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        field_name = node.get("field")
        if PROFILE_FIELDS.get(field_name) not in ("date", "datetime"):
            dates = [f for f, t in PROFILE_FIELDS.items() if t in ("date", "datetime")]
            checker.error(f"{at}.field", _("Expected a date field: %(fields)s.") % {"fields": ", ".join(dates)})
            return {}
        modes = [m for m in ("anniversary_within_days", "more_than_days_ago", "less_than_days_ago") if m in node]
        if len(modes) != 1:
            checker.error(at, _("Give exactly one of anniversary_within_days, more_than_days_ago, less_than_days_ago."))
            return {}
        days = node[modes[0]]
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 3650:
            checker.error(f"{at}.{modes[0]}", _("Expected a whole number of days from 0 to 3650."))
            return {}
        if modes[0] == "anniversary_within_days" and days > 365:
            checker.error(f"{at}.{modes[0]}", _("An anniversary comes within 365 days at most."))
            return {}
        return {"field": field_name, "mode": modes[0], "days": days}

    def q(self, params, ctx):
        field_name, days = params["field"], params["days"]
        today = ctx.today()
        if params["mode"] == "anniversary_within_days":
            coming = set()
            for n in range(days + 1):
                day = today + timedelta(days=n)
                coming.add(day.strftime("%m%d"))
                if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
                    coming.add("0229")  # born on 29 February: celebrated on the 28th in common years
            month_day = Func(F(field_name), Value("MMDD"), function="to_char", output_field=TextField())
            return Q(**{f"{field_name}__isnull": False}) & Q(In(month_day, sorted(coming)))
        cutoff = ctx.start_of_day(today - timedelta(days=days))
        if params["mode"] == "more_than_days_ago":
            return Q(**{f"{field_name}__lt": cutoff})
        return Q(**{f"{field_name}__gte": cutoff})

    def describe(self, params):
        label = field_label(params["field"])
        if params["mode"] == "anniversary_within_days":
            return _("%(field)s anniversary is within the next %(days)d days") % {
                "field": label,
                "days": params["days"],
            }
        if params["mode"] == "more_than_days_ago":
            return _("%(field)s more than %(days)d days ago") % {"field": label, "days": params["days"]}
        return _("%(field)s within the last %(days)d days") % {"field": label, "days": params["days"]}


@register
class ChannelPredicate(Predicate):
    """`{"predicate": "channel", "in": ["store-qr", "referral"]}`: the source channel, by code."""

    name = "channel"
    params = frozenset({"in"})
    reacts_to = PROFILE_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        return {"in": check_string_list(node, "in", at, checker, required=True)}

    def q(self, params, ctx):
        return Q(source_channel__code__in=params["in"])

    def describe(self, params):
        names = dict(Channel.objects.filter(code__in=params["in"]).values_list("code", "name"))
        return _("came from %(channels)s") % {"channels": "、".join(names.get(code, code) for code in params["in"])}


@register
class OwnerPredicate(Predicate):
    """`{"predicate": "owner", "in": [3, 7]}` (staff ids) or `{"predicate": "owner", "is_set": false}`."""

    name = "owner"
    params = frozenset({"in", "is_set"})
    reacts_to = PROFILE_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        if "is_set" in node:
            if not isinstance(node["is_set"], bool) or "in" in node:
                checker.error(f"{at}.is_set", _("Expected true or false, without `in`."))
            return {"is_set": node.get("is_set")}
        return {"in": check_int_list(node, "in", at, checker)}

    def q(self, params, ctx):
        if "is_set" in params:
            return Q(owner__isnull=not params["is_set"])
        return Q(owner_id__in=params["in"])

    def describe(self, params):
        if "is_set" in params:
            return _("has an owner") if params["is_set"] else _("has no owner")
        return _("owned by staff %(ids)s") % {"ids": "、".join(str(i) for i in params["in"])}


@register
class GroupPredicate(Predicate):
    """`{"predicate": "in_group", "groups": [12]}` or `{"predicate": "in_group", "group_type": "宝妈群"}`:
    a current member (joined and not left)."""

    name = "in_group"
    params = frozenset({"groups", "group_type"})

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        if ("groups" in node) == ("group_type" in node):
            checker.error(at, _("Give either `groups` (ids) or `group_type`."))
            return {}
        if "groups" in node:
            return {"groups": check_int_list(node, "groups", at, checker)}
        if not isinstance(node["group_type"], str) or not node["group_type"]:
            checker.error(f"{at}.group_type", _("Expected text."))
        return {"group_type": node["group_type"]}

    def q(self, params, ctx):
        members = GroupMembership.objects.filter(customer=OuterRef("pk"), left_at__isnull=True)
        if "groups" in params:
            members = members.filter(group_id__in=params["groups"])
        else:
            members = members.filter(group__group_type=params["group_type"])
        return Q(Exists(members))

    def describe(self, params):
        if "groups" in params:
            names = dict(CommunityGroup.objects.filter(pk__in=params["groups"]).values_list("pk", "name"))
            return _("is in the group %(groups)s") % {
                "groups": "、".join(f"“{names.get(i, i)}”" for i in params["groups"])
            }  # fmt: skip
        return _("is in a %(type)s group") % {"type": params["group_type"]}


def _check_products(node, at, checker) -> dict[str, list[str]]:
    out = {}
    for key in ("products", "categories"):
        if key in node:
            out[key] = check_string_list(node, key, at, checker)
    return out


def _describe_products(params) -> str:
    parts = []
    if params.get("products"):
        parts.append("、".join(params["products"]))
    if params.get("categories"):
        parts.append("、".join(params["categories"]))
    return " / ".join(parts)


def _counted_orders(params, ctx: Context):
    """Purchases in the window, and a filter keeping those with a line of the products/categories (an EXISTS, so
    no join multiplies the orders and counts need no DISTINCT)."""
    orders = Order.objects.filter(status__in=COUNTED_STATUSES).filter(params["window"].filter("ordered_at", ctx))
    lines = Q()
    if params.get("products"):
        lines |= Q(product__sku__in=params["products"]) | Q(sku__in=params["products"])
    if params.get("categories"):
        lines |= Q(product__category__in=params["categories"])
    line_filter = Q(Exists(OrderLine.objects.filter(lines, order=OuterRef("pk")))) if lines else Q()
    return orders, line_filter


class _OrderAggregate(Predicate):
    params = frozenset({"op", "value", "window", "products", "categories"})
    value_type = "number"
    reacts_to = ORDER_CHANGES
    scans_rows = True

    def is_time_relative(self, params):
        return params["window"].last_days is not None

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        comparison = check_comparison(node, at, checker, "number", COUNT_OPERATORS)
        window = check_window(node, at, checker)
        products = _check_products(node, at, checker)
        if comparison is None:
            return {}
        return {"op": comparison[0], "value": comparison[1], "window": window, **products}


@register
class OrdersCountPredicate(_OrderAggregate):
    """`{"predicate": "orders_count", "op": "gte", "value": 5, "window": {"last_days": 365},
    "categories": ["面膜"]}`: purchases (paid, shipped, completed, partly refunded) in the window."""

    name = "orders_count"

    def aggregate(self, params, ctx):
        orders, line_filter = _counted_orders(params, ctx)
        if line_filter:
            orders = orders.filter(line_filter)
        return Aggregate(orders, Count("*"), params["op"], params["value"], empty=0)

    def describe(self, params):
        what = _describe_products(params)
        text = (
            _("bought %(what)s %(comparison)s times %(window)s")
            if what
            else _("placed orders %(comparison)s times %(window)s")
        )
        return text % {"what": what, "comparison": describe_comparison(params["op"], params["value"]),
                       "window": params["window"].describe()}  # fmt: skip


@register
class OrdersSumPredicate(_OrderAggregate):
    """`{"predicate": "orders_sum", "op": "gt", "value": 5000, "window": {"last_days": 365}}`: net spend (after
    refunds); with products/categories, the spend on those lines."""

    name = "orders_sum"

    def aggregate(self, params, ctx):
        orders, line_filter = _counted_orders(params, ctx)
        if line_filter:
            lines = OrderLine.objects.filter(order__in=orders.filter(line_filter).values("id"))
            scoped = Q()
            if params.get("products"):
                scoped |= Q(product__sku__in=params["products"]) | Q(sku__in=params["products"])
            if params.get("categories"):
                scoped |= Q(product__category__in=params["categories"])
            rows = lines.filter(scoped).annotate(customer_id=F("order__customer_id"))
            return Aggregate(rows, Sum("amount"), params["op"], params["value"], empty=0,
                             customer_field="order__customer_id")  # fmt: skip
        total = Sum(ExpressionWrapper(F("amount") - F("refunded_amount"), output_field=_MONEY))
        return Aggregate(orders, total, params["op"], params["value"], empty=0)

    def describe(self, params):
        what = _describe_products(params)
        text = _("spent on %(what)s %(comparison)s %(window)s") if what else _("spent %(comparison)s %(window)s")
        return text % {"what": what, "comparison": describe_comparison(params["op"], params["value"], fmt=money),
                       "window": params["window"].describe()}  # fmt: skip


@register
class AverageOrderValuePredicate(_OrderAggregate):
    """`{"predicate": "avg_order_value", "op": "gte", "value": 300}`: net spend per purchase in the window;
    people without purchases have none (only not_set… is not offered: they simply do not match)."""

    name = "avg_order_value"
    params = frozenset({"op", "value", "window"})

    def aggregate(self, params, ctx):
        orders, _line_filter = _counted_orders(params, ctx)
        average = ExpressionWrapper(Sum(F("amount") - F("refunded_amount")) / Count("*"), output_field=_MONEY)
        return Aggregate(orders, average, params["op"], params["value"])

    def describe(self, params):
        return _("average order value %(comparison)s %(window)s") % {
            "comparison": describe_comparison(params["op"], params["value"], fmt=money),
            "window": params["window"].describe(),
        }


@register
class BoughtPredicate(Predicate):
    """`{"predicate": "bought", "categories": ["面膜"], "window": {"last_days": 90}}` (or products: SKUs)."""

    name = "bought"
    params = frozenset({"products", "categories", "window"})
    reacts_to = ORDER_CHANGES
    scans_rows = True

    def is_time_relative(self, params):
        return params["window"].last_days is not None

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        products = _check_products(node, at, checker)
        if not products and not checker.issues:
            checker.error(at, _("Give `products` (SKUs) or `categories`."))
        return {"window": check_window(node, at, checker), **products}

    def q(self, params, ctx):
        orders, line_filter = _counted_orders(params, ctx)
        return Q(pk__in=ctx.scope(orders.filter(line_filter)).values("customer_id"))

    def describe(self, params):
        return _("bought %(what)s %(window)s") % {"what": _describe_products(params),
                                                 "window": params["window"].describe()}  # fmt: skip


def _days_since(latest_expression, ctx: Context):
    """Whole days between `latest` and the evaluation moment."""
    return Func(
        Value(ctx.now), latest_expression, function="", output_field=IntegerField(),
        template="floor(extract(epoch from (%(expressions)s)) / 86400)::int", arg_joiner=" - ",
    )  # fmt: skip


class _DaysSince(Predicate):
    params = frozenset({"op", "value"})
    scans_rows = True

    def is_time_relative(self, params):
        return params["op"] not in ("is_set", "not_set")

    def check_days(self, node, at, checker) -> dict:
        comparison = check_comparison(node, at, checker, "number", (*COUNT_OPERATORS, "is_set", "not_set"))
        if comparison is None:
            return {}
        return {"op": comparison[0], "value": comparison[1]}

    def rows(self, params, ctx) -> tuple[Any, str]:
        """The rows and their time field."""
        raise NotImplementedError

    def q(self, params, ctx):
        if params["op"] not in ("is_set", "not_set"):
            return super().q(params, ctx)
        rows, _time_field = self.rows(params, ctx)
        have_rows = Q(pk__in=ctx.scope(rows).values("customer_id"))
        return have_rows if params["op"] == "is_set" else ~have_rows

    def aggregate(self, params, ctx):
        """Days since the latest row; people without rows have none (they match only not_set)."""
        if params["op"] in ("is_set", "not_set"):
            return None
        rows, time_field = self.rows(params, ctx)
        return Aggregate(rows, _days_since(Max(time_field), ctx), params["op"], params["value"])


@register
class DaysSinceLastOrderPredicate(_DaysSince):
    """`{"predicate": "days_since_last_order", "op": "gt", "value": 90}`; never-buyers match only not_set."""

    name = "days_since_last_order"
    reacts_to = ORDER_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        return self.check_days(node, at, checker)

    def rows(self, params, ctx):
        return Order.objects.filter(status__in=COUNTED_STATUSES), "ordered_at"

    def describe(self, params):
        if params["op"] in ("is_set", "not_set"):
            return _("has ordered") if params["op"] == "is_set" else _("has never ordered")
        return _("days since the last order %(comparison)s") % {
            "comparison": describe_comparison(params["op"], params["value"])
        }


def _check_event_type(node, at, checker) -> dict:
    event_type = node.get("type")
    if not isinstance(event_type, str) or not event_type:
        checker.error(f"{at}.type", _("Expected an event type such as content_view."))
    properties = node.get("properties", {})
    if not isinstance(properties, dict):
        checker.error(f"{at}.properties", _("Expected an object of property → value."))
        properties = {}
    return {"type": event_type, "properties": properties}


def _events(params, ctx: Context, window=None):
    events = Event.objects.filter(type=params["type"])
    if params["properties"]:
        events = events.filter(properties__contains=params["properties"])
    if window is not None:
        events = events.filter(window.filter("occurred_at", ctx))
    return events


def _describe_event(params) -> str:
    props = ", ".join(f"{k}={v}" for k, v in params["properties"].items())
    return f"{params['type']}({props})" if props else params["type"]


@register
class EventCountPredicate(Predicate):
    """`{"predicate": "event_count", "type": "content_view", "properties": {"topic": "成分"}, "op": "gte",
    "value": 3, "window": {"last_days": 30}}`"""

    name = "event_count"
    params = frozenset({"type", "properties", "op", "value", "window"})
    reacts_to = EVENT_CHANGES
    scans_rows = True

    def is_time_relative(self, params):
        return params["window"].last_days is not None

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        event = _check_event_type(node, at, checker)
        comparison = check_comparison(node, at, checker, "number", COUNT_OPERATORS)
        window = check_window(node, at, checker)
        if comparison is None:
            return {}
        return {**event, "op": comparison[0], "value": comparison[1], "window": window}

    def aggregate(self, params, ctx):
        events = _events(params, ctx, params["window"])
        return Aggregate(events, Count("*"), params["op"], params["value"], empty=0)

    def describe(self, params):
        return _("did %(event)s %(comparison)s times %(window)s") % {
            "event": _describe_event(params),
            "comparison": describe_comparison(params["op"], params["value"]),
            "window": params["window"].describe(),
        }


@register
class DaysSinceLastEventPredicate(_DaysSince):
    """`{"predicate": "days_since_last_event", "type": "content_view", "op": "lte", "value": 7}`"""

    name = "days_since_last_event"
    params = frozenset({"type", "properties", "op", "value"})
    reacts_to = EVENT_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        event = _check_event_type(node, at, checker)
        days = self.check_days(node, at, checker)
        return {**event, **days} if days else {}

    def rows(self, params, ctx):
        return _events(params, ctx), "occurred_at"

    def describe(self, params):
        if params["op"] in ("is_set", "not_set"):
            template = _("has done %(event)s") if params["op"] == "is_set" else _("has never done %(event)s")
            return template % {"event": _describe_event(params)}
        return _("days since the last %(event)s %(comparison)s") % {
            "event": _describe_event(params),
            "comparison": describe_comparison(params["op"], params["value"]),
        }
