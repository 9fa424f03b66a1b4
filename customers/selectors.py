"""Reads for callers: every function takes the acting user and returns only what that user may see."""

from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404

from customers import extensions
from customers.forms import CustomerFilterForm
from customers.models import (
    CommunityGroup,
    Customer,
    Event,
    GroupMembership,
    Identity,
    Order,
    OrderLine,
    Relationship,
    Transfer,
)
from customers.visibility import sees_all_customers


def customer_list(user, *, search: str = "", filters: dict | None = None) -> QuerySet[Customer]:
    """Customers visible to `user`, newest first, with owner and channel joined (no N+1 on list pages)."""
    qs = Customer.objects.visible_to(user).select_related("owner", "source_channel")
    if search:
        qs = qs.search(search)
    for field, value in (filters or {}).items():
        if value not in (None, ""):
            qs = qs.filter(**{field: value})
    return qs.order_by("-id")


def customers_for_list_query(user, query) -> tuple[QuerySet[Customer], CustomerFilterForm]:
    """Every customer the customer list's filters (search, fields, the apps' filters in `query`) select for
    `user`: the list pages through it, bulk actions apply to all of it. Returns the bound filter form too."""
    form = CustomerFilterForm(query or None, user=user)
    filters = form.filters() if form.is_valid() else {}
    customers = customer_list(user, search=form.search_term(), filters=filters)
    return extensions.filter_customers(customers, query, user), form


def get_customer(user, customer_id: int) -> Customer:
    """One visible customer or Http404 (never "forbidden": another rep's customer simply does not exist)."""
    try:
        return Customer.objects.visible_to(user).select_related("owner", "source_channel").get(pk=customer_id)
    except (Customer.DoesNotExist, ValueError, TypeError):
        raise Http404("Customer not found") from None


def customer_identities(customer: Customer) -> QuerySet[Identity]:
    return customer.identities.order_by("kind", "namespace", "value")


def customer_relationships(customer: Customer) -> QuerySet[Relationship]:
    return customer.relationships.select_related("staff").order_by("-added_at")


def customer_orders(customer: Customer, *, limit: int = 50) -> QuerySet[Order]:
    lines = Prefetch("lines", queryset=OrderLine.objects.select_related("product").order_by("pk"))
    return customer.orders.select_related("channel", "staff").prefetch_related(lines).order_by("-ordered_at")[:limit]


def customer_events(customer: Customer, *, limit: int = 100, before=None) -> QuerySet[Event]:
    """The behaviour trail, newest first."""
    qs = customer.events.select_related("channel").order_by("-occurred_at", "-id")
    if before is not None:
        qs = qs.filter(occurred_at__lt=before)
    return qs[:limit]


def customer_groups(customer: Customer) -> QuerySet[GroupMembership]:
    return customer.group_memberships.select_related("group", "group__owner").order_by("-joined_at")


def customer_transfers(customer: Customer) -> QuerySet[Transfer]:
    return customer.transfers.select_related("from_staff", "to_staff").order_by("-transferred_at")


def order_list(user) -> QuerySet[Order]:
    return Order.objects.visible_to(user).select_related("customer", "channel", "staff").order_by("-id")


def event_list(user) -> QuerySet[Event]:
    return Event.objects.visible_to(user).select_related("customer", "channel").order_by("-id")


def group_list(user) -> QuerySet[CommunityGroup]:
    """All groups for managers; a rep sees the groups they own or that hold one of their customers."""
    qs = CommunityGroup.objects.select_related("owner").order_by("name")
    if sees_all_customers(user):
        return qs
    mine = GroupMembership.objects.visible_to(user).values("group_id")
    return qs.filter(Q(owner__user_id=user.pk) | Q(pk__in=mine))


def group_members(user, group: CommunityGroup) -> QuerySet[GroupMembership]:
    return (
        GroupMembership.objects.visible_to(user).filter(group=group).select_related("customer").order_by("-joined_at")
    )
