"""The contact policy's rules of time: quiet hours, cap periods and time zones. Pure functions of a moment and
a zone; dispatch applies them to a batch (services/dispatch.py)."""

from __future__ import annotations

import calendar
import datetime
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from messaging.models import CapPeriod


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The customer's zone; an empty or unknown name is the workspace's (J18)."""
    try:
        return ZoneInfo(name) if name else ZoneInfo(settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def quiet_hours_end(
    now: datetime.datetime, tz: ZoneInfo, start: datetime.time, end: datetime.time
) -> datetime.datetime | None:
    """When the quiet hours `now` falls in end (aware), or None outside them. start > end crosses midnight."""
    local = now.astimezone(tz)
    clock = local.time()
    if start == end:
        return None
    if start < end:
        is_quiet = start <= clock < end
        end_day = local.date()
    else:
        is_quiet = clock >= start or clock < end
        end_day = local.date() + datetime.timedelta(days=1) if clock >= start else local.date()
    if not is_quiet:
        return None
    return datetime.datetime.combine(end_day, end, tzinfo=tz)


@dataclass(frozen=True)
class Period:
    key: str  # "d:2026-11-23", "w:2026-11-23" (the Monday), "m:2026-11"
    next_start: datetime.datetime  # when the next period starts (aware)
    days: int  # days in the period (the WeCom budget is as many messages as the month has days)


def period_of(now: datetime.datetime, tz: ZoneInfo, period: str) -> Period:
    """The calendar period `now` is in, in the customer's zone."""
    day = now.astimezone(tz).date()
    if period == CapPeriod.DAY:
        start, following = day, day + datetime.timedelta(days=1)
        key = f"d:{day.isoformat()}"
    elif period == CapPeriod.WEEK:
        start = day - datetime.timedelta(days=day.weekday())
        following = start + datetime.timedelta(days=7)
        key = f"w:{start.isoformat()}"
    else:
        start = day.replace(day=1)
        following = (start + datetime.timedelta(days=32)).replace(day=1)
        key = f"m:{start:%Y-%m}"
    midnight = datetime.datetime.combine(following, datetime.time.min, tzinfo=tz)
    return Period(key, midnight, (following - start).days)


def days_in_month(now: datetime.datetime, tz: ZoneInfo) -> int:
    local = now.astimezone(tz)
    return calendar.monthrange(local.year, local.month)[1]
