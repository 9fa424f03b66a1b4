"""Walk every URL pattern as a sales rep: another rep's customer never appears and is never reachable.

A new URL with a parameter this walk cannot fill fails the test: teach `OBJECT_FOR_PREFIX` about it.
"""

import re
from types import SimpleNamespace

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import create_api_token
from customers.services.merge import merge_customers
from customers.tests.factories import (
    CommunityGroupFactory,
    CustomerFactory,
    EventFactory,
    GroupMembershipFactory,
    IdentityFactory,
    OrderFactory,
    OrderLineFactory,
    RelationshipFactory,
    UserFactory,
    sales_rep,
)
from journeys.models import Task
from journeys.services.enrollment import Candidate, enroll
from journeys.services.runtime import advance_due
from journeys.tests.factories import published
from messaging.models import Delivery, MessageTemplate, Subscription
from messaging.services.dispatch import dispatch_touchpoints
from messaging.services.scheduling import schedule_touchpoint
from segments.models import CustomerRfm, CustomerStage, RfmRun, RfmTransition, SegmentKind
from segments.services.segments import add_to_static, save_segment
from tags.models import TagSource
from tags.services import add_tags, submit_answers
from tags.tests.factories import AnswerCodeFactory, QuestionFactory, TagFactory

SECRET_NAME = "隐秘客户Zed"
SECRET_PHONE = "13912345678"
SECRET_IDENTITY = "wmSECRET42"
# No customer data behind these (healthz answers 503 here: no Celery worker runs during this test; so does the
# WeCom callback, which WeCom signs and which is not configured here).
SKIP_PREFIXES = ("static/", "i18n/", "api/v1/schema", "api/v1/docs", "api/v1/redoc", "healthz", "wecom/callback")


def all_patterns(patterns=None, prefix: str = ""):
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            yield from all_patterns(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route


@pytest.fixture
def world(db):
    me = sales_rep("rep_me")
    other = sales_rep("rep_other")
    mine = CustomerFactory(owner=me.staff, name="我的客户")
    theirs = CustomerFactory(owner=other.staff, name=SECRET_NAME, phone=SECRET_PHONE)
    twin = CustomerFactory(owner=other.staff, name=SECRET_NAME + "2")
    IdentityFactory(customer=theirs, kind="wecom", value=SECRET_IDENTITY)
    order = OrderFactory(customer=theirs, external_id="SECRET-ORDER")
    OrderLineFactory(order=order)
    event = EventFactory(customer=theirs, properties={"title": SECRET_NAME})
    RelationshipFactory(customer=theirs, staff=other.staff)
    group = CommunityGroupFactory(owner=other.staff)
    GroupMembershipFactory(group=group, customer=theirs)
    shared_group = CommunityGroupFactory()
    GroupMembershipFactory(group=shared_group, customer=mine)
    GroupMembershipFactory(group=shared_group, customer=theirs)
    merge = merge_customers(theirs, twin)
    tag = TagFactory(name="高价值")
    add_tags([theirs.pk], [tag.pk], source=TagSource.MANUAL, by=other)  # with its history row
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3", tag=tag)
    submit_answers(question.questionnaire, theirs, {"Q1": "3"}, by=other)
    segment = save_segment(None, name="展会名单", kind=SegmentKind.STATIC)
    add_to_static(segment, [theirs.pk])
    now = timezone.now()
    CustomerRfm.objects.create(customer=theirs, last_purchase_on=now.date(), frequency=9, monetary=8800, r_score=5,
                               f_score=5, m_score=5, rfm_class="important_value", computed_at=now)  # fmt: skip
    run = RfmRun.objects.create(as_of=now.date(), window_days=365, method="quantile")
    RfmTransition.objects.create(run=run, customer=theirs, from_class="", to_class="important_value", at=now)
    for model, stage in (("aipl", "loyalty"), ("lifecycle", "vip"), ("ladder", "koc")):
        CustomerStage.objects.create(customer=theirs, model=model, stage=stage, since=now)
    touchpoint = schedule_touchpoint(channel="sms", customer=theirs, idempotency_key="secret-message",
                                     content={"text": f"{SECRET_NAME} 您好"}, kind="transactional")  # fmt: skip
    dispatch_touchpoints([touchpoint.pk])  # rendered with the name, sent to the phone, on the console
    subscription = Subscription.objects.create(
        name="BI", url="http://127.0.0.1:9/hook", secret="s", kinds=["tag.added"]
    )
    delivery = Delivery.objects.create(subscription=subscription, event_key="de:1", kind="tag.added",
                                       payload={"customer": {"name": SECRET_NAME, "phone": SECRET_PHONE}})  # fmt: skip
    template = MessageTemplate.objects.create(name="欢迎", channel="sms", body="您好 {{ customer.name }}")
    journey = published([{"id": "s", "type": "send", "channel": "sms", "text": "{{ customer.name }} 您好", "next": "t"},
                         {"id": "t", "type": "task", "title": "回访"}], name="欢迎 SOP")  # fmt: skip
    enroll(journey, [Candidate(theirs.pk, "manual", "walk", now)], now=now)
    advance_due()
    task = Task.objects.get(customer=theirs)
    return {"me": me, "mine": mine, "theirs": theirs, "order": order, "event": event, "group": group,
            "shared_group": shared_group, "merge": merge, "token": UserFactory, "tag": tag,
            "questionnaire": question.questionnaire, "segment": segment, "touchpoint": touchpoint,
            "subscription": subscription, "delivery": delivery, "template": template,
            "channel": SimpleNamespace(pk="sms"), "journey": journey, "task": task}  # fmt: skip


# Which object of the other rep to put into a URL's parameters, by the URL's first segments (the more specific
# prefix first: the first match wins).
OBJECT_FOR_PREFIX = [
    ("api/v1/journeys", "journey"),
    ("api/v1/tasks", "task"),
    ("journeys/", "journey"),
    ("tasks/", "task"),
    ("api/v1/touchpoints", "touchpoint"),
    ("api/v1/subscriptions", "subscription"),
    ("api/v1/deliveries", "delivery"),
    ("integrations/subscriptions", "subscription"),
    ("integrations/deliveries", "delivery"),
    ("messaging/outbox", "touchpoint"),
    ("messaging/templates", "template"),
    ("messaging/channels", "channel"),
    ("messaging/wecom/sandbox", "channel"),
    ("api/v1/orders", "order"),
    ("api/v1/events", "event"),
    ("api/v1/groups", "group"),
    ("api/v1/merges", "merge"),
    ("api/v1/customers", "theirs"),
    ("api/v1/tags", "tag"),
    ("api/v1/questionnaires", "questionnaire"),
    ("api/v1/segments", "segment"),
    ("customers/groups", "group"),
    ("customers", "theirs"),
    ("tags/", "tag"),
    ("segments/", "segment"),
    ("admin/", "theirs"),
]
# Objects every rep may open (tags, questionnaires, segments): their pages answer, but show nothing of other reps'
# customers.
SHARED_OBJECTS = ("tag", "questionnaire", "segment", "template", "channel", "journey")
# Parameters that name a customer whatever the route's object (a journey's trace of one customer): the other rep's
# customer goes there, and the URL must then be out of reach.
CUSTOMER_PARAMS = ("customer_pk",)
REFERENCE_DATA = ("api/v1/staff", "api/v1/channels", "api/v1/products", "api/v1/tag-groups", "accounts/")


def fill(route: str, world) -> tuple[str, str | None] | None:
    """The URL with the other rep's object filled in, and the name of that object (None if it names none)."""
    route = route.replace("<drf_format_suffix:format>", ".json")
    route = re.sub(r"\\\.\(\?P<format>[^)]*\)", ".json", route)
    if not re.search(r"<(?:\w+:)?\w+>|\(\?P<\w+>", route):
        return route.replace("\\.", ".").replace("/?", "/"), None
    if route.startswith(REFERENCE_DATA):
        return None  # not customer data: no other rep's object to reach
    name = next((name for prefix, name in OBJECT_FOR_PREFIX if route.startswith(prefix)), None)
    assert name is not None, f"teach the visibility walk about {route!r}"
    target = world[name]
    for param in CUSTOMER_PARAMS:
        pattern = rf"\(\?P<{param}>[^)]*\)|(?<!P)<(?:\w+:)?{param}>"
        if re.search(pattern, route):
            route = re.sub(pattern, str(world["theirs"].pk), route)
            name = "theirs"
    url = re.sub(r"\(\?P<\w+>[^)]*\)", str(target.pk), route)
    url = re.sub(r"<(?:\w+:)?\w+>", str(target.pk), url)
    return url.replace("\\.", ".").replace("/?", "/"), name


def assert_no_leak(response, url: str, query: str = "") -> None:
    """No secret in the page, except the one the rep typed into the query (pages echo their own URL)."""
    content = b"".join(response.streaming_content) if response.streaming else response.content  # exports stream
    body = content.decode(errors="replace")
    for secret in (SECRET_NAME, SECRET_PHONE, SECRET_IDENTITY, "SECRET-ORDER"):
        if secret not in query:
            assert secret not in body, f"{url} shows another rep's customer ({secret})"
    if query:
        assert body.count(query.split("=", 1)[1]) <= 2, f"{url} shows what was searched for more than it echoes"


def test_every_url_hides_other_reps_customers(world):
    browser = APIClient()
    browser.force_login(world["me"])
    api = APIClient()
    _token, key = create_api_token(name="rep", user=world["me"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    walked = []
    for route in sorted(set(all_patterns())):
        if route.startswith(SKIP_PREFIXES):
            continue
        filled = fill(route, world)
        if filled is None:
            continue
        url, target = filled
        client = api if route.startswith("api/") else browser
        url = "/" + url
        for query in ("", f"?search={SECRET_PHONE}", f"?q={SECRET_IDENTITY}", f"?search={SECRET_NAME}"):
            response = client.get(url + query)
            assert response.status_code < 500, (url + query, response.status_code)
            assert_no_leak(response, url + query, query)
            if route.startswith("admin/") and route not in ("admin/login/", "admin/logout/"):
                assert response.status_code in (302, 404), f"{url} lets a rep into the admin"
            elif target is not None and target not in SHARED_OBJECTS:
                assert response.status_code in (404, 405), f"{url} is reachable ({response.status_code})"
        walked.append(url)
    assert any("/api/v1/customers/" in u for u in walked)
    assert any(u.startswith(f"/api/v1/tags/{world['tag'].pk}/") for u in walked)
    assert any(u.startswith(f"/api/v1/segments/{world['segment'].pk}/") for u in walked)
    assert any(u.startswith("/api/v1/layers/") for u in walked)
    assert any(u.startswith(f"/messaging/outbox/{world['touchpoint'].pk}/") for u in walked)
    assert any(u.startswith(f"/journeys/{world['journey'].pk}/trace/{world['theirs'].pk}/") for u in walked)
    assert any(u.startswith(f"/api/v1/tasks/{world['task'].pk}/") for u in walked)
    assert len(walked) >= 10


def test_rep_sees_a_shared_group_but_only_their_members(world):
    api = APIClient()
    api.force_authenticate(world["me"])

    members = api.get(f"/api/v1/groups/{world['shared_group'].pk}/members/").json()["results"]

    assert [m["customer"] for m in members] == [world["mine"].pk]
    assert api.get(f"/api/v1/groups/{world['group'].pk}/").status_code == 404


def test_rep_writes_to_another_reps_customer_are_not_found(world):
    api = APIClient()
    api.force_authenticate(world["me"])
    theirs = world["theirs"]

    assert api.patch(f"/api/v1/customers/{theirs.pk}/", {"name": "x"}, format="json").status_code == 404
    assert (
        api.post(f"/api/v1/customers/{world['mine'].pk}/merge/", {"other": theirs.pk}, format="json").status_code == 404
    )
    assert api.delete(f"/api/v1/orders/{world['order'].pk}/").status_code == 404
    assert api.post(f"/api/v1/merges/{world['merge'].pk}/undo/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == SECRET_NAME


def test_a_shared_tag_and_questionnaire_count_and_show_only_the_reps_customers(world):
    api = APIClient()
    api.force_authenticate(world["me"])
    tag, questionnaire, theirs = world["tag"], world["questionnaire"], world["theirs"]

    assert api.get(f"/api/v1/tags/{tag.pk}/").json()["customer_count"] == 0
    assert api.get("/api/v1/tags/").json()["results"][0]["customer_count"] == 0
    assert api.get("/api/v1/tag-history/", {"customer": theirs.pk}).json()["results"] == []
    assert api.get(f"/api/v1/questionnaires/{questionnaire.pk}/responses/").json()["results"] == []
    assert api.post(f"/api/v1/customers/{theirs.pk}/tags/", {"tags": [tag.pk]}, format="json").status_code == 404
    assert api.delete(f"/api/v1/customers/{theirs.pk}/tags/{tag.pk}/").status_code == 404
    bulk = {"action": "remove", "tags": [tag.pk], "customers": [theirs.pk]}
    assert api.post("/api/v1/tags/bulk/", bulk, format="json").status_code == 400
    answers = {"customer": theirs.pk, "answers": {"Q1": "3"}}
    assert api.post(f"/api/v1/questionnaires/{questionnaire.pk}/answers/", answers, format="json").status_code == 404
    assert list(theirs.tag_links.values_list("source", flat=True).order_by("source")) == ["manual", "questionnaire"]


def test_a_shared_segment_and_the_layer_reports_count_and_show_only_the_reps_customers(world):
    api = APIClient()
    api.force_authenticate(world["me"])
    segment, theirs = world["segment"], world["theirs"]

    assert api.get(f"/api/v1/segments/{segment.pk}/").json()["size"] == 0
    assert api.get(f"/api/v1/segments/{segment.pk}/members/").json()["results"] == []
    assert api.get(f"/api/v1/segments/{segment.pk}/sizes/").json()["results"] == []
    export = b"".join(api.get(f"/api/v1/segments/{segment.pk}/export/").streaming_content).decode("utf-8-sig")
    assert export.strip().count("\n") == 0  # the header alone
    assert api.get(f"/api/v1/customers/{theirs.pk}/segments/").status_code == 404
    assert api.get("/api/v1/layers/rfm/").json()["customers"] == 0
    assert api.get("/api/v1/layers/rfm/migration/", {"from": "2000-01-01", "to": "2100-01-01"}).json()["customers"] == 0
    for model in ("aipl", "lifecycle", "ladder"):
        assert api.get(f"/api/v1/layers/{model}/").json()["customers"] == 0
    members = {"customers": [theirs.pk]}
    assert api.post(f"/api/v1/segments/{segment.pk}/members/", members, format="json").status_code == 403
    assert api.delete(f"/api/v1/segments/{segment.pk}/members/", members, format="json").status_code == 403
    assert list(theirs.segment_memberships.values_list("exited_at", flat=True)) == [None]
