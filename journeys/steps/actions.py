"""Steps that do something: send a message, tag, list in a static segment, invite to a group, give the rep a task,
update an attribute, enter another journey, exit. Every side effect goes through its app's service and carries a
key, so a step run that is retried never does it twice."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

import orjson
from django.db import connection
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from journeys.steps.base import Checker, Move, RunContext, Running, StepType, register

RECIPIENTS = ("customer", "group")
# What a journey waiting for the rep's confirmation reads from a WeCom mass send.
CONFIRMED = ("confirmed", "sent", "delivered", "read", "clicked")
NOT_SENT = ("failed", "suppressed", "capped", "expired", "undeliverable", "cancelled")


def check_text(text: str, channel: str, path: str, checker: Checker) -> None:
    """A message written in the step renders on its channel: only whitelisted variables, tags and filters."""
    from messaging.templating.sandbox import validate_template

    for problem in validate_template({"text": text, "format": "text"}, channel=channel):
        checker.error(path, problem)


def message_key(ctx: RunContext, step_id: str, enrollment: Running, recipient: str) -> str:
    """The touchpoint's idempotency key: the journey, the step, the recipient and when the run was due. A retried
    run has the same key (J26); two concurrent enrollments due for the same message share it (J6)."""
    return f"journey:{ctx.journey.pk}:{step_id}:{recipient}:{int(enrollment.due.timestamp())}"


def is_too_late(ctx: RunContext, enrollment: Running) -> bool:
    """Overdue beyond the journey's lateness limit (after a pause or a long outage): it expires, never goes out
    late (J42)."""
    return enrollment.due < ctx.now - datetime.timedelta(hours=ctx.journey.lateness_limit_hours)


@register
class Send(StepType):
    """`{"channel": "wecom", "template": 12 | "text": "…", "to": "customer" | "group", "kind": "marketing",
    "wait_confirmation": false, "confirmation_timeout_hours": 48, "next": …, "timeout_next": …}`."""

    type = "send"
    label = gettext_lazy("Send a message")
    exits = ("next", "timeout_next")
    sends = True

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        from customers.models import MessageChannel
        from messaging.models import MessageTemplate, TouchpointKind

        if params.get("channel") not in MessageChannel.values:
            checker.error(f"{path}.channel", _("Choose a channel."))
        if params.get("template"):
            if not MessageTemplate.objects.filter(pk=params["template"]).exists():
                checker.error(f"{path}.template", _("This message template does not exist."))
        elif not str(params.get("text") or "").strip():
            checker.error(f"{path}.template", _("Choose a message template or write the text."))
        else:
            check_text(params["text"], params.get("channel") or "", f"{path}.text", checker)
        if params.get("to", "customer") not in RECIPIENTS:
            checker.error(f"{path}.to", _("Send to the customer or to her group."))
        if params.get("kind", "marketing") not in TouchpointKind.values:
            checker.error(f"{path}.kind", _("Marketing or transactional."))
        if params.get("wait_confirmation"):
            checker.integer(params, "confirmation_timeout_hours", path, low=1, high=30 * 24, default=48)

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        moves: dict[int, Move] = {}
        waiting = [e for e in batch if e.wait.get("touchpoint")]
        moves.update(self.read_confirmations(params, waiting, ctx))
        fresh = [e for e in batch if not e.wait.get("touchpoint")]
        late = [e for e in fresh if is_too_late(ctx, e)]
        for enrollment in late:
            moves[enrollment.id] = Move("expired", params.get("next") or None, {"due": enrollment.due.isoformat()})
        fresh = [e for e in fresh if e.id not in moves]
        groups = latest_groups([e.customer_id for e in fresh]) if params.get("to") == "group" else {}
        built = {}
        for enrollment in fresh:
            if params.get("to") == "group":
                group_id = groups.get(enrollment.customer_id)
                if group_id is None:
                    moves[enrollment.id] = Move("no_group", params.get("next") or None)
                    continue
                built[enrollment.id] = build(params, ctx, enrollment, group_id=group_id)
            else:
                built[enrollment.id] = build(params, ctx, enrollment)
        queued = dict(zip(built, schedule_touchpoints(list(built.values())), strict=True))
        for enrollment in fresh:
            if enrollment.id not in queued:
                continue
            touchpoint = queued[enrollment.id]
            detail = {"touchpoint": touchpoint.pk, "new": touchpoint.is_new}
            if params.get("wait_confirmation") and params.get("channel") == "wecom":
                timeout = ctx.now + datetime.timedelta(hours=params.get("confirmation_timeout_hours") or 48)
                moves[enrollment.id] = Move(
                    "queued", stay_until=min(ctx.now + datetime.timedelta(hours=1), timeout),
                    wait={"touchpoint": touchpoint.pk, "until": timeout.isoformat()}, touchpoint_id=touchpoint.pk,
                )  # fmt: skip
            else:
                moves[enrollment.id] = Move("queued", params.get("next") or None, detail, touchpoint.pk)
        return moves

    def read_confirmations(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        """Enrollments waiting for the rep to confirm a WeCom send: on when confirmed (or when it cannot go out),
        the timeout branch when the rep has not confirmed in time, else look again in an hour."""
        from messaging.models import Touchpoint

        if not batch:
            return {}
        statuses = dict(
            Touchpoint.objects.filter(pk__in=[e.wait["touchpoint"] for e in batch]).values_list("pk", "status")
        )
        moves = {}
        for enrollment in batch:
            touchpoint = enrollment.wait["touchpoint"]
            status = statuses.get(touchpoint, "cancelled")
            timeout = datetime.datetime.fromisoformat(enrollment.wait["until"])
            detail = {"touchpoint": touchpoint, "status": status}
            if status in CONFIRMED:
                moves[enrollment.id] = Move("confirmed", params.get("next") or None, detail, touchpoint)
            elif status in NOT_SENT:
                moves[enrollment.id] = Move(f"not_sent:{status}", params.get("next") or None, detail, touchpoint)
            elif ctx.now >= timeout:
                moves[enrollment.id] = Move("confirmation_timeout", params.get("timeout_next") or None, detail,
                                            touchpoint)  # fmt: skip
            else:
                moves[enrollment.id] = Move(
                    "awaiting_confirmation", stay_until=min(ctx.now + datetime.timedelta(hours=1), timeout),
                    wait=dict(enrollment.wait),
                )  # fmt: skip
        return moves

    def describe(self, params: Mapping[str, Any]) -> str:
        from customers.models import MessageChannel

        channel = dict(MessageChannel.choices).get(params.get("channel"), params.get("channel"))
        to = _("her group") if params.get("to") == "group" else _("the customer")
        if params.get("template"):
            name = _template(params["template"])
            what = f"“{name.name}”" if name else _("template #%(id)s") % {"id": params["template"]}
        else:
            # The text's start, variables shortened to {customer.name}: enough to tell the steps apart.
            words = re.sub(r"\{\{\s*([\w.]+)[^}]*\}\}", r"{\1}", " ".join(str(params.get("text") or "").split()))
            what = f"“{words[:24]}…”" if len(words) > 24 else f"“{words}”"
        text = _("Send %(what)s to %(to)s on %(channel)s") % {"what": what, "to": to, "channel": channel}
        if params.get("kind") == "transactional":
            text += " · " + _("transactional")
        return text


def schedule_touchpoints(touchpoints: list[Any]) -> list[Any]:
    from messaging.services.scheduling import schedule_touchpoints as schedule_many

    return schedule_many(touchpoints)


def build(params: Mapping[str, Any], ctx: RunContext, enrollment: Running, *, group_id: int | None = None,
          content: Mapping[str, Any] | None = None) -> Any:  # fmt: skip
    """The step's message for one enrollment (unsaved), with the journey's priority and cap policy."""
    from messaging.models import CapAction, TouchpointKind, TouchpointSource
    from messaging.services.scheduling import build_touchpoint

    journey = ctx.journey
    template = _template(params.get("template"))
    kind = params.get("kind") or TouchpointKind.MARKETING
    expires_at = None
    if journey.cap_action == CapAction.DEFER_EXPIRE:
        expires_at = ctx.now + datetime.timedelta(hours=journey.cap_expiry_hours or 48)
    recipient = f"g{group_id}" if group_id else f"c{enrollment.customer_id}"
    return build_touchpoint(
        channel=params["channel"],
        idempotency_key=message_key(ctx, ctx.step_id, enrollment, recipient),
        customer=None if group_id else enrollment.customer_id,
        group=group_id,
        template=template,
        content=content or ({"text": params["text"]} if not template else None),
        context={**enrollment.context, "journey": journey.name},
        due_at=ctx.now,
        kind=kind,
        source=TouchpointSource.JOURNEY,
        source_ref=journey.source_ref,
        priority=journey.priority,
        on_cap=journey.cap_action,
        expires_at=expires_at,
        sender_staff=_staff(enrollment.owner_id),
    )


def _template(template_id: int | None) -> Any:
    from messaging.models import MessageTemplate

    return MessageTemplate.objects.filter(pk=template_id).first() if template_id else None


def _staff(staff_id: int | None) -> Any:
    from customers.models import Staff

    return Staff(pk=staff_id) if staff_id else None


def latest_groups(customer_ids: list[int]) -> dict[int, int]:
    """Customer → the community group she joined last and is still in."""
    from customers.models import GroupMembership

    rows = (
        GroupMembership.objects.filter(customer_id__in=customer_ids, left_at__isnull=True)
        .order_by("customer_id", "-joined_at")
        .distinct("customer_id")
        .values_list("customer_id", "group_id")
    )
    return dict(rows)


class _TagStep(StepType):
    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        from tags.models import Tag

        if not Tag.objects.filter(pk=params.get("tag") or 0).exists():
            checker.error(f"{path}.tag", _("Choose a tag."))

    def describe(self, params: Mapping[str, Any]) -> str:
        from tags.models import Tag

        tag = Tag.objects.filter(pk=params.get("tag") or 0).values_list("name", flat=True).first()
        return f"{self.label}: {tag or params.get('tag')}"


@register
class AddTag(_TagStep):
    type = "add_tag"
    label = gettext_lazy("Add a tag")

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from tags.models import TagSource
        from tags.services import add_tags

        add_tags([e.customer_id for e in batch], [params["tag"]], source=TagSource.JOURNEY)
        return {e.id: Move("done", params.get("next") or None, {"tag": params["tag"]}) for e in batch}


@register
class RemoveTag(_TagStep):
    type = "remove_tag"
    label = gettext_lazy("Remove a tag")

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from tags.models import TagSource
        from tags.services import remove_tags

        remove_tags([e.customer_id for e in batch], [params["tag"]], sources=TagSource.values)
        return {e.id: Move("done", params.get("next") or None, {"tag": params["tag"]}) for e in batch}


class _SegmentStep(StepType):
    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        from segments.models import Segment, SegmentKind

        if not Segment.objects.filter(pk=params.get("segment") or 0, kind=SegmentKind.STATIC).exists():
            checker.error(f"{path}.segment", _("Choose a static segment."))

    def describe(self, params: Mapping[str, Any]) -> str:
        from segments.models import Segment

        name = Segment.objects.filter(pk=params.get("segment") or 0).values_list("name", flat=True).first()
        return f"{self.label}: {name or params.get('segment')}"


@register
class AddToSegment(_SegmentStep):
    type = "add_to_segment"
    label = gettext_lazy("Add to a static segment")

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from segments.models import Segment
        from segments.services.segments import add_to_static

        add_to_static(Segment.objects.get(pk=params["segment"]), [e.customer_id for e in batch])
        return {e.id: Move("done", params.get("next") or None, {"segment": params["segment"]}) for e in batch}


@register
class RemoveFromSegment(_SegmentStep):
    type = "remove_from_segment"
    label = gettext_lazy("Remove from a static segment")

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from segments.models import Segment
        from segments.services.segments import remove_from_static

        remove_from_static(Segment.objects.get(pk=params["segment"]), [e.customer_id for e in batch])
        return {e.id: Move("done", params.get("next") or None, {"segment": params["segment"]}) for e in batch}


@register
class InviteToGroup(StepType):
    """`{"group": 7, "channel": "wecom", "text": "…", "join_url": "https://…"}`: a group-invite message with the
    join link (WeCom shows it as a card); who joined afterwards is tracked from the group's memberships."""

    type = "invite_group"
    label = gettext_lazy("Invite to a community group")
    sends = True

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        from customers.models import CommunityGroup, MessageChannel

        if not CommunityGroup.objects.filter(pk=params.get("group") or 0).exists():
            checker.error(f"{path}.group", _("Choose a community group."))
        if params.get("channel", "wecom") not in MessageChannel.values:
            checker.error(f"{path}.channel", _("Choose a channel."))
        if not str(params.get("text") or "").strip():
            checker.error(f"{path}.text", _("Write the invitation."))
        else:
            check_text(params["text"], params.get("channel") or "wecom", f"{path}.text", checker)

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from customers.models import CommunityGroup, GroupMembership

        group = CommunityGroup.objects.get(pk=params["group"])
        members = set(
            GroupMembership.objects.filter(
                group=group, customer_id__in=[e.customer_id for e in batch], left_at__isnull=True
            ).values_list("customer_id", flat=True)
        )
        join_url = params.get("join_url") or ""
        content: dict[str, Any] = {"text": params["text"]}
        if join_url:
            content = {"format": "link", "text": params["text"],
                       "card": {"title": group.name, "url": join_url, "description": params["text"][:120]}}  # fmt: skip
        moves, built = {}, {}
        for enrollment in batch:
            if enrollment.customer_id in members:
                moves[enrollment.id] = Move("already_member", params.get("next") or None, {"group": group.pk})
            elif is_too_late(ctx, enrollment):
                moves[enrollment.id] = Move("expired", params.get("next") or None, {"group": group.pk})
            else:
                message = {**params, "channel": params.get("channel") or "wecom"}
                built[enrollment.id] = build(message, ctx, enrollment, content=content)
        for enrollment_id, touchpoint in zip(built, schedule_touchpoints(list(built.values())), strict=True):
            detail = {"group": group.pk, "touchpoint": touchpoint.pk}
            moves[enrollment_id] = Move("invited", params.get("next") or None, detail, touchpoint.pk)
        return moves

    def describe(self, params: Mapping[str, Any]) -> str:
        from customers.models import CommunityGroup

        name = CommunityGroup.objects.filter(pk=params.get("group") or 0).values_list("name", flat=True).first()
        return _("Invite to the group %(group)s") % {"group": name or params.get("group")}


@register
class CreateTask(StepType):
    """`{"title": "…", "script": "…", "due_hours": 24}`: a task for the customer's owning rep."""

    type = "task"
    label = gettext_lazy("Create a task for the rep")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        checker.require(params, "title", path)
        checker.integer(params, "due_hours", path, low=0, high=90 * 24, default=24)

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from journeys.models import Task

        due = ctx.now + datetime.timedelta(hours=params.get("due_hours", 24))
        tasks = [
            Task(
                customer_id=e.customer_id, assignee_id=e.owner_id, title=params["title"][:200],
                script=params.get("script") or "", due_at=due, journey_id=e.journey_id, enrollment_id=e.id,
                idempotency_key=f"journey:{e.id}:{e.seq}", created_at=ctx.now,
            )
            for e in batch
        ]  # fmt: skip
        Task.objects.bulk_create(tasks, ignore_conflicts=True)
        return {e.id: Move("done", params.get("next") or None, {"title": params["title"]}) for e in batch}

    def describe(self, params: Mapping[str, Any]) -> str:
        return _("Task for the rep: %(title)s") % {"title": params.get("title")}


@register
class UpdateAttribute(StepType):
    """`{"attribute": "member_level", "value": "gold"}`: sets a custom attribute."""

    type = "update_attribute"
    label = gettext_lazy("Update an attribute")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        checker.require(params, "attribute", path)
        if "value" not in params:
            checker.error(f"{path}.value", _("This setting is required."))

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from customers import domain_events
        from customers.models import DomainEventKind

        ids = sorted({e.customer_id for e in batch})
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE customers_customer SET attributes = attributes || jsonb_build_object(%s::text, %s::jsonb),
                       updated_at = now()
                WHERE id = ANY(%s) AND attributes -> %s::text IS DISTINCT FROM %s::jsonb
                RETURNING id
                """,
                [params["attribute"], orjson.dumps(params["value"]).decode(), ids, params["attribute"],
                 orjson.dumps(params["value"]).decode()],
            )  # fmt: skip
            changed = [row[0] for row in cursor.fetchall()]
        payload = {"source": "journey", "change": "attribute", "attribute": params["attribute"]}
        domain_events.record(DomainEventKind.CUSTOMER_UPDATED, changed, [payload] * len(changed))
        return {e.id: Move("done", params.get("next") or None, {"attribute": params["attribute"]}) for e in batch}

    def describe(self, params: Mapping[str, Any]) -> str:
        return _("Set %(attribute)s to %(value)s") % {
            "attribute": params.get("attribute"),
            "value": params.get("value"),
        }


@register
class EnterJourney(StepType):
    """`{"journey": 5}`: enroll her in another journey (its entry filter and re-entry policy apply)."""

    type = "enter_journey"
    label = gettext_lazy("Enter another journey")

    def check(self, params: Mapping[str, Any], path: str, checker: Checker) -> None:
        from journeys.models import Journey

        if not Journey.objects.filter(pk=params.get("journey") or 0).exists():
            checker.error(f"{path}.journey", _("Choose a journey."))

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        from journeys.models import Journey
        from journeys.services.enrollment import Candidate, enroll

        target = Journey.objects.get(pk=params["journey"])
        result = enroll(
            target,
            [Candidate(e.customer_id, "journey", f"journey:{e.id}:{e.seq}", ctx.now, {}) for e in batch],
            now=ctx.now,
        )
        return {
            e.id: Move("entered" if e.customer_id in result.enrolled else "refused", params.get("next") or None,
                       {"journey": target.pk, "reason": result.refused.get(e.customer_id, "")})
            for e in batch
        }  # fmt: skip

    def describe(self, params: Mapping[str, Any]) -> str:
        from journeys.models import Journey

        name = Journey.objects.filter(pk=params.get("journey") or 0).values_list("name", flat=True).first()
        return _("Enter the journey %(journey)s") % {"journey": name or params.get("journey")}


@register
class Exit(StepType):
    type = "exit"
    label = gettext_lazy("Exit")
    exits = ()

    def run(self, params: Mapping[str, Any], batch: list[Running], ctx: RunContext) -> dict[int, Move]:
        return {e.id: Move("exit", None, exit_reason="exit_step") for e in batch}
