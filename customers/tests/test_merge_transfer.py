import pytest

from customers.exceptions import CustomerError
from customers.models import Customer, Relationship, Transfer
from customers.services.merge import merge_customers, undo_merge
from customers.services.transfer import transfer_customers
from customers.tests.factories import (
    CommunityGroupFactory,
    CustomerFactory,
    EventFactory,
    GroupMembershipFactory,
    IdentityFactory,
    OrderFactory,
    RelationshipFactory,
    StaffFactory,
)

pytestmark = pytest.mark.django_db


def snapshot(customer: Customer) -> dict:
    return {
        "orders": set(customer.orders.values_list("pk", flat=True)),
        "events": set(customer.events.values_list("pk", flat=True)),
        "identities": set(customer.identities.values_list("pk", flat=True)),
        "relationships": set(customer.relationships.values_list("pk", flat=True)),
        "groups": set(customer.group_memberships.values_list("pk", flat=True)),
    }


@pytest.fixture
def pair():
    staff = StaffFactory()
    group = CommunityGroupFactory()
    survivor = CustomerFactory(name="王芳", phone="", city="", attributes={"skin": "油性"})
    merged = CustomerFactory(name="王芳(手机)", phone="13800000000", city="杭州", attributes={"kids": 1, "skin": "干"})
    for customer in (survivor, merged):
        IdentityFactory(customer=customer)
        OrderFactory(customer=customer)
        EventFactory(customer=customer)
        RelationshipFactory(customer=customer, staff=staff)  # both are friends of the same rep
        GroupMembershipFactory(customer=customer, group=group)
    RelationshipFactory(customer=merged)  # and one pair only the merged record has
    return survivor, merged


def test_merge_moves_everything_and_fills_blanks(pair):
    survivor, merged = pair
    before = {k: snapshot(survivor)[k] | snapshot(merged)[k] for k in snapshot(survivor)}

    merge_customers(survivor, merged)

    survivor.refresh_from_db()
    merged.refresh_from_db()
    after = snapshot(survivor)
    assert after["orders"] == before["orders"]
    assert after["events"] == before["events"]
    assert after["identities"] == before["identities"]
    # The clashing pair (same rep) and group membership stay on the merged record: nothing deleted.
    assert len(after["relationships"]) == 2
    assert len(snapshot(merged)["relationships"]) == 1
    assert len(after["groups"]) == 1
    assert (survivor.name, survivor.phone, survivor.city) == ("王芳", "13800000000", "杭州")
    assert survivor.attributes == {"skin": "油性", "kids": 1}
    assert merged.merged_into == survivor
    assert not Customer.objects.current().filter(pk=merged.pk).exists()


def test_undo_restores_both_customers_exactly(pair):
    survivor, merged = pair
    before_survivor, before_merged = snapshot(survivor), snapshot(merged)

    undo_merge(merge_customers(survivor, merged))

    survivor.refresh_from_db()
    merged.refresh_from_db()
    assert snapshot(survivor) == before_survivor
    assert snapshot(merged) == before_merged
    assert (survivor.phone, survivor.city, survivor.attributes) == ("", "", {"skin": "油性"})
    assert merged.merged_into is None


def test_undo_twice_and_self_merge_are_refused(pair):
    survivor, merged = pair
    merge = merge_customers(survivor, merged)
    undo_merge(merge)

    with pytest.raises(CustomerError, match="already undone"):
        undo_merge(merge)
    with pytest.raises(CustomerError, match="itself"):
        merge_customers(survivor, survivor)


def test_transfer_moves_ownership_and_keeps_history():
    old, new = StaffFactory(), StaffFactory()
    customers = [CustomerFactory(owner=old) for _ in range(3)]
    for customer in customers:
        RelationshipFactory(customer=customer, staff=old)
        OrderFactory(customer=customer)
    already = CustomerFactory(owner=new)

    changed = transfer_customers([c.pk for c in [*customers, already]], to_staff=new, kind="departed", reason="离职")

    assert changed == 3
    assert set(Customer.objects.filter(owner=new).values_list("pk", flat=True)) == {c.pk for c in [*customers, already]}
    assert list(Transfer.objects.values_list("from_staff", "to_staff", "kind").distinct()) == [
        (old.pk, new.pk, "departed")
    ]
    statuses = dict(Relationship.objects.filter(customer=customers[0]).values_list("staff", "status"))
    assert statuses == {old.pk: "transferred", new.pk: "active"}
    assert customers[0].orders.count() == 1
    # Running it again changes nothing.
    assert transfer_customers([c.pk for c in customers], to_staff=new) == 0
    assert Transfer.objects.count() == 3
