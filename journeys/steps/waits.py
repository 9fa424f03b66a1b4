"""Waits: for a time (J13-J16), for an event with a timeout (J19), until a condition holds (J20)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from journeys import timing
from journeys.steps.base import Checker, Move, RunContext, Running, StepType, register, with_window

WAIT_MODES = ("duration", "days_at", "weekday_at", "window")
WEEKDAYS = (
    gettext_lazy("Monday"), gettext_lazy("Tuesday"), gettext_lazy("Wednesday"), gettext_lazy("Thursday"),
    gettext_lazy("Friday"), gettext_lazy("Saturday"), gettext_lazy("Sunday"),
)  # fmt: skip


@register
class Wait(StepType):
    """`{"mode": "duration", "days": 2}` · `{"mode": "days_at", "days": 1, "at": "09:00"}` ·
    `{"mode": "weekday_at", "weekday": 5, "at": "15:15"}` · `{"mode": "window", "window": {…}}`; any of them may
    carry a send window `{"weekdays": [0…4], "start": "09:00", "end": "17:00"}`."""

    type = "wait"
    label = gettext_lazy("Wait")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        mode = params.get("mode", "duration")
        if mode not in WAIT_MODES:
            checker.error(f"{path}.mode", _("Expected one of: %(choices)s.") % {"choices": ", ".join(WAIT_MODES)})
            return
        if mode == "duration":
            days = checker.integer(params, "days", path, default=0) or 0
            hours = checker.integer(params, "hours", path, default=0) or 0
            minutes = checker.integer(params, "minutes", path, default=0) or 0
            total = datetime.timedelta(days=days, hours=hours, minutes=minutes)
            if not total:
                checker.error(f"{path}.days", _("A wait needs a length."))
            elif total > timing.MAX_WAIT:
                checker.error(f"{path}.days", _("A wait may last at most %(days)s days.") % {"days": 366})
        elif mode == "days_at":
            checker.integer(params, "days", path, low=0, high=366, default=1)
            checker.clock(params, "at", path)
        elif mode == "weekday_at":
            if checker.integer(params, "weekday", path, low=0, high=6) is None and "weekday" not in params:
                checker.error(f"{path}.weekday", _("This setting is required."))
            checker.clock(params, "at", path)
        elif not params.get("window"):
            checker.error(f"{path}.window", _("This setting is required."))

    def arrive(
        self, params: Mapping[str, Any], at: datetime.datetime, tz: ZoneInfo
    ) -> tuple[datetime.datetime, dict[str, Any]]:
        mode = params.get("mode", "duration")
        if mode == "duration":
            due = timing.after_duration(
                at, days=params.get("days", 0), hours=params.get("hours", 0), minutes=params.get("minutes", 0)
            )
        elif mode == "days_at":
            due = timing.days_then_at(at, tz, days=params.get("days", 1), at=timing.parse_clock(params["at"]))
        elif mode == "weekday_at":
            due = timing.next_weekday_at(at, tz, weekday=params["weekday"], at=timing.parse_clock(params["at"]))
        else:
            due = at
        return with_window(params, due, tz), {}

    def describe(self, params: Mapping[str, Any]) -> str:
        mode = params.get("mode", "duration")
        if mode == "duration":
            parts = []
            for key, unit in (("days", _("days")), ("hours", _("hours")), ("minutes", _("minutes"))):
                if params.get(key):
                    parts.append(f"{params[key]} {unit}")
            text = _("Wait %(length)s") % {"length": " ".join(parts)}
        elif mode == "days_at":
            text = _("Wait %(days)s day(s), then at %(at)s") % {"days": params.get("days", 1), "at": params["at"]}
        elif mode == "weekday_at":
            text = _("Wait until next %(weekday)s %(at)s") % {
                "weekday": WEEKDAYS[params["weekday"]], "at": params["at"]
            }  # fmt: skip
        else:
            text = _("Wait for the send window")
        return text + describe_window(params)


def check_window(params: Mapping[str, Any], path: str, checker: Checker) -> None:
    window = params.get("window")
    if not window:
        return
    if not isinstance(window, dict):
        checker.error(f"{path}.window", _("Expected weekdays, start and end."))
        return
    weekdays = window.get("weekdays", list(range(7)))
    if not isinstance(weekdays, list) or not weekdays or any(d not in range(7) for d in weekdays):
        checker.error(f"{path}.window.weekdays", _("Expected weekdays as numbers 0 (Monday) to 6 (Sunday)."))
    before = len(checker.issues)
    checker.clock(window, "start", f"{path}.window")
    checker.clock(window, "end", f"{path}.window")
    if len(checker.issues) == before and timing.parse_clock(window["start"]) >= timing.parse_clock(window["end"]):
        checker.error(f"{path}.window.end", _("The window must end after it starts."))


def describe_window(params: Mapping[str, Any]) -> str:
    window = params.get("window")
    if not window:
        return ""
    days = "、".join(str(WEEKDAYS[d]) for d in window.get("weekdays", range(7)))
    return " " + _("within %(days)s %(start)s-%(end)s") % {
        "days": days, "start": window["start"], "end": window["end"]
    }  # fmt: skip


@register
class WaitForEvent(StepType):
    """`{"event_type": "content_view", "properties": {…}, "timeout_hours": 72, "next": …, "timeout_next": …}`:
    the event branch as soon as the event is recorded after arrival, the timeout branch exactly then (J19)."""

    type = "wait_event"
    label = gettext_lazy("Wait for an event")
    exits = ("next", "timeout_next")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        checker.require(params, "event_type", path)
        if not isinstance(params.get("properties", {}), dict):
            checker.error(f"{path}.properties", _("Expected an object of property → value."))
        checker.integer(params, "timeout_hours", path, low=1, high=366 * 24)
        checker.require(params, "timeout_hours", path)

    def arrive(
        self, params: Mapping[str, Any], at: datetime.datetime, tz: ZoneInfo
    ) -> tuple[datetime.datetime, dict[str, Any]]:
        # The consumer of recorded events wakes her earlier (journeys.consumers), finding her by `event_type`.
        return at + datetime.timedelta(hours=params["timeout_hours"]), {"event_type": params["event_type"]}

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        seen = happened_after_arrival(batch, params["event_type"], params.get("properties") or {}, ctx.now)
        moves = {}
        for enrollment in batch:
            timeout = enrollment.step_entered_at + datetime.timedelta(hours=params["timeout_hours"])
            if enrollment.id in seen:
                moves[enrollment.id] = Move("event", params.get("next") or None, {"event_id": seen[enrollment.id]})
            elif ctx.now >= timeout:
                moves[enrollment.id] = Move("timeout", params.get("timeout_next") or None)
            else:
                moves[enrollment.id] = Move("waiting", stay_until=timeout, wait={"event_type": params["event_type"]})
        return moves

    def describe(self, params: Mapping[str, Any]) -> str:
        return _("Wait for %(event)s, at most %(hours)s hours") % {
            "event": params.get("event_type"), "hours": params.get("timeout_hours")
        }  # fmt: skip


def happened_after_arrival(
    batch: list[Running], event_type: str, properties: Mapping[str, Any], now: datetime.datetime
) -> dict[int, int]:
    """Enrollment id → the first matching event recorded after she arrived at her step (one query)."""
    from django.db import connection

    if not batch:
        return {}
    rows = [(e.id, e.customer_id, e.step_entered_at) for e in batch]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT r.enrollment, (SELECT ev.id FROM customers_event ev
                                  WHERE ev.customer_id = r.customer AND ev.type = %s AND ev.occurred_at > r.since
                                    AND ev.occurred_at <= %s AND ev.properties @> %s::jsonb
                                  ORDER BY ev.occurred_at, ev.id LIMIT 1)
            FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[]) AS r(enrollment, customer, since)
            """,
            [
                event_type, now, _json(properties),
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            ],
        )  # fmt: skip
        return {enrollment: event for enrollment, event in cursor.fetchall() if event is not None}


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


@register
class WaitUntil(StepType):
    """`{"rule": …, "check_every_minutes": 60, "timeout_hours": 168, "next": …, "timeout_next": …}`: passed at
    once by a customer who already satisfies the rule (J20); otherwise checked again every interval."""

    type = "wait_condition"
    label = gettext_lazy("Wait until a condition holds")
    exits = ("next", "timeout_next")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        checker.rule(params, "rule", path)
        checker.integer(params, "check_every_minutes", path, low=5, high=7 * 24 * 60)
        checker.integer(params, "timeout_hours", path, low=1, high=366 * 24)

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        matched = matching_ids(params["rule"], batch, ctx.now)
        every = datetime.timedelta(minutes=params.get("check_every_minutes") or 60)
        moves = {}
        for enrollment in batch:
            timeout = (
                enrollment.step_entered_at + datetime.timedelta(hours=params["timeout_hours"])
                if params.get("timeout_hours")
                else None
            )
            if enrollment.customer_id in matched:
                moves[enrollment.id] = Move("matched", params.get("next") or None)
            elif timeout is not None and ctx.now >= timeout:
                moves[enrollment.id] = Move("timeout", params.get("timeout_next") or None)
            else:
                again = ctx.now + every
                moves[enrollment.id] = Move("waiting", stay_until=min(again, timeout) if timeout else again)
        return moves

    def describe(self, params: Mapping[str, Any]) -> str:
        from customers.conditions import describe

        return _("Wait until: %(rule)s") % {"rule": describe(params["rule"])}


def matching_ids(rule: Any, batch: list[Running], now: datetime.datetime) -> set[int]:
    """The customers of the batch matching the rule now: one set-based query (J22: the data current now)."""
    from customers.conditions import Context, matching_customers

    ids = sorted({e.customer_id for e in batch})
    if not ids:
        return set()
    return set(matching_customers(rule, customer_ids=ids, ctx=Context(now=now)).values_list("pk", flat=True))
