"""Dashboard pages. Reads go through selectors (visibility); an HTMX request gets only the fragment it asked for."""

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef
from django.http import Http404
from django.shortcuts import render
from django.utils.dateparse import parse_datetime

from customers import extensions, selectors
from customers.models import CommunityGroup, GroupMembership
from customers.querysets import correlated_count
from customers.selectors_dashboard import overview
from customers.visibility import sees_all_customers

PAGE_SIZE = 50
TRAIL_PAGE = 30


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


@login_required
def dashboard(request):
    return render(request, "dashboard.html", {"overview": overview(request.user)})


@login_required
def customer_list(request):
    customers, form = selectors.customers_for_list_query(request.user, request.GET)
    after = request.GET.get("after", "")
    if after.isdigit():
        customers = customers.filter(pk__lt=int(after))
    page = list(customers[: PAGE_SIZE + 1])
    has_next = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    query = request.GET.copy()
    query.pop("after", None)
    decorations = extensions.row_decorations()
    context = {
        "form": form,
        "customers": page,
        "rows": extensions.decorate_rows(page, request.user),
        "decorations": decorations,
        "columns": 6 + len(decorations),
        "next_after": page[-1].pk if has_next else None,
        "query": query.urlencode(),
        "is_first_page": not after,
    }
    if _is_htmx(request):
        return render(request, "customers/_table.html", context)
    context["filter_controls"] = extensions.filter_controls(request.GET, request.user)
    context["list_actions"] = extensions.list_actions(request.user, context["query"])
    return render(request, "customers/list.html", context)


@login_required
def customer_detail(request, pk: int):
    customer = selectors.get_customer(request.user, pk)
    events = list(selectors.customer_events(customer, limit=TRAIL_PAGE + 1))
    context = {
        "customer": customer,
        "identities": selectors.customer_identities(customer),
        "relationships": selectors.customer_relationships(customer),
        "orders": selectors.customer_orders(customer),
        "events": events[:TRAIL_PAGE],
        "more_events_before": events[TRAIL_PAGE - 1].occurred_at.isoformat() if len(events) > TRAIL_PAGE else None,
        "memberships": selectors.customer_groups(customer),
        "transfers": selectors.customer_transfers(customer),
        "consents": customer.consents.all(),
        "attributes": sorted(customer.attributes.items()),
        "panels": extensions.detail_panels(request, customer),
    }
    return render(request, "customers/detail.html", context)


@login_required
def customer_events(request, pk: int):
    """The next page of the behaviour trail (HTMX "load more")."""
    customer = selectors.get_customer(request.user, pk)
    before: datetime | None = parse_datetime(request.GET.get("before", ""))
    events = list(selectors.customer_events(customer, limit=TRAIL_PAGE + 1, before=before))
    context = {
        "customer": customer,
        "events": events[:TRAIL_PAGE],
        "more_events_before": events[TRAIL_PAGE - 1].occurred_at.isoformat() if len(events) > TRAIL_PAGE else None,
    }
    return render(request, "customers/_events.html", context)


@login_required
def group_list(request):
    groups = selectors.group_list(request.user).filter(dismissed_at__isnull=True)
    sees_all = sees_all_customers(request.user)
    if sees_all:  # a rep sees no member counts: they would count other reps' customers
        # Counted for the groups shown only, each from its own members, rather than grouping every membership.
        current = GroupMembership.objects.filter(group=OuterRef("pk"), left_at__isnull=True)
        groups = groups.annotate(member_count=correlated_count(current, by="group"))
    context = {"groups": groups[:500], "sees_all": sees_all}
    return render(request, "customers/groups.html", context)


@login_required
def group_detail(request, pk: int):
    try:
        group = selectors.group_list(request.user).get(pk=pk)
    except CommunityGroup.DoesNotExist:
        raise Http404("Group not found") from None
    members = selectors.group_members(request.user, group)[:500]
    return render(request, "customers/group_detail.html", {"group": group, "members": members})
