from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from customers.tests.factories import CustomerFactory
from segments import selectors
from segments.models import (
    CustomerRfm,
    CustomerStage,
    RfmRun,
    RfmTransition,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentSize,
    rfm_as_of,
)
from segments.services import segments as service

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
OCT_1, NOV_1 = date(2026, 10, 1), date(2026, 11, 1)


def rfm(customer, rfm_class, *, r=None, f=0, m="0") -> CustomerRfm:
    return CustomerRfm.objects.create(
        customer=customer,
        last_purchase_on=None if r is None else rfm_as_of() - timedelta(days=r),
        frequency=f,
        monetary=Decimal(m),
        rfm_class=rfm_class,
        computed_at=NOW,
    )


@pytest.fixture
def run():
    return RfmRun.objects.create(as_of=NOW.date(), window_days=365, method="quantile")


def moved(run, customer, from_class, to_class, at):
    RfmTransition.objects.create(run=run, customer=customer, from_class=from_class, to_class=to_class, at=at)


def nonzero(matrix) -> dict[tuple[str, str], int]:
    return {(a, b): n for a, row in matrix.items() for b, n in row.items() if n}


# --------------------------------------------------------------------------------------------------- RFM grid


@pytest.fixture
def book(rep, other_rep):
    """Five classified customers: four in the rep's book, one in the other rep's."""
    rfm(CustomerFactory(owner=rep.staff), "important_value", r=10, f=8, m="5000")
    rfm(CustomerFactory(owner=rep.staff), "important_value", r=20, f=6, m="3000")
    rfm(CustomerFactory(owner=rep.staff), "general_retain", r=300, f=1, m="100")
    rfm(CustomerFactory(owner=rep.staff), "no_purchase")
    rfm(CustomerFactory(owner=other_rep.staff), "important_keep", r=200, f=7, m="4000")


def test_the_rfm_grid_counts_shares_gmv_and_averages_per_class_in_one_query(book, operator, django_assert_num_queries):
    with django_assert_num_queries(1):
        grid = selectors.rfm_grid(operator)

    by_class = {c["rfm_class"]: c for c in grid["classes"]}
    assert (grid["customers"], grid["gmv"]) == (5, Decimal("12100.00"))
    assert [c["rfm_class"] for c in grid["classes"]] == [
        "important_value", "important_develop", "important_keep", "important_retain", "general_value",
        "general_develop", "general_keep", "general_retain", "no_purchase",
    ]  # fmt: skip
    assert {k: (c["count"], c["share"], c["gmv"], c["gmv_share"]) for k, c in by_class.items() if c["count"]} == {
        "important_value": (2, 0.4, Decimal("8000.00"), 0.6612),
        "important_keep": (1, 0.2, Decimal("4000.00"), 0.3306),
        "general_retain": (1, 0.2, Decimal("100.00"), 0.0083),
        "no_purchase": (1, 0.2, Decimal("0.00"), 0.0),
    }
    value = by_class["important_value"]
    assert (value["avg_recency_days"], value["avg_frequency"], value["avg_monetary"]) == (15.0, 7.0, Decimal("4000.00"))
    assert (value["r_high"], value["f_high"], value["m_high"]) == (True, True, True)
    keep = by_class["important_keep"]
    assert (keep["r_high"], keep["f_high"], keep["m_high"]) == (False, True, True)
    nobody = by_class["important_develop"]
    assert (nobody["count"], nobody["share"], nobody["avg_recency_days"], nobody["avg_monetary"]) == (
        0,
        0.0,
        None,
        None,
    )
    no_purchase = by_class["no_purchase"]
    assert (no_purchase["r_high"], no_purchase["avg_recency_days"], no_purchase["avg_frequency"]) == (None, None, 0.0)


def test_a_reps_rfm_grid_is_the_grid_of_their_own_book(book, rep):
    grid = selectors.rfm_grid(rep)

    by_class = {c["rfm_class"]: c for c in grid["classes"]}
    assert (grid["customers"], grid["gmv"]) == (4, Decimal("8100.00"))
    assert (by_class["important_value"]["share"], by_class["important_value"]["gmv_share"]) == (0.5, 0.9877)
    assert by_class["important_keep"]["count"] == 0


def test_merged_customers_leave_the_grid(operator):
    survivor = CustomerFactory()
    merged = CustomerFactory(merged_into=survivor)
    rfm(merged, "important_value", r=1, f=1, m="10")

    assert selectors.rfm_grid(operator)["customers"] == 0


# ---------------------------------------------------------------------------------------------- size over time


def test_a_reps_size_at_each_point_counts_their_customers_in_the_segment_then(rep, other_rep, operator):
    segment = Segment.objects.create(kind=SegmentKind.STATIC, name="展会名单")
    day = [NOW - timedelta(days=n) for n in range(5)]  # day[0] is now, day[4] four days ago
    mine, again, theirs = (CustomerFactory(owner=rep.staff), CustomerFactory(owner=rep.staff),
                           CustomerFactory(owner=other_rep.staff))  # fmt: skip

    def episode(customer, entered, exited=None):
        SegmentMembership.objects.create(segment=segment, customer=customer, entered_at=entered, exited_at=exited,
                                         entry_reason="manual", exit_reason="manual" if exited else "")  # fmt: skip

    episode(mine, day[4], day[1])  # entered exactly at a point: counted there; exited exactly at one: not
    episode(again, day[3], day[2])
    episode(again, day[1])  # came back
    episode(theirs, day[4])
    points = [SegmentSize.objects.create(segment=segment, at=at, size=9) for at in day]

    as_rep = selectors.with_visible_sizes(rep, segment, selectors.segment_sizes(rep, segment))
    as_operator = selectors.with_visible_sizes(operator, segment, points)

    visible = {p.at: p.visible_size for p in as_rep}
    assert [visible[at] for at in reversed(day)] == [1, 2, 1, 1, 1]  # oldest first
    assert {p.visible_size for p in as_operator} == {9}  # managers read the stored sizes


# ---------------------------------------------------------------------------------------------- RFM migration


def test_the_migration_matrix_reads_each_customers_class_on_both_dates_from_the_class_changes(
    operator, run, django_assert_num_queries
):
    def customer(current_class):
        c = CustomerFactory()
        rfm(c, current_class)
        return c

    demoted = customer("important_keep")  # classified in September, demoted mid-October
    moved(run, demoted, "", "important_value", datetime(2026, 9, 1, tzinfo=SHANGHAI))
    moved(run, demoted, "important_value", "important_keep", datetime(2026, 10, 15, tzinfo=SHANGHAI))
    steady = customer("general_value")
    moved(run, steady, "", "general_value", datetime(2026, 9, 1, tzinfo=SHANGHAI))
    newcomer = customer("general_develop")  # first classified between the dates
    moved(run, newcomer, "", "general_develop", datetime(2026, 10, 20, tzinfo=SHANGHAI))
    customer("general_retain")  # no change recorded at all: the current class throughout
    promoted = customer("important_value")  # only a later change: before it, its from_class
    moved(run, promoted, "important_develop", "important_value", datetime(2026, 10, 20, tzinfo=SHANGHAI))
    late = customer("important_value")  # first classified after both dates: left out
    moved(run, late, "", "important_value", datetime(2026, 11, 5, tzinfo=SHANGHAI))
    last_second = customer("general_keep")  # the last second of October 1st counts for October 1st
    moved(run, last_second, "", "general_keep", datetime(2026, 10, 1, 23, 59, 59, tzinfo=SHANGHAI))
    next_day = customer("general_keep")  # midnight starts October 2nd
    moved(run, next_day, "", "general_keep", datetime(2026, 10, 2, 0, 0, tzinfo=SHANGHAI))
    twice = customer("important_keep")  # two changes between the dates: from the class before the first
    moved(run, twice, "", "general_value", datetime(2026, 9, 1, tzinfo=SHANGHAI))
    moved(run, twice, "general_value", "important_value", datetime(2026, 10, 10, tzinfo=SHANGHAI))
    moved(run, twice, "important_value", "important_keep", datetime(2026, 10, 20, tzinfo=SHANGHAI))

    with django_assert_num_queries(1):
        migration = selectors.rfm_migration(operator, start=OCT_1, end=NOV_1)

    assert nonzero(migration["matrix"]) == {
        ("important_value", "important_keep"): 1,
        ("general_value", "general_value"): 1,
        ("unclassified", "general_develop"): 1,
        ("general_retain", "general_retain"): 1,
        ("important_develop", "important_value"): 1,
        ("general_keep", "general_keep"): 1,
        ("unclassified", "general_keep"): 1,
        ("general_value", "important_keep"): 1,
    }
    assert (migration["customers"], migration["changed"]) == (8, 5)
    assert migration["classes"] == [*[c["rfm_class"] for c in selectors.rfm_grid(operator)["classes"]], "unclassified"]


def test_the_class_on_a_date_is_the_last_change_of_that_day_and_the_same_date_twice_changes_nothing(operator, run):
    customer = CustomerFactory()
    rfm(customer, "general_keep")
    moved(run, customer, "", "important_value", datetime(2026, 10, 1, 9, tzinfo=SHANGHAI))
    moved(run, customer, "important_value", "general_keep", datetime(2026, 10, 1, 21, tzinfo=SHANGHAI))

    same_day = selectors.rfm_migration(operator, start=OCT_1, end=OCT_1)
    day_before = selectors.rfm_migration(operator, start=OCT_1 - timedelta(days=1), end=OCT_1)

    assert nonzero(same_day["matrix"]) == {("general_keep", "general_keep"): 1}
    assert same_day["changed"] == 0
    assert nonzero(day_before["matrix"]) == {("unclassified", "general_keep"): 1}


def test_a_reps_migration_matrix_counts_only_their_customers(rep, other_rep, run):
    for owner in (rep, other_rep):
        customer = CustomerFactory(owner=owner.staff)
        rfm(customer, "important_keep")
        moved(run, customer, "important_value", "important_keep", datetime(2026, 10, 15, tzinfo=SHANGHAI))

    migration = selectors.rfm_migration(rep, start=OCT_1, end=NOV_1)

    assert nonzero(migration["matrix"]) == {("important_value", "important_keep"): 1}


# ------------------------------------------------------------------------------------------ stages and funnel


def stage(customer, model, name):
    CustomerStage.objects.create(customer=customer, model=model, stage=name, since=NOW)


def test_the_aipl_funnel_counts_each_stage_who_reached_it_and_the_conversions(operator):
    for name, count in (("awareness", 5), ("interest", 3), ("purchase", 1), ("loyalty", 1)):
        for _ in range(count):
            stage(CustomerFactory(), "aipl", name)

    funnel = selectors.aipl_funnel(operator)

    assert funnel["customers"] == 10
    assert [(s["stage"], s["count"], s["share"], s["reached"], s["conversion"]) for s in funnel["stages"]] == [
        ("awareness", 5, 0.5, 10, None),
        ("interest", 3, 0.3, 5, 0.5),
        ("purchase", 1, 0.1, 2, 0.4),
        ("loyalty", 1, 0.1, 1, 0.5),
    ]


def test_a_distribution_lists_the_models_stages_in_order_then_others_largest_first(operator, rep):
    stage(CustomerFactory(), "lifecycle", "vip")
    stage(CustomerFactory(owner=rep.staff), "lifecycle", "new")
    stage(CustomerFactory(owner=rep.staff), "lifecycle", "new")
    stage(CustomerFactory(), "lifecycle", "trial")  # the education preset's, from before a preset change
    for _ in range(2):
        stage(CustomerFactory(), "lifecycle", "lead")
    stage(CustomerFactory(), "ladder", "3")

    lifecycle = selectors.stage_distribution(operator, "lifecycle")
    ladder = selectors.stage_distribution(operator, "ladder")
    of_rep = selectors.stage_distribution(rep, "lifecycle")

    assert [(s["stage"], s["count"]) for s in lifecycle["stages"]] == [
        ("new", 2), ("first_purchase", 0), ("repeat", 0), ("vip", 1), ("dormant", 0), ("churned", 0), ("lead", 2),
        ("trial", 1),
    ]  # fmt: skip
    assert lifecycle["stages"][0]["label"] == "Lifecycle: new, not bought yet"
    assert [(s["stage"], s["count"], s["share"]) for s in ladder["stages"]] == [
        ("1", 0, 0.0), ("2", 0, 0.0), ("3", 1, 1.0), ("4", 0, 0.0), ("5", 0, 0.0),
    ]  # fmt: skip
    assert (of_rep["customers"], [(s["stage"], s["count"]) for s in of_rep["stages"] if s["count"]]) == (
        2, [("new", 2)]
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------- segments


def test_segment_members_are_the_visible_open_episodes_entered_since(rep, other_rep):
    mine_early, mine_late = CustomerFactory(owner=rep.staff), CustomerFactory(owner=rep.staff)
    theirs = CustomerFactory(owner=other_rep.staff)
    segment = service.save_segment(None, name="名单", kind=SegmentKind.STATIC)
    service.add_to_static(segment, [mine_early.pk, mine_late.pk, theirs.pk])
    SegmentMembership.objects.filter(customer=mine_early).update(entered_at=NOW - timedelta(days=10))
    SegmentMembership.objects.filter(customer=mine_late).update(entered_at=NOW - timedelta(days=1))

    everyone = selectors.segment_members(rep, segment)
    recent = selectors.segment_members(rep, segment, since=NOW - timedelta(days=3))

    assert {m.customer_id for m in everyone} == {mine_early.pk, mine_late.pk}
    assert [m.customer_id for m in recent] == [mine_late.pk]


def test_a_customers_memberships_split_into_now_and_before(operator):
    customer = CustomerFactory()
    kept = service.save_segment(None, name="kept", kind=SegmentKind.STATIC)
    left = service.save_segment(None, name="left", kind=SegmentKind.STATIC)
    service.add_to_static(kept, [customer.pk])
    service.add_to_static(left, [customer.pk])
    service.remove_from_static(left, [customer.pk])
    service.add_to_static(left, [customer.pk])
    service.remove_from_static(left, [customer.pk])

    current, past = selectors.customer_memberships(customer)

    assert [m.segment.name for m in current] == ["kept"]
    assert [m.segment.name for m in past] == ["left", "left"]
    assert past[0].exited_at >= past[1].exited_at
