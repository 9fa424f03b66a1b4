"""Rendering for dispatch: `render_batch` renders hundreds of messages with a fixed number of queries (one per
kind of data the batch's templates use) from compiled templates cached per (template id, updated_at)."""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Value
from django.db.models.functions import Coalesce, NullIf
from django.template import Context
from django.template.base import VariableDoesNotExist
from django.utils import timezone, translation
from django.utils.html import format_html, linebreaks
from django.utils.translation import gettext as _

from customers.models import Customer, Event, Gender, MessageChannel, Order, OrderStatus, Staff
from customers.models.events import EVENT_TYPE_LABELS
from messaging.models import MessageTemplate, TemplateFormat
from messaging.templating.sandbox import (
    CARD_FIELDS,
    REQUIRED_CARD_FIELDS,
    CompiledPart,
    MessageSource,
    MissingVariable,
    RenderError,
    compile_part,
    is_empty,
    source_issues,
    source_parts,
)
from tags.models import CustomerTag

# ------------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderItem:
    """One message to render: from `template`, or with no template from `content` ({"text", "subject", "card",
    "defaults", "format", "language"}). `context` is the touchpoint's ({"order_id", "event_id", "coupon_code",
    "link"}); `channel` (the touchpoint's) overrides the template's for the format rules and the email HTML part."""

    template: MessageTemplate | None
    content: Mapping[str, Any] = field(default_factory=dict)
    customer: Customer | None = None
    staff: Staff | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    channel: str = ""


@dataclass(frozen=True)
class _Bundle:
    source: MessageSource
    parts: dict[str, CompiledPart]
    roots: frozenset[str]


_BUNDLES: dict[tuple[Any, ...], _Bundle | RenderError] = {}
_MAX_BUNDLES = 1024


def _bundle(item: RenderItem) -> _Bundle | RenderError:
    """The item's compiled message, cached per (template id, updated_at, channel) for saved templates and per
    source for messages without one."""
    template = item.template
    key: tuple[Any, ...] | None = None
    if template is not None and template.pk:
        key = (template.pk, template.updated_at, item.channel)
    elif template is None:  # a campaign's one-off message is the same source for every recipient: compile once
        key = ("content", orjson.dumps(item.content or {}, option=orjson.OPT_SORT_KEYS), item.channel)
    if key is not None and (cached := _BUNDLES.get(key)) is not None:
        return cached
    if template is not None:
        source = MessageSource.of_template(template, item.channel)
    else:
        source = MessageSource.of_content(item.content or {}, item.channel)
    issues = source_issues(source)
    if template is None and not source.body.strip() and not source.card:
        issues.append(("body", _("The message is empty.")))
    bundle: _Bundle | RenderError
    if issues:
        bundle = RenderError(" ".join(message for _field, message in issues), code="invalid_template")
    else:
        compiled = {name: compile_part(text) for name, text in source_parts(source)}
        parts = {name: part for name, part in compiled.items() if isinstance(part, CompiledPart)}  # all, once valid
        bundle = _Bundle(source, parts, frozenset().union(*(part.roots for part in parts.values())))
    if key is not None:
        if len(_BUNDLES) >= _MAX_BUNDLES:
            _BUNDLES.clear()  # templates change rarely: a full cache is old versions
        _BUNDLES[key] = bundle
    return bundle


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Batch:
    """Everything a batch's templates read besides the items themselves: one query per kind, only the kinds some
    template uses, whatever the batch size."""

    def __init__(self, items: Sequence[RenderItem], bundles: Sequence[_Bundle | RenderError]) -> None:
        live = [item for item, bundle in zip(items, bundles, strict=True) if isinstance(bundle, _Bundle)]
        roots = frozenset().union(*(bundle.roots for bundle in bundles if isinstance(bundle, _Bundle)))
        customers = [item.customer for item in live if item.customer is not None]
        self.tags: dict[int, tuple[str, ...]] = {}
        if "tags" in roots and customers:
            names = defaultdict(list)
            rows = CustomerTag.objects.filter(customer_id__in={customer.pk for customer in customers})
            for customer_id, name in (
                rows.values_list("customer_id", "tag__name").distinct().order_by("customer_id", "tag__name")
            ):
                names[customer_id].append(name)
            self.tags = {customer_id: tuple(tag_names) for customer_id, tag_names in names.items()}
        self.owners: dict[int, str] = {}
        if roots & {"owner", "staff"}:
            missing = set()
            for customer in customers:
                if customer.owner_id and Customer.owner.is_cached(customer):
                    self.owners[customer.owner_id] = customer.owner.name
                elif customer.owner_id:
                    missing.add(customer.owner_id)
            if missing:
                self.owners |= dict(Staff.objects.filter(pk__in=missing).values_list("pk", "name"))
        self.orders: dict[int, dict[str, Any]] = {}
        order_ids = {_as_int(item.context.get("order_id")) for item in live if item.context} - {None}
        if "order" in roots and order_ids:
            product = Coalesce(NullIf("lines__name", Value("")), "lines__product__name")
            rows = (
                Order.objects.filter(pk__in=order_ids)
                .values("pk", "customer_id", "external_id", "amount", "currency", "status", "ordered_at")
                .annotate(products=ArrayAgg(product, order_by="lines__id"))
            )
            self.orders = {row["pk"]: row for row in rows}
        self.events: dict[int, dict[str, Any]] = {}
        event_ids = {_as_int(item.context.get("event_id")) for item in live if item.context} - {None}
        if "event" in roots and event_ids:
            rows = Event.objects.filter(pk__in=event_ids).values(
                "pk", "customer_id", "type", "occurred_at", "properties", "content_ref"
            )
            self.events = {row["pk"]: row for row in rows}


def _mask_phone(phone: str) -> str:
    """A phone number with its middle hidden (138****5678): messages never need the whole number."""
    if len(phone) <= 4:
        return phone
    keep = min(3, (len(phone) - 4) // 2)
    return phone[:keep] + "*" * (len(phone) - keep - 4) + phone[-4:]


def _with_default(data: Mapping[str, Any], path: Sequence[str], value: Any) -> Mapping[str, Any]:
    """`data` with `value` at `path` if what is there is missing or empty; copies what it changes, never the
    caller's dicts (a customer's attributes, a batch's shared rows)."""
    current = data.get(path[0])
    if len(path) == 1:
        return {**data, path[0]: value} if is_empty(current) else data
    if current is not None and not isinstance(current, Mapping):
        return data
    updated = _with_default(current or {}, path[1:], value)
    return data if updated is current else {**data, path[0]: updated}


def _context_data(item: RenderItem, bundle: _Bundle, batch: _Batch) -> Mapping[str, Any]:
    """The variables of one message, as plain data. Call it with the template's language active."""
    roots, customer, context = bundle.roots, item.customer, item.context or {}
    data: dict[str, Any] = {}
    if customer is not None:
        data["customer"] = {
            "name": customer.name,
            "gender": "" if customer.gender == Gender.UNKNOWN else customer.gender,
            "city": customer.city,
            "birthday": customer.birthday,
            "phone": _mask_phone(customer.phone),
            "email": customer.email,
            "attributes": customer.attributes or {},
        }
        data["tags"] = batch.tags.get(customer.pk, ())
    owner_name = batch.owners.get(customer.owner_id, "") if customer is not None and customer.owner_id else ""
    if owner_name:
        data["owner"] = {"name": owner_name}
    if sender_name := (item.staff.name if item.staff is not None else owner_name):
        data["staff"] = {"name": sender_name}
    order = batch.orders.get(_as_int(context.get("order_id"))) if "order" in roots else None
    if order is not None and (customer is None or order["customer_id"] == customer.pk):
        data["order"] = {
            "number": order["external_id"],
            "amount": order["amount"],
            "currency": order["currency"],
            "status": str(OrderStatus(order["status"]).label),
            "ordered_at": order["ordered_at"],
            "products": tuple(name for name in order["products"] if name),
        }
    event = batch.events.get(_as_int(context.get("event_id"))) if "event" in roots else None
    if event is not None and (customer is None or event["customer_id"] == customer.pk):
        data["event"] = {
            "type": event["type"],
            "label": str(EVENT_TYPE_LABELS.get(event["type"], event["type"])),
            "occurred_at": event["occurred_at"],
            "content": event["content_ref"],
            "properties": event["properties"] or {},
        }
    for name in ("coupon_code", "link", "product_name", "journey"):
        if isinstance(context.get(name), str | int):
            data[name] = context[name]
    result: Mapping[str, Any] = data
    for path, value in bundle.source.defaults.items():
        result = _with_default(result, path.split("."), value)
    return result


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    """The customer's time zone for dates in the message, or the workspace's."""
    try:
        return zoneinfo.ZoneInfo(name) if name else timezone.get_default_timezone()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return timezone.get_default_timezone()


def _plain(text: Any) -> str:
    return str.__str__(text)  # rendered text is data, never "safe" HTML for whoever shows it


def _html_part(bundle: _Bundle, context: Context) -> str:
    """The email's HTML alternative of a link card, rendered with autoescaping on."""
    context.autoescape = True
    try:
        rendered = {name: part.template.render(context) for name, part in bundle.parts.items()}
    finally:
        context.autoescape = False
    html = linebreaks(rendered["body"]) if "body" in rendered else ""
    if rendered.get("card_image_url"):
        html += format_html('<p><img src="{}" alt=""></p>', rendered["card_image_url"])
    html += format_html('<p><a href="{}">{}</a></p>', rendered["card_url"], rendered["card_title"])
    if rendered.get("card_description"):
        html += format_html("<p>{}</p>", rendered["card_description"])
    return _plain(html)


def _render(item: RenderItem, bundle: _Bundle, batch: _Batch) -> dict[str, Any]:
    source = bundle.source
    zone = _zone(item.customer.time_zone if item.customer is not None else "")
    reader_language = translation.get_language()  # errors are for the person reading them, not the customer
    with translation.override(source.language), timezone.override(zone):
        try:
            context = Context(_context_data(item, bundle, batch), autoescape=False)
            rendered = {name: _plain(part.template.render(context)) for name, part in bundle.parts.items()}
            is_html = source.channel == MessageChannel.EMAIL and source.format == TemplateFormat.LINK
            html = _html_part(bundle, context) if is_html else ""
        except MissingVariable as missing:
            with translation.override(reader_language):
                message = _("The variable “%(name)s” is missing and has no default.") % {"name": missing.name}
            raise RenderError(message, code="missing_variable", variable=missing.name) from None
        except VariableDoesNotExist as error:
            name = str(error.params[0]) if error.params else ""
            with translation.override(reader_language):
                message = _("The variable “%(name)s” is missing.") % {"name": name}
            raise RenderError(message, code="missing_variable", variable=name) from None
        except Exception as error:  # odd data (a filter failing on it…) fails this message, not the batch
            with translation.override(reader_language):
                message = _("The template failed to render: %(error)s") % {"error": error}
            raise RenderError(message) from None
    card = {name: rendered.get(f"card_{name}", "") for name in CARD_FIELDS}
    text = rendered.get("body", "")
    if source.format == TemplateFormat.TEXT and not text.strip():
        raise RenderError(_("The rendered message is empty."), code="empty")
    for name in REQUIRED_CARD_FIELDS[source.format]:
        if not card[name].strip():
            raise RenderError(_("The card's %(field)s rendered empty.") % {"field": name}, code="empty")
    return {
        "format": str(source.format),
        "text": text,
        "subject": rendered.get("subject", ""),
        "card": card if source.format != TemplateFormat.TEXT else {},
        "html": html,
    }


def render_batch(items: Sequence[RenderItem]) -> list[dict[str, Any] | RenderError]:
    """Render every item, in order: the message dict ({"format", "text", "subject", "card", "html"}) or the
    RenderError that fails it — never a blank or half-filled message. A fixed number of queries whatever the
    batch size (one per kind of data the batch's templates use); compiled templates are cached."""
    bundles = [_bundle(item) for item in items]
    batch = _Batch(items, bundles)
    results: list[dict[str, Any] | RenderError] = []
    for item, bundle in zip(items, bundles, strict=True):
        if isinstance(bundle, RenderError):
            results.append(bundle)
            continue
        try:
            results.append(_render(item, bundle, batch))
        except RenderError as error:
            results.append(error)
    return results


def render_preview(
    template: MessageTemplate,
    customer: Customer | None,
    *,
    context: Mapping[str, Any] | None = None,
    staff: Staff | None = None,
) -> dict[str, Any]:
    """One message as dispatch would render it for `customer` (the template may be unsaved); raises RenderError."""
    result = render_batch([RenderItem(template=template, customer=customer, staff=staff, context=context or {})])[0]
    if isinstance(result, RenderError):
        raise result
    return result
