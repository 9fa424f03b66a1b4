"""The outbox, its detail, Retry / Cancel, the dead-letter view with its bulk retry, the customer page's message
history and the console page: what each user sees (messaging.selectors) and what each action changes."""

import datetime
from zoneinfo import ZoneInfo

import factory
import pytest
import time_machine
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from customers.models import MessageChannel
from customers.tests.factories import CommunityGroupFactory, CustomerFactory, UserFactory
from messaging.models import ConsoleMessage, Touchpoint, TouchpointSource, TouchpointStatus
from messaging.services.dispatch import dispatch_due
from messaging.services.operator import NotRetryable, retry_touchpoint, retry_touchpoints
from messaging.views.customer_panel import messages_panel, register_customer_page_extensions

pytestmark = pytest.mark.django_db
S = TouchpointStatus
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=SHANGHAI)


class TouchpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Touchpoint

    customer = factory.SubFactory(CustomerFactory)
    channel = MessageChannel.SMS
    content = factory.LazyFunction(lambda: {"format": "text", "text": "您好"})
    idempotency_key = factory.Sequence(lambda n: f"key-{n}")
    source = TouchpointSource.MANUAL
    source_ref = "manual"
    scheduled_for = factory.LazyFunction(timezone.now)
    due_at = factory.LazyFunction(timezone.now)
    decisions = factory.LazyFunction(
        lambda: [{"at": timezone.now().isoformat(), "step": "scheduled", "outcome": "scheduled"}]
    )


def failed(customer=None, *, reason="retries_exhausted", code="503", **fields):
    """A message whose temporary errors outlasted its attempts (or with another reason)."""
    at = timezone.now().isoformat()
    decisions = [
        {"at": at, "step": "scheduled", "outcome": "scheduled"},
        {"at": at, "step": "policy", "outcome": "passed"},
        {"at": at, "step": reason, "outcome": "failed", "attempt": 5, "code": code},
    ]
    fields.setdefault("customer", customer or CustomerFactory())
    return TouchpointFactory(
        status=S.FAILED, reason=reason, provider_code=code, attempts=5, decisions=decisions, **fields
    )


@pytest.fixture
def at_noon():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def rep_client(client, rep):
    client.force_login(rep)
    return client


def ids(response):
    return [row.touchpoint.pk for row in response.context["rows"]]


# ----------------------------------------------------------------------------------------------- visibility


def test_the_outbox_lists_every_message_newest_first_for_an_operator(operator_client):
    first, second = TouchpointFactory(), TouchpointFactory(group=CommunityGroupFactory(), customer=None)

    response = operator_client.get(reverse("messaging-outbox"))

    assert response.status_code == 200
    assert ids(response) == [second.pk, first.pk]
    assert 'data-testid="outbox-row"' in response.content.decode()


def test_a_rep_sees_only_the_messages_of_their_own_customers_and_groups(rep_client, rep, other_rep):
    mine = TouchpointFactory(customer=CustomerFactory(owner=rep.staff))
    my_group = TouchpointFactory(customer=None, group=CommunityGroupFactory(owner=rep.staff))
    TouchpointFactory(customer=CustomerFactory(owner=other_rep.staff))
    TouchpointFactory(customer=None, group=CommunityGroupFactory(owner=other_rep.staff))
    TouchpointFactory(customer=CustomerFactory(owner=None))

    response = rep_client.get(reverse("messaging-outbox"))

    assert ids(response) == [my_group.pk, mine.pk]


def test_another_reps_message_is_not_found_for_a_rep(rep_client, other_rep):
    theirs = failed(CustomerFactory(owner=other_rep.staff))

    for name in ("messaging-outbox-detail", "messaging-outbox-retry", "messaging-outbox-cancel"):
        method = rep_client.get if name == "messaging-outbox-detail" else rep_client.post
        assert method(reverse(name, args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == S.FAILED


def test_the_outbox_needs_a_login(client):
    response = client.get(reverse("messaging-outbox"))

    assert response.status_code == 302


# -------------------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failed"}, ["failed"]),
        ({"channel": "wecom"}, ["wecom"]),
        ({"source": "campaign"}, ["campaign"]),
        ({"source_ref": "journey:7"}, ["journey"]),
        ({"date_from": "2026-11-20", "date_to": "2026-11-20"}, ["old"]),
    ],
)
def test_the_outbox_filters(operator_client, at_noon, query, expected):
    TouchpointFactory(idempotency_key="failed", status=S.FAILED, reason="provider_error")
    TouchpointFactory(idempotency_key="wecom", channel=MessageChannel.WECOM)
    TouchpointFactory(idempotency_key="campaign", source=TouchpointSource.CAMPAIGN, source_ref="campaign:1")
    TouchpointFactory(idempotency_key="journey", source=TouchpointSource.JOURNEY, source_ref="journey:7")
    TouchpointFactory(idempotency_key="old", created_at=NOON - datetime.timedelta(days=3))

    response = operator_client.get(reverse("messaging-outbox"), query)

    assert [row.touchpoint.idempotency_key for row in response.context["rows"]] == expected


def test_the_outbox_filters_by_customer(operator_client):
    wanted = CustomerFactory()
    mine = TouchpointFactory(customer=wanted)
    TouchpointFactory()

    response = operator_client.get(reverse("messaging-outbox"), {"customer": wanted.pk})

    assert ids(response) == [mine.pk]


def test_the_outbox_pages_by_id_keeping_the_filters(operator_client, monkeypatch):
    monkeypatch.setattr("messaging.views.outbox.PAGE_SIZE", 2)
    rows = [TouchpointFactory(channel=MessageChannel.EMAIL) for _ in range(3)]
    TouchpointFactory(channel=MessageChannel.SMS)

    first = operator_client.get(reverse("messaging-outbox"), {"channel": "email"})
    after = first.context["next_after"]
    second = operator_client.get(reverse("messaging-outbox"), {"channel": "email", "after": after})

    assert ids(first) == [rows[2].pk, rows[1].pk]
    assert ids(second) == [rows[0].pk]
    assert second.context["next_after"] is None
    assert f"channel=email&amp;after={rows[1].pk}" in first.content.decode()


def test_an_htmx_filter_gets_only_the_table(operator_client):
    TouchpointFactory()

    response = operator_client.get(reverse("messaging-outbox"), {"status": "sent"}, HTTP_HX_REQUEST="true")

    assert response.templates[0].name == "messaging/outbox/_table.html"
    assert "<html" not in response.content.decode()


def test_the_outbox_runs_a_fixed_number_of_queries(operator_client, django_assert_num_queries):
    for _ in range(3):
        TouchpointFactory()
    with django_assert_num_queries(3):  # session, user, the page (customers and groups joined)
        operator_client.get(reverse("messaging-outbox"))
    for _ in range(30):
        TouchpointFactory(customer=None, group=CommunityGroupFactory())
    with django_assert_num_queries(3):
        response = operator_client.get(reverse("messaging-outbox"))
    assert len(response.context["rows"]) == 33


def test_the_outbox_of_a_rep_runs_a_fixed_number_of_queries(rep_client, rep, django_assert_num_queries):
    for _ in range(20):
        TouchpointFactory(customer=CustomerFactory(owner=rep.staff))
    with django_assert_num_queries(3):
        response = rep_client.get(reverse("messaging-outbox"))
    assert len(response.context["rows"]) == 20


# --------------------------------------------------------------------------------------------------- detail


def test_the_detail_shows_the_content_the_labelled_decisions_and_the_provider_answer(operator_client, at_noon):
    touchpoint = failed(
        reason="provider_error",
        code="InvalidPhoneNumber",
        content={"text": "周末{{ customer.name }}", "card": {"title": "会员日", "url": "https://e.example/"}},
        rendered={"format": "link", "text": "周末王芳", "card": {"title": "会员日", "url": "https://e.example/"}},
        provider_response={"code": "InvalidPhoneNumber", "message": "bad number"},
    )

    response = operator_client.get(reverse("messaging-outbox-detail", args=[touchpoint.pk]), HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert response.templates[0].name == "messaging/outbox/_detail.html"
    shown = [
        "周末王芳",
        "周末{{ customer.name }}",
        "会员日",
        "https://e.example/",
        "Refused by the provider",
        "Contact policy passed",
        'Provider code: <span class="text-body">InvalidPhoneNumber</span>',
        "bad number",
    ]
    for text in shown:
        assert text in body
    assert [d.label for d in response.context["decisions"]] == [
        "Scheduled",
        "Contact policy passed",
        "Refused by the provider",
    ]
    assert response.context["can_retry"] is True
    assert response.context["can_cancel"] is False


def test_the_detail_runs_a_fixed_number_of_queries(operator_client, django_assert_num_queries):
    touchpoint = failed()

    with django_assert_num_queries(3):  # session, user, the touchpoint with what it shows joined
        operator_client.get(reverse("messaging-outbox-detail", args=[touchpoint.pk]), HTTP_HX_REQUEST="true")


def test_the_detail_of_a_queued_message_is_a_whole_page_without_htmx(operator_client):
    touchpoint = TouchpointFactory(content={"text": "您好 {{ customer.name }}"})

    response = operator_client.get(reverse("messaging-outbox-detail", args=[touchpoint.pk]))

    body = response.content.decode()
    assert "<html" in body
    assert "Not rendered yet" in body
    assert "您好 {{ customer.name }}" in body
    assert response.context["can_cancel"] is True


# ---------------------------------------------------------------------------------------------------- retry


def test_retry_queues_a_failed_message_again_keeping_its_history(operator_client, operator, at_noon):
    touchpoint = failed()
    at_noon.shift(datetime.timedelta(hours=1))

    response = operator_client.post(reverse("messaging-outbox-retry", args=[touchpoint.pk]), HTTP_HX_REQUEST="true")

    touchpoint.refresh_from_db()
    assert response.status_code == 200
    assert response["HX-Trigger"] == "outbox-changed"  # the list beside the detail reloads
    assert "Queued again; it is due now." in response.content.decode()
    assert (touchpoint.status, touchpoint.reason, touchpoint.due_at) == (S.SCHEDULED, "manual_retry", timezone.now())
    assert (touchpoint.attempts, touchpoint.max_attempts) == (5, 10)
    assert [d["step"] for d in touchpoint.decisions] == ["scheduled", "policy", "retries_exhausted", "manual_retry"]
    assert touchpoint.decisions[-1] == {
        "at": timezone.now().isoformat(),
        "step": "manual_retry",
        "outcome": "scheduled",
        "by": "op",
        "previous": "failed",
        "previous_reason": "retries_exhausted",
    }


def test_a_retried_message_is_sent_by_the_next_dispatch(operator_client, at_noon):
    touchpoint = failed(CustomerFactory(phone="13800000009"))

    operator_client.post(reverse("messaging-outbox-retry", args=[touchpoint.pk]))
    dispatch_due()

    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.attempts) == (S.SENT, 6)
    assert ConsoleMessage.objects.get().recipient == "13800000009"


def test_retry_of_an_expired_message_clears_the_past_expiry(operator, at_noon):
    touchpoint = TouchpointFactory(status=S.EXPIRED, reason="expired", expires_at=NOON - datetime.timedelta(hours=1))

    retry_touchpoint(touchpoint, by=operator)

    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.expires_at) == (S.SCHEDULED, None)
    assert touchpoint.decisions[-1]["expiry_cleared"] is True


def test_retry_refuses_a_sent_message_and_changes_nothing(operator_client):
    touchpoint = TouchpointFactory(status=S.SENT, attempts=1)
    before = list(touchpoint.decisions)

    response = operator_client.post(reverse("messaging-outbox-retry", args=[touchpoint.pk]), follow=True)

    touchpoint.refresh_from_db()
    assert "cannot be retried" in response.content.decode()
    assert (touchpoint.status, touchpoint.decisions) == (S.SENT, before)


def test_a_second_retry_of_the_same_message_is_refused(operator):
    touchpoint = failed()
    retry_touchpoint(touchpoint, by=operator)

    with pytest.raises(NotRetryable):
        retry_touchpoint(touchpoint, by=operator)

    touchpoint.refresh_from_db()
    assert [d["step"] for d in touchpoint.decisions].count("manual_retry") == 1


def test_an_analyst_cannot_retry(client):
    client.force_login(UserFactory(username="analyst", role=Role.ANALYST))
    touchpoint = failed()

    response = client.post(reverse("messaging-outbox-retry", args=[touchpoint.pk]))

    touchpoint.refresh_from_db()
    assert response.status_code == 403
    assert touchpoint.status == S.FAILED


def test_a_rep_may_retry_their_own_message(rep_client, rep):
    touchpoint = failed(CustomerFactory(owner=rep.staff))

    rep_client.post(reverse("messaging-outbox-retry", args=[touchpoint.pk]))

    touchpoint.refresh_from_db()
    assert touchpoint.status == S.SCHEDULED


# --------------------------------------------------------------------------------------------------- cancel


def test_cancel_cancels_a_queued_message(operator_client):
    touchpoint = TouchpointFactory(status=S.DEFERRED, reason="quiet_hours")

    response = operator_client.post(reverse("messaging-outbox-cancel", args=[touchpoint.pk]))

    touchpoint.refresh_from_db()
    assert response.status_code == 302
    assert (touchpoint.status, touchpoint.reason) == (S.CANCELLED, "cancelled_in_outbox")


def test_cancel_leaves_a_sent_message_alone(operator_client):
    touchpoint = TouchpointFactory(status=S.SENT)

    response = operator_client.post(reverse("messaging-outbox-cancel", args=[touchpoint.pk]), HTTP_HX_REQUEST="true")

    touchpoint.refresh_from_db()
    assert "Only a message still waiting in the queue can be cancelled." in response.content.decode()
    assert touchpoint.status == S.SENT


# ---------------------------------------------------------------------------------------------- dead letters


def test_the_dead_letter_view_lists_only_messages_that_failed_for_good(operator_client):
    exhausted = failed(reason="retries_exhausted")
    refused = failed(reason="provider_error")
    failed(reason="render_error")
    TouchpointFactory(status=S.CAPPED, reason="frequency_cap")
    TouchpointFactory(status=S.SENT)

    response = operator_client.get(reverse("messaging-outbox-dead-letter"))

    assert ids(response) == [refused.pk, exhausted.pk]
    assert response.context["can_bulk_retry"] is True


def test_bulk_retry_requeues_every_dead_letter_the_filters_select_beyond_the_page(operator_client, monkeypatch):
    monkeypatch.setattr("messaging.views.outbox.PAGE_SIZE", 1)
    wecom = [failed(channel=MessageChannel.WECOM, reason=reason) for reason in ("retries_exhausted", "provider_error")]
    sms = failed(channel=MessageChannel.SMS)
    other = failed(channel=MessageChannel.WECOM, reason="render_error")

    response = operator_client.post(reverse("messaging-outbox-bulk-retry") + "?channel=wecom&after=1")

    assert response.status_code == 302
    assert response["Location"] == reverse("messaging-outbox-dead-letter") + "?channel=wecom"
    statuses = dict(Touchpoint.objects.values_list("pk", "status"))
    assert [statuses[t.pk] for t in wecom] == [S.SCHEDULED, S.SCHEDULED]
    assert (statuses[sms.pk], statuses[other.pk]) == (S.FAILED, S.FAILED)


def test_bulk_retry_needs_an_operator(rep_client, rep):
    touchpoint = failed(CustomerFactory(owner=rep.staff))

    response = rep_client.post(reverse("messaging-outbox-bulk-retry"))

    touchpoint.refresh_from_db()
    assert response.status_code == 403
    assert touchpoint.status == S.FAILED


def test_retry_touchpoints_skips_what_is_not_retryable(operator):
    retryable = [failed(), TouchpointFactory(status=S.CAPPED, reason="frequency_cap")]
    TouchpointFactory(status=S.SENT)
    TouchpointFactory(status=S.SUPPRESSED, reason="opted_out")

    count = retry_touchpoints(Touchpoint.objects.all(), by=operator)

    assert count == 2
    assert set(Touchpoint.objects.filter(status=S.SCHEDULED).values_list("pk", flat=True)) == {t.pk for t in retryable}


# --------------------------------------------------------------------------------------------- customer page


@pytest.fixture
def panel_registered():
    register_customer_page_extensions()


def test_the_customer_page_shows_the_message_history_with_attempts_and_codes(operator_client, panel_registered):
    customer = CustomerFactory()
    at = timezone.now().isoformat()
    welcome = TouchpointFactory(
        customer=customer,
        channel=MessageChannel.WECOM,
        source_ref="wecom:welcome",
        status=S.FAILED,
        reason="provider_error",
        provider_code="41051",
        attempts=2,
        content={"text": "欢迎添加 {{ customer.name }}"},
        rendered={"format": "text", "text": "欢迎添加 王芳"},
        decisions=[
            {"at": at, "step": "scheduled", "outcome": "scheduled"},
            {"at": at, "step": "retry", "outcome": "scheduled", "attempt": 1, "code": "-1"},
            {"at": at, "step": "provider_error", "outcome": "failed", "attempt": 2, "code": "41051"},
        ],
    )

    response = operator_client.get(reverse("customers:detail", args=[customer.pk]))

    body = response.content.decode()
    assert 'data-testid="customer-messages"' in body
    assert f'data-touchpoint="{welcome.pk}"' in body
    for text in ("欢迎添加 王芳", "Attempt 1: -1", "Attempt 2: 41051", "Refused by the provider"):
        assert text in body


def test_the_message_history_panel_takes_one_query(operator, django_assert_num_queries):
    customer = CustomerFactory()
    for _ in range(25):
        TouchpointFactory(customer=customer)
    request = RequestFactory().get("/")
    request.user = operator

    with django_assert_num_queries(1):
        panel = messages_panel(request, customer)

    assert len(panel["rows"]) == 20


# --------------------------------------------------------------------------------------------------- console


def test_the_console_page_lists_what_the_console_backend_sent_newest_first(operator_client, at_noon):
    customer = CustomerFactory(phone="13800000001")
    first = TouchpointFactory(customer=customer, idempotency_key="c1")
    second = TouchpointFactory(customer=customer, idempotency_key="c2", content={"format": "text", "text": "第二条"})
    dispatch_due()

    response = operator_client.get(reverse("messaging-console"))

    assert [m.touchpoint_id for m in response.context["console_messages"]] == [second.pk, first.pk]
    assert "第二条" in response.content.decode()


def test_a_rep_sees_only_the_console_messages_of_their_customers(rep_client, rep, other_rep, at_noon):
    mine = TouchpointFactory(customer=CustomerFactory(owner=rep.staff, phone="1"))
    TouchpointFactory(customer=CustomerFactory(owner=other_rep.staff, phone="2"))
    dispatch_due()

    response = rep_client.get(reverse("messaging-console"))

    assert [m.touchpoint_id for m in response.context["console_messages"]] == [mine.pk]
