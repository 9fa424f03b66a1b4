"""Orders changed or deleted in the admin bypass the bulk upsert: they still write their domain events."""

import pytest
from django.contrib.admin.sites import site

from accounts.tests.factories import UserFactory
from customers.admin import OrderAdmin
from customers.models import DomainEvent, Order
from customers.tests.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db


def order_events() -> list[tuple]:
    rows = DomainEvent.objects.filter(kind="order.updated").order_by("id")
    return [(e.customer_id, e.payload) for e in rows]


def test_moving_an_order_to_another_customer_and_deleting_it_in_the_admin_write_order_events(rf):
    request = rf.post("/")
    request.user = UserFactory(username="root", role="admin", is_staff=True, is_superuser=True)
    model_admin = OrderAdmin(Order, site)
    order = OrderFactory()
    first, second = order.customer_id, CustomerFactory().pk
    form = model_admin.get_form(request, order)(instance=order)

    order.customer_id = second
    model_admin.save_model(request, order, form, change=True)
    assert order_events() == sorted([(first, {"order_id": order.pk}), (second, {"order_id": order.pk})])

    model_admin.delete_queryset(request, Order.objects.filter(pk=order.pk))
    assert order_events()[-1] == (second, {"order_id": order.pk, "deleted": True})
    assert not Order.objects.filter(pk=order.pk).exists()
