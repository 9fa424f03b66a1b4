"""The one rule for who sees which customers. Every page, endpoint, export and search goes through it."""

from django.db.models import Q

from accounts.models import Role


class _Workspace:
    """The workspace acting on its own (a journey recording a customer's event, demo data): sees every customer.
    Only code passes it, after checking whoever asked may act on what it touches."""

    pk = None
    is_authenticated = True
    is_superuser = True
    is_sales_rep = False
    role = Role.ADMIN


WORKSPACE = _Workspace()


def sees_all_customers(user) -> bool:
    return bool(user and user.is_authenticated) and (user.is_superuser or user.role != Role.SALES)


def customer_visibility_q(user, *, path: str = "") -> Q:
    """Rows visible to `user`; `path` leads from the queried model to its customer (e.g. "customer__").

    Admins, operators and analysts see every customer; a sales rep sees only the customers they own.
    """
    if not (user and user.is_authenticated):
        return Q(pk__in=[])
    if sees_all_customers(user):
        return Q()
    return Q(**{f"{path}owner__user_id": user.pk})
