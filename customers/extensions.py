"""Extension points of the customer pages, so apps above `customers` add to them without `customers` importing
them: filters of the customer list, extra columns of its rows, and panels of the customer's page.

Apps register in `AppConfig.ready()`; the registries check the shape at once, so a mistake fails at start-up:

    register_list_filter(ListFilter(param="tag", template="tags/_list_filter.html",
                                    apply=filter_by_tags, control_context=tag_filter_choices))
    register_row_decoration(RowDecoration(key="tags", heading=_("Tags"), template="tags/_row_chips.html",
                                          fetch=chips_by_customer))
    register_detail_panel(DetailPanel(key="tags", template="tags/_customer_panel.html", context=tags_panel))

Every callback runs once per page, never once per row: a decoration fetches the whole page's values together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict
from django.utils.functional import Promise

if TYPE_CHECKING:
    from customers.models import Customer

# GET parameters the customer list itself reads; a filter may not take them over.
RESERVED_PARAMS = frozenset({"q", "city", "gender", "owner", "channel", "after"})
Column = Literal["side", "main"]


@dataclass(frozen=True)
class ListFilter:
    """Narrows the customer list by the GET parameter `param`: `apply(queryset, values, user)` gets all of its
    non-empty values (and is called only when there is one); `template` renders the control inside the list's
    filter form from `control_context(user, values)`, given to it as `control`. Its `<input data-list-filter>`
    elements refresh the list when they change (selects always do)."""

    param: str
    template: str
    apply: Callable[[QuerySet, list[str], Any], QuerySet]
    control_context: Callable[[Any, list[str]], Mapping[str, Any]]


@dataclass(frozen=True)
class RowDecoration:
    """An extra column of the customer list: `fetch(customer_ids, user)` returns the value of every customer of
    the page in one query (a customer missing from the mapping gets None); `template` renders one cell from
    `value` (and `customer`)."""

    key: str
    heading: str | Promise
    template: str
    fetch: Callable[[list[int], Any], Mapping[int, Any]]


@dataclass(frozen=True)
class DetailPanel:
    """A card on the customer's page: `template` renders `context(request, customer)`, given to it as `panel`."""

    key: str
    template: str
    context: Callable[[HttpRequest, Customer], Mapping[str, Any]]
    column: Column = "side"


@dataclass(frozen=True)
class ListAction:
    """An action on every customer the list's current filters select (not just the page), shown above the
    table: `template` renders `context(user, query)` (the query string without paging), given as `action`."""

    key: str
    template: str
    context: Callable[[Any, str], Mapping[str, Any]]


@dataclass(frozen=True)
class FilterControl:
    template: str
    context: Mapping[str, Any]


@dataclass(frozen=True)
class Cell:
    template: str
    value: Any


@dataclass(frozen=True)
class Row:
    customer: Customer
    cells: list[Cell]


@dataclass(frozen=True)
class Panel:
    key: str
    template: str
    context: Mapping[str, Any]
    column: Column


_list_filters: dict[str, ListFilter] = {}
_row_decorations: dict[str, RowDecoration] = {}
_detail_panels: dict[str, DetailPanel] = {}
_list_actions: dict[str, ListAction] = {}


def _check(name: str, value: str, template: str, callbacks: Sequence[object]) -> None:
    if not value or not value.replace("_", "").isalnum():
        raise ValueError(f"{name} {value!r} must be a snake_case name")
    if not template.endswith(".html"):
        raise ValueError(f"{name} {value!r}: template {template!r} is not an .html template")
    if not all(callable(callback) for callback in callbacks):
        raise ValueError(f"{name} {value!r}: its callbacks must be callable")


def _add(registry: dict[str, Any], key: str, extension: Any) -> None:
    if key in registry and registry[key] != extension:
        raise ValueError(f"{key!r} is already registered by {registry[key]!r}")
    registry[key] = extension


def register_list_filter(extension: ListFilter) -> ListFilter:
    _check("list filter", extension.param, extension.template, [extension.apply, extension.control_context])
    if extension.param in RESERVED_PARAMS:
        raise ValueError(f"list filter {extension.param!r}: the customer list already reads that parameter")
    _add(_list_filters, extension.param, extension)
    return extension


def register_row_decoration(extension: RowDecoration) -> RowDecoration:
    _check("row decoration", extension.key, extension.template, [extension.fetch])
    _add(_row_decorations, extension.key, extension)
    return extension


def register_detail_panel(extension: DetailPanel) -> DetailPanel:
    _check("detail panel", extension.key, extension.template, [extension.context])
    if extension.column not in ("side", "main"):
        raise ValueError(f"detail panel {extension.key!r}: column is 'side' or 'main'")
    _add(_detail_panels, extension.key, extension)
    return extension


def register_list_action(extension: ListAction) -> ListAction:
    _check("list action", extension.key, extension.template, [extension.context])
    _add(_list_actions, extension.key, extension)
    return extension


# ------------------------------------------------------------------------------------- used by customers.views


def _values(query: QueryDict, param: str) -> list[str]:
    return [value for value in query.getlist(param) if value.strip()]


def filter_customers(queryset: QuerySet, query: QueryDict, user: Any) -> QuerySet:
    """The list narrowed by every registered filter that has a value in `query`."""
    for extension in _list_filters.values():
        if values := _values(query, extension.param):
            queryset = extension.apply(queryset, values, user)
    return queryset


def filter_controls(query: QueryDict, user: Any) -> list[FilterControl]:
    return [
        FilterControl(extension.template, extension.control_context(user, _values(query, extension.param)))
        for extension in _list_filters.values()
    ]


def row_decorations() -> list[RowDecoration]:
    return list(_row_decorations.values())


def decorate_rows(customers: Sequence[Customer], user: Any) -> list[Row]:
    """The page's rows with one cell per decoration; each decoration fetches its values once for the page."""
    ids = [customer.pk for customer in customers]
    fetched = [(extension, extension.fetch(ids, user) if ids else {}) for extension in _row_decorations.values()]
    return [
        Row(customer, [Cell(extension.template, values.get(customer.pk)) for extension, values in fetched])
        for customer in customers
    ]


def detail_panels(request: HttpRequest, customer: Customer) -> list[Panel]:
    return [
        Panel(extension.key, extension.template, extension.context(request, customer), extension.column)
        for extension in _detail_panels.values()
    ]


def list_actions(user: Any, query: str) -> list[FilterControl]:
    return [FilterControl(extension.template, extension.context(user, query)) for extension in _list_actions.values()]
