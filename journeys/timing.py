"""The journey's rules of time: when a wait ends and when a send window opens. Pure functions of a moment and a
zone (the customer's, falling back to the workspace's: `messaging.services.policy.zone`)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

MAX_WAIT = datetime.timedelta(days=366)


def parse_clock(value: str) -> datetime.time:
    """'09:00' → time(9, 0); raises ValueError on anything else."""
    hours, _, minutes = value.partition(":")
    return datetime.time(int(hours), int(minutes or 0))


def after_duration(start: datetime.datetime, *, days: int = 0, hours: int = 0, minutes: int = 0) -> datetime.datetime:
    """Exactly that long after `start` (J13: 'wait 2 days' is 48 hours, whatever the clocks do)."""
    return start + datetime.timedelta(days=days, hours=hours, minutes=minutes)


def days_then_at(start: datetime.datetime, tz: ZoneInfo, *, days: int, at: datetime.time) -> datetime.datetime:
    """N calendar days after `start`'s local date, at a local time of day (J14: never 'right away' because the
    hour has passed: Monday 21:00 and Monday 08:00 both resume Tuesday 09:00 for 'wait 1 day, then at 09:00')."""
    day = start.astimezone(tz).date() + datetime.timedelta(days=days)
    return datetime.datetime.combine(day, at, tzinfo=tz)


def next_weekday_at(start: datetime.datetime, tz: ZoneInfo, *, weekday: int, at: datetime.time) -> datetime.datetime:
    """The next local `weekday` (Monday 0) at `at` strictly after `start`'s day (J15: 'until next Saturday 15:15'
    entered on a Saturday is 7 days later; entered on a Friday, the next day)."""
    local = start.astimezone(tz).date()
    ahead = (weekday - local.weekday()) % 7 or 7
    return datetime.datetime.combine(local + datetime.timedelta(days=ahead), at, tzinfo=tz)


def in_window(
    due: datetime.datetime, tz: ZoneInfo, *, weekdays: Sequence[int], start: datetime.time, end: datetime.time
) -> datetime.datetime:
    """`due` moved to the next moment inside the send window (J16: Mon-Fri 09:00-17:00 moves Wednesday 18:00 to
    Thursday 09:00 and Saturday 10:00 to Monday 09:00); `due` itself when it is inside."""
    local = due.astimezone(tz)
    days = set(weekdays)
    for ahead in range(8):
        day = local.date() + datetime.timedelta(days=ahead)
        if day.weekday() not in days:
            continue
        opens = datetime.datetime.combine(day, start, tzinfo=tz)
        closes = datetime.datetime.combine(day, end, tzinfo=tz)
        if ahead == 0 and opens <= local < closes:
            return due
        if local < opens:
            return opens
    raise ValueError("a send window needs at least one weekday")


def window_of(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """A step's send window as keyword arguments for `in_window`, or None."""
    window = params.get("window")
    if not window:
        return None
    return {
        "weekdays": window.get("weekdays") or list(range(7)),
        "start": parse_clock(window.get("start") or "00:00"),
        "end": parse_clock(window.get("end") or "23:59"),
    }
