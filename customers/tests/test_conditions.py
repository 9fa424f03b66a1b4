from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import translation

from customers.conditions import Context, RuleError, describe, matching_customers, reactions_of, reacts_to, validate
from customers.conditions import is_time_relative as rule_is_time_relative
from customers.models import CustomAttribute
from customers.tests.factories import (
    CustomerFactory,
    EventFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
MASKS_5_TIMES_AND_5000 = {
    "all": [
        {"predicate": "orders_count", "op": "gte", "value": 5, "window": {"last_days": 365}, "categories": ["面膜"]},
        {"predicate": "orders_sum", "op": "gt", "value": 5000},
    ]
}


def issues_of(rule) -> list[tuple[str, str]]:
    with pytest.raises(RuleError) as refused:
        validate(rule)
    return [(i.path, i.message) for i in refused.value.issues]


def test_every_problem_is_reported_with_the_path_to_its_node():
    issues = issues_of(
        {
            "all": [
                {"predicate": "orders_count", "op": "about", "value": 3},
                {"any": []},
                {"not": {"predicate": "teleported"}},
                {"predicate": "attribute", "field": "city", "op": "gt", "value": "上海"},
            ]
        }
    )

    paths = [path for path, _message in issues]
    assert paths == ["$.all[0].op", "$.all[1].any", "$.all[2].not.predicate", "$.all[3].op"]
    assert "eq, ne, lt, lte, gt, gte, between" in issues[0][1]
    assert issues[1][1] == "Expected a non-empty list of conditions."
    assert issues[2][1].startswith("Unknown predicate 'teleported'; expected one of ")
    assert "for text" in issues[3][1]


def test_bad_values_say_what_was_expected():
    assert issues_of({"predicate": "orders_sum", "op": "gt", "value": "lots"}) == [("$.value", "Expected a number.")]
    assert issues_of({"predicate": "attribute", "field": "birthday", "op": "between", "value": ["2000-01-01"]}) == [
        ("$.value", "Expected a list of two values, each a date like 2026-05-01.")
    ]
    assert issues_of({"predicate": "orders_count", "op": "gte", "value": 1, "window": {"last_days": 0}}) == [
        ("$.window.last_days", "Expected a whole number of days from 1 to 3650, alone.")
    ]


def test_custom_attributes_must_be_declared_and_are_compared_by_their_type():
    assert issues_of({"predicate": "attribute", "field": "attributes.skin", "op": "eq", "value": "dry"}) == [
        ("$.field", "No custom attribute “skin” is declared.")
    ]
    CustomAttribute.objects.create(key="points", label="积分", type="number")
    rich, poor, text = (CustomerFactory(attributes={"points": p}) for p in (900, 20, "many"))

    rule = {"predicate": "attribute", "field": "attributes.points", "op": "gte", "value": 100}

    assert list(matching_customers(rule).values_list("pk", flat=True)) == [rich.pk]
    assert {poor.pk, text.pk}.isdisjoint(matching_customers(rule).values_list("pk", flat=True))


def test_a_rule_reads_in_words_in_english_and_chinese():
    ProductFactory(sku="MASK", category="面膜")
    with translation.override("en"):
        english = describe(MASKS_5_TIMES_AND_5000)
    with translation.override("zh-hans"):
        chinese = describe(MASKS_5_TIMES_AND_5000)

    assert english == "bought 面膜 ≥ 5 times in the last 365 days AND spent > ¥5,000 ever"
    assert chinese != english
    assert "面膜" in chinese
    assert "¥5,000" in chinese


def test_evaluating_everyone_is_one_query_and_checking_one_customer_is_that_query_for_them(
    django_assert_num_queries,
):
    product = ProductFactory(sku="MASK", category="面膜")
    fan, occasional = CustomerFactory(), CustomerFactory()
    for n in range(6):
        order = OrderFactory(customer=fan, ordered_at=NOW - timedelta(days=n * 30), amount=Decimal(1000))
        OrderLineFactory(order=order, product=product, sku="MASK")
    OrderFactory(customer=occasional, ordered_at=NOW, amount=Decimal(9000))
    ctx = Context(now=NOW)
    rule = validate(MASKS_5_TIMES_AND_5000)  # validation reads nothing for these predicates

    with django_assert_num_queries(1):
        everyone = list(matching_customers(MASKS_5_TIMES_AND_5000, ctx=ctx).values_list("pk", flat=True))
    with django_assert_num_queries(1):
        alone = matching_customers(MASKS_5_TIMES_AND_5000, ctx=ctx, customer_ids=[occasional.pk]).exists()

    assert everyone == [fan.pk]
    assert alone is False
    assert rule.kind == "all"


def test_an_all_selects_its_candidates_once_however_many_aggregates_read_their_rows():
    both, no_views, one_order = (CustomerFactory(city="杭州") for _ in range(3))
    elsewhere = CustomerFactory(city="成都")
    for customer, orders, views in ((both, 2, 1), (no_views, 2, 0), (one_order, 1, 1), (elsewhere, 2, 1)):
        for day in range(orders):
            OrderFactory(customer=customer, ordered_at=NOW - timedelta(days=day + 1))
        for _ in range(views):
            EventFactory(customer=customer, type="content_view", occurred_at=NOW - timedelta(days=1))
    city = {"predicate": "attribute", "field": "city", "op": "eq", "value": "杭州"}
    orders = {"predicate": "orders_count", "op": "gte", "value": 2, "window": {"last_days": 30}}
    views = {"predicate": "event_count", "type": "content_view", "op": "gte", "value": 1, "window": {"last_days": 30}}

    for rule, expected in (({"all": [city, orders]}, {both, no_views}), ({"all": [city, orders, views]}, {both})):
        matches = matching_customers(rule, ctx=Context(now=NOW))
        assert str(matches.query).count("杭州") == 1, rule  # one aggregate: an array of them; two: correlated
        assert set(matches.values_list("pk", flat=True)) == {c.pk for c in expected}


def test_rules_know_which_changes_and_whether_the_clock_can_change_their_result():
    windowed = validate(MASKS_5_TIMES_AND_5000)
    profile = validate({"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"})

    assert "order.placed" in reacts_to(windowed)
    assert "event.recorded" not in reacts_to(windowed)
    assert rule_is_time_relative(windowed) is True
    assert reacts_to(profile) == {"customer.created", "customer.updated", "customer.merged"}
    assert reactions_of(MASKS_5_TIMES_AND_5000) == reacts_to(windowed)  # read from the JSON, without validating
    assert rule_is_time_relative(profile) is False


def test_wording_of_money_ranges_negations_labels_and_channels():
    CustomAttribute.objects.create(key="points", label="积分", type="number")
    from customers.tests.factories import ChannelFactory

    ChannelFactory(code="store-qr", name="门店二维码")
    rule = {
        "not": {
            "any": [
                {"predicate": "orders_sum", "op": "between", "value": [100, 2000]},
                {"predicate": "attribute", "field": "attributes.points", "op": "gte", "value": 10},
                {"predicate": "channel", "in": ["store-qr"]},
            ]
        }
    }

    with translation.override("en"):
        words = describe(rule)

    assert words == "NOT (spent between ¥100 and ¥2,000 ever OR 积分 ≥ 10 OR came from 门店二维码)"
