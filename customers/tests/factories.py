from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.models import Role, User
from accounts.tests.factories import UserFactory
from customers.models import (
    Channel,
    CommunityGroup,
    Customer,
    Event,
    GroupMembership,
    Identity,
    IdentityKind,
    Order,
    OrderLine,
    Product,
    Relationship,
    Staff,
)


class StaffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Staff

    name = factory.Sequence(lambda n: f"导购{n}")
    wecom_userid = factory.Sequence(lambda n: f"staff{n}")


def sales_rep(username: str = "rep") -> User:
    """A sales rep login with its Staff record."""
    user = UserFactory(username=username, role=Role.SALES)
    StaffFactory(user=user, name=username)
    return user


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"ch{n}")
    name = factory.Sequence(lambda n: f"渠道{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU{n:04d}")
    name = factory.Sequence(lambda n: f"面膜{n}")
    category = "护肤"
    price = Decimal("99.00")
    consumption_cycle_days = 30


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"客户{n}")
    city = "上海"


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    customer = factory.SubFactory(CustomerFactory)
    kind = IdentityKind.UNIONID
    value = factory.Sequence(lambda n: f"union{n}")


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    source = "youzan"
    external_id = factory.Sequence(lambda n: f"O{n}")
    customer = factory.SubFactory(CustomerFactory)
    ordered_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    amount = Decimal("199.00")


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    sku = "SKU"
    name = "面膜"
    quantity = 1
    unit_price = Decimal("199.00")
    amount = Decimal("199.00")


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    customer = factory.SubFactory(CustomerFactory)
    type = "content_view"
    occurred_at = factory.LazyFunction(timezone.now)
    dedupe_key = factory.Sequence(lambda n: f"test-event-{n}")


class RelationshipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Relationship

    staff = factory.SubFactory(StaffFactory)
    customer = factory.SubFactory(CustomerFactory)


class CommunityGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CommunityGroup

    chat_id = factory.Sequence(lambda n: f"wr{n}")
    name = factory.Sequence(lambda n: f"宝妈群{n}")
    created_at = factory.LazyFunction(timezone.now)


class GroupMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GroupMembership

    group = factory.SubFactory(CommunityGroupFactory)
    customer = factory.SubFactory(CustomerFactory)
    joined_at = factory.LazyFunction(timezone.now)
