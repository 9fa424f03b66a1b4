"""Aggregates for the overview page, over what the user may see. Cached briefly per visibility scope."""

from datetime import timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from customers import selectors
from customers.visibility import sees_all_customers

CACHE_SECONDS = 60


def overview(user, *, days: int = 30) -> dict:
    """Customers, new customers, orders and net GMV in the last `days`, and the daily series."""
    scope = "all" if sees_all_customers(user) else f"rep:{user.pk}"
    key = f"dashboard:overview:{scope}:{days}:{timezone.localdate()}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    since = timezone.now() - timedelta(days=days)
    customers = selectors.customer_list(user).order_by()
    orders = selectors.order_list(user).order_by().filter(ordered_at__gte=since).exclude(status="cancelled")
    totals = orders.aggregate(count=Count("pk"), gmv=Sum(F("amount") - F("refunded_amount")))
    daily = (
        orders.annotate(day=TruncDate("ordered_at"))
        .values("day")
        .annotate(count=Count("pk"), gmv=Sum(F("amount") - F("refunded_amount")))
        .order_by("day")
    )
    by_day = {row["day"]: row for row in daily}
    first_day = timezone.localdate() - timedelta(days=days - 1)
    series = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        row = by_day.get(day, {"count": 0, "gmv": Decimal(0)})
        series.append({"day": day.isoformat(), "orders": row["count"], "gmv": float(row["gmv"] or 0)})
    result = {
        "customers": customers.count(),
        "new_customers": customers.filter(first_seen_at__gte=since).count(),
        "orders": totals["count"],
        "gmv": totals["gmv"] or Decimal(0),
        "series": series,
        "days": days,
    }
    cache.set(key, result, CACHE_SECONDS)
    return result
