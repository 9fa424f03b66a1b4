"""What happens to an enterprise mass send after the backend created it: polled from WeCom until every
recipient's outcome is known, nudged (at most three times a day per staff member), and listed as the rep's to-do.

Lifecycle of each touchpoint (moved only forward, by messaging.services.status.apply_status_updates):
awaiting_confirmation → confirmed (the sender confirmed it in WeCom: get_groupmsg_task status 2) → delivered
(get_groupmsg_send_result status 1), undeliverable (2: no longer a friend) or failed "receipt_limit" (3: the
customer already received the month's mass messages). A mass send still unconfirmed after `confirm_days` is
failed "not_confirmed" and no longer polled.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Min, Q, QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import Staff
from customers.visibility import sees_all_customers
from messaging.backends.base import channel_config
from messaging.models import Touchpoint, TouchpointStatus, WeComReminder
from messaging.services.status import StatusUpdate, apply_status_updates
from messaging.wecom.client import WeComClient, WeComError, WeComRateLimited

logger = logging.getLogger("messaging.wecom")

S = TouchpointStatus
DAILY_REMINDERS = 3  # WeCom lets a staff member be re-reminded at most three times a day
POLL_SECONDS = 120  # a mass send is asked about at most this often (channel option "poll_seconds")
CONFIRM_DAYS = 7  # after this, an unconfirmed mass send is given up (channel option "confirm_days")
POLL_MARK_PREFIX = "wecom:poll"
RESULT_SENT, RESULT_NOT_FRIEND, RESULT_LIMIT = 1, 2, 3
TASK_SENT = 2


def default_client() -> WeComClient:
    return WeComClient.from_config(channel_config("wecom"))


def _moment(timestamp: Any) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(int(timestamp), tz=datetime.UTC) if timestamp else None


def awaiting_q() -> Q:
    """Touchpoints handed to WeCom as a mass send whose outcome is not known yet."""
    return Q(channel="wecom", status__in=[S.AWAITING_CONFIRMATION, S.CONFIRMED]) & ~Q(provider_message_id="")


# -------------------------------------------------------------------------------------------------- polling


@dataclass
class PollReport:
    mass_sends: int = 0  # msgids asked about
    moved: int = 0  # status changes (confirmed then delivered counts two)
    errors: int = 0
    deferred: bool = False  # the API rate limit stopped the run; the rest waits for the next one


def poll_mass_sends(
    *,
    client: WeComClient | None = None,
    now: datetime.datetime | None = None,
    limit: int = 200,
    poll_seconds: int | None = None,
) -> PollReport:
    """Ask WeCom about up to `limit` pending mass sends not asked about in the last `poll_seconds` (channel option,
    default `POLL_SECONDS`) and move their touchpoints forward. Safe to run concurrently: a Redis mark taken
    with add() gives each msgid to one poller, and stays for `poll_seconds` so WeCom is not asked too often."""
    from django.core.cache import cache

    now = now or timezone.now()
    report = PollReport()
    pending = list(
        Touchpoint.objects.filter(awaiting_q())
        .values("provider_message_id")
        .annotate(first=Min("created_at"))
        .order_by("first")
        .values_list("provider_message_id", "first")
    )
    if not pending:
        return report
    config = channel_config("wecom")
    if poll_seconds is None:
        poll_seconds = int(config.get("poll_seconds") or POLL_SECONDS)
    give_up_before = now - datetime.timedelta(days=int(config.get("confirm_days") or CONFIRM_DAYS))
    marks = cache.get_many([f"{POLL_MARK_PREFIX}:{msgid}" for msgid, _first in pending])
    due = [(msgid, first) for msgid, first in pending if f"{POLL_MARK_PREFIX}:{msgid}" not in marks][:limit]
    owned = client is None
    client = client or WeComClient.from_config(config)
    try:
        for msgid, first in due:
            if not cache.add(f"{POLL_MARK_PREFIX}:{msgid}", 1, timeout=poll_seconds):
                continue  # another poller took it
            try:
                rows = Touchpoint.objects.filter(awaiting_q(), provider_message_id=msgid)
                waiting = set(rows.values_list("recipient", flat=True))
                updates = status_updates_of(client, msgid, waiting=waiting, is_overdue=first < give_up_before)
            except WeComRateLimited:
                cache.delete(f"{POLL_MARK_PREFIX}:{msgid}")  # not asked: first in line next time
                report.deferred = True
                break
            except WeComError as error:
                report.errors += 1
                logger.warning("wecom.poll_failed", extra={"msgid": msgid, "code": error.code})
                if error.is_temporary or first >= give_up_before:
                    continue
                updates = [StatusUpdate(S.FAILED, provider_message_id=msgid, provider_code=error.code, at=now)]
            report.mass_sends += 1
            report.moved += apply_status_updates(updates) if updates else 0
    finally:
        if owned:
            client.close()
    return report


def status_updates_of(
    client: WeComClient, msgid: str, *, waiting: set[str] | None = None, is_overdue: bool = False
) -> list[StatusUpdate]:
    """What WeCom says about one mass send, as status updates in order (a confirmation before its results); only
    about the recipients in `waiting` (those whose outcome we do not know yet), when given."""
    tasks = list(client.iter_groupmsg_tasks(msgid))
    confirmed = [task for task in tasks if task.get("status") == TASK_SENT]
    updates: list[StatusUpdate] = []
    is_confirmed = bool(tasks) and len(confirmed) == len(tasks)
    if is_confirmed:  # every sender confirmed: one statement for all its touchpoints
        first_sent = min(int(t.get("send_time") or 0) for t in confirmed)
        updates.append(StatusUpdate(S.CONFIRMED, provider_message_id=msgid, at=_moment(first_sent)))
    for task in confirmed:
        confirmed_at = _moment(task.get("send_time"))
        for result in client.iter_groupmsg_send_results(msgid, task["userid"]):
            recipient = result.get("external_userid") or result.get("chat_id") or ""
            if not recipient or (waiting is not None and recipient not in waiting):
                continue
            sent = {"provider_message_id": msgid, "recipient": recipient}
            if not is_confirmed:  # several senders, some still to confirm: confirmed recipient by recipient
                updates.append(StatusUpdate(S.CONFIRMED, **sent, at=confirmed_at))
            status = result.get("status")
            if status == RESULT_SENT:
                updates.append(StatusUpdate(S.DELIVERED, **sent, at=_moment(result.get("send_time")) or confirmed_at))
            elif status == RESULT_NOT_FRIEND:
                updates.append(StatusUpdate(S.UNDELIVERABLE, **sent, provider_code="not_friend", at=confirmed_at))
            elif status == RESULT_LIMIT:
                updates.append(StatusUpdate(S.FAILED, **sent, provider_code="receipt_limit", at=confirmed_at))
    if is_overdue and len(confirmed) < len(tasks):
        # Given up: the sender has not confirmed in time. Rows already delivered are past failing and stay.
        updates.append(StatusUpdate(S.FAILED, provider_message_id=msgid, provider_code="not_confirmed"))
    return updates


# ------------------------------------------------------------------------------------------------ reminders


@dataclass(frozen=True)
class ReminderOutcome:
    is_sent: bool
    reason: str  # for the user, translated
    msgid: str = ""
    remaining_today: int = 0


def day_start(now: datetime.datetime) -> datetime.datetime:
    """The start of `now`'s day in the workspace's time zone, where WeCom's (China's) day is counted."""
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def reminders_used(staff_ids: Sequence[int] | None, *, now: datetime.datetime) -> dict[int, int]:
    """Reminders sent today per staff member (of `staff_ids`, or everyone): one query."""
    rows = WeComReminder.objects.filter(reminded_at__gte=day_start(now))
    if staff_ids is not None:
        rows = rows.filter(staff_id__in=staff_ids)
    return dict(rows.values_list("staff_id").annotate(used=Count("id")).values_list("staff_id", "used"))


def remind_pending(
    staff: Staff, *, msgid: str = "", client: WeComClient | None = None, now: datetime.datetime | None = None
) -> ReminderOutcome:
    """Nudge `staff` in WeCom to confirm their pending mass sends (`msgid`, or their newest: WeCom's notice leads
    them to all of them). At most `DAILY_REMINDERS` a day per staff member, counted under a lock on the staff row
    so simultaneous clicks cannot make a fourth; a reminder WeCom refuses does not use up a slot."""
    now = now or timezone.now()
    pending = (
        Touchpoint.objects.filter(awaiting_q(), sender_staff=staff, status=S.AWAITING_CONFIRMATION)
        .values_list("provider_message_id", flat=True)
        .order_by("-created_at")
    )
    target = (msgid if pending.filter(provider_message_id=msgid).exists() else "") if msgid else pending.first()
    if not target:
        return ReminderOutcome(False, _("Nothing is waiting for %(name)s's confirmation.") % {"name": staff.name})
    with transaction.atomic(durable=True):
        list(Staff.objects.select_for_update().filter(pk=staff.pk).values_list("pk", flat=True))
        used = WeComReminder.objects.filter(staff=staff, reminded_at__gte=day_start(now)).count()
        if used >= DAILY_REMINDERS:
            message = _(
                "%(name)s was already reminded %(count)d times today, the most WeCom allows; try again tomorrow."
            )
            return ReminderOutcome(False, message % {"name": staff.name, "count": used}, msgid=target)
        reminder = WeComReminder.objects.create(staff=staff, msgid=target, reminded_at=now)
    owned = client is None
    client = client or default_client()
    try:
        client.remind_groupmsg_send(target)
    except WeComError as error:
        reminder.delete()
        logger.warning("wecom.remind_failed", extra={"staff": staff.pk, "msgid": target, "code": error.code})
        message = _("WeCom did not accept the reminder (%(code)s); try again later.") % {"code": error.code}
        return ReminderOutcome(False, message, msgid=target, remaining_today=DAILY_REMINDERS - used)
    finally:
        if owned:
            client.close()
    remaining = DAILY_REMINDERS - used - 1
    message = _("Reminder sent to %(name)s in WeCom (%(remaining)d left today).")
    return ReminderOutcome(True, message % {"name": staff.name, "remaining": remaining}, target, remaining)


# ------------------------------------------------------------------------------------- reads for the to-do


def todo_scope(user: Any) -> Q:
    """Mass sends `user` may see: a sales rep their own (sent as their Staff), everyone else all of them."""
    if not (user and user.is_authenticated):
        return Q(pk__in=[])
    return Q() if sees_all_customers(user) else Q(sender_staff__user_id=user.pk)


def pending_mass_sends(user: Any, *, staff_id: int | None = None) -> QuerySet:
    """Mass sends awaiting confirmation that `user` may see, one row per msgid, newest first: the sender, a
    preview of the content, the number of recipients and when it was created (one query)."""
    rows = Touchpoint.objects.filter(
        todo_scope(user), awaiting_q(), status=S.AWAITING_CONFIRMATION, sender_staff__isnull=False
    )
    if staff_id:
        rows = rows.filter(sender_staff_id=staff_id)
    return (
        rows.values("provider_message_id", "sender_staff_id", "sender_staff__name")
        .annotate(
            recipients=Count("id"),
            groups=Count("group_id"),
            created=Min("created_at"),
            text=Min(KT("content__text")),
            format=Min(KT("content__format")),
            title=Min(KT("content__card__title")),
        )
        .order_by("-created", "provider_message_id")
    )


def confirmation_rates(user: Any, *, now: datetime.datetime, days: int = 30) -> list[dict[str, Any]]:
    """Per staff member `user` may see: mass sends created in the last `days` and how many the rep confirmed."""
    rows = (
        Touchpoint.objects.filter(
            todo_scope(user),
            channel="wecom",
            sender_staff__isnull=False,
            created_at__gte=now - datetime.timedelta(days=days),
        )
        .exclude(provider_message_id="")
        .values("sender_staff_id", "sender_staff__name")
        .annotate(
            created=Count("provider_message_id", distinct=True),
            confirmed=Count("provider_message_id", distinct=True, filter=Q(confirmed_at__isnull=False)),
        )
        .order_by("sender_staff__name", "sender_staff_id")
    )
    return [{**row, "rate": row["confirmed"] / row["created"]} for row in rows]
