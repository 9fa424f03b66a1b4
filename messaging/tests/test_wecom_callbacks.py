"""The WeCom callback endpoint and what its events become. Every callback is built by the independent sender
(callback_sender.py), encrypted and signed as WeCom does, and posted to /wecom/callback."""

import datetime
import itertools
import logging
import threading
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from customers.models import (
    CommunityGroup,
    Customer,
    DomainEvent,
    Event,
    GroupMembership,
    Identity,
    Relationship,
    RelationshipStatus,
    Staff,
    Transfer,
)
from customers.tests.factories import (
    ChannelFactory,
    CommunityGroupFactory,
    CustomerFactory,
    GroupMembershipFactory,
    IdentityFactory,
    RelationshipFactory,
    StaffFactory,
)
from messaging.models import WeComCallbackReceipt
from messaging.wecom import callback_tasks
from messaging.wecom.callback_sender import CallbackRequest, CallbackSender, event_xml
from messaging.wecom.callback_tasks import apply_contact, apply_group_chat, fetch_contact, sync_group_chat

# Only the callback's own URLconf: these tests do not depend on the rest of the site's pages importing.
pytestmark = [pytest.mark.django_db, pytest.mark.urls("messaging.wecom.callback_urls")]

TOKEN = "cbT0ken"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP = "wwcorp0001"
AT = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
NOW = int(AT.timestamp())
SENDER = CallbackSender(token=TOKEN, encoding_aes_key=KEY, corp_id=CORP)
_nonces = itertools.count(1000)


@pytest.fixture(autouse=True)
def wecom(settings):
    settings.MESSAGING_CHANNELS = {
        **settings.MESSAGING_CHANNELS,
        "wecom": {"corp_id": CORP, "token": TOKEN, "encoding_aes_key": KEY, "secret": ""},
    }


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(AT, tick=False) as traveller:
        yield traveller


@pytest.fixture
def follow_ups(monkeypatch):
    """The profile fetches and group syncs sent after commit (recorded instead of queued)."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(fetch_contact, "apply_async", lambda args, **kw: sent.append(("fetch", *args)))
    monkeypatch.setattr(sync_group_chat, "apply_async", lambda args, **kw: sent.append(("sync", *args)))
    return sent


def contact_xml(change_type, *, at=NOW, **fields):
    return event_xml(corp_id=CORP, event="change_external_contact", change_type=change_type, create_time=at, **fields)


def chat_xml(change_type, *, at=NOW, **fields):
    return event_xml(corp_id=CORP, event="change_external_chat", change_type=change_type, create_time=at, **fields)


def post(client, request):
    url = f"{reverse('wecom-callback')}?{urlencode(request.params)}"
    return client.post(url, data=request.body, content_type="text/xml")


def deliver(client, inner, *, timestamp=NOW):
    """Post one callback (a fresh nonce each time, as WeCom's re-deliveries have) and expect it accepted."""
    response = post(client, SENDER.event(inner, timestamp=timestamp, nonce=str(next(_nonces))))
    assert (response.status_code, response.content) == (200, b"success")
    return response


def added(userid="zhangsan", external="wmCUST1", *, state="", welcome="", at=NOW, half=False):
    fields = {"UserID": userid, "ExternalUserID": external, "State": state}
    if welcome:
        fields["WelcomeCode"] = welcome
    return contact_xml("add_half_external_contact" if half else "add_external_contact", at=at, **fields)


def snapshot():
    """Everything a callback may write, to prove a repeat wrote nothing."""
    return {
        "customers": list(Customer.objects.order_by("pk").values_list("pk", "name", "owner_id", "source_channel_id")),
        "identities": list(Identity.objects.order_by("pk").values_list("kind", "value", "customer_id")),
        "staff": list(Staff.objects.order_by("pk").values_list("wecom_userid", flat=True)),
        "relationships": list(
            Relationship.objects.order_by("pk").values_list("staff_id", "customer_id", "status", "state", "added_at")
        ),
        "memberships": list(GroupMembership.objects.order_by("pk").values_list("customer_id", "joined_at", "left_at")),
        "events": list(Event.objects.order_by("pk").values_list("type", "customer_id")),
        "domain_events": list(DomainEvent.objects.order_by("pk").values_list("kind", "customer_id")),
        "transfers": Transfer.objects.count(),
    }


def refusals(caplog):
    return [(r.message, r.code) for r in caplog.records if r.message == "wecom.callback_refused"]


def domain_kinds():
    return list(DomainEvent.objects.order_by("pk").values_list("kind", "customer_id"))


# -------------------------------------------------------------------------------------------- the endpoint


def test_url_verification_answers_the_decrypted_echostr_as_plain_text(client):
    request = SENDER.verification("8377266315219683", timestamp=NOW, nonce="1")

    response = client.get(reverse("wecom-callback"), request.params)

    assert response.status_code == 200
    assert response.content == b"8377266315219683"
    assert response["Content-Type"] == "text/plain; charset=utf-8"


def test_url_verification_with_a_wrong_signature_is_refused_and_logged(client, caplog):
    request = SENDER.verification("echo", timestamp=NOW, nonce="1")

    with caplog.at_level(logging.WARNING, logger="messaging.wecom.callback"):
        response = client.get(reverse("wecom-callback"), {**request.params, "msg_signature": "f" * 40})

    assert (response.status_code, response.content) == (403, b"bad_signature")
    assert refusals(caplog) == [("wecom.callback_refused", "bad_signature")]


def test_a_callback_is_accepted_once_and_its_signature_kept(client):
    request = SENDER.event(added(), timestamp=NOW, nonce="1")

    response = post(client, request)

    assert (response.status_code, response.content) == (200, b"success")
    assert list(WeComCallbackReceipt.objects.values_list("msg_signature", "timestamp")) == [
        (request.params["msg_signature"], NOW)
    ]


def test_the_same_signed_callback_twice_is_refused_as_a_replay_and_changes_nothing(client, caplog):
    request = SENDER.event(added(), timestamp=NOW, nonce="1")
    post(client, request)
    before = snapshot()

    with caplog.at_level(logging.WARNING, logger="messaging.wecom.callback"):
        response = post(client, request)

    assert (response.status_code, response.content) == (403, b"replay")
    assert refusals(caplog) == [("wecom.callback_refused", "replay")]
    assert snapshot() == before
    assert WeComCallbackReceipt.objects.count() == 1


def test_a_callback_older_than_five_minutes_is_refused_and_changes_nothing(client, caplog):
    request = SENDER.event(added(at=NOW - 301), timestamp=NOW - 301, nonce="1")

    with caplog.at_level(logging.WARNING, logger="messaging.wecom.callback"):
        response = post(client, request)

    assert (response.status_code, response.content) == (403, b"stale_timestamp")
    assert refusals(caplog) == [("wecom.callback_refused", "stale_timestamp")]
    assert (Customer.objects.count(), WeComCallbackReceipt.objects.count()) == (0, 0)


def test_a_callback_with_a_bad_signature_is_refused_and_changes_nothing(client):
    request = SENDER.event(added(), timestamp=NOW, nonce="1")

    response = post(client, CallbackRequest({**request.params, "nonce": "2"}, request.body))

    assert (response.status_code, response.content) == (403, b"bad_signature")
    assert (Customer.objects.count(), WeComCallbackReceipt.objects.count()) == (0, 0)


def test_a_callback_for_another_corp_is_refused(client):
    other = CallbackSender(token=TOKEN, encoding_aes_key=KEY, corp_id="wwOTHER")

    response = post(client, other.event(added(), timestamp=NOW, nonce="1"))

    assert (response.status_code, response.content) == (403, b"bad_receive_id")
    assert Customer.objects.count() == 0


def test_a_callback_encrypted_with_another_key_is_a_bad_request(client):
    other = CallbackSender(token=TOKEN, encoding_aes_key="ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvuA", corp_id=CORP)

    response = post(client, other.event(added(), timestamp=NOW, nonce="1", random_prefix=b"\0" * 16))

    assert (response.status_code, response.content) == (400, b"bad_padding")
    assert Customer.objects.count() == 0


def test_without_callback_settings_the_endpoint_says_so(client, settings):
    settings.MESSAGING_CHANNELS = {**settings.MESSAGING_CHANNELS, "wecom": {"corp_id": CORP}}

    response = post(client, SENDER.event(added(), timestamp=NOW, nonce="1"))

    assert response.status_code == 503
    assert Customer.objects.count() == 0


def test_an_event_we_do_not_handle_is_acknowledged_and_ignored(client):
    deliver(client, event_xml(corp_id=CORP, event="change_contact", change_type="create_user", UserID="x"))

    assert snapshot()["customers"] == []
    assert WeComCallbackReceipt.objects.count() == 1


# ------------------------------------------------------------------------------------------ contact events


def test_a_new_contact_becomes_a_customer_with_identity_staff_relationship_event_and_domain_events(
    client, follow_ups, django_capture_on_commit_callbacks
):
    channel = ChannelFactory(code="store-qr-01")

    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, added("lisi", "wmNEW", state="store-qr-01"))

    staff = Staff.objects.get()
    customer = Customer.objects.get()
    assert (staff.name, staff.wecom_userid) == ("lisi", "lisi")
    assert (customer.owner_id, customer.source_channel_id, customer.first_seen_at) == (staff.pk, channel.pk, AT)
    assert list(customer.identities.values_list("kind", "namespace", "value")) == [("wecom", "", "wmNEW")]
    relationship = Relationship.objects.get()
    assert (relationship.staff_id, relationship.customer_id, relationship.status) == (staff.pk, customer.pk, "active")
    assert (relationship.state, relationship.added_at, relationship.add_way) == ("store-qr-01", AT, 0)
    event = Event.objects.get()
    assert (event.customer_id, event.type, event.occurred_at, event.channel_id) == (
        customer.pk, "wecom_contact_added", AT, channel.pk)  # fmt: skip
    assert event.properties == {"staff": "lisi", "state": "store-qr-01"}
    assert domain_kinds() == [("customer.created", customer.pk), ("event.recorded", customer.pk)]
    assert DomainEvent.objects.get(kind="customer.created").payload == {
        "source": "wecom", "change": "add_external_contact", "staff": "lisi"}  # fmt: skip
    assert follow_ups == [("fetch", "wmNEW")]


def test_a_repeated_add_delivered_again_changes_nothing(client):
    deliver(client, added("lisi", "wmNEW", state="s1"))
    before = snapshot()

    deliver(client, added("lisi", "wmNEW", state="s1"))

    assert snapshot() == before
    assert WeComCallbackReceipt.objects.count() == 2


def test_a_known_customer_adding_a_rep_keeps_their_record_and_gets_an_owner(client):
    customer = CustomerFactory(name="王芳", owner=None)
    IdentityFactory(customer=customer, kind="wecom", value="wmKNOWN")
    staff = StaffFactory(wecom_userid="lisi")

    deliver(client, added("lisi", "wmKNOWN"))

    customer.refresh_from_db()
    assert (Customer.objects.count(), customer.name, customer.owner_id) == (1, "王芳", staff.pk)
    assert list(Transfer.objects.values_list("customer_id", "to_staff_id", "kind")) == [
        (customer.pk, staff.pk, "assigned")
    ]
    assert domain_kinds() == [("customer.updated", customer.pk), ("event.recorded", customer.pk)]


def test_a_known_customer_without_a_source_channel_takes_the_live_codes(client):
    channel = ChannelFactory(code="store-qr-01")
    customer = CustomerFactory(owner=StaffFactory(wecom_userid="owner"), source_channel=None)
    IdentityFactory(customer=customer, kind="wecom", value="wmKNOWN")

    deliver(client, added("second", "wmKNOWN", state="store-qr-01"))

    customer.refresh_from_db()
    assert (customer.owner.wecom_userid, customer.source_channel_id) == ("owner", channel.pk)
    assert Transfer.objects.count() == 0


def test_a_second_rep_added_by_an_owned_customer_is_a_new_relationship_not_a_new_owner(client):
    owner = StaffFactory(wecom_userid="owner")
    customer = CustomerFactory(owner=owner)
    IdentityFactory(customer=customer, kind="wecom", value="wmKNOWN")
    RelationshipFactory(staff=owner, customer=customer)

    deliver(client, added("second", "wmKNOWN"))

    customer.refresh_from_db()
    assert customer.owner_id == owner.pk
    assert sorted(Relationship.objects.values_list("staff__wecom_userid", "status")) == [
        ("owner", "active"), ("second", "active")]  # fmt: skip
    assert Transfer.objects.count() == 0


def test_a_half_add_records_the_relationship_and_marks_the_event(client):
    deliver(client, added("lisi", "wmHALF", state="s9", half=True))

    assert list(Relationship.objects.values_list("state", "status")) == [("s9", "active")]
    assert list(Event.objects.values_list("type", "properties")) == [
        ("wecom_contact_added", {"staff": "lisi", "state": "s9", "half": True})
    ]


def test_a_full_add_after_a_half_add_changes_nothing_more(client):
    deliver(client, added("lisi", "wmHALF", state="s9", half=True))
    before = snapshot()

    deliver(client, added("lisi", "wmHALF", state="s9", at=NOW + 5))

    assert snapshot() == before


def test_an_unknown_channel_state_is_kept_on_the_relationship_without_a_source_channel(client):
    deliver(client, added("lisi", "wmX", state="no-such-channel"))

    assert Customer.objects.get().source_channel_id is None
    assert Relationship.objects.get().state == "no-such-channel"


def test_an_edit_only_asks_for_the_profile(client, follow_ups, django_capture_on_commit_callbacks):
    deliver(client, added("lisi", "wmX"))
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, contact_xml("edit_external_contact", UserID="lisi", ExternalUserID="wmX"))

    assert snapshot() == before
    assert follow_ups == [("fetch", "wmX")]


def test_the_rep_deleting_the_customer_ends_the_relationship_once(client):
    deliver(client, added("lisi", "wmX"))
    customer = Customer.objects.get()
    del_event = contact_xml("del_external_contact", at=NOW + 60, UserID="lisi", ExternalUserID="wmX")

    deliver(client, del_event)
    before = snapshot()
    deliver(client, del_event)

    relationship = Relationship.objects.get()
    assert (relationship.status, relationship.status_changed_at) == (
        RelationshipStatus.DELETED_BY_STAFF, AT + datetime.timedelta(seconds=60))  # fmt: skip
    assert list(Event.objects.order_by("pk").values_list("type", flat=True)) == [
        "wecom_contact_added", "wecom_contact_deleted"]  # fmt: skip
    assert domain_kinds()[-2:] == [("customer.updated", customer.pk), ("event.recorded", customer.pk)]
    assert snapshot() == before


def test_the_customer_deleting_the_rep_is_recorded_as_deleted_by_customer(client):
    deliver(client, added("lisi", "wmX"))

    deliver(client, contact_xml("del_follow_user", at=NOW + 60, UserID="lisi", ExternalUserID="wmX"))

    assert Relationship.objects.get().status == RelationshipStatus.DELETED_BY_CUSTOMER
    assert Event.objects.order_by("pk").last().type == "wecom_deleted_by_customer"


def test_a_deletion_by_transfer_marks_the_relationship_transferred_without_a_behaviour_event(client):
    deliver(client, added("lisi", "wmX"))

    deliver(client, contact_xml("del_external_contact", at=NOW + 60, UserID="lisi", ExternalUserID="wmX",
                                Source="DELETE_BY_TRANSFER"))  # fmt: skip

    assert Relationship.objects.get().status == RelationshipStatus.TRANSFERRED
    assert list(Event.objects.values_list("type", flat=True)) == ["wecom_contact_added"]


def test_a_deletion_of_a_pair_we_never_knew_changes_nothing(client):
    before = snapshot()

    deliver(client, contact_xml("del_follow_user", UserID="ghost", ExternalUserID="wmGHOST"))

    assert snapshot() == before


def test_a_re_add_after_a_deletion_revives_the_relationship(client):
    deliver(client, added("lisi", "wmX", state="first"))
    deliver(client, contact_xml("del_follow_user", at=NOW + 60, UserID="lisi", ExternalUserID="wmX"))

    deliver(client, added("lisi", "wmX", state="second", at=NOW + 120))

    relationship = Relationship.objects.get()
    assert (relationship.status, relationship.state, relationship.added_at) == (
        "active", "second", AT + datetime.timedelta(seconds=120))  # fmt: skip
    assert Event.objects.filter(type="wecom_contact_added").count() == 2


def test_an_old_add_delivered_late_does_not_revive_a_later_deletion(client):
    deliver(client, added("lisi", "wmX"))
    deliver(client, contact_xml("del_follow_user", at=NOW + 60, UserID="lisi", ExternalUserID="wmX"))
    before = snapshot()

    deliver(client, added("lisi", "wmX", at=NOW))

    assert snapshot() == before
    assert Relationship.objects.get().status == RelationshipStatus.DELETED_BY_CUSTOMER


def test_a_failed_transfer_lands_on_the_trail_once(client):
    deliver(client, added("old", "wmX"))
    failed = contact_xml("transfer_fail", UserID="new", ExternalUserID="wmX", FailReason="customer_refused")

    deliver(client, failed)
    deliver(client, failed)

    event = Event.objects.get(type="wecom_transfer_failed")
    assert event.properties == {"staff": "new", "reason": "customer_refused"}
    assert Relationship.objects.get().staff.wecom_userid == "old"


# --------------------------------------------------------------------------------------------- group events


def test_a_new_group_is_created_and_its_details_fetched(client, follow_ups, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, chat_xml("create", ChatId="wrGROUP1"))

    group = CommunityGroup.objects.get()
    assert (group.chat_id, group.name, group.created_at, group.dismissed_at) == ("wrGROUP1", "wrGROUP1", AT, None)
    assert follow_ups == [("sync", "wrGROUP1")]


def test_members_joining_become_memberships_events_and_new_customers(client, follow_ups):
    known = CustomerFactory()
    IdentityFactory(customer=known, kind="wecom", value="wmKNOWN")
    StaffFactory(wecom_userid="rep1")
    join = chat_xml("update", ChatId="wrG", UpdateDetail="add_member", JoinScene=3, MemChangeCnt=3,
                    MemChangeList=["wmKNOWN", "wmNEW", "rep1"])  # fmt: skip

    deliver(client, join)

    new = Identity.objects.get(value="wmNEW").customer
    assert sorted(GroupMembership.objects.values_list("customer_id", "joined_at", "left_at", "join_scene")) == sorted(
        [(known.pk, AT, None, "qr"), (new.pk, AT, None, "qr")]
    )
    assert sorted(Event.objects.values_list("customer_id", "type")) == sorted(
        [(known.pk, "group_join"), (new.pk, "group_join")]
    )
    assert Event.objects.filter(customer=known).get().properties == {"chat_id": "wrG", "scene": "qr"}
    assert ("customer.created", new.pk) in domain_kinds()
    assert ("customer.updated", known.pk) in domain_kinds()
    assert Staff.objects.count() == 1  # the staff member in the list is not a customer
    assert follow_ups == []


def test_a_repeated_join_changes_nothing(client):
    join = chat_xml("update", ChatId="wrG", UpdateDetail="add_member", JoinScene=0, MemChangeList=["wmA"])
    deliver(client, join)
    before = snapshot()

    deliver(client, join)

    assert snapshot() == before


def test_members_leaving_end_their_memberships(client):
    deliver(client, chat_xml("update", ChatId="wrG", UpdateDetail="add_member", JoinScene=1,
                             MemChangeList=["wmA", "wmB"]))  # fmt: skip
    a = Identity.objects.get(value="wmA").customer_id

    deliver(client, chat_xml("update", at=NOW + 30, ChatId="wrG", UpdateDetail="del_member", QuitScene=0,
                             MemChangeList=["wmA"]))  # fmt: skip

    left = AT + datetime.timedelta(seconds=30)
    assert sorted(GroupMembership.objects.values_list("customer__identities__value", "left_at", "join_scene")) == [
        ("wmA", left, "invite_link"), ("wmB", None, "invite_link")]  # fmt: skip
    leave = Event.objects.get(type="group_leave")
    assert (leave.customer_id, leave.properties) == (a, {"chat_id": "wrG", "scene": "left"})


def test_a_member_change_without_member_ids_asks_for_a_sync(client, follow_ups, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, chat_xml("update", ChatId="wrG", UpdateDetail="add_member", MemChangeCnt=2))

    assert GroupMembership.objects.count() == 0
    assert follow_ups == [("sync", "wrG")]


def test_a_dismissed_group_is_marked_and_its_memberships_ended(client):
    group = CommunityGroupFactory(chat_id="wrG", created_at=AT - datetime.timedelta(days=3))
    member = GroupMembershipFactory(group=group, joined_at=AT - datetime.timedelta(days=2))

    deliver(client, chat_xml("dismiss", ChatId="wrG"))

    group.refresh_from_db()
    member.refresh_from_db()
    assert (group.dismissed_at, member.left_at) == (AT, AT)
    assert domain_kinds() == [("customer.updated", member.customer_id)]


# ------------------------------------------------------------------------------- follow-ups from WeCom's API


def profile(external="wmX", **contact):
    return {
        "errcode": 0,
        "errmsg": "ok",
        "external_contact": {"external_userid": external, "name": "李四", "type": 1, "gender": 2,
                             "unionid": "ozynqsulJFCZ2z1aYeS8h-nuasdAAA", **contact},
        "follow_user": [
            {"userid": "lisi", "remark": "李部长", "description": "", "createtime": NOW - 3600, "add_way": 1,
             "state": "s1", "oper_userid": "lisi"},
            {"userid": "wangwu", "remark": "", "createtime": NOW - 60, "add_way": 3, "state": ""},
        ],
    }  # fmt: skip


def test_a_profile_fills_name_gender_unionid_and_every_reps_relationship(client):
    deliver(client, added("lisi", "wmX"))
    customer = Customer.objects.get()

    apply_contact(profile())

    customer.refresh_from_db()
    assert (customer.name, customer.gender) == ("李四", "female")
    assert sorted(customer.identities.values_list("kind", "value")) == [
        ("unionid", "ozynqsulJFCZ2z1aYeS8h-nuasdAAA"), ("wecom", "wmX")]  # fmt: skip
    relationships = Relationship.objects.values_list("staff__wecom_userid", "add_way", "remark", "state", "added_at")
    assert sorted(relationships) == [
        ("lisi", 1, "李部长", "s1", AT - datetime.timedelta(hours=1)),
        ("wangwu", 3, "", "", AT - datetime.timedelta(minutes=1)),
    ]
    assert domain_kinds()[-1] == ("customer.updated", customer.pk)


def test_applying_the_same_profile_twice_changes_nothing():
    apply_contact(profile())
    before = snapshot()

    apply_contact(profile())

    assert snapshot() == before


def test_a_profile_never_overwrites_what_we_know_nor_revives_a_deleted_relationship():
    customer = CustomerFactory(name="王芳", gender="male")
    IdentityFactory(customer=customer, kind="wecom", value="wmX")
    RelationshipFactory(customer=customer, staff=StaffFactory(wecom_userid="lisi"), status="deleted_by_customer")

    apply_contact(profile())

    customer.refresh_from_db()
    assert (customer.name, customer.gender) == ("王芳", "male")
    assert Relationship.objects.get(staff__wecom_userid="lisi").status == "deleted_by_customer"


def test_a_profile_of_an_unknown_contact_creates_the_customer_owned_by_the_first_rep():
    apply_contact(profile("wmNEW"))

    customer = Identity.objects.get(value="wmNEW").customer
    assert customer.owner.wecom_userid == "lisi"
    assert domain_kinds() == [("customer.created", customer.pk)]


def test_a_unionid_already_on_another_customer_is_left_for_a_merge(caplog):
    other = CustomerFactory()
    IdentityFactory(customer=other, kind="unionid", value="ozynqsulJFCZ2z1aYeS8h-nuasdAAA")

    with caplog.at_level(logging.WARNING, logger="messaging.wecom.callback_tasks"):
        customer_id = apply_contact(profile())

    assert Identity.objects.get(kind="unionid").customer_id == other.pk
    assert [(r.message, r.other) for r in caplog.records] == [("wecom.unionid_conflict", other.pk)]
    assert customer_id != other.pk


def group_chat(members, **chat):
    return {
        "errcode": 0,
        "errmsg": "ok",
        "group_chat": {"chat_id": "wrG", "name": "宝妈群", "owner": "lisi", "create_time": NOW - 86400, "notice": "",
                       "member_list": members, "admin_list": [], **chat},
    }  # fmt: skip


def member(userid, kind=2, join_time=NOW - 600, join_scene=3):
    return {"userid": userid, "type": kind, "join_time": join_time, "join_scene": join_scene, "invitor": {}}


def test_a_group_sync_names_the_group_and_reconciles_its_members():
    group = CommunityGroupFactory(chat_id="wrG", name="wrG", created_at=AT)
    gone = GroupMembershipFactory(group=group, joined_at=AT - datetime.timedelta(days=1))

    apply_group_chat(group_chat([member("lisi", kind=1), member("wmA"), member("wmB", join_scene=0)]))

    group.refresh_from_db()
    gone.refresh_from_db()
    assert (group.name, group.owner.wecom_userid) == ("宝妈群", "lisi")
    assert gone.left_at == AT
    current = GroupMembership.objects.filter(left_at__isnull=True)
    joined = AT - datetime.timedelta(minutes=10)
    assert sorted(current.values_list("customer__identities__value", "joined_at", "join_scene")) == [
        ("wmA", joined, "qr"), ("wmB", joined, "invite")]  # fmt: skip
    assert sorted(Event.objects.values_list("type", flat=True)) == ["group_join", "group_join", "group_leave"]


def test_a_group_sync_repeated_changes_nothing():
    apply_group_chat(group_chat([member("wmA")]))
    before = snapshot()

    apply_group_chat(group_chat([member("wmA")]))

    assert snapshot() == before


def test_the_profile_fetch_task_calls_wecom_and_applies_the_answer(settings):
    from messaging.wecom.fake import FakeWeCom

    with FakeWeCom(corp_id=CORP) as fake:
        fake.add_contact("lisi", "wmX", name="李四")
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**settings.MESSAGING_CHANNELS["wecom"], **fake.config()},
        }

        fetch_contact.apply(args=["wmX"])

        assert [call.params["external_userid"] for call in fake.calls_to("externalcontact/get")] == ["wmX"]
    customer = Identity.objects.get(value="wmX").customer
    assert (customer.name, customer.owner.wecom_userid) == ("李四", "lisi")


def test_the_group_sync_task_calls_wecom_and_applies_the_answer(settings):
    from messaging.wecom.fake import FakeWeCom

    with FakeWeCom(corp_id=CORP) as fake:
        fake.add_group("wrG", owner="lisi", name="宝妈群", members=["wmA"])
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**settings.MESSAGING_CHANNELS["wecom"], **fake.config()},
        }

        sync_group_chat.apply(args=["wrG"])

    group = CommunityGroup.objects.get()
    assert (group.name, list(group.memberships.values_list("customer__identities__value", flat=True))) == (
        "宝妈群", ["wmA"])  # fmt: skip


def test_a_contact_wecom_does_not_know_is_logged_and_dropped(settings, caplog):
    from messaging.wecom.fake import FakeWeCom

    with FakeWeCom(corp_id=CORP) as fake:
        settings.MESSAGING_CHANNELS = {
            **settings.MESSAGING_CHANNELS,
            "wecom": {**settings.MESSAGING_CHANNELS["wecom"], **fake.config()},
        }
        with caplog.at_level(logging.WARNING, logger="messaging.wecom.callback_tasks"):
            fetch_contact.apply(args=["wmNOBODY"])

    assert [(r.message, r.code) for r in caplog.records if r.name == "messaging.wecom.callback_tasks"] == [
        ("wecom.fetch_refused", "84061")
    ]
    assert Customer.objects.count() == 0


def test_old_receipts_are_pruned_and_recent_ones_kept():
    WeComCallbackReceipt.objects.create(msg_signature="old", timestamp=NOW - 601)
    WeComCallbackReceipt.objects.create(msg_signature="recent", timestamp=NOW - 300)

    assert callback_tasks.prune_receipts() == 1
    assert list(WeComCallbackReceipt.objects.values_list("msg_signature", flat=True)) == ["recent"]


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_a_new_contact_racing_create_one_customer(monkeypatch):
    """Both deliveries look the contact up before either commits; the creation lock makes the second one find the
    first one's customer instead of making another."""
    from django.db import connections, transaction

    from messaging.wecom import callbacks
    from messaging.wecom.callbacks import handle_event, parse_event

    StaffFactory(wecom_userid="lisi")  # a new staff member's row would serialise the two before the lookup
    both_looked = threading.Barrier(2, timeout=10)
    first_lookup = threading.local()
    lookup = callbacks._known_customers

    def lookup_then_wait(external_ids):
        found = lookup(external_ids)
        if not getattr(first_lookup, "done", False):
            first_lookup.done = True
            both_looked.wait()
        return found

    monkeypatch.setattr(callbacks, "_known_customers", lookup_then_wait)
    monkeypatch.setattr(fetch_contact, "apply_async", lambda *args, **kwargs: None)
    errors = []

    def deliver_in_thread():
        try:
            with transaction.atomic():
                handle_event(parse_event(added("lisi", "wmRACE")))
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver_in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert errors == []
    assert Customer.objects.count() == 1
    assert list(Identity.objects.values_list("value", flat=True)) == ["wmRACE"]
    assert Relationship.objects.count() == 1
    assert list(DomainEvent.objects.filter(kind="customer.created").values_list("customer_id", flat=True)) == [
        Customer.objects.get().pk
    ]
