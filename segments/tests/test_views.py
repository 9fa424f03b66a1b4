import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from openpyxl import load_workbook

from accounts.models import Role
from customers.tests.factories import CustomerFactory, OrderFactory, StaffFactory, UserFactory, sales_rep
from segments.models import (
    CustomerRfm,
    CustomerStage,
    LayeringSettings,
    MembershipReason,
    RecomputeStatus,
    RfmRun,
    RfmTransition,
    Segment,
    SegmentExclusion,
    SegmentKind,
    SegmentMembership,
    SegmentSize,
    rfm_as_of,
)
from segments.services import segments as service
from segments.views import segments as segment_views

pytestmark = pytest.mark.django_db

IN_SHANGHAI = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}
FULLWIDTH_COMMA = "\N{FULLWIDTH COMMA}"  # how ids and numbers are often pasted from Chinese documents


def login(role: str = Role.OPERATOR, username: str = "op") -> Client:
    client = Client()
    client.force_login(UserFactory(username=username, role=role))
    return client


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator_client():
    return login()


@pytest.fixture
def rep():
    return sales_rep("rep1")


def dynamic(rule=IN_SHANGHAI, name="上海客户") -> Segment:
    segment = service.save_segment(None, name=name, rule=rule)
    service.recompute_segment(segment)
    segment.refresh_from_db()
    return segment


def static(*customers, name="展会名单") -> Segment:
    segment = service.save_segment(None, name=name, kind=SegmentKind.STATIC)
    if customers:
        service.add_to_static(segment, [c.pk for c in customers])
    return segment


def members(segment) -> set[int]:
    return set(
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values_list("customer_id", flat=True)
    )


def post_rule(client, url, rule, **fields):
    return client.post(url, {"name": "高价值上海", "description": "", "rule": json.dumps(rule), **fields})


# ------------------------------------------------------------------------------------------------ /segments/


def test_segment_list_shows_kind_visible_size_status_and_last_recompute(rep):
    mine = CustomerFactory(owner=rep.staff, city="上海")
    CustomerFactory(owner=StaffFactory(), city="上海")
    shanghai = dynamic()
    stalled = static(mine, name="卡住的")
    Segment.objects.filter(pk=stalled.pk).update(
        status=RecomputeStatus.CALCULATING, lease_until=timezone.now() - timedelta(minutes=1)
    )
    Segment.objects.filter(pk=shanghai.pk).update(last_duration_ms=42, last_error="")

    as_operator = login().get(reverse("segments:list"))
    as_rep = client_of(rep).get(reverse("segments:list"))

    rows = {s.name: (s.kind, s.member_count, s.status_label, s.is_stalled) for s in as_operator.context["segments"]}
    assert rows == {
        "上海客户": ("dynamic", 2, "Up to date", False),
        "卡住的": ("static", 1, "Stalled: the recompute stopped and will be retried", True),
    }
    assert {s.name: s.member_count for s in as_rep.context["segments"]} == {"上海客户": 1, "卡住的": 1}
    body = as_operator.content.decode()
    assert "42 ms" in body
    assert 'data-status="stalled"' in body
    assert "new-dynamic-segment" in body
    assert "new-dynamic-segment" not in as_rep.content.decode()


def test_segment_list_filters_by_kind_and_name(operator_client):
    dynamic(name="上海客户")
    static(name="展会名单")
    static(name="直播名单")

    by_kind = operator_client.get(reverse("segments:list"), {"kind": "static"})
    by_name = operator_client.get(reverse("segments:list"), {"kind": "static", "q": "直播"}, HTTP_HX_REQUEST="true")

    assert [s.name for s in by_kind.context["segments"]] == ["展会名单", "直播名单"]
    assert [s.name for s in by_name.context["segments"]] == ["直播名单"]
    assert [t.name for t in by_name.templates] == ["segments/_segment_table.html", "segments/_status.html"]


def test_segment_list_runs_a_fixed_number_of_queries_however_many_segments(rep, django_assert_num_queries):
    customers = [CustomerFactory(owner=rep.staff) for _ in range(3)]
    for n in range(12):
        static(*customers, name=f"名单{n}")
    rep_client = client_of(rep)
    rep_client.get(reverse("segments:list"))

    # session, user, the segments, the members the rep may see in them (one grouped count for all)
    with django_assert_num_queries(4):
        response = rep_client.get(reverse("segments:list"))

    assert [s.member_count for s in response.context["segments"]] == [3] * 12


def test_a_manager_creates_a_static_segment_with_customers(operator_client):
    first, second = CustomerFactory(), CustomerFactory()

    response = operator_client.post(
        reverse("segments:create_static"),
        {
            "static-name": "展会名单",
            "static-description": "11 月展会",
            "static-customers": f"{first.pk}{FULLWIDTH_COMMA}{second.pk}",
        },
    )

    segment = Segment.objects.get(name="展会名单")
    assert response["Location"] == reverse("segments:detail", args=[segment.pk])
    assert (segment.kind, segment.description) == (SegmentKind.STATIC, "11 月展会")
    assert members(segment) == {first.pk, second.pk}


def test_a_static_segment_with_unknown_customers_is_not_created(operator_client):
    known = CustomerFactory()

    response = operator_client.post(
        reverse("segments:create_static"), {"static-name": "展会名单", "static-customers": f"{known.pk} 999999"}
    )

    assert response.status_code == 200
    assert response.context["static_form"].errors["customers"] == ["Customers not found: 999999"]
    assert not Segment.objects.exists()


def test_reps_cannot_create_segments(rep):
    rep_client = client_of(rep)

    editor = rep_client.get(reverse("segments:create"))
    created = post_rule(rep_client, reverse("segments:create"), IN_SHANGHAI)
    listed = rep_client.post(reverse("segments:create_static"), {"static-name": "名单"})

    assert (editor.status_code, created.status_code, listed.status_code) == (403, 403, 403)
    assert not Segment.objects.exists()


# ----------------------------------------------------------------------------------------------- the editor


def test_the_editor_offers_the_rule_builder_with_segments_and_the_layer_predicates(operator_client):
    other = static(name="展会名单")

    response = operator_client.get(reverse("segments:create"))

    config = response.context["builder_config"]
    assert json.loads(response.context["rule_json"]) == {"all": []}
    assert [s["id"] for s in config["segments"]] == [other.pk]
    assert [name for name, _label in config["extraPredicates"]] == [
        "in_segment", "rfm_class", "aipl_stage", "lifecycle_stage", "ladder_level",
    ]  # fmt: skip
    assert ["important_value", "Important value customer"] in config["rfmClasses"]
    assert "has_tag" in [name for name, _label in config["predicates"]]
    assert 'id="rule-builder-config"' in response.content.decode()


def test_a_manager_saves_a_dynamic_segment_and_lands_on_its_page(operator_client):
    rule = {"all": [IN_SHANGHAI, {"predicate": "orders_count", "op": "gte", "value": 2}]}

    response = post_rule(operator_client, reverse("segments:create"), rule)

    segment = Segment.objects.get(name="高价值上海")
    assert response["Location"] == reverse("segments:detail", args=[segment.pk])
    assert (segment.kind, segment.rule) == (SegmentKind.DYNAMIC, rule)


def test_saving_an_invalid_rule_shows_every_issue_with_its_path_and_saves_nothing(operator_client):
    rule = {"all": [{"predicate": "orders_count", "op": "gte"}, {**IN_SHANGHAI, "op": "in", "value": []}]}

    response = post_rule(operator_client, reverse("segments:create"), rule)

    assert response.status_code == 200
    assert [(i.path, i.message) for i in response.context["issues"]] == [
        ("$.all[0].value", "Expected a number."),
        ("$.all[1].value", "Expected a non-empty list of text."),
    ]
    body = response.content.decode()
    assert 'data-issue-path="$.all[0].value"' in body
    assert json.loads(response.context["rule_json"]) == rule  # the builder reopens with what was sent
    assert not Segment.objects.exists()


def test_a_rule_reading_the_segment_itself_is_refused_as_a_cycle(operator_client):
    first = dynamic(name="甲")
    second = dynamic({"predicate": "in_segment", "segments": [first.pk]}, name="乙")

    response = post_rule(
        operator_client, reverse("segments:edit", args=[first.pk]), {"predicate": "in_segment", "segments": [second.pk]}
    )

    assert [(i.path, i.message) for i in response.context["issues"]] == [
        ("$", "The segment depends on itself (directly or through other segments).")
    ]
    first.refresh_from_db()
    assert (first.name, first.rule) == ("甲", IN_SHANGHAI)


def test_adding_a_layer_condition_appends_it_to_the_rule_being_edited_without_saving(operator_client):
    response = operator_client.post(
        reverse("segments:create"),
        {"name": "流失风险", "rule": json.dumps({"all": [IN_SHANGHAI]}), "add_condition": "rfm_class",
         "rfm_classes": ["important_keep", "important_retain"]},
    )  # fmt: skip

    assert json.loads(response.context["rule_json"]) == {
        "all": [IN_SHANGHAI, {"predicate": "rfm_class", "in": ["important_keep", "important_retain"]}]
    }
    assert response.context["form"]["name"].value() == "流失风险"
    assert not Segment.objects.exists()


def test_the_preview_counts_and_samples_the_matching_customers(operator_client):
    CustomerFactory(name="林佳怡", city="上海")
    CustomerFactory(name="王芳", city="杭州")

    response = operator_client.post(reverse("segments:preview"), {"rule": json.dumps(IN_SHANGHAI)})

    assert response.context["count"] == 1
    assert [c.name for c in response.context["sample"]] == ["林佳怡"]
    assert response.context["description"] == "city = 上海"


def test_the_preview_reports_issues_with_their_paths(operator_client):
    response = operator_client.post(
        reverse("segments:preview"), {"rule": json.dumps({"all": [{**IN_SHANGHAI, "op": "in", "value": []}]})}
    )

    assert [(i.path, i.message) for i in response.context["issues"]] == [
        ("$.all[0].value", "Expected a non-empty list of text.")
    ]
    assert 'data-issue-path="$.all[0].value"' in response.content.decode()


def test_model_segments_cannot_be_edited(operator_client):
    model = Segment.objects.create(name="RFM: 重要价值", kind=SegmentKind.MODEL, model_key="rfm:important_value")

    assert operator_client.get(reverse("segments:edit", args=[model.pk])).status_code == 404


# -------------------------------------------------------------------------------------------- a segment's page


def test_a_rep_sees_only_their_own_members_and_sizes(rep):
    mine = CustomerFactory(owner=rep.staff, city="上海", name="我的客户")
    CustomerFactory(owner=StaffFactory(), city="上海", name="别人的客户")
    segment = dynamic()

    response = client_of(rep).get(reverse("segments:detail", args=[segment.pk]))

    assert [m.customer_id for m in response.context["members"]] == [mine.pk]
    assert response.context["segment"].member_count == 1
    assert [s["size"] for s in response.context["sizes"]] == [1]
    body = response.content.decode()
    assert "我的客户" in body
    assert "别人的客户" not in body
    assert 'data-testid="recompute"' not in body


def test_the_segment_page_shows_size_over_time_oldest_first(operator_client):
    CustomerFactory(city="上海")
    segment = dynamic()
    CustomerFactory(city="上海")
    service.recompute_segment(segment)

    response = operator_client.get(reverse("segments:detail", args=[segment.pk]))

    assert [s["size"] for s in response.context["sizes"]] == [1, 2]
    assert 'id="segment-sizes"' in response.content.decode()
    assert 'data-testid="size-chart"' in response.content.decode()


def test_members_are_keyset_paginated_and_filtered_by_entry_date(operator_client, monkeypatch):
    monkeypatch.setattr(segment_views, "PAGE_SIZE", 2)
    customers = [CustomerFactory() for _ in range(5)]
    segment = static(*customers)
    SegmentMembership.objects.filter(customer__in=customers[:2]).update(entered_at=timezone.now() - timedelta(days=10))
    url = reverse("segments:members", args=[segment.pk])

    first = operator_client.get(url)
    second = operator_client.get(url, {"after": first.context["next_after"]})
    third = operator_client.get(url, {"after": second.context["next_after"]})
    recent = operator_client.get(url, {"since": (timezone.localdate() - timedelta(days=1)).isoformat()})

    pages = [[m.customer_id for m in page.context["members"]] for page in (first, second, third)]
    newest_first = [c.pk for c in reversed(customers)]
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    assert third.context["next_after"] is None
    assert [m.customer_id for m in recent.context["members"]] == newest_first[:2]
    assert recent.context["next_after"] is not None
    assert "since=" in recent.content.decode()


def test_members_page_runs_a_fixed_number_of_queries(rep, django_assert_num_queries):
    segment = static(*[CustomerFactory(owner=rep.staff) for _ in range(30)])
    rep_client = client_of(rep)
    url = reverse("segments:members", args=[segment.pk])
    rep_client.get(url)

    # session, user, the segment (with the rep's member count), the page of members with customers and owners
    with django_assert_num_queries(4):
        response = rep_client.get(url)

    assert len(response.context["members"]) == 30


def test_segment_page_runs_a_fixed_number_of_queries(operator_client, django_assert_num_queries):
    for _ in range(20):
        CustomerFactory(city="上海", owner=StaffFactory())
    segment = dynamic()
    operator_client.get(reverse("segments:detail", args=[segment.pk]))

    # session, user, the segment, its sizes, its exclusions, the page of members
    with django_assert_num_queries(6):
        operator_client.get(reverse("segments:detail", args=[segment.pk]))


def test_exports_hold_only_the_members_the_user_may_see(rep):
    mine = CustomerFactory(owner=rep.staff, name="我的客户")
    theirs = CustomerFactory(owner=StaffFactory(), name="别人的客户")
    segment = static(mine, theirs)
    url = reverse("segments:export", args=[segment.pk])

    rep_csv = b"".join(client_of(rep).get(url).streaming_content).decode("utf-8-sig")
    operator_csv = b"".join(login().get(url).streaming_content).decode("utf-8-sig")
    workbook = load_workbook(io.BytesIO(client_of(rep).get(url, {"format": "xlsx"}).content))

    assert [row[0] for row in csv.reader(io.StringIO(rep_csv))][1:] == [str(mine.pk)]
    assert sorted(row[0] for row in csv.reader(io.StringIO(operator_csv)))[:2] == sorted([str(mine.pk), str(theirs.pk)])
    assert [row[1] for row in workbook.active.iter_rows(min_row=2, values_only=True)] == ["我的客户"]


def test_a_manager_recomputes_a_dynamic_segment_now(operator_client):
    segment = service.save_segment(None, name="上海客户", rule=IN_SHANGHAI)
    shanghai = CustomerFactory(city="上海")

    response = operator_client.post(reverse("segments:recompute", args=[segment.pk]), follow=True)

    assert members(segment) == {shanghai.pk}
    assert [str(m) for m in response.context["messages"]] == ["Recomputed: 1 match, 1 entered, 0 left."]
    assert SegmentSize.objects.filter(segment=segment).count() == 1


def test_a_failed_recompute_shows_its_error(operator_client, monkeypatch):
    segment = service.save_segment(None, name="上海客户", rule=IN_SHANGHAI)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("segments.services.segments.sync_membership", broken)
    response = operator_client.post(reverse("segments:recompute", args=[segment.pk]), follow=True)

    assert [str(m) for m in response.context["messages"]] == ["The recompute failed: RuntimeError: disk full"]
    assert response.context["segment"].status_label == "Failed"


def test_only_managers_recompute_freeze_exclude_or_change_lists(rep):
    mine = CustomerFactory(owner=rep.staff, city="上海")
    segment = dynamic()
    listed = static(mine)
    rep_client = client_of(rep)

    statuses = [
        rep_client.post(reverse("segments:recompute", args=[segment.pk])).status_code,
        rep_client.post(reverse("segments:freeze", args=[segment.pk]), {"name": "快照"}).status_code,
        rep_client.post(reverse("segments:exclude", args=[segment.pk]), {"customer": mine.pk}).status_code,
        rep_client.post(reverse("segments:clear_exclusions", args=[segment.pk]), {"all": "1"}).status_code,
        rep_client.post(reverse("segments:remove_members", args=[listed.pk]), {"customers": mine.pk}).status_code,
        rep_client.post(reverse("segments:add_members", args=[listed.pk]), {"customers": mine.pk}).status_code,
        rep_client.post(reverse("segments:delete", args=[listed.pk])).status_code,
    ]

    assert statuses == [403] * 7
    assert Segment.objects.count() == 2
    assert members(segment) == members(listed) == {mine.pk}
    assert not SegmentExclusion.objects.exists()


def test_freezing_makes_a_static_copy_of_the_current_members(operator_client):
    shanghai = [CustomerFactory(city="上海") for _ in range(2)]
    segment = dynamic()

    response = operator_client.post(reverse("segments:freeze", args=[segment.pk]), {"name": "上海快照"})

    frozen = Segment.objects.get(name="上海快照")
    assert response["Location"] == reverse("segments:detail", args=[frozen.pk])
    assert frozen.kind == SegmentKind.STATIC
    assert members(frozen) == {c.pk for c in shanghai}


def test_excluding_a_member_and_clearing_the_exclusion(operator_client):
    kept, excluded = CustomerFactory(city="上海"), CustomerFactory(city="上海")
    segment = dynamic()

    operator_client.post(reverse("segments:exclude", args=[segment.pk]), {"customer": excluded.pk, "reason": "投诉"})
    page = operator_client.get(reverse("segments:detail", args=[segment.pk]))
    service.recompute_segment(segment)
    after_recompute = members(segment)
    operator_client.post(reverse("segments:clear_exclusions", args=[segment.pk]), {"customer": excluded.pk})

    assert [(e.customer_id, e.reason) for e in page.context["exclusions"]] == [(excluded.pk, "投诉")]
    assert after_recompute == {kept.pk}
    assert members(segment) == {kept.pk, excluded.pk}
    assert not SegmentExclusion.objects.exists()


def test_a_manager_adds_and_removes_customers_of_a_static_segment(operator_client):
    first, second = CustomerFactory(), CustomerFactory()
    segment = static(first)

    operator_client.post(reverse("segments:add_members", args=[segment.pk]), {"customers": f"{second.pk}"})
    added = members(segment)
    operator_client.post(reverse("segments:remove_members", args=[segment.pk]), {"customers": f"{first.pk}"})

    assert added == {first.pk, second.pk}
    assert members(segment) == {second.pk}
    removed = SegmentMembership.objects.get(segment=segment, customer=first)
    assert removed.exit_reason == MembershipReason.REMOVED


def test_adding_unknown_customers_changes_nothing(operator_client):
    first = CustomerFactory()
    segment = static(first)

    response = operator_client.post(
        reverse("segments:add_members", args=[segment.pk]), {"customers": "999998, 999999"}, follow=True
    )

    assert [str(m) for m in response.context["messages"]] == ["Customers not found: 999998, 999999"]
    assert members(segment) == {first.pk}


def test_a_segment_read_by_another_rule_cannot_be_deleted(operator_client):
    base = static(name="展会名单")
    reader = dynamic({"predicate": "in_segment", "segments": [base.pk]}, name="展会回访")

    refused = operator_client.post(reverse("segments:delete", args=[base.pk]), follow=True)
    deleted = operator_client.post(reverse("segments:delete", args=[reader.pk]))

    assert [str(m) for m in refused.context["messages"]] == [
        "The rules of 展会回访 read this segment; change them first."
    ]
    assert deleted["Location"] == reverse("segments:list")
    assert list(Segment.objects.values_list("name", flat=True)) == ["展会名单"]


# ----------------------------------------------------------------------------------------------------- layers


def rfm(customer, rfm_class: str, *, monetary: str = "1000", recency: int = 10, frequency: int = 3) -> CustomerRfm:
    return CustomerRfm.objects.create(
        customer=customer, last_purchase_on=rfm_as_of() - timedelta(days=recency), frequency=frequency,
        monetary=Decimal(monetary), r_score=4, f_score=4, m_score=4, rfm_class=rfm_class, computed_at=timezone.now(),
    )  # fmt: skip


def test_the_rfm_grid_counts_a_reps_own_book(rep):
    rfm(CustomerFactory(owner=rep.staff), "important_value", monetary="3000")
    rfm(CustomerFactory(owner=rep.staff), "general_retain", monetary="1000")
    rfm(CustomerFactory(owner=StaffFactory()), "important_value", monetary="9000")

    as_rep = client_of(rep).get(reverse("segments:layers"))
    as_operator = login().get(reverse("segments:layers"))

    cells = {cell["rfm_class"]: cell for row in as_rep.context["grid_rows"] for cell in row}
    assert (cells["important_value"]["count"], cells["important_value"]["share_percent"]) == (1, 50.0)
    assert cells["important_value"]["gmv_share_percent"] == 75.0
    assert cells["general_retain"]["count"] == 1
    assert as_rep.context["grid"]["customers"] == 2
    assert as_operator.context["grid"]["customers"] == 3
    assert str(cells["important_value"]["action"]) == "Exclusive perks and VIP service; keep them close."
    assert "rfm-settings" not in as_rep.content.decode()
    assert "rfm-settings" in as_operator.content.decode()


def test_the_rfm_page_names_the_classes_in_chinese(operator_client, settings):
    settings.LANGUAGE_CODE = "zh-hans"

    with translation.override("zh-hans"):
        response = operator_client.get(reverse("segments:layers"), HTTP_ACCEPT_LANGUAGE="zh-hans")

    body = response.content.decode()
    for name in (
        "重要价值客户",
        "重要发展客户",
        "重要保持客户",
        "重要挽留客户",
        "一般价值客户",
        "一般发展客户",
        "一般保持客户",
        "一般挽留客户",
    ):
        assert name in body


def test_the_migration_matrix_counts_class_changes_between_two_dates(operator_client):
    customer = CustomerFactory()
    rfm(customer, "important_keep")
    run = RfmRun.objects.create(as_of=timezone.localdate(), window_days=365, method="quantile")
    RfmTransition.objects.create(run=run, customer=customer, from_class="", to_class="important_value",
                                 at=timezone.now() - timedelta(days=20))  # fmt: skip
    RfmTransition.objects.create(run=run, customer=customer, from_class="important_value", to_class="important_keep",
                                 at=timezone.now() - timedelta(days=2))  # fmt: skip
    today = timezone.localdate()

    response = operator_client.get(
        reverse("segments:rfm_migration"),
        {"start": (today - timedelta(days=10)).isoformat(), "end": today.isoformat()},
        HTTP_HX_REQUEST="true",
    )

    migration = response.context["migration"]
    assert migration["matrix"]["important_value"]["important_keep"] == 1
    assert (migration["customers"], migration["changed"]) == (1, 1)
    assert 'data-from="important_value" data-to="important_keep">1<' in response.content.decode()


def test_the_rfm_page_loads_the_last_thirty_days_matrix_after_itself(operator_client):
    today = timezone.localdate()

    response = operator_client.get(reverse("segments:layers"))

    assert "migration" not in response.context  # not counted while the page waits
    start, end = (today - timedelta(days=30)).isoformat(), today.isoformat()
    fragment = f'hx-get="{reverse("segments:rfm_migration")}?start={start}&amp;end={end}"'
    assert fragment in response.content.decode()
    assert 'data-testid="migration-loading"' in response.content.decode()


def test_the_migration_refuses_dates_in_the_wrong_order(operator_client):
    response = operator_client.get(reverse("segments:rfm_migration"), {"start": "2026-11-02", "end": "2026-11-01"})

    assert "migration" not in response.context
    assert "The first date must not be after the second." in response.content.decode()


def test_a_manager_saves_the_rfm_settings(operator_client):
    response = operator_client.post(
        reverse("segments:layer_settings"),
        {"rfm-rfm_window_days": "180", "rfm-rfm_as_of": "2026-10-31", "rfm-rfm_method": "thresholds",
         "rfm-threshold_r": "15, 30, 60, 90", "rfm-threshold_f": FULLWIDTH_COMMA.join("8532"),
         "rfm-threshold_m": "5000, 2000, 1000, 500",
         "rfm-high_r": "4", "rfm-high_f": "3", "rfm-high_m": "3"},
    )  # fmt: skip

    settings = LayeringSettings.load()
    assert response["Location"] == reverse("segments:layers")
    assert (settings.rfm_window_days, str(settings.rfm_as_of), settings.rfm_method) == (180, "2026-10-31", "thresholds")
    assert settings.rfm_thresholds == {"r": [15, 30, 60, 90], "f": [8, 5, 3, 2], "m": [5000, 2000, 1000, 500]}
    assert settings.rfm_high_from == {"r": 4, "f": 3, "m": 3}


def test_invalid_rfm_settings_are_shown_and_nothing_changes(operator_client):
    before = LayeringSettings.load()

    response = operator_client.post(
        reverse("segments:layer_settings"),
        {"rfm-rfm_window_days": "0", "rfm-rfm_method": "quantile", "rfm-threshold_r": "90, 60, 30, 15",
         "rfm-threshold_f": "8, 5, 3", "rfm-threshold_m": "5000, 2000, 1000, 500", "rfm-high_r": "6",
         "rfm-high_f": "3", "rfm-high_m": "3"},
    )  # fmt: skip

    errors = response.context["settings_form"].errors
    assert errors == {
        "rfm_window_days": ["Ensure this value is greater than or equal to 1."],
        "threshold_r": ["Each bound must be larger than the one before."],
        "threshold_f": ["Enter four numbers separated by commas."],
        "high_r": ["Ensure this value is less than or equal to 5."],
    }
    after = LayeringSettings.load()
    assert (after.rfm_window_days, after.rfm_thresholds) == (before.rfm_window_days, before.rfm_thresholds)


def test_only_managers_change_layer_settings_or_recompute_layers(rep):
    rep_client = client_of(rep)

    saved = rep_client.post(reverse("segments:layer_settings"), {"rfm-rfm_window_days": "30"})
    recomputed = rep_client.post(reverse("segments:recompute_layers"))

    assert (saved.status_code, recomputed.status_code) == (403, 403)
    assert LayeringSettings.load().rfm_window_days == 365
    assert not RfmRun.objects.exists()


def test_a_manager_recomputes_the_layers_now(operator_client):
    buyer = CustomerFactory()
    OrderFactory(customer=buyer, amount=Decimal("500"), ordered_at=timezone.now() - timedelta(days=3))

    response = operator_client.post(reverse("segments:recompute_layers"), {"page": "stages"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("segments:stages")
    assert [str(m) for m in response.context["messages"]] == ["RFM, AIPL, lifecycle and ladder recomputed."]
    assert RfmRun.objects.count() == 1
    assert CustomerRfm.objects.get(customer=buyer).rfm_class != ""
    assert CustomerStage.objects.filter(customer=buyer).count() == 3


def test_the_stages_page_shows_the_funnel_and_distributions_of_a_reps_book(rep):
    now = timezone.now()
    mine = CustomerFactory(owner=rep.staff)
    theirs = CustomerFactory(owner=StaffFactory())
    for customer in (mine, theirs):
        CustomerStage.objects.create(customer=customer, model="aipl", stage="purchase", since=now)
        CustomerStage.objects.create(customer=customer, model="ladder", stage="3", since=now)
    CustomerStage.objects.create(customer=mine, model="lifecycle", stage="first_purchase", since=now)

    response = client_of(rep).get(reverse("segments:stages"))

    charts = response.context["charts"]
    assert [(s["stage"], s["count"]) for s in charts["aipl"]] == [
        ("awareness", 0), ("interest", 0), ("purchase", 1), ("loyalty", 0)
    ]  # fmt: skip
    assert [(s["stage"], s["count"]) for s in charts["ladder"]] == [("1", 0), ("2", 0), ("3", 1), ("4", 0), ("5", 0)]
    assert ("first_purchase", 1) in [(s["stage"], s["count"]) for s in charts["lifecycle"]]
    assert 'id="layer-charts"' in response.content.decode()


# -------------------------------------------------------------------------------------- the customer pages


def customer_list(client, **params):
    response = client.get(reverse("customers:list"), params, HTTP_HX_REQUEST="true")
    return {c.pk for c in response.context["customers"]}


def test_the_customer_list_filters_by_segment_and_by_layer(operator_client):
    now = timezone.now()
    listed, valuable, both, neither = (CustomerFactory() for _ in range(4))
    segment = static(listed, both)
    other = static(neither, name="别的名单")
    for customer in (valuable, both):
        rfm(customer, "important_value")
        CustomerStage.objects.create(customer=customer, model="aipl", stage="loyalty", since=now)
        CustomerStage.objects.create(customer=customer, model="lifecycle", stage="vip", since=now)
        CustomerStage.objects.create(customer=customer, model="ladder", stage="4", since=now)
    rfm(neither, "general_retain")

    assert customer_list(operator_client, segment=[segment.pk]) == {listed.pk, both.pk}
    assert customer_list(operator_client, segment=[segment.pk, other.pk]) == {listed.pk, both.pk, neither.pk}
    assert customer_list(operator_client, rfm_class=["important_value"]) == {valuable.pk, both.pk}
    assert customer_list(operator_client, aipl_stage=["loyalty", "nonsense"]) == {valuable.pk, both.pk}
    assert customer_list(operator_client, lifecycle_stage=["vip"]) == {valuable.pk, both.pk}
    assert customer_list(operator_client, ladder_level=["3", "4"]) == {valuable.pk, both.pk}
    assert customer_list(operator_client, segment=[segment.pk], rfm_class=["important_value"]) == {both.pk}


def test_the_customer_list_shows_the_filter_controls_with_the_chosen_values_ticked(operator_client):
    segment = static(name="展会名单")

    response = operator_client.get(reverse("customers:list"), {"segment": segment.pk, "rfm_class": "important_keep"})

    controls = {control.context["param"]: control.context for control in response.context["filter_controls"]
                if "param" in control.context}  # fmt: skip
    assert list(controls) == ["segment", "rfm_class", "aipl_stage", "lifecycle_stage", "ladder_level"]
    assert controls["segment"]["groups"] == [("Static (list)", [(str(segment.pk), "展会名单", True)])]
    assert controls["rfm_class"]["selected"] == 1
    body = response.content.decode()
    assert f'name="segment" value="{segment.pk}" data-list-filter checked' in body


def test_the_customer_list_query_count_does_not_grow_with_the_segment_filters(operator_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    segments = [static(*[CustomerFactory() for _ in range(3)], name=f"名单{n}") for n in range(5)]
    everywhere = CustomerFactory()
    service.add_to_static(segments[0], [everywhere.pk])
    rfm(everywhere, "important_value")
    for model, stage in (("aipl", "interest"), ("lifecycle", "vip"), ("ladder", "5")):
        CustomerStage.objects.create(customer=everywhere, model=model, stage=stage, since=timezone.now())
    operator_client.get(reverse("customers:list"))

    def queries(**params) -> int:
        with CaptureQueriesContext(connection) as context:
            operator_client.get(reverse("customers:list"), params)
        return len(context)

    plain = queries()
    filtered = queries(segment=[s.pk for s in segments], rfm_class=["important_value"], aipl_stage=["interest"],
                       lifecycle_stage=["vip"], ladder_level=["2", "5"])  # fmt: skip

    # session, user, owners and channels, the page, the tags app's 3, one for all the segments app's filter controls
    assert plain == filtered == 9


def test_the_customer_page_shows_layers_segments_and_class_changes(operator_client):
    customer = CustomerFactory()
    rfm(customer, "important_keep", recency=75, frequency=6, monetary="4200")
    now = timezone.now()
    CustomerStage.objects.create(customer=customer, model="aipl", stage="loyalty", since=now - timedelta(days=40))
    CustomerStage.objects.create(customer=customer, model="ladder", stage="4", since=now)
    run = RfmRun.objects.create(as_of=timezone.localdate(), window_days=365, method="quantile")
    RfmTransition.objects.create(run=run, customer=customer, from_class="important_value", to_class="important_keep",
                                 at=now)  # fmt: skip
    current = static(customer, name="展会名单")
    past = static(customer, name="旧名单")
    service.remove_from_static(past, [customer.pk])

    response = operator_client.get(reverse("customers:detail", args=[customer.pk]))

    [panel] = [panel for panel in response.context["panels"] if panel.key == "segments"]
    context = panel.context
    assert context["rfm"].rfm_class == "important_keep"
    assert [(str(label), stage.stage if stage else None, text) for label, stage, text in context["stages"]] == [
        ("AIPL", "loyalty", "AIPL: loyalty"),
        ("Lifecycle", None, ""),
        ("Relationship ladder", "4", "Ladder 4: repurchased in the period"),
    ]
    assert [m.segment_id for m in context["current"]] == [current.pk]
    assert [m.segment_id for m in context["past"]] == [past.pk]
    assert [(frm, to) for _change, frm, to in context["transitions"]] == [
        ("Important value customer", "Important retention customer")
    ]
    body = response.content.decode()
    assert "Was valuable, now quiet: win them back one to one." in body
    assert "R 4 · F 4 · M 4" in body
