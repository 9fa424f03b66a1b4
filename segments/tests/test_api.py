import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from openpyxl import load_workbook
from rest_framework.test import APIClient

from accounts.models import Role
from customers.tests.factories import CustomerFactory, OrderFactory, UserFactory
from segments import exports
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
    default_aipl,
    rfm_as_of,
)
from segments.services import segments as service
from segments.tasks import recompute_layers as layers_task
from segments.tasks import recompute_segment_task
from tags import services as tag_services
from tags.tests.factories import TagFactory

pytestmark = pytest.mark.django_db

IN_SHANGHAI = {"predicate": "attribute", "field": "city", "op": "eq", "value": "上海"}
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def client_for(user) -> APIClient:
    """A browser session (what the dashboard's own pages use)."""
    client = APIClient()
    client.force_login(user)
    return client


def members(segment) -> set[int]:
    return set(
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values_list("customer_id", flat=True)
    )


def built(rule=IN_SHANGHAI, name="上海客户") -> Segment:
    segment = service.save_segment(None, name=name, rule=rule)
    service.recompute_segment(segment)
    segment.refresh_from_db()
    return segment


def static(*customers, name="名单") -> Segment:
    segment = service.save_segment(None, name=name, kind=SegmentKind.STATIC)
    service.add_to_static(segment, [c.pk for c in customers])
    return segment


def as_local(moment: datetime) -> str:
    return timezone.localtime(moment).isoformat()


@pytest.fixture
def enqueued(monkeypatch):
    """Segment ids sent to the recompute task (nothing reaches the broker)."""
    sent: list[int] = []
    monkeypatch.setattr(recompute_segment_task, "apply_async", lambda args, **kw: sent.extend(args))
    return sent


# ------------------------------------------------------------------------------------------------- segments


def test_creating_a_dynamic_segment_answers_it_and_queues_its_build_after_commit(
    api, operator, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/segments/", {"name": "上海客户", "rule": IN_SHANGHAI}, format="json")

    assert response.status_code == 201
    body = response.json()
    segment = Segment.objects.get()
    assert body == {
        "id": segment.pk, "name": "上海客户", "description": "", "kind": "dynamic", "rule": IN_SHANGHAI,
        "model_key": "", "depends_on": [], "is_time_relative": False, "size": 0, "status": "idle",
        "last_recompute": {"started_at": None, "finished_at": None, "duration_ms": None, "counts": {}, "error": ""},
        "created_by": operator.pk, "created_at": body["created_at"], "updated_at": body["updated_at"],
    }  # fmt: skip
    assert enqueued == [segment.pk]


def test_a_static_segment_is_created_without_a_rule_and_ignores_one_sent(api, enqueued):
    response = api.post("/api/v1/segments/", {"name": "展会名单", "kind": "static", "rule": IN_SHANGHAI}, format="json")

    assert response.status_code == 201
    assert (response.json()["kind"], response.json()["rule"]) == ("static", None)
    assert enqueued == []


def test_a_bad_rule_answers_400_with_every_issue_and_its_path_and_saves_nothing(api):
    rule = {"all": [{"predicate": "orders_count", "op": "bogus", "value": 3}, {"predicate": "in_segment",
                                                                               "segments": [999999]}]}  # fmt: skip

    response = api.post("/api/v1/segments/", {"name": "坏规则", "rule": rule}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["detail"]) == ("invalid_rule", "The rule is not valid.")
    assert body["issues"] == [
        {"path": "$.all[0].op", "message": "Expected one of eq, ne, lt, lte, gt, gte, between for number."},
        {"path": "$.all[1].segments", "message": "No segment with id 999999."},
    ]
    assert not Segment.objects.exists()


def test_a_dynamic_segment_without_a_rule_or_a_model_kind_is_400(api):
    no_rule = api.post("/api/v1/segments/", {"name": "空"}, format="json")
    model = api.post("/api/v1/segments/", {"name": "模型", "kind": "model", "rule": IN_SHANGHAI}, format="json")

    assert no_rule.json()["issues"] == [{"path": "$", "message": "A dynamic segment needs a rule."}]
    assert model.json()["errors"] == {"kind": ['"model" is not a valid choice.']}
    assert not Segment.objects.exists()


def test_a_rule_reading_the_segment_itself_through_another_is_refused_and_the_rule_is_kept(api, enqueued):
    base = built(name="base")
    derived = built({"predicate": "in_segment", "segments": [base.pk]}, name="derived")

    response = api.patch(
        f"/api/v1/segments/{base.pk}/", {"rule": {"predicate": "in_segment", "segments": [derived.pk]}}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["issues"] == [
        {"path": "$", "message": "The segment depends on itself (directly or through other segments)."}
    ]
    base.refresh_from_db()
    assert base.rule == IN_SHANGHAI


def test_patching_the_name_keeps_the_rule_and_records_dependencies_of_a_new_rule(api, enqueued):
    base = built(name="base")
    segment = built(name="old")

    renamed = api.patch(f"/api/v1/segments/{segment.pk}/", {"name": "new"}, format="json")
    rule = {"all": [IN_SHANGHAI, {"predicate": "in_segment", "segments": [base.pk]}]}
    reruled = api.put(f"/api/v1/segments/{segment.pk}/", {"name": "new", "rule": rule}, format="json")

    assert (renamed.json()["name"], renamed.json()["rule"]) == ("new", IN_SHANGHAI)
    assert (reruled.json()["rule"], reruled.json()["depends_on"]) == (rule, [base.pk])


def test_reps_and_analysts_read_segments_but_may_not_change_them(rep):
    analyst = UserFactory(username="analyst", role=Role.ANALYST)
    segment = built()

    for user in (rep, analyst):
        client = client_for(user)
        assert client.get(f"/api/v1/segments/{segment.pk}/").status_code == 200
        assert client.post("/api/v1/segments/", {"name": "x", "rule": IN_SHANGHAI}, format="json").status_code == 403
        assert client.patch(f"/api/v1/segments/{segment.pk}/", {"name": "x"}, format="json").status_code == 403
        assert client.delete(f"/api/v1/segments/{segment.pk}/").status_code == 403
        assert client.post(f"/api/v1/segments/{segment.pk}/freeze/", {"name": "x"}, format="json").status_code == 403
    assert list(Segment.objects.values_list("name", flat=True)) == ["上海客户"]


def test_segment_list_filters_by_kind_and_name(api):
    dynamic = built(name="上海客户")
    listed = static(name="展会名单")

    def ids(**params):
        return [s["id"] for s in api.get("/api/v1/segments/", params).json()["results"]]

    assert ids() == [listed.pk, dynamic.pk]
    assert ids(kind="static") == [listed.pk]
    assert ids(search="上海") == [dynamic.pk]


def test_segment_list_runs_a_fixed_number_of_queries_and_a_reps_sizes_count_their_own(
    rep, other_rep, django_assert_num_queries
):
    CustomerFactory(owner=rep.staff)
    CustomerFactory(owner=other_rep.staff)
    client = client_for(rep)
    built(name="a")
    with django_assert_num_queries(4):  # session, user, the page, the rep's counts for all its segments
        few = client.get("/api/v1/segments/").json()["results"]
    for n in range(10):
        built(name=f"b{n}")
    with django_assert_num_queries(4):
        many = client.get("/api/v1/segments/").json()["results"]

    assert (len(few), len(many)) == (1, 11)
    assert {s["size"] for s in many} == {1}
    assert Segment.objects.get(name="a").size == 2


def test_model_segments_are_read_only(api):
    segment = Segment.objects.create(kind=SegmentKind.MODEL, model_key="rfm:important_value", name="重要价值客户")

    patched = api.patch(f"/api/v1/segments/{segment.pk}/", {"name": "x"}, format="json")
    deleted = api.delete(f"/api/v1/segments/{segment.pk}/")

    assert (patched.status_code, patched.json()["code"]) == (409, "model_segment")
    assert (deleted.status_code, deleted.json()["code"]) == (409, "model_segment")
    segment.refresh_from_db()
    assert segment.name == "重要价值客户"


def test_deleting_a_segment_another_rule_reads_is_a_conflict_and_keeps_it(api, enqueued):
    base = built(name="base")
    built({"predicate": "in_segment", "segments": [base.pk]}, name="复购的上海客户")

    refused = api.delete(f"/api/v1/segments/{base.pk}/")

    assert refused.status_code == 409
    assert refused.json() == {"detail": "The rules of 复购的上海客户 read this segment; change them first.",
                              "code": "segment_in_use"}  # fmt: skip
    assert Segment.objects.filter(pk=base.pk).exists()


def test_deleting_a_segment_a_tag_rule_reads_is_a_conflict(api):
    segment = built()
    tag_services.save_rule(TagFactory(name="上海VIP"), {"predicate": "in_segment", "segments": [segment.pk]})

    refused = api.delete(f"/api/v1/segments/{segment.pk}/")

    assert (refused.status_code, refused.json()["code"]) == (409, "segment_in_use")
    assert "上海VIP" in refused.json()["detail"]
    assert Segment.objects.filter(pk=segment.pk).exists()


def test_deleting_a_segment_removes_it_with_its_history(api):
    segment = built()
    CustomerFactory()

    response = api.delete(f"/api/v1/segments/{segment.pk}/")

    assert response.status_code == 204
    assert not Segment.objects.exists()
    assert not SegmentMembership.objects.exists()


def test_a_recompute_calculating_past_its_lease_shows_as_stalled(api):
    segment = built()
    Segment.objects.filter(pk=segment.pk).update(
        status=RecomputeStatus.CALCULATING, lease_until=timezone.now() - timedelta(minutes=1)
    )
    running = built(name="running")
    Segment.objects.filter(pk=running.pk).update(
        status=RecomputeStatus.CALCULATING, lease_until=timezone.now() + timedelta(minutes=10)
    )

    assert api.get(f"/api/v1/segments/{segment.pk}/").json()["status"] == "stalled"
    assert api.get(f"/api/v1/segments/{running.pk}/").json()["status"] == "calculating"


def test_a_synchronous_recompute_answers_the_new_size_and_the_last_runs_numbers(api):
    segment = service.save_segment(None, name="上海客户", rule=IN_SHANGHAI)
    shanghai = CustomerFactory(city="上海")
    CustomerFactory(city="北京")

    response = api.post(f"/api/v1/segments/{segment.pk}/recompute/?sync=1")

    assert response.status_code == 200
    body = response.json()
    assert (body["size"], body["status"]) == (1, "idle")
    assert body["last_recompute"]["counts"] == {"matched": 1, "entered": 1, "exited": 0}
    assert body["last_recompute"]["error"] == ""
    assert body["last_recompute"]["duration_ms"] >= 0
    assert members(segment) == {shanghai.pk}


def test_a_rep_queues_a_recompute_but_may_not_run_one_inline(rep, enqueued, django_capture_on_commit_callbacks):
    segment = built()
    client = client_for(rep)

    inline = client.post(f"/api/v1/segments/{segment.pk}/recompute/?sync=1")
    with django_capture_on_commit_callbacks(execute=True):
        queued = client.post(f"/api/v1/segments/{segment.pk}/recompute/")

    assert inline.status_code == 403
    assert queued.status_code == 202
    assert enqueued == [segment.pk]


def test_a_recompute_while_another_holds_the_lease_is_a_conflict(api):
    segment = built()
    Segment.objects.filter(pk=segment.pk).update(
        status=RecomputeStatus.CALCULATING, lease_until=timezone.now() + timedelta(minutes=10)
    )

    response = api.post(f"/api/v1/segments/{segment.pk}/recompute/?sync=1")

    assert (response.status_code, response.json()["code"]) == (409, "recompute_running")


def test_only_dynamic_segments_are_recomputed(api, enqueued):
    listed = static(CustomerFactory())

    response = api.post(f"/api/v1/segments/{listed.pk}/recompute/")

    assert (response.status_code, response.json()["code"]) == (409, "not_dynamic")
    assert enqueued == []


def test_freezing_copies_the_current_members_into_a_new_static_segment(api):
    shanghai = CustomerFactory(city="上海")
    segment = built()

    response = api.post(f"/api/v1/segments/{segment.pk}/freeze/", {"name": "上海客户 11月快照"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["kind"], body["size"]) == ("上海客户 11月快照", "static", 1)
    assert members(Segment.objects.get(pk=body["id"])) == {shanghai.pk}


# -------------------------------------------------------------------------------------------------- members


def test_members_are_cursor_paginated_newest_entry_first_without_repeats(api):
    customers = CustomerFactory.create_batch(5)
    segment = static(name="名单")
    for customer in customers:  # one episode each, in this order
        service.add_to_static(segment, [customer.pk])

    first = api.get(f"/api/v1/segments/{segment.pk}/members/", {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()

    pages = [[m["customer"]["id"] for m in page["results"]] for page in (first, second, third)]
    assert pages == [[customers[4].pk, customers[3].pk], [customers[2].pk, customers[1].pk], [customers[0].pk]]
    assert third["next"] is None
    assert first["results"][0] == {
        "customer": {"id": customers[4].pk, "name": customers[4].name, "city": "上海", "owner": None,
                     "owner_name": None},
        "entered_at": as_local(SegmentMembership.objects.get(customer=customers[4]).entered_at),
        "entry_reason": "list",
    }  # fmt: skip


def test_the_members_page_runs_a_fixed_number_of_queries_however_many_members(rep, django_assert_num_queries):
    segment = static(*[CustomerFactory(owner=rep.staff) for _ in range(3)])
    client = client_for(rep)
    with django_assert_num_queries(4):  # session, user, segment with the rep's count, the page
        few = client.get(f"/api/v1/segments/{segment.pk}/members/").json()["results"]

    service.add_to_static(segment, [CustomerFactory(owner=rep.staff).pk for _ in range(30)])
    with django_assert_num_queries(4):
        many = client.get(f"/api/v1/segments/{segment.pk}/members/").json()["results"]

    assert (len(few), len(many)) == (3, 33)
    assert many[0]["customer"]["owner_name"] == "rep_me"


def test_members_since_a_date_are_those_who_entered_since_and_are_still_in(api):
    early, late, gone = CustomerFactory(), CustomerFactory(), CustomerFactory()
    segment = static(early, gone)
    SegmentMembership.objects.filter(segment=segment).update(entered_at=NOW - timedelta(days=10))
    service.add_to_static(segment, [late.pk])
    SegmentMembership.objects.filter(segment=segment, customer=late).update(entered_at=NOW - timedelta(days=1))
    service.remove_from_static(segment, [gone.pk])
    service.add_to_static(segment, [gone.pk])  # back in, a new episode now
    service.remove_from_static(segment, [gone.pk])

    since = api.get(f"/api/v1/segments/{segment.pk}/members/", {"since": (NOW - timedelta(days=3)).isoformat()})
    bad = api.get(f"/api/v1/segments/{segment.pk}/members/", {"since": "last week"})

    assert [m["customer"]["id"] for m in since.json()["results"]] == [late.pk]
    assert bad.status_code == 400
    assert bad.json()["errors"] == {"since": ["Expected a date and time like 2026-11-01T00:00:00+08:00."]}


def test_a_rep_sees_only_their_own_members_of_a_shared_segment(rep, other_rep):
    mine = CustomerFactory(owner=rep.staff)
    theirs = CustomerFactory(owner=other_rep.staff)
    segment = static(mine, theirs)
    client = client_for(rep)

    listed = client.get(f"/api/v1/segments/{segment.pk}/members/").json()["results"]
    detail = client.get(f"/api/v1/segments/{segment.pk}/").json()

    assert [m["customer"]["id"] for m in listed] == [mine.pk]
    assert detail["size"] == 1


def test_customers_are_added_to_and_removed_from_a_static_segment(api):
    first, second, third = CustomerFactory.create_batch(3)
    segment = static(first)
    url = f"/api/v1/segments/{segment.pk}/members/"

    added = api.post(url, {"customers": [first.pk, second.pk, third.pk]}, format="json")
    removed = api.delete(url, {"customers": [first.pk]}, format="json")

    assert added.json() == {"matched": 3, "entered": 2, "exited": 0, "size": 3}
    assert removed.json() == {"matched": 2, "entered": 0, "exited": 1, "size": 2}
    assert members(segment) == {second.pk, third.pk}
    assert SegmentMembership.objects.get(segment=segment, customer=first).exit_reason == MembershipReason.REMOVED


def test_listing_unknown_customers_is_400_and_changes_nothing(api):
    customer = CustomerFactory()
    segment = static()

    response = api.post(f"/api/v1/segments/{segment.pk}/members/", {"customers": [customer.pk, 999999]}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"customers": ["Customers not found: [999999]"]}
    assert members(segment) == set()


def test_a_dynamic_segment_takes_no_list(api):
    segment = built()
    customer = CustomerFactory(city="北京")

    response = api.post(f"/api/v1/segments/{segment.pk}/members/", {"customers": [customer.pk]}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "not_static")
    assert members(segment) == set()


def test_reps_may_not_change_a_static_list(rep):
    mine = CustomerFactory(owner=rep.staff)
    segment = static()

    response = client_for(rep).post(f"/api/v1/segments/{segment.pk}/members/", {"customers": [mine.pk]}, format="json")

    assert response.status_code == 403
    assert members(segment) == set()


# ----------------------------------------------------------------------------------------------- exclusions


def test_an_exclusion_takes_the_customer_out_and_keeps_them_out_across_recomputes_until_cleared(api, operator):
    excluded, kept = CustomerFactory(city="上海"), CustomerFactory(city="上海")
    segment = built()
    url = f"/api/v1/segments/{segment.pk}/exclusions/"

    out = api.post(url, {"customers": [excluded.pk], "reason": "投诉过"}, format="json")
    recomputed = api.post(f"/api/v1/segments/{segment.pk}/recompute/?sync=1").json()
    listed = api.get(url).json()["results"]
    back = api.delete(url, {"customers": [excluded.pk]}, format="json")

    assert out.json() == {"matched": 1, "entered": 0, "exited": 1, "size": 1}
    assert recomputed["size"] == 1
    assert recomputed["last_recompute"]["counts"] == {"matched": 2, "entered": 0, "exited": 0}
    assert [(e["customer"], e["reason"], e["excluded_by"]) for e in listed] == [(excluded.pk, "投诉过", operator.pk)]
    assert back.json() == {"matched": 1, "entered": 1, "exited": 0, "size": 2}
    assert members(segment) == {excluded.pk, kept.pk}
    assert not SegmentExclusion.objects.exists()


def test_a_static_segment_takes_no_exclusions(api):
    customer = CustomerFactory()
    segment = static(customer)

    response = api.post(f"/api/v1/segments/{segment.pk}/exclusions/", {"customers": [customer.pk]}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "not_dynamic")
    assert not SegmentExclusion.objects.exists()


# --------------------------------------------------------------------------------------------------- export


def csv_rows(response) -> list[list[str]]:
    content = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(content)))


def test_the_csv_export_streams_every_member_with_a_header_and_defused_formulas(api, rep):
    plain = CustomerFactory(name="王小花", phone="13800000000", city="上海", owner=rep.staff)
    sneaky = CustomerFactory(name='=HYPERLINK("http://x")', city="上海")
    segment = static(plain, sneaky)
    entered = timezone.localtime(SegmentMembership.objects.get(customer=plain).entered_at)

    response = api.get(f"/api/v1/segments/{segment.pk}/export/", {"format": "csv"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(f'attachment; filename="segment-{segment.pk}-')
    assert csv_rows(response) == [
        ["Customer ID", "Name", "Phone", "Email", "City", "Owner", "Entered at", "Entry reason"],
        [str(plain.pk), "王小花", "13800000000", "", "上海", "rep_me", entered.strftime("%Y-%m-%d %H:%M:%S"), "list"],
        [str(sneaky.pk), "'=HYPERLINK(\"http://x\")", "", "", "上海", "", entered.strftime("%Y-%m-%d %H:%M:%S"),
         "list"],
    ]  # fmt: skip


def test_a_reps_export_holds_only_their_own_customers(rep, other_rep):
    mine = CustomerFactory(owner=rep.staff)
    theirs = CustomerFactory(owner=other_rep.staff, name="别人的客户")
    segment = static(mine, theirs)

    as_csv = client_for(rep).get(f"/api/v1/segments/{segment.pk}/export/")
    as_xlsx = client_for(rep).get(f"/api/v1/segments/{segment.pk}/export/", {"format": "xlsx"})

    assert [row[0] for row in csv_rows(as_csv)[1:]] == [str(mine.pk)]
    sheet = load_workbook(io.BytesIO(as_xlsx.content)).active
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == [mine.pk]


def test_the_csv_export_reads_members_in_keyset_chunks_and_misses_none(operator, django_assert_num_queries):
    customers = CustomerFactory.create_batch(7)
    segment = static(*customers)

    with django_assert_num_queries(3):  # 3 + 3 + 1 rows
        rows = list(exports.member_rows(operator, segment, chunk=3))

    assert [row[0] for row in rows] == sorted(c.pk for c in customers)


def test_the_excel_export_is_a_workbook_with_the_members_and_text_cells(api):
    customer = CustomerFactory(name="=1+1", phone="+8613800000000", city="杭州")
    segment = static(customer)

    response = api.get(f"/api/v1/segments/{segment.pk}/export/", {"format": "xlsx"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert response["Content-Disposition"].endswith('.xlsx"')
    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("Customer ID", "Name", "Phone", "Email", "City", "Owner", "Entered at", "Entry reason")
    assert rows[1][:6] == (customer.pk, "=1+1", "+8613800000000", None, "杭州", None)
    assert sheet.cell(row=2, column=2).data_type == "s"


def test_exporting_a_segment_that_does_not_exist_is_a_json_404(api):
    response = api.get("/api/v1/segments/999999/export/", {"format": "csv"})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# ---------------------------------------------------------------------------------------------------- sizes


def test_sizes_are_the_size_after_each_recompute_newest_first_and_a_rep_counts_their_own(api, rep, other_rep):
    segment = built()
    mine = CustomerFactory(owner=rep.staff, city="上海")
    service.recompute_segment(segment)
    CustomerFactory(owner=other_rep.staff, city="上海")
    service.recompute_segment(segment)
    SegmentMembership.objects.filter(customer=mine).update(entered_at=NOW - timedelta(days=2))
    first, second, third = SegmentSize.objects.order_by("id")
    for point, days_ago in ((first, 3), (second, 1), (third, 0)):
        SegmentSize.objects.filter(pk=point.pk).update(at=NOW - timedelta(days=days_ago))

    as_operator = api.get(f"/api/v1/segments/{segment.pk}/sizes/").json()["results"]
    as_rep = client_for(rep).get(f"/api/v1/segments/{segment.pk}/sizes/").json()["results"]

    assert [(p["size"], p["entered"], p["exited"]) for p in as_operator] == [(2, 1, 0), (1, 1, 0), (0, 0, 0)]
    assert [(p["size"], p["entered"], p["exited"]) for p in as_rep] == [(1, None, None), (1, None, None),
                                                                         (0, None, None)]  # fmt: skip


# ------------------------------------------------------------------------------------------- one customer


def test_a_customers_segments_now_and_before_with_their_rfm_stages_and_class_changes(rep, django_assert_num_queries):
    customer = CustomerFactory(owner=rep.staff, city="上海")
    segment = built()
    listed = static(customer, name="展会名单")
    service.remove_from_static(listed, [customer.pk])
    CustomerRfm.objects.create(
        customer=customer, last_purchase_on=NOW.date() - timedelta(days=12), frequency=5, monetary=Decimal("3200.00"),
        r_score=5, f_score=4, m_score=5, rfm_class="important_value", computed_at=NOW,
    )  # fmt: skip
    CustomerStage.objects.create(customer=customer, model="aipl", stage="loyalty", since=NOW - timedelta(days=30))
    run = RfmRun.objects.create(as_of=NOW.date(), window_days=365, method="quantile")
    RfmTransition.objects.create(run=run, customer=customer, from_class="", to_class="important_develop",
                                 at=NOW - timedelta(days=60))  # fmt: skip
    RfmTransition.objects.create(run=run, customer=customer, from_class="important_develop",
                                 to_class="important_value", at=NOW - timedelta(days=1))  # fmt: skip
    current = SegmentMembership.objects.get(segment=segment)
    past = SegmentMembership.objects.get(segment=listed)

    client = client_for(rep)
    with django_assert_num_queries(7):  # session, user, customer, episodes, RFM, stages, class changes
        body = client.get(f"/api/v1/customers/{customer.pk}/segments/").json()

    assert body == {
        "current": [{"segment": {"id": segment.pk, "name": "上海客户", "kind": "dynamic"},
                     "entered_at": as_local(current.entered_at), "entry_reason": "rule"}],
        "history": [{"segment": {"id": listed.pk, "name": "展会名单", "kind": "static"},
                     "entered_at": as_local(past.entered_at), "entry_reason": "list",
                     "exited_at": as_local(past.exited_at), "exit_reason": "removed"}],
        "rfm": {"recency_days": 12, "frequency": 5, "monetary": "3200.00", "r_score": 5, "f_score": 4, "m_score": 5,
                "rfm_class": "important_value", "computed_at": as_local(NOW)},
        "stages": {"aipl": {"stage": "loyalty", "since": as_local(NOW - timedelta(days=30))}, "lifecycle": None,
                   "ladder": None},
        "rfm_transitions": [
            {"from_class": "important_develop", "to_class": "important_value", "at": as_local(NOW - timedelta(days=1))},
            {"from_class": "", "to_class": "important_develop", "at": as_local(NOW - timedelta(days=60))},
        ],
    }  # fmt: skip


def test_another_reps_customer_segments_are_not_found(rep, other_rep):
    theirs = CustomerFactory(owner=other_rep.staff)
    static(theirs)

    response = client_for(rep).get(f"/api/v1/customers/{theirs.pk}/segments/")

    assert response.status_code == 404
    assert "segment" not in response.content.decode()


def test_a_segment_that_does_not_exist_is_404_on_every_url(api):
    for suffix in ("", "members/", "exclusions/", "export/", "sizes/"):
        assert api.get(f"/api/v1/segments/999999/{suffix}").status_code == 404
    assert api.post("/api/v1/segments/999999/recompute/").status_code == 404


# --------------------------------------------------------------------------------------------------- layers


def test_layering_settings_are_read_by_everyone_and_changed_field_by_field_by_managers(api, rep):
    before = client_for(rep).get("/api/v1/layers/settings/").json()
    refused = client_for(rep).put("/api/v1/layers/settings/", {"rfm_window_days": 90}, format="json")
    changed = api.put(
        "/api/v1/layers/settings/",
        {"rfm_window_days": 180, "rfm_method": "thresholds", "rfm_high_from": {"r": 4, "f": 3, "m": 2},
         "rfm_thresholds": {"r": [15, 30, 60, 90], "f": [10, 5, 3, 2], "m": [5000, 2000, 800.5, 100]}},
        format="json",
    )  # fmt: skip

    assert (before["rfm_window_days"], before["rfm_method"]) == (365, "quantile")
    assert refused.status_code == 403
    assert changed.status_code == 200
    stored = LayeringSettings.load()
    assert (stored.rfm_window_days, stored.rfm_method, stored.rfm_high_from) == (
        180, "thresholds", {"r": 4, "f": 3, "m": 2}
    )  # fmt: skip
    assert stored.rfm_thresholds == {"r": [15, 30, 60, 90], "f": [10, 5, 3, 2], "m": [5000, 2000, 800.5, 100]}
    assert stored.aipl == before["aipl"]
    assert changed.json()["rfm_thresholds"] == stored.rfm_thresholds


def test_bad_layering_settings_are_400_by_field_and_change_nothing(api):
    response = api.put(
        "/api/v1/layers/settings/",
        {"rfm_thresholds": {"r": [90, 60, 30, 15], "f": [2, 3, 4, 5], "m": [100, 50]},
         "rfm_high_from": {"r": 0, "f": 6, "m": 3}, "rfm_window_days": 0,
         "lifecycle": {"preset": "ecommerce", "dormant_days": 90, "churned_days": 60, "vip_top_percent": 10,
                       "repeat_orders": 2}},
        format="json",
    )  # fmt: skip

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "rfm_window_days": ["Ensure this value is greater than or equal to 1."],
        "rfm_thresholds": {
            "f": ["Expected strictly descending numbers."],
            "m": ["Expected 4 numbers, the bounds of scores 5, 4, 3 and 2."],
            "r": ["Expected strictly ascending numbers of days."],
        },
        "rfm_high_from": {"r": ["Ensure this value is greater than or equal to 1."],
                          "f": ["Ensure this value is less than or equal to 5."]},
        "lifecycle": {"churned_days": ["Must be more than dormant_days."]},
    }  # fmt: skip
    assert LayeringSettings.load().rfm_window_days == 365


def test_nested_layering_settings_change_key_by_key_and_refuse_unknown_keys_and_presets(api):
    changed = api.put("/api/v1/layers/settings/", {"aipl": {"interest_days": 14}}, format="json")
    refused = api.put(
        "/api/v1/layers/settings/", {"aipl": {"bogus": 1}, "lifecycle": {"preset": "retail"}}, format="json"
    )

    assert changed.json()["aipl"] == {**default_aipl(), "interest_days": 14}
    assert refused.json()["errors"] == {
        "aipl": {"bogus": ["Unknown setting."]},
        "lifecycle": {"preset": ["Expected one of ecommerce, education, high_ticket."]},
    }
    assert LayeringSettings.load().aipl["interest_days"] == 14


def rfm(customer, rfm_class, *, r=None, f=0, m="0"):
    return CustomerRfm.objects.create(
        customer=customer,
        last_purchase_on=None if r is None else rfm_as_of() - timedelta(days=r),
        frequency=f,
        monetary=Decimal(m),
        rfm_class=rfm_class,
        computed_at=NOW,
    )


def test_the_rfm_grid_of_a_rep_counts_only_their_book(api, rep, other_rep):
    rfm(CustomerFactory(owner=rep.staff), "important_value", r=10, f=8, m="5000")
    rfm(CustomerFactory(owner=rep.staff), "general_retain", r=300, f=1, m="100")
    rfm(CustomerFactory(owner=other_rep.staff), "important_value", r=20, f=6, m="3000")

    as_rep = client_for(rep).get("/api/v1/layers/rfm/").json()
    as_operator = api.get("/api/v1/layers/rfm/").json()

    by_class = {c["rfm_class"]: c for c in as_rep["classes"]}
    assert (as_rep["customers"], as_rep["gmv"]) == (2, "5100.00")
    assert by_class["important_value"] == {
        "rfm_class": "important_value", "label": "Important value customer", "r_high": True, "f_high": True,
        "m_high": True, "count": 1, "share": 0.5, "gmv": "5000.00", "gmv_share": 0.9804, "avg_recency_days": 10.0,
        "avg_frequency": 8.0, "avg_monetary": "5000.00",
    }  # fmt: skip
    assert (as_operator["customers"], as_operator["classes"][0]["count"]) == (3, 2)


def test_the_migration_matrix_needs_two_dates_in_order(api):
    missing = api.get("/api/v1/layers/rfm/migration/", {"from": "2026-10-01"})
    reversed_ = api.get("/api/v1/layers/rfm/migration/", {"from": "2026-11-01", "to": "2026-10-01"})

    assert missing.json()["errors"] == {"to": ["This field is required."]}
    assert reversed_.json()["errors"] == {"to": ["Must be on or after `from`."]}


def test_the_migration_matrix_of_a_rep_counts_only_their_customers(api, rep, other_rep):
    run = RfmRun.objects.create(as_of=NOW.date(), window_days=365, method="quantile")
    for owner, to_class in ((rep, "important_keep"), (other_rep, "general_keep")):
        customer = CustomerFactory(owner=owner.staff)
        rfm(customer, to_class)
        RfmTransition.objects.create(run=run, customer=customer, from_class="", to_class="important_value",
                                     at=datetime(2026, 9, 1, tzinfo=UTC))  # fmt: skip
        RfmTransition.objects.create(run=run, customer=customer, from_class="important_value", to_class=to_class,
                                     at=datetime(2026, 10, 15, tzinfo=UTC))  # fmt: skip

    as_rep = client_for(rep).get("/api/v1/layers/rfm/migration/", {"from": "2026-10-01", "to": "2026-11-01"}).json()
    as_operator = api.get("/api/v1/layers/rfm/migration/", {"from": "2026-10-01", "to": "2026-11-01"}).json()

    assert (as_rep["from"], as_rep["to"], as_rep["customers"], as_rep["changed"]) == ("2026-10-01", "2026-11-01", 1, 1)
    assert as_rep["matrix"]["important_value"]["important_keep"] == 1
    assert as_rep["matrix"]["important_value"]["general_keep"] == 0
    assert as_operator["matrix"]["important_value"]["general_keep"] == 1
    assert as_rep["classes"][-1] == "unclassified"


def test_the_aipl_funnel_and_the_lifecycle_and_ladder_distributions_count_the_reps_customers(rep, other_rep):
    for stage, owner in (("awareness", rep), ("interest", rep), ("purchase", rep), ("loyalty", other_rep)):
        CustomerStage.objects.create(customer=CustomerFactory(owner=owner.staff), model="aipl", stage=stage, since=NOW)
    CustomerStage.objects.create(customer=CustomerFactory(owner=rep.staff), model="lifecycle", stage="new", since=NOW)
    client = client_for(rep)

    aipl = client.get("/api/v1/layers/aipl/").json()
    lifecycle = client.get("/api/v1/layers/lifecycle/").json()
    ladder = client.get("/api/v1/layers/ladder/").json()

    assert aipl["customers"] == 3
    assert [(s["stage"], s["count"], s["reached"]) for s in aipl["stages"]] == [
        ("awareness", 1, 3), ("interest", 1, 2), ("purchase", 1, 1), ("loyalty", 0, 0),
    ]  # fmt: skip
    assert lifecycle["customers"] == 1
    assert lifecycle["stages"][0] == {"stage": "new", "label": "Lifecycle: new, not bought yet", "count": 1,
                                      "share": 1.0}  # fmt: skip
    assert ladder["customers"] == 0


def test_a_synchronous_layers_recompute_classifies_the_customers_and_answers_each_models_outcome(api):
    buyer = CustomerFactory()
    OrderFactory(customer=buyer, amount=Decimal(500), ordered_at=timezone.now() - timedelta(days=3))
    CustomerFactory()

    response = api.post("/api/v1/layers/recompute/?sync=1", {"models": ["rfm", "ladder"]}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["queued"], sorted(body["outcomes"])) == (False, ["ladder", "rfm"])
    assert "error" not in body["outcomes"]["rfm"]
    assert CustomerRfm.objects.get(customer=buyer).rfm_class != "no_purchase"
    assert api.get("/api/v1/layers/rfm/").json()["customers"] == 2
    assert not CustomerStage.objects.filter(model="aipl").exists()


def test_a_layers_recompute_is_queued_by_default_and_refused_to_reps(
    api, rep, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(layers_task, "apply_async", lambda **kw: sent.append(kw))

    refused = client_for(rep).post("/api/v1/layers/recompute/")
    with django_capture_on_commit_callbacks(execute=True):
        queued = api.post("/api/v1/layers/recompute/")
    narrowed = api.post("/api/v1/layers/recompute/", {"models": ["rfm"]}, format="json")

    assert refused.status_code == 403
    assert (queued.status_code, queued.json()) == (202, {"queued": True, "outcomes": {}})
    assert sent == [{"retry": False}]
    assert narrowed.status_code == 400
    assert not RfmRun.objects.exists()
