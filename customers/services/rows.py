"""Parsing one incoming row (API, CSV, Excel) into clean values, collecting every field error.

Hand-written rather than DRF serializers: a 10,000-row request must validate in well under a second.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils.translation import gettext as _

_MISSING = object()
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class RowError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class RowParser:
    """Reads fields from one row dict; each accessor returns a clean value or records an error and returns None."""

    __slots__ = ("errors", "index", "prefix", "row")

    def __init__(self, row: Any, index: int, prefix: str = "") -> None:
        self.index = index
        self.prefix = prefix
        self.errors: list[RowError] = []
        if not isinstance(row, dict):
            self.errors.append(RowError(index, prefix.rstrip(".") or "row", _("Expected an object.")))
            row = {}
        self.row: dict[str, Any] = row

    def error(self, field: str, message: str) -> None:
        self.errors.append(RowError(self.index, self.prefix + field, message))

    def has(self, field: str) -> bool:
        return field in self.row

    def _get(self, field: str, required: bool) -> Any:
        value = self.row.get(field, _MISSING)
        if value is _MISSING or value is None or value == "":
            if required:
                self.error(field, _("This field is required."))
            return _MISSING
        return value

    def str(self, field: str, *, max_length: int, required: bool = False, default: str = "") -> str | None:
        value = self._get(field, required)
        if value is _MISSING:
            return None if required else default
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.error(field, _("Expected text."))
            return None
        value = value.strip()
        if len(value) > max_length:
            self.error(field, _("At most %(max)d characters (got %(n)d).") % {"max": max_length, "n": len(value)})
            return None
        if required and not value:
            self.error(field, _("This field is required."))
            return None
        return value

    def choice(self, field: str, choices: set[str], *, default: str | None = None) -> str | None:
        value = self._get(field, default is None)
        if value is _MISSING:
            return default
        if value not in choices:
            self.error(field, _("Must be one of: %(choices)s.") % {"choices": ", ".join(sorted(choices))})
            return None
        return value

    def decimal(self, field: str, *, required: bool = False, minimum: Decimal | None = Decimal(0)) -> Decimal | None:
        value = self._get(field, required)
        if value is _MISSING:
            return None
        if isinstance(value, bool):
            self.error(field, _("Expected a number."))
            return None
        try:
            number = Decimal(value.strip() if isinstance(value, str) else str(value))
        except InvalidOperation:
            self.error(field, _("Expected a number, got %(value)r.") % {"value": value})
            return None
        if not number.is_finite() or abs(number) >= Decimal("1e10"):
            self.error(field, _("Number out of range."))
            return None
        if minimum is not None and number < minimum:
            self.error(field, _("Must be at least %(min)s.") % {"min": minimum})
            return None
        return number.quantize(_CENT)

    def integer(self, field: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self._get(field, required)
        if value is _MISSING:
            return None
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            self.error(field, _("Expected a whole number, got %(value)r.") % {"value": value})
            return None
        if minimum is not None and number < minimum:
            self.error(field, _("Must be at least %(min)s.") % {"min": minimum})
            return None
        return number

    def datetime(self, field: str, *, required: bool = False) -> datetime | None:
        value = self._get(field, required)
        if value is _MISSING:
            return None
        if isinstance(value, datetime):
            parsed = value
        else:
            try:
                parsed = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.error(
                    field,
                    _("Expected a date and time like 2026-05-01T10:30:00+08:00, got %(value)r.") % {"value": value},
                )
                return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=workspace_zone())
        return parsed

    def date(self, field: str) -> date | None:
        value = self._get(field, False)
        if value is _MISSING:
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip()[:10])
        except ValueError:
            self.error(field, _("Expected a date like 1990-05-01, got %(value)r.") % {"value": value})
            return None

    def mapping(self, field: str) -> dict[str, Any] | None:
        value = self._get(field, False)
        if value is _MISSING:
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                self.error(field, _("Expected a JSON object."))
                return None
        if not isinstance(value, dict):
            self.error(field, _("Expected an object."))
            return None
        return value

    def nested(self, field: str) -> list[RowParser]:
        value = self._get(field, False)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            self.error(field, _("Expected a list."))
            return []
        return [RowParser(item, self.index, f"{self.prefix}{field}[{i}].") for i, item in enumerate(value)]


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a batch of rows is read and written: its tens of thousands of dicts and
    lists are freed by reference counting anyway, and the collector's passes over the whole heap, which they
    trigger, took 0.1 s of a 10,000-row batch's 0.25 s of parsing. The collector is back on afterwards (if it was)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_ZONE_CACHE: dict[str, ZoneInfo] = {}


def workspace_zone() -> ZoneInfo:
    name = settings.TIME_ZONE
    if name not in _ZONE_CACHE:
        _ZONE_CACHE[name] = ZoneInfo(name)
    return _ZONE_CACHE[name]
