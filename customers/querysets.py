from django.db import models
from django.db.models import Exists, OuterRef, Q

from customers.visibility import customer_visibility_q


def search_q(term: str) -> Q:
    """Name, phone, email, or any identity value (external_userid, unionid, shop id) exactly."""
    from customers.models import Identity

    term = term.strip()
    if not term:
        return Q()
    by_identity = Exists(Identity.objects.filter(customer=OuterRef("pk"), value=term))
    return (
        Q(name__icontains=term)
        | Q(phone=term)
        | Q(email__iexact=term)
        | Q(by_identity)
        | (Q(pk=int(term)) if term.isdigit() and len(term) < 18 else Q(pk__in=[]))
    )


class CustomerQuerySet(models.QuerySet):
    def current(self) -> "CustomerQuerySet":
        """Customers not merged into another."""
        return self.filter(merged_into__isnull=True)

    def visible_to(self, user) -> "CustomerQuerySet":
        return self.current().filter(customer_visibility_q(user))

    def search(self, term: str) -> "CustomerQuerySet":
        return self.filter(search_q(term))


class CustomerOwnedQuerySet(models.QuerySet):
    """For rows that belong to a customer (orders, events, memberships…)."""

    customer_path = "customer__"

    def visible_to(self, user) -> "CustomerOwnedQuerySet":
        path = self.customer_path
        return self.filter(**{f"{path}merged_into__isnull": True}).filter(customer_visibility_q(user, path=path))


class OrderLineQuerySet(CustomerOwnedQuerySet):
    customer_path = "order__customer__"
