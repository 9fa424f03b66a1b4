"""The sandbox: a separate Engine with only whitelisted tags and filters, the whitelist of variables, and the
checks that compile a template (or refuse it with clear messages for the editor and the API).

Every variable a template names is checked against SCHEMA in its scope (loop and `with` variables included) and
every lookup is hardened to key and index lookups only: no attribute access, no calls, so no way from a
template into the ORM or Python objects. A printed variable that is missing or empty fails the render unless it
has an inline `|default` (declared defaults are filled in before rendering).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, Lexer, TokenType, Variable, VariableDoesNotExist, VariableNode
from django.template.defaulttags import ForNode, IfNode, NowNode, WithNode
from django.utils.translation import gettext as _

from customers.models import MessageChannel
from messaging.models import MessageTemplate, TemplateFormat

# --------------------------------------------------------------------------------------------------- the sandbox

ALLOWED_TAGS = ("if", "for", "with", "now", "spaceless", "comment", "verbatim", "templatetag")
ALLOWED_FILTERS = (
    "add", "capfirst", "cut", "date", "default", "default_if_none", "divisibleby", "first", "floatformat",
    "iriencode", "join", "last", "length", "linebreaksbr", "lower", "pluralize", "slice", "time", "timesince",
    "timeuntil", "title", "truncatechars", "truncatewords", "upper", "urlencode", "wordcount", "wordwrap", "yesno",
)  # fmt: skip
# Words the parser reads inside the allowed tags' blocks.
_INNER_TAGS = {"elif", "else", "empty", "endif", "endfor", "endwith", "endspaceless", "endcomment", "endverbatim"}
_INLINE_DEFAULT_FILTERS = {"default", "default_if_none"}

_LIBRARY = Library()
for _name in ALLOWED_TAGS:
    _LIBRARY.tags[_name] = defaulttags.register.tags[_name]
for _name in ALLOWED_FILTERS:
    _LIBRARY.filters[_name] = defaultfilters.register.filters[_name]
MAX_DECIMAL_PLACES = 20


@_LIBRARY.filter("floatformat", is_safe=True)
def _floatformat(value: Any, arg: Any = -1) -> str:
    """`floatformat` with at most 20 decimal places: a precision of a billion would build a gigabyte string."""
    text = str(arg)
    digits = text.rstrip("gu")
    if digits.lstrip("-").isdigit() and abs(int(digits)) > MAX_DECIMAL_PLACES:
        arg = ("-" if digits.startswith("-") else "") + str(MAX_DECIMAL_PLACES) + text[len(digits) :]
    return defaultfilters.floatformat(value, arg)


class _SandboxEngine(Engine):
    """No template loaders, no libraries to `{% load %}` and only the whitelisted tags and filters built in."""

    def get_template_builtins(self, builtins):
        return [_LIBRARY]

    def get_template_libraries(self, libraries):
        return {}


ENGINE = _SandboxEngine(loaders=[], string_if_invalid="")

# The variables templates may use. LEAF is a value; ANY is a JSON object whose keys are the customer's own
# (custom attributes, event properties); a dict lists the keys of a group; a 1-tuple is a list of its element.
LEAF, ANY = "leaf", "any"
SCHEMA: dict[str, Any] = {
    "customer": {
        "name": LEAF, "gender": LEAF, "city": LEAF, "birthday": LEAF, "phone": LEAF, "email": LEAF,
        "attributes": ANY,
    },
    "tags": (LEAF,),
    "owner": {"name": LEAF},
    "staff": {"name": LEAF},
    "order": {
        "number": LEAF, "amount": LEAF, "currency": LEAF, "status": LEAF, "ordered_at": LEAF, "products": (LEAF,),
    },
    "event": {"type": LEAF, "label": LEAF, "occurred_at": LEAF, "content": LEAF, "properties": ANY},
    "coupon_code": LEAF,
    "link": LEAF,
    "product_name": LEAF,
    "journey": LEAF,
}  # fmt: skip
_FORLOOP = {"counter": LEAF, "counter0": LEAF, "revcounter": LEAF, "revcounter0": LEAF, "first": LEAF,
            "last": LEAF, "parentloop": ANY}  # fmt: skip
CARD_FIELDS = ("title", "description", "url", "image_url", "appid", "page")
CHANNEL_FORMATS = {
    MessageChannel.WECOM: tuple(TemplateFormat.values),
    MessageChannel.SMS: (TemplateFormat.TEXT,),
    MessageChannel.EMAIL: (TemplateFormat.TEXT, TemplateFormat.LINK),  # a link card is the email's HTML part
    MessageChannel.WEBHOOK: tuple(TemplateFormat.values),
}
REQUIRED_CARD_FIELDS = {
    TemplateFormat.TEXT: (),
    TemplateFormat.IMAGE: ("image_url",),
    TemplateFormat.LINK: ("title", "url"),
    TemplateFormat.MINIPROGRAM: ("title", "appid", "page", "image_url"),
}


class RenderError(Exception):
    """A message that cannot be rendered: it fails and nothing is sent. `variable` names a missing variable."""

    def __init__(self, message: str, *, code: str = "render_failed", variable: str = "") -> None:
        super().__init__(message)
        self.message, self.code, self.variable = message, code, variable


class MissingVariable(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


class _DataVariable(Variable):
    """A variable resolved by key and index lookups only: no attribute access, nothing called."""

    __slots__ = ()

    def _resolve_lookup(self, context):
        current = context
        for bit in self.lookups:
            try:
                if isinstance(current, Context | Mapping):
                    current = current[bit]
                elif isinstance(current, list | tuple):
                    current = current[int(bit)]
                else:
                    raise KeyError(bit)
            except (KeyError, IndexError, ValueError, TypeError):
                raise VariableDoesNotExist("Failed lookup for %s", (self.var,)) from None  # names the whole path
        return current


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, Mapping | list | tuple) and not value


class _GuardedVariableNode(VariableNode):
    """`{{ variable }}` that fails the render when the variable is missing or empty and has no inline default."""

    has_inline_default = False  # set per node when the template is compiled

    def render(self, context):
        expression = self.filter_expression
        if expression.is_var and not self.has_inline_default:
            try:
                value = expression.var.resolve(context)
            except VariableDoesNotExist:
                value = None
            if is_empty(value):
                raise MissingVariable(expression.var.var)
        return super().render(context)


# ------------------------------------------------------------------------------------------------ validation


def _lookup_schema(lookups: Sequence[str], scope: Mapping[str, Any]) -> Any:
    """The schema node a variable path names, or None when it names nothing templates may use."""
    node = scope.get(lookups[0])
    for bit in lookups[1:]:
        if node == ANY:
            continue
        if isinstance(node, dict):
            node = node.get(bit)
        elif isinstance(node, tuple) and bit.isdigit():
            node = node[0]
        else:
            return None
    return node


def _item_schema(node: Any) -> Any:
    if isinstance(node, tuple):
        return node[0]
    return ANY if node == ANY else LEAF


def _condition_expressions(condition: Any) -> Iterable[FilterExpression]:
    if isinstance(getattr(condition, "value", None), FilterExpression):
        yield condition.value
    for attr in ("first", "second"):
        if (operand := getattr(condition, attr, None)) is not None:
            yield from _condition_expressions(operand)


class _Checker:
    """Walks a compiled template: checks every variable against the schema in its scope (loop and `with`
    variables included) and hardens the nodes (key-only lookups, printed variables guarded)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.roots: set[str] = set()

    def nodelist(self, nodes: Iterable[Any], scope: dict[str, Any]) -> None:
        scope = dict(scope)  # `{% now … as x %}` binds x for the rest of this block only
        for node in nodes:
            if isinstance(node, ForNode):
                sequence = self.expression(node.sequence, scope)
                item = _item_schema(sequence) if len(node.loopvars) == 1 else ANY
                inner = scope | dict.fromkeys(node.loopvars, item) | {"forloop": _FORLOOP}
                self.nodelist(node.nodelist_loop, inner)
                self.nodelist(node.nodelist_empty, scope)
            elif isinstance(node, WithNode):
                inner = dict(scope)
                for name, expression in node.extra_context.items():
                    inner[name] = self.expression(expression, scope)
                self.nodelist(node.nodelist, inner)
            elif isinstance(node, IfNode):
                for condition, body in node.conditions_nodelists:
                    for expression in _condition_expressions(condition):
                        self.expression(expression, scope)
                    self.nodelist(body, scope)
            elif isinstance(node, VariableNode):
                self.expression(node.filter_expression, scope, is_printed=True)
                node.__class__ = _GuardedVariableNode
                node.has_inline_default = any(
                    getattr(func, "_filter_name", "") in _INLINE_DEFAULT_FILTERS
                    for func, _args in node.filter_expression.filters
                )
            elif isinstance(node, NowNode) and node.asvar:
                scope[node.asvar] = LEAF
            else:
                for attr in node.child_nodelists:
                    self.nodelist(getattr(node, attr, None) or (), scope)

    def expression(self, expression: FilterExpression, scope: Mapping[str, Any], *, is_printed: bool = False) -> Any:
        """Check the expression's variable and its filters' arguments; return the schema of its value."""
        arguments = [argument for _func, args in expression.filters for is_lookup, argument in args if is_lookup]
        schema: Any = LEAF
        for position, variable in enumerate([expression.var, *arguments]):
            if not isinstance(variable, Variable) or variable.lookups is None:
                continue
            variable.__class__ = _DataVariable
            node = _lookup_schema(variable.lookups, scope)
            if scope.get(variable.lookups[0]) is SCHEMA.get(variable.lookups[0]):
                self.roots.add(variable.lookups[0])  # what the batch must fetch data for
            if node is None:
                self.errors.append(_("“%(name)s” is not a variable you can use.") % {"name": variable.var})
            elif position == 0:
                schema = node if not expression.filters else LEAF
                if is_printed and isinstance(node, dict):
                    fields = ", ".join(f"{variable.var}.{key}" for key in node)
                    self.errors.append(
                        _("“%(name)s” is a group of variables: use one of %(fields)s.")
                        % {"name": variable.var, "fields": fields}
                    )
        return schema


@dataclass(frozen=True)
class CompiledPart:
    template: Template
    roots: frozenset[str]


def _tag_errors(source: str) -> list[str]:
    errors = []
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK and token.contents:
            name = token.contents.split()[0]
            if name not in ALLOWED_TAGS and name not in _INNER_TAGS:
                message = _("The tag {%% %(name)s %%} is not allowed in messages (allowed: %(allowed)s).")
                errors.append(message % {"name": name, "allowed": ", ".join(ALLOWED_TAGS)})
    return errors


@lru_cache(maxsize=2048)
def compile_part(source: str) -> CompiledPart | tuple[str, ...]:
    """A checked, hardened template for `source`, or its errors. Cached by source: templates are immutable."""
    errors = _tag_errors(source)
    if errors:
        return tuple(errors)
    try:
        template = Template(source, engine=ENGINE)
    except TemplateSyntaxError as error:
        message = str(error)
        if message.startswith("Invalid filter: "):
            name = message.removeprefix("Invalid filter: ").strip("'")
            message = _("The filter |%(name)s is not allowed in messages (allowed: %(allowed)s).") % {
                "name": name,
                "allowed": ", ".join(ALLOWED_FILTERS),
            }
        elif "may not begin with underscores" in message:
            message = _("Names starting with an underscore are not allowed: %(detail)s") % {"detail": message}
        else:
            message = _("Template syntax error: %(detail)s") % {"detail": message}
        return (message,)
    checker = _Checker()
    checker.nodelist(template.nodelist, SCHEMA)
    return tuple(dict.fromkeys(checker.errors)) or CompiledPart(template, frozenset(checker.roots))


@dataclass(frozen=True)
class MessageSource:
    """What a message is rendered from: a MessageTemplate's fields or an inline `content` mapping."""

    channel: str
    format: str
    language: str
    body: str
    subject: str
    card: Mapping[str, Any]
    defaults: Mapping[str, Any]

    @classmethod
    def of_template(cls, template: MessageTemplate, channel: str = "") -> MessageSource:
        return cls(
            channel or template.channel, template.format, template.language, template.body or "",
            template.subject or "", template.card or {}, template.defaults or {},
        )  # fmt: skip

    @classmethod
    def of_content(cls, content: Mapping[str, Any], channel: str = "") -> MessageSource:
        return cls(
            channel, content.get("format") or TemplateFormat.TEXT, content.get("language") or settings.LANGUAGE_CODE,
            content.get("text") or "", content.get("subject") or "", content.get("card") or {},
            content.get("defaults") or {},
        )  # fmt: skip


def source_issues(source: MessageSource) -> list[tuple[str, str]]:
    """(field, message) for everything wrong with a message's source; empty when it can be rendered."""
    issues: list[tuple[str, str]] = []
    formats = CHANNEL_FORMATS.get(source.channel, tuple(TemplateFormat.values))
    if source.format not in TemplateFormat.values:
        issues.append(("format", _("Unknown message format “%(format)s”.") % {"format": source.format}))
    elif source.format not in formats:
        labels = ", ".join(str(TemplateFormat(value).label) for value in formats)
        message = _("This channel cannot send this format; it sends: %(formats)s.") % {"formats": labels}
        issues.append(("format", message))
    if not isinstance(source.card, Mapping) or not isinstance(source.defaults, Mapping):
        return [*issues, ("card", _("The card and the defaults must be objects."))]
    for key in sorted(map(str, source.card.keys() - set(CARD_FIELDS))):
        issues.append(("card", _("Cards have no field “%(name)s”.") % {"name": key}))
    if source.format == TemplateFormat.TEXT and not source.body.strip():
        issues.append(("body", _("A text message needs a text.")))
    for name in REQUIRED_CARD_FIELDS.get(source.format, ()):
        if not str(source.card.get(name) or "").strip():
            issues.append((f"card_{name}", _("This format needs the card's %(field)s.") % {"field": name}))
    if source.channel == MessageChannel.EMAIL and not source.subject.strip():
        issues.append(("subject", _("An email needs a subject.")))
    for path, value in source.defaults.items():
        if not isinstance(path, str) or _lookup_schema(path.split("."), SCHEMA) is None:
            issues.append(("defaults", _("“%(name)s” is not a variable you can use.") % {"name": path}))
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            issues.append(("defaults", _("The default of “%(name)s” must be text or a number.") % {"name": path}))
    for name, text in source_parts(source):
        compiled = compile_part(text) if isinstance(text, str) else (_("Must be text."),)
        if isinstance(compiled, tuple):
            issues.extend((name, error) for error in compiled)
    return issues


def source_parts(source: MessageSource) -> list[tuple[str, Any]]:
    """(part, template text) of the non-empty parts: `body`, `subject` and `card_<field>`."""
    parts = [("body", source.body), ("subject", source.subject)]
    if source.format != TemplateFormat.TEXT:  # a text message has no card, whatever is stored
        parts += [(f"card_{name}", source.card.get(name)) for name in CARD_FIELDS]
    return [(name, text) for name, text in parts if text]


def template_issues(template: MessageTemplate) -> list[tuple[str, str]]:
    """(field, message) pairs for the editor: `body`, `subject`, `format`, `defaults` or `card_<name>`."""
    return source_issues(MessageSource.of_template(template))


def validate_template(template: MessageTemplate | Mapping[str, Any], *, channel: str = "") -> list[str]:
    """Every reason a template (or an inline content mapping) cannot be sent on its channel; empty if none.
    Disallowed tags and filters, variables outside the whitelist and card formats a channel lacks are refused."""
    if isinstance(template, MessageTemplate):
        source = MessageSource.of_template(template, channel)
    else:
        source = MessageSource.of_content(template, channel)
    return [message for _field, message in source_issues(source)]


# What the editor lists: each variable with what it holds.
def variable_help() -> list[tuple[str, str]]:
    return [
        ("customer.name", _("Name")),
        ("customer.gender", _("Gender: female, male or empty")),
        ("customer.city", _("City")),
        ("customer.birthday", _("Birthday (a date: use |date)")),
        ("customer.phone", _("Phone, with its middle hidden")),
        ("customer.email", _("Email")),
        ("customer.attributes.<key>", _("A custom attribute")),
        ("tags", _("The customer's tag names (a list: use |join or {% for %})")),
        ("owner.name", _("The customer's owner")),
        ("staff.name", _("The sending staff member, else the owner")),
        ("order.number / amount / currency / status / ordered_at", _("The order that triggered the message")),
        ("order.products", _("Its product names (a list)")),
        ("event.type / label / occurred_at / content", _("The event that triggered the message")),
        ("event.properties.<key>", _("A property of the event")),
        ("coupon_code", _("The coupon code given to the message")),
        ("link", _("The link given to the message")),
        ("product_name", _("The product a journey's repurchase reminder is about")),
        ("journey", _("The name of the journey that sends the message")),
    ]
