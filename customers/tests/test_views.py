import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from customers.tests.factories import (
    CommunityGroupFactory,
    CustomerFactory,
    EventFactory,
    GroupMembershipFactory,
    IdentityFactory,
    OrderFactory,
    OrderLineFactory,
    RelationshipFactory,
    StaffFactory,
    UserFactory,
    sales_rep,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(UserFactory(username="op", role=Role.OPERATOR))
    return client


def test_pages_require_login(client):
    for name in ("dashboard", "customers:list", "customers:groups"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))


def test_login_with_the_form_lands_on_the_overview(client):
    UserFactory(username="op", role=Role.OPERATOR)

    response = client.post(reverse("accounts:login"), {"username": "op", "password": "pw"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert 'data-testid="stat-customers"' in response.content.decode()


def test_wrong_password_is_refused(client):
    UserFactory(username="op")
    response = client.post(reverse("accounts:login"), {"username": "op", "password": "nope"})
    assert "Wrong username or password." in response.content.decode()


def test_overview_counts_visible_customers_and_recent_gmv(operator_client):
    customer = CustomerFactory()
    OrderFactory(customer=customer, amount="300.00", refunded_amount="100.00")
    OrderFactory(customer=customer, amount="50.00")

    overview = operator_client.get(reverse("dashboard")).context["overview"]

    assert (overview["customers"], overview["orders"], overview["gmv"]) == (1, 2, 250)
    assert sum(day["orders"] for day in overview["series"]) == 2


def test_customer_list_search_finds_by_name_phone_and_identity(operator_client):
    wang = CustomerFactory(name="王小芳", phone="13800000001")
    IdentityFactory(customer=wang, kind="wecom", value="wmWANG")
    CustomerFactory(name="李雷", phone="13900000002")

    for term in ("小芳", "13800000001", "wmWANG"):
        customers = operator_client.get(reverse("customers:list"), {"q": term}).context["customers"]
        assert [c.pk for c in customers] == [wang.pk], term


def test_customer_list_htmx_request_gets_only_the_table(operator_client):
    CustomerFactory(name="王小芳")

    full = operator_client.get(reverse("customers:list"))
    fragment = operator_client.get(reverse("customers:list"), {"q": "王"}, HTTP_HX_REQUEST="true")

    assert "<html" in full.content.decode()
    assert "<html" not in fragment.content.decode()
    assert "王小芳" in fragment.content.decode()


def test_customer_list_pages_with_a_keyset_cursor(operator_client):
    customers = CustomerFactory.create_batch(55)

    first = operator_client.get(reverse("customers:list"))
    second = operator_client.get(reverse("customers:list"), {"after": first.context["next_after"]})

    assert len(first.context["customers"]) == 50
    assert [c.pk for c in second.context["customers"]] == sorted((c.pk for c in customers[:5]), reverse=True)
    assert second.context["next_after"] is None


def test_customer_list_filters(operator_client):
    owner = StaffFactory()
    mine = CustomerFactory(city="杭州", owner=owner, gender="female")
    CustomerFactory(city="杭州", gender="male")

    customers = operator_client.get(reverse("customers:list"), {"city": "杭州", "gender": "female",
                                                               "owner": owner.pk}).context["customers"]  # fmt: skip

    assert [c.pk for c in customers] == [mine.pk]


def test_customer_list_runs_a_fixed_number_of_queries(operator_client, django_assert_max_num_queries):
    for _ in range(30):
        CustomerFactory(owner=StaffFactory(), source_channel=None)
    operator_client.get(reverse("customers:list"))
    # session, user, owners and channels for the filters, the page, and one query per extension registered by the
    # apps above (customers.extensions): the tags app's filter control, the tag chips of the whole page and the
    # tags of its bulk tag form; the segments app's filter controls (the segments' names; the RFM classes and the
    # stages need none)
    with django_assert_max_num_queries(9):
        operator_client.get(reverse("customers:list"))


def test_customer_detail_shows_the_profile_and_runs_a_fixed_number_of_queries(
    operator_client, django_assert_max_num_queries
):
    customer = CustomerFactory(name="陈静", attributes={"skin_type": "油性"})
    IdentityFactory(customer=customer, kind="unionid", value="oUNION")
    RelationshipFactory(customer=customer, state="store-sh")
    for _ in range(3):
        OrderLineFactory.create_batch(2, order=OrderFactory(customer=customer))
    EventFactory.create_batch(5, customer=customer, type="content_view", properties={"topic": "成分"})
    GroupMembershipFactory(customer=customer)

    # 11, and the panels other apps register (customers.extensions): the tags app's 4, the segments app's 4
    # (the customer's segment episodes, RFM, stages and RFM class changes) and the journeys app's 3 (enrollments,
    # refusals, open tasks)
    with django_assert_max_num_queries(23):
        response = operator_client.get(reverse("customers:detail", args=[customer.pk]))

    body = response.content.decode()
    for text in ("陈静", "oUNION", "state=store-sh", "skin_type", "content_view", "成分", "宝妈群"):
        assert text in body


def test_behaviour_trail_loads_more(operator_client):
    customer = CustomerFactory()
    EventFactory.create_batch(35, customer=customer)

    detail = operator_client.get(reverse("customers:detail", args=[customer.pk]))
    more = operator_client.get(
        reverse("customers:events", args=[customer.pk]), {"before": detail.context["more_events_before"]}
    )

    assert len(detail.context["events"]) == 30
    assert len(more.context["events"]) == 5
    assert more.context["more_events_before"] is None


def test_rep_sees_only_their_own_customers():
    from django.test import Client

    rep = sales_rep("rep1")
    mine = CustomerFactory(owner=rep.staff, name="我的客户")
    theirs = CustomerFactory(owner=StaffFactory(), name="别人的客户")
    client = Client()
    client.force_login(rep)

    listed = client.get(reverse("customers:list")).context["customers"]

    assert [c.pk for c in listed] == [mine.pk]
    assert client.get(reverse("customers:detail", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("dashboard")).context["overview"]["customers"] == 1


def test_groups_list_and_members(operator_client):
    group = CommunityGroupFactory(name="宝妈交流群")
    GroupMembershipFactory.create_batch(3, group=group)
    GroupMembershipFactory(group=group, left_at=timezone.now())  # left: not a member any more
    CommunityGroupFactory(name="新群")

    listed = operator_client.get(reverse("customers:groups"))
    detail = operator_client.get(reverse("customers:group_detail", args=[group.pk]))

    assert {g.name: g.member_count for g in listed.context["groups"]} == {"宝妈交流群": 3, "新群": 0}
    assert len(detail.context["members"]) == 4  # with the one who left, and when
