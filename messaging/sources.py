"""What a touchpoint's `source_ref` ("journey:12", "campaign:3") stands for, in words and as a link. Apps above
messaging register a namer for their prefix in `AppConfig.ready()`; the outbox and the customer's message history
name a page's sources with one call per prefix, never one per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceName:
    label: str
    url: str = ""


Namer = Callable[[list[str]], dict[str, SourceName]]
_NAMERS: dict[str, Namer] = {}


def register_source_namer(prefix: str, namer: Namer) -> None:
    """`namer(refs)` gets the page's refs starting with `prefix:` and answers ref → SourceName for those it knows."""
    if not prefix or ":" in prefix or not callable(namer):
        raise ValueError(f"a namer needs a prefix without ':' and a callable, not {prefix!r}")
    _NAMERS[prefix] = namer


def source_names(refs: Iterable[str]) -> dict[str, SourceName]:
    """Names of these source refs (those no app names are left out: the page shows the ref itself)."""
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for ref in set(refs):
        prefix, _, rest = (ref or "").partition(":")
        if rest and prefix in _NAMERS:
            by_prefix[prefix].append(ref)
    names: dict[str, SourceName] = {}
    for prefix, group in by_prefix.items():
        names.update(_NAMERS[prefix](sorted(group)))
    return names


def name_sources(touchpoints: Iterable) -> None:
    """Set `source_name` (a SourceName or None) on each touchpoint of a page."""
    touchpoints = list(touchpoints)
    names = source_names(t.source_ref for t in touchpoints if t.source_ref)
    for touchpoint in touchpoints:
        touchpoint.source_name = names.get(touchpoint.source_ref)
