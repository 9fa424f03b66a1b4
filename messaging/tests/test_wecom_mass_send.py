"""Enterprise mass sends after the backend: polling awaiting → confirmed → delivered/failed/undeliverable, the
three-reminders-a-day limit, and the rep's to-do page."""

import datetime
import itertools
import threading
import time
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from customers.models import IdentityKind, Staff
from customers.tests.factories import (
    CommunityGroupFactory,
    CustomerFactory,
    IdentityFactory,
    StaffFactory,
    UserFactory,
)
from messaging.backends.base import OutgoingMessage
from messaging.backends.wecom import WeComBackend
from messaging.models import Touchpoint, TouchpointStatus, WeComReminder
from messaging.services.dispatch import dispatch_due
from messaging.services.scheduling import schedule_touchpoint
from messaging.wecom import mass_send, tasks
from messaging.wecom.client import WeComClient
from messaging.wecom.fake import FakeWeCom

pytestmark = pytest.mark.django_db
S = TouchpointStatus
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
TASK = "externalcontact/get_groupmsg_task"
REMIND = "externalcontact/remind_groupmsg_send"
NEW_ARRIVALS = {"format": "text", "text": "春季新品到店"}
keys = itertools.count(1)


@pytest.fixture
def at_10am():
    with time_machine.travel(MONDAY_10AM, tick=False) as traveller:
        yield traveller


@pytest.fixture
def fake(settings):
    with FakeWeCom() as server:
        settings.MESSAGING_BACKENDS = {"wecom": "messaging.backends.wecom.WeComBackend"}
        settings.MESSAGING_CHANNELS = {**settings.MESSAGING_CHANNELS, "wecom": server.config()}
        yield server


@pytest.fixture
def zhangsan(fake):
    return StaffFactory(name="张三", wecom_userid="zhangsan")


def wecom_customer(fake, staff, external_userid):
    customer = CustomerFactory()
    IdentityFactory(customer=customer, kind=IdentityKind.WECOM_EXTERNAL_USERID, value=external_userid)
    fake.add_contact(staff.wecom_userid, external_userid)
    return customer


def handed_over(fake, staff, recipients, *, is_group=False, content=NEW_ARRIVALS):
    """Touchpoints sent through the WeCom backend and recorded the way dispatch records them."""
    now = timezone.now()
    touchpoints = []
    for recipient in recipients:
        target = {"group": CommunityGroupFactory(chat_id=recipient)} if is_group else {"customer": CustomerFactory()}
        touchpoints.append(
            Touchpoint.objects.create(
                channel="wecom",
                sender_staff=staff,
                idempotency_key=f"mass-{next(keys)}",
                content=content,
                recipient=recipient,
                status=S.SENDING,
                scheduled_for=now,
                due_at=now,
                **target,
            )
        )
    backend = WeComBackend(channel="wecom", config=fake.config())
    results = backend.send_many(
        [
            OutgoingMessage(
                touchpoint_id=tp.pk,
                idempotency_key=tp.idempotency_key,
                channel="wecom",
                kind="marketing",
                content=tp.content,
                recipient=tp.recipient,
                sender=staff.wecom_userid,
                is_group=is_group,
            )
            for tp in touchpoints
        ]
    )
    backend.close()
    for touchpoint, result in zip(touchpoints, results, strict=True):
        touchpoint.status = str(result.outcome)
        touchpoint.provider_message_id = result.provider_message_id
        touchpoint.provider_code = result.provider_code
        touchpoint.save()
    return touchpoints


def statuses(touchpoints):
    rows = Touchpoint.objects.filter(pk__in=[t.pk for t in touchpoints]).order_by("pk")
    return [(tp.status, tp.provider_code) for tp in rows]


def poll(**options):
    options.setdefault("poll_seconds", 0)  # every run asks again: the tests move the clock, not Redis's TTLs
    return mass_send.poll_mass_sends(**options)


# ---------------------------------------------------------------------------------------------------- polling


def test_a_mass_send_goes_from_awaiting_to_confirmed_to_its_outcomes(at_10am, fake, zhangsan):
    customers = [wecom_customer(fake, zhangsan, f"wm_{n}") for n in range(3)]
    touchpoints = [
        schedule_touchpoint(
            channel="wecom", customer=c, sender_staff=zhangsan, content=NEW_ARRIVALS, idempotency_key=f"spring-{c.pk}"
        )
        for c in customers
    ]
    dispatch_due()
    [msgid] = set(Touchpoint.objects.values_list("provider_message_id", flat=True))
    fake.remove_contact("zhangsan", "wm_1")  # the customer deleted the rep before the rep confirmed
    fake.set_result(msgid, "wm_2", 3)  # and this one already had this month's mass messages

    before = poll()
    after_awaiting = statuses(touchpoints)
    at_10am.shift(datetime.timedelta(minutes=30))
    fake.confirm(msgid, "zhangsan")
    confirmed = poll()

    assert (before.mass_sends, before.moved) == (1, 0)
    assert after_awaiting == [(S.AWAITING_CONFIRMATION, "0")] * 3
    assert confirmed.moved == 6  # confirmed, then each outcome
    assert statuses(touchpoints) == [(S.DELIVERED, "0"), (S.UNDELIVERABLE, "not_friend"), (S.FAILED, "receipt_limit")]
    delivered = Touchpoint.objects.get(pk=touchpoints[0].pk)
    half_past = MONDAY_10AM + datetime.timedelta(minutes=30)
    assert (delivered.confirmed_at, delivered.delivered_at) == (half_past, half_past)
    assert [d["outcome"] for d in delivered.decisions if d["step"] == "status"] == [S.CONFIRMED, S.DELIVERED]
    assert fake.deliveries == {"wm_0": 1}


def test_nothing_left_to_learn_means_no_more_calls(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    touchpoints = handed_over(fake, zhangsan, ["wm_0"])
    fake.confirm(touchpoints[0].provider_message_id)
    poll()
    calls = len(fake.calls)

    report = poll()

    assert (report.mass_sends, len(fake.calls)) == (0, calls)


def test_a_confirmed_mass_send_whose_results_are_not_in_stays_confirmed(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    touchpoints = handed_over(fake, zhangsan, ["wm_0"])
    fake.set_result(touchpoints[0].provider_message_id, "wm_0", 0)
    fake.confirm(touchpoints[0].provider_message_id, "zhangsan")

    poll()

    assert statuses(touchpoints) == [(S.CONFIRMED, "0")]


def test_a_group_mass_send_is_delivered_to_its_groups(at_10am, fake, zhangsan):
    fake.add_group("wr_mums", owner="zhangsan")
    fake.add_group("wr_new", owner="zhangsan")
    touchpoints = handed_over(fake, zhangsan, ["wr_mums", "wr_new"], is_group=True)
    fake.confirm(touchpoints[0].provider_message_id)

    poll()

    assert statuses(touchpoints) == [(S.DELIVERED, "0"), (S.DELIVERED, "0")]


def test_each_mass_send_is_asked_about_at_most_once_per_interval(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    handed_over(fake, zhangsan, ["wm_0"])
    mass_send.poll_mass_sends()

    again = mass_send.poll_mass_sends()

    assert again.mass_sends == 0
    assert len(fake.calls_to(TASK)) == 1


def test_a_temporary_error_moves_nothing_and_is_counted(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    touchpoints = handed_over(fake, zhangsan, ["wm_0"])
    fake.confirm(touchpoints[0].provider_message_id)
    fake.fail_next(1, errcode=-1, path=TASK)

    report = poll()

    assert (report.mass_sends, report.errors, report.moved) == (0, 1, 0)
    assert statuses(touchpoints) == [(S.AWAITING_CONFIRMATION, "0")]


def test_the_rate_limit_leaves_the_rest_of_the_poll_for_the_next_run(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    first = handed_over(fake, zhangsan, ["wm_0"])
    second = handed_over(fake, zhangsan, ["wm_0"], content={"format": "text", "text": "会员日"})
    client = WeComClient.from_config({**fake.config(), "rate_limits": {TASK: 1}})

    report = mass_send.poll_mass_sends(client=client)
    at_10am.shift(datetime.timedelta(minutes=1))
    next_run = mass_send.poll_mass_sends(client=client)
    client.close()

    assert (report.mass_sends, report.deferred) == (1, True)
    assert (next_run.mass_sends, next_run.deferred) == (1, False)
    assert [c.body["msgid"] for c in fake.calls_to(TASK)] == [
        first[0].provider_message_id,
        second[0].provider_message_id,
    ]


def test_a_mass_send_not_confirmed_in_time_is_given_up(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    touchpoints = handed_over(fake, zhangsan, ["wm_0"])

    poll(now=MONDAY_10AM + datetime.timedelta(days=mass_send.CONFIRM_DAYS, seconds=1))

    assert statuses(touchpoints) == [(S.FAILED, "not_confirmed")]


def test_the_celery_task_polls(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    touchpoints = handed_over(fake, zhangsan, ["wm_0"])
    fake.confirm(touchpoints[0].provider_message_id)

    report = tasks.poll_mass_sends.apply().result

    assert report == {"mass_sends": 1, "moved": 2, "errors": 0, "deferred": False}
    assert statuses(touchpoints) == [(S.DELIVERED, "0")]


# -------------------------------------------------------------------------------------------------- reminders


def test_a_staff_member_is_reminded_at_most_three_times_a_day(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    [touchpoint] = handed_over(fake, zhangsan, ["wm_0"])

    outcomes = [mass_send.remind_pending(zhangsan) for _ in range(4)]

    assert [(o.is_sent, o.remaining_today) for o in outcomes[:3]] == [(True, 2), (True, 1), (True, 0)]
    assert outcomes[3].is_sent is False
    assert outcomes[3].reason == "张三 was already reminded 3 times today, the most WeCom allows; try again tomorrow."
    assert len(fake.calls_to(REMIND)) == 3
    assert fake.mass_sends[touchpoint.provider_message_id].reminders == 3
    assert WeComReminder.objects.filter(staff=zhangsan).count() == 3


def test_reminders_count_again_from_the_next_day_in_china(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    handed_over(fake, zhangsan, ["wm_0"])
    for _ in range(3):
        mass_send.remind_pending(zhangsan)

    at_10am.move_to(datetime.datetime(2026, 11, 24, 0, 5, tzinfo=SHANGHAI))
    next_day = mass_send.remind_pending(zhangsan)

    assert (next_day.is_sent, next_day.remaining_today) == (True, 2)


@pytest.mark.django_db(transaction=True)
def test_a_reminder_racing_another_for_the_last_slot_waits_for_it_and_is_refused(fake):
    staff = StaffFactory(name="张三", wecom_userid="zhangsan")
    fake.add_contact("zhangsan", "wm_0")
    handed_over(fake, staff, ["wm_0"])
    WeComReminder.objects.bulk_create([WeComReminder(staff=staff, msgid="earlier") for _ in range(2)])
    outcomes = []

    def click() -> None:
        outcomes.append(mass_send.remind_pending(staff))
        connection.close()

    with transaction.atomic():
        # The competing click holds the staff row at the point where it counts, then takes the last slot.
        list(Staff.objects.select_for_update().filter(pk=staff.pk))
        racing = threading.Thread(target=click)
        racing.start()
        wait_until_blocked_on_a_lock()
        WeComReminder.objects.create(staff=staff, msgid="competing")
    racing.join()

    assert outcomes[0].is_sent is False
    assert WeComReminder.objects.filter(staff=staff).count() == 3
    assert fake.calls_to(REMIND) == []


def wait_until_blocked_on_a_lock() -> None:
    """Until another connection waits for a row lock (bounded: a broken lock fails the test, never hangs it)."""
    with connection.cursor() as cursor:
        for _ in range(500):
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction the view is a snapshot
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the racing reminder never waited for the lock")


def test_a_reminder_wecom_refuses_does_not_use_a_slot(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    handed_over(fake, zhangsan, ["wm_0"])
    fake.fail_next(1, errcode=45009, path=REMIND)

    refused = mass_send.remind_pending(zhangsan)

    assert (refused.is_sent, refused.reason) == (False, "WeCom did not accept the reminder (45009); try again later.")
    assert WeComReminder.objects.count() == 0


def test_without_a_msgid_the_newest_pending_mass_send_is_reminded(at_10am, fake, zhangsan):
    fake.add_contact("zhangsan", "wm_0")
    handed_over(fake, zhangsan, ["wm_0"])
    at_10am.shift(datetime.timedelta(minutes=5))
    [newest] = handed_over(fake, zhangsan, ["wm_0"], content={"format": "text", "text": "会员日"})

    outcome = mass_send.remind_pending(zhangsan)

    assert outcome.msgid == newest.provider_message_id
    assert [c.body["msgid"] for c in fake.calls_to(REMIND)] == [newest.provider_message_id]


def test_nothing_awaiting_confirmation_means_no_reminder(at_10am, fake, zhangsan):
    outcome = mass_send.remind_pending(zhangsan, msgid="msg-of-someone-else")

    assert (outcome.is_sent, outcome.reason) == (False, "Nothing is waiting for 张三's confirmation.")
    assert fake.calls == []


# ----------------------------------------------------------------------------------------------- to-do page


def awaiting_row(staff, msgid, *, text="春季新品到店", confirmed=False, created_at=None):
    now = timezone.now()
    return Touchpoint.objects.create(
        channel="wecom",
        customer=CustomerFactory(),
        sender_staff=staff,
        idempotency_key=f"todo-{next(keys)}",
        content={"format": "text", "text": text},
        status=S.CONFIRMED if confirmed else S.AWAITING_CONFIRMATION,
        confirmed_at=now if confirmed else None,
        provider_message_id=msgid,
        recipient=f"wm_{next(keys)}",
        scheduled_for=now,
        due_at=now,
        created_at=created_at or now,
    )


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def msgids(response) -> list[str]:
    return [row["provider_message_id"] for row in response.context["rows"]]


def test_a_rep_sees_only_the_mass_sends_waiting_for_their_own_confirmation(rep, other_rep):
    awaiting_row(rep.staff, "m_mine")
    awaiting_row(rep.staff, "m_mine", text="春季新品到店")
    awaiting_row(other_rep.staff, "m_theirs")

    response = client_of(rep).get(reverse("wecom-todo"))

    assert msgids(response) == ["m_mine"]
    assert response.context["rows"][0]["recipients"] == 2
    assert "春季新品到店" in response.content.decode()
    assert "m_theirs" not in response.content.decode()


def test_an_operator_sees_every_reps_and_filters_by_rep(operator, rep, other_rep):
    awaiting_row(rep.staff, "m_mine")
    awaiting_row(other_rep.staff, "m_theirs")
    client = client_of(operator)

    everyone = client.get(reverse("wecom-todo"))
    one_rep = client.get(reverse("wecom-todo"), {"staff": other_rep.staff.pk}, HTTP_HX_REQUEST="true")

    assert sorted(msgids(everyone)) == ["m_mine", "m_theirs"]
    assert msgids(one_rep) == ["m_theirs"]
    assert one_rep.templates[0].name == "messaging/wecom/_todo_table.html"


def test_a_rep_cannot_filter_their_way_to_another_reps_sends(rep, other_rep):
    awaiting_row(other_rep.staff, "m_theirs")

    response = client_of(rep).get(reverse("wecom-todo"), {"staff": other_rep.staff.pk})

    assert msgids(response) == []


def test_operators_see_each_reps_confirmation_rate_over_30_days(operator, rep, other_rep):
    awaiting_row(rep.staff, "m1", confirmed=True)
    awaiting_row(rep.staff, "m1", confirmed=True)
    awaiting_row(rep.staff, "m2")
    awaiting_row(other_rep.staff, "m3")
    awaiting_row(other_rep.staff, "m_old", confirmed=True, created_at=timezone.now() - datetime.timedelta(days=31))

    response = client_of(operator).get(reverse("wecom-todo"))

    assert [(r["sender_staff__name"], r["confirmed"], r["created"], r["rate"]) for r in response.context["rates"]] == [
        ("rep_me", 1, 2, 0.5),
        ("rep_other", 0, 1, 0.0),
    ]


def test_a_rep_reminds_themselves_from_the_todo(fake, rep):
    rep.staff.wecom_userid = "rep_me"
    rep.staff.save()
    fake.add_contact("rep_me", "wm_0")
    [touchpoint] = handed_over(fake, rep.staff, ["wm_0"])

    response = client_of(rep).post(
        reverse("wecom-remind"), {"msgid": touchpoint.provider_message_id}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert "Reminder sent to rep_me in WeCom (2 left today)." in response.content.decode()
    assert "Remind (2 left today)" in response.content.decode()
    assert [c.body["msgid"] for c in fake.calls_to(REMIND)] == [touchpoint.provider_message_id]


def test_a_rep_cannot_remind_for_another_reps_mass_send(fake, rep, other_rep):
    awaiting_row(other_rep.staff, "m_theirs")

    response = client_of(rep).post(reverse("wecom-remind"), {"msgid": "m_theirs"})

    assert response.status_code == 404
    assert fake.calls_to(REMIND) == []


def test_an_analyst_sees_the_todo_but_cannot_remind(fake, rep):
    awaiting_row(rep.staff, "m_mine")
    analyst = client_of(UserFactory(username="an", role=Role.ANALYST))

    page = analyst.get(reverse("wecom-todo"))
    refused = analyst.post(reverse("wecom-remind"), {"msgid": "m_mine"})

    assert msgids(page) == ["m_mine"]
    assert 'data-testid="remind"' not in page.content.decode()
    assert refused.status_code == 403
    assert fake.calls == []


def test_the_todo_page_runs_a_fixed_number_of_queries(rep, operator, django_assert_num_queries):
    for n in range(15):
        awaiting_row(rep.staff, f"m{n}")
        awaiting_row(rep.staff, f"m{n}")
    rep_client, operator_client = client_of(rep), client_of(operator)
    rep_client.get(reverse("wecom-todo"))
    operator_client.get(reverse("wecom-todo"))

    # session, user, the mass sends, today's reminders of their senders, the confirmation rates
    with django_assert_num_queries(5):
        mine = rep_client.get(reverse("wecom-todo"))
    # the same, and the staff for the filter
    with django_assert_num_queries(6):
        everyone = operator_client.get(reverse("wecom-todo"))

    assert len(mine.context["rows"]) == len(everyone.context["rows"]) == 15


def test_without_htmx_a_reminder_redirects_to_the_todo_with_the_outcome(fake, operator, rep):
    rep.staff.wecom_userid = "rep_me"
    rep.staff.save()
    fake.add_contact("rep_me", "wm_0")
    [touchpoint] = handed_over(fake, rep.staff, ["wm_0"])

    response = client_of(operator).post(reverse("wecom-remind"), {"msgid": touchpoint.provider_message_id}, follow=True)

    assert response.redirect_chain == [(reverse("wecom-todo"), 302)]
    assert [str(m) for m in response.context["messages"]] == ["Reminder sent to rep_me in WeCom (2 left today)."]
