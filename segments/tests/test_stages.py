from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from customers.conditions import describe, matching_customers, validate
from customers.conditions.registry import RuleError
from customers.models import Customer, DomainEvent
from customers.tests.factories import (
    CustomerFactory,
    EventFactory,
    IdentityFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    RelationshipFactory,
)
from segments import tasks
from segments.models import CustomerStage, LayeringSettings, Segment, SegmentMembership
from segments.services.layers import recompute_layers, recompute_stages

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def customer(name: str, **fields) -> Customer:
    return CustomerFactory(name=name, **fields)


def bought(person: Customer, days_ago: float, amount=100, *, status="completed", category: str | None = None):
    order = OrderFactory(customer=person, ordered_at=NOW - timedelta(days=days_ago), amount=Decimal(amount),
                         status=status)  # fmt: skip
    if category is not None:
        OrderLineFactory(order=order, product=ProductFactory(category=category), amount=Decimal(amount))
    return order


def did(person: Customer, event_type: str, days_ago: float = 1) -> None:
    EventFactory(customer=person, type=event_type, occurred_at=NOW - timedelta(days=days_ago))


def stages(model: str) -> dict[str, str]:
    return dict(CustomerStage.objects.filter(model=model).values_list("customer__name", "stage"))


def members(key: str) -> set[str]:
    return set(
        SegmentMembership.objects.filter(segment__model_key=key, exited_at__isnull=True).values_list(
            "customer__name", flat=True
        )
    )


def configure(field: str, **values) -> None:
    layering = LayeringSettings.load()
    setattr(layering, field, {**getattr(layering, field), **values})
    layering.save()


# ------------------------------------------------------------------------------------------------------ AIPL


@time_machine.travel(NOW, tick=False)
def test_aipl_puts_each_customer_in_exactly_the_first_stage_that_applies():
    customer("unreached")
    did(customer("browsed"), "page_view")  # not an engagement type
    did(customer("read_long_ago"), "content_view", days_ago=31)
    did(customer("read"), "content_view", days_ago=29)
    did(customer("spoke_in_group"), "group_message")
    bought(customer("bought_once"), 100)
    bought(customer("bought_long_ago"), 366)
    bought(customer("refunded"), 5, status="refunded")
    repeat = customer("bought_twice")
    bought(repeat, 10)
    bought(repeat, 300)
    advocate = customer("advocate")
    bought(advocate, 20)
    bought(customer("friend", attributes={"referred_by": advocate.pk}), 3)

    run = recompute_stages("aipl")

    assert stages("aipl") == {
        "unreached": "awareness", "browsed": "awareness", "read_long_ago": "awareness", "read": "interest",
        "spoke_in_group": "interest", "bought_once": "purchase", "bought_long_ago": "awareness",
        "refunded": "awareness", "bought_twice": "loyalty", "advocate": "loyalty", "friend": "purchase",
    }  # fmt: skip
    assert (run.customers, run.inserted, run.changed) == (11, 11, 0)


@time_machine.travel(NOW, tick=False)
def test_aipl_windows_and_repurchase_count_come_from_the_settings():
    configure("aipl", interest_days=60, purchase_days=30, loyal_orders=3, engagement_types=["share"])
    did(customer("shared"), "share", days_ago=50)
    did(customer("read"), "content_view")
    bought(customer("bought_40_days_ago"), 40)
    twice = customer("twice")
    bought(twice, 1)
    bought(twice, 2)

    recompute_stages("aipl")

    assert stages("aipl") == {"shared": "interest", "read": "awareness", "bought_40_days_ago": "awareness",
                              "twice": "purchase"}  # fmt: skip


# ------------------------------------------------------------------------------------------------- lifecycle


@time_machine.travel(NOW, tick=False)
def test_ecommerce_lifecycle_new_first_purchase_repeat_vip_dormant_churned():
    customer("new")
    bought(customer("vip"), 10, amount=5000)  # the top spender: no other buyer spent more
    repeat = customer("repeat")
    bought(repeat, 5, amount=200)
    bought(repeat, 50, amount=200)
    bought(customer("first_purchase"), 30, amount=100)
    bought(customer("dormant"), 91, amount=300)
    bought(customer("churned"), 181, amount=300)
    bought(customer("only_pending"), 1, status="pending")

    recompute_stages("lifecycle")

    assert stages("lifecycle") == {
        "new": "new", "vip": "vip", "repeat": "repeat", "first_purchase": "first_purchase", "dormant": "dormant",
        "churned": "churned", "only_pending": "new",
    }  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_vip_is_the_top_share_by_spend_and_equal_spenders_are_treated_alike():
    configure("lifecycle", vip_top_percent=30)
    for name, amount in [("a", 900), ("b", 900), ("c", 800), ("d", 500), ("e", 100), ("f", 50)]:
        bought(customer(name), 3, amount=amount)

    recompute_stages("lifecycle")

    # fewer than 30% of the other five buyers (i.e. 0 or 1 of them) spent more
    assert stages("lifecycle") == {"a": "vip", "b": "vip", "c": "first_purchase", "d": "first_purchase",
                                   "e": "first_purchase", "f": "first_purchase"}  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_education_lifecycle_follows_trial_experience_full_price_and_several_courses():
    configure("lifecycle", preset="education", vip_top_percent=0)
    customer("lead")
    did(customer("trial_booked"), "trial_class")
    bought(customer("trial_bought"), 3, amount=9, category="试听课")
    did(customer("experience_attended"), "experience_class")
    bought(customer("experience_bought"), 3, amount=99, category="体验课")
    bought(customer("full_price"), 3, amount=3999, category="正价课")
    several = customer("multi_course")
    bought(several, 3, amount=3999, category="正价课")
    bought(several, 60, amount=3999, category="正价课")
    bought(customer("dormant"), 100, amount=3999, category="正价课")
    bought(customer("other_category"), 3, amount=50, category="教辅")

    recompute_stages("lifecycle")

    assert stages("lifecycle") == {
        "lead": "lead", "trial_booked": "trial", "trial_bought": "trial", "experience_attended": "experience",
        "experience_bought": "experience", "full_price": "full_price", "multi_course": "multi_course",
        "dormant": "dormant", "other_category": "lead",
    }  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_high_ticket_lifecycle_from_stranger_to_vip():
    configure("lifecycle", preset="high_ticket")
    customer("stranger")
    did(customer("browsed"), "page_view")
    did(customer("potential"), "reply")
    quoted = customer("intent")
    did(quoted, "reply")
    did(quoted, "price_quote")
    bought(customer("ordered"), 10, amount=20000)
    repeat = customer("repeat")
    bought(repeat, 10, amount=10000)
    bought(repeat, 20, amount=10000)
    bought(customer("vip"), 5, amount=90000)
    bought(customer("churned"), 200, amount=5000)

    recompute_stages("lifecycle")

    assert stages("lifecycle") == {
        "stranger": "stranger", "browsed": "stranger", "potential": "potential", "intent": "intent",
        "ordered": "ordered", "repeat": "repeat", "vip": "vip", "churned": "churned",
    }  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_changing_the_preset_empties_the_former_presets_segments():
    bought(customer("buyer"), 3)
    recompute_stages("lifecycle")
    assert members("lifecycle:vip") == {"buyer"}

    configure("lifecycle", preset="education")
    recompute_stages("lifecycle")

    assert members("lifecycle:vip") == set()
    assert members("lifecycle:lead") == {"buyer"}
    assert Segment.objects.filter(model_key="lifecycle:vip").exists()


def test_lifecycle_settings_are_checked():
    configure("lifecycle", preset="retail")

    with pytest.raises(ValueError, match=r"lifecycle\.preset"):
        recompute_stages("lifecycle")

    assert not CustomerStage.objects.exists()


# ---------------------------------------------------------------------------------------------------- ladder


@time_machine.travel(NOW, tick=False)
def test_ladder_levels_basic_member_bought_repurchased_and_koc():
    RelationshipFactory(customer=customer("connected"))
    customer("imported_only")
    IdentityFactory(customer=customer("shop_member"), kind="shop", namespace="youzan", value="YZ1")
    lapsed = customer("lapsed_member", attributes={"member": True})
    bought(lapsed, 400)
    customer("member_flag_text", attributes={"member": "yes"})  # only JSON true counts
    bought(customer("bought_once"), 30)
    repeat = customer("repurchased")
    bought(repeat, 10)
    bought(repeat, 200)
    koc = customer("koc")
    bought(koc, 10)
    bought(koc, 20)
    bought(customer("referred_buyer", attributes={"referred_by": koc.pk}), 5)
    referrer_text = customer("koc_by_text_id")
    bought(referrer_text, 10)
    bought(referrer_text, 11)
    bought(customer("referred_buyer_2", attributes={"referred_by": str(referrer_text.pk)}), 6)
    no_sale = customer("referrer_without_sale")
    bought(no_sale, 10)
    bought(no_sale, 12)
    bought(customer("referred_pending", attributes={"referred_by": no_sale.pk}), 5, status="pending")

    recompute_stages("ladder")

    assert stages("ladder") == {
        "connected": "1", "imported_only": "1", "shop_member": "2", "lapsed_member": "2", "member_flag_text": "1",
        "bought_once": "3", "repurchased": "4", "koc": "5", "referred_buyer": "3", "koc_by_text_id": "5",
        "referred_buyer_2": "3", "referrer_without_sale": "4", "referred_pending": "1",
    }  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_referring_oneself_does_not_make_a_koc():
    me = customer("self")
    bought(me, 1)
    bought(me, 2)
    Customer.objects.filter(pk=me.pk).update(attributes={"referred_by": me.pk})

    recompute_stages("ladder")

    assert stages("ladder") == {"self": "4"}


# -------------------------------------------------------------------------------- since, history, segments


def test_since_is_kept_while_the_stage_holds_and_restarts_when_it_changes():
    person = customer("p")
    bought(person, 10)
    with time_machine.travel(NOW, tick=False):
        recompute_stages("ladder")
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        unchanged = recompute_stages("ladder")
    assert CustomerStage.objects.get(customer=person, model="ladder").since == NOW
    bought(person, -1.5)
    with time_machine.travel(NOW + timedelta(days=2), tick=False):
        changed = recompute_stages("ladder")

    row = CustomerStage.objects.get(customer=person, model="ladder")
    assert (row.stage, row.since) == ("4", NOW + timedelta(days=2))
    assert (unchanged.changed, unchanged.entered, unchanged.exited) == (0, 0, 0)
    assert (changed.changed, changed.entered, changed.exited) == (1, 1, 1)


def test_stage_segments_keep_history_and_write_events_and_an_unchanged_run_writes_nothing():
    person = customer("p")
    with time_machine.travel(NOW, tick=False):
        recompute_stages("aipl")
    did(person, "reply", days_ago=-0.5)
    later = NOW + timedelta(days=1)
    with time_machine.travel(later, tick=False):
        recompute_stages("aipl")
        before = (SegmentMembership.objects.count(), DomainEvent.objects.count())
        recompute_stages("aipl")

    assert (SegmentMembership.objects.count(), DomainEvent.objects.count()) == before
    assert sorted(Segment.objects.filter(model_key__startswith="aipl:").values_list("model_key", "kind")) == [
        ("aipl:awareness", "model"),
        ("aipl:interest", "model"),
        ("aipl:loyalty", "model"),
        ("aipl:purchase", "model"),
    ]
    awareness = SegmentMembership.objects.get(segment__model_key="aipl:awareness", customer=person)
    assert (awareness.entered_at, awareness.exited_at, awareness.exit_reason) == (NOW, later, "model")
    assert members("aipl:interest") == {"p"}
    kinds = list(DomainEvent.objects.filter(customer_id=person.pk, kind__startswith="segment.")
                 .order_by("id").values_list("kind", "occurred_at"))  # fmt: skip
    assert kinds == [("segment.entered", NOW), ("segment.exited", later), ("segment.entered", later)]


@time_machine.travel(NOW, tick=False)
def test_a_merged_customer_leaves_the_stage_tables():
    from customers.services.merge import merge_customers

    survivor, merged = customer("survivor"), customer("merged")
    bought(merged, 3)
    recompute_stages("ladder")

    merge_customers(survivor, merged)
    run = recompute_stages("ladder")

    assert stages("ladder") == {"survivor": "3"}
    assert run.removed == 1


@time_machine.travel(NOW, tick=False)
def test_recompute_layers_runs_every_model_and_reports_a_failing_one_without_stopping_the_others():
    bought(customer("p"), 3)
    configure("lifecycle", dormant_days=200, churned_days=100)

    outcomes = recompute_layers()

    assert list(outcomes) == ["rfm", "aipl", "lifecycle", "ladder"]
    assert outcomes["lifecycle"] == {"error": "ValueError: lifecycle.churned_days: expected more days than "
                                              "dormant_days"}  # fmt: skip
    assert stages("aipl") == {"p": "purchase"}
    assert stages("ladder") == {"p": "3"}
    assert outcomes["rfm"]["transitions"] == 1


@time_machine.travel(NOW, tick=False)
def test_the_command_and_the_task_recompute_the_layers():
    bought(customer("p"), 3)
    out = StringIO()

    call_command("recompute_layers", "aipl", "ladder", stdout=out)
    tasks.recompute_layers()

    assert out.getvalue().splitlines()[0].startswith("aipl: model aipl, customers 1, changed 0, inserted 1")
    assert stages("lifecycle") == {"p": "vip"}
    with pytest.raises(CommandError, match="unknown models: rmf"):
        call_command("recompute_layers", "rmf")


# ------------------------------------------------------------------------------------------------ predicates


@time_machine.travel(NOW, tick=False)
def test_stage_predicates_select_the_stored_stages():
    did(customer("reader"), "content_view")
    bought(customer("buyer"), 3)
    twice = customer("twice")
    bought(twice, 3)
    bought(twice, 4)
    customer("nobody")
    for model in ("aipl", "lifecycle", "ladder"):
        recompute_stages(model)

    def names(rule):
        return set(matching_customers(rule).values_list("name", flat=True))

    assert names({"predicate": "aipl_stage", "in": ["interest", "loyalty"]}) == {"reader", "twice"}
    assert names({"predicate": "lifecycle_stage", "in": ["new"]}) == {"reader", "nobody"}
    assert names({"predicate": "ladder_level", "op": "gte", "value": 3}) == {"buyer", "twice"}
    assert names({"predicate": "ladder_level", "op": "between", "value": [1, 3]}) == {"reader", "nobody", "buyer"}
    assert names({"not": {"predicate": "ladder_level", "op": "gt", "value": 5}}) == {"reader", "nobody", "buyer",
                                                                                     "twice"}  # fmt: skip


def test_stage_predicates_describe_themselves_and_refuse_unknown_stages():
    assert describe({"predicate": "aipl_stage", "in": ["interest"]}) == "AIPL stage is “AIPL: interest”"
    assert describe({"predicate": "lifecycle_stage", "in": ["vip", "dormant"]}) == (
        "lifecycle stage is “Lifecycle: VIP”、“Lifecycle: dormant”"
    )
    assert describe({"predicate": "ladder_level", "op": "gte", "value": 4}) == "relationship ladder level ≥ 4"

    with pytest.raises(RuleError) as refused:
        validate({"any": [{"predicate": "aipl_stage", "in": ["advocacy"]},
                          {"predicate": "lifecycle_stage", "in": []},
                          {"predicate": "ladder_level", "op": "eq", "value": 2.5}]})  # fmt: skip

    assert [issue.path for issue in refused.value.issues] == ["$.any[0].in", "$.any[1].in", "$.any[2].value"]


@time_machine.travel(NOW, tick=False)
def test_a_membership_moved_by_a_merge_is_corrected_although_no_stage_changed():
    from customers.services.merge import merge_customers

    survivor, merged = customer("survivor"), customer("merged")
    bought(survivor, 3)
    recompute_stages("ladder")
    assert (members("ladder:3"), members("ladder:1")) == ({"survivor"}, {"merged"})

    merge_customers(survivor, merged)  # the merged record's ladder:1 episode now belongs to the survivor
    assert members("ladder:1") == {"survivor"}
    run = recompute_stages("ladder")

    assert (members("ladder:3"), members("ladder:1")) == ({"survivor"}, set())
    assert (run.changed, run.exited) == (0, 1)


@time_machine.travel(NOW, tick=False)
def test_a_cleared_exclusion_lets_the_customer_back_at_the_next_recompute():
    from segments.services import segments as segment_service

    person = customer("p")
    recompute_stages("aipl")
    awareness = Segment.objects.get(model_key="aipl:awareness")
    segment_service.exclude(awareness, [person.pk])
    recompute_stages("aipl")
    assert members("aipl:awareness") == set()

    segment_service.clear_exclusions(awareness, [person.pk])
    recompute_stages("aipl")

    assert members("aipl:awareness") == {"p"}
