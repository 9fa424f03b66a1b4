"""Built-in SOP templates: one click creates an editable draft journey, on any database, empty included.

Every template follows the restraint principle: relationship first, no product push before the customer has shown
interest (a perk is a welcome, not a pitch; an offer comes after she read something or asked). The message copy is
zh-hans, since the customers are Chinese; titles and descriptions are translatable. A template that needs a community
group or a segment finds one or creates it with a clear name (the welcome group "新人福利群", the dynamic segment
"沉睡客户 (90 天未下单)", the RFM model segment of 重要保持客户), so what it creates always validates and publishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from journeys import definition as definitions
from journeys.models import Journey, JourneyStatus

WELCOME_GROUP_CHAT_ID = "sop-welcome-group"
WELCOME_GROUP_NAME = "新人福利群"
GROUP_TYPE = "customer"
DORMANT_SEGMENT_NAME = "沉睡客户 (90 天未下单)"
DORMANT_RULE = {"predicate": "days_since_last_order", "op": "gt", "value": 90}
WINBACK_MODEL_KEY = "rfm:important_keep"
NAME = '{{ customer.name|default:"亲" }}'  # an empty name renders the default, never a blank (J37)
ORDER_GOAL = {"type": "order", "window_days": 30}


@dataclass(frozen=True)
class SopTemplate:
    code: str
    title: Promise | str
    description: Promise | str


TEMPLATES: list[SopTemplate] = [
    SopTemplate("welcome", _("Welcome new customers"),
                _("A greeting from her rep with a welcome perk; the next day at 10:00, an invitation to the welcome "
                  "group for those not in it yet. Goal: an order within 30 days.")),
    SopTemplate("first_order", _("First order for new customers"),
                _("For new customers who never ordered: a free trial kit, then a first-order coupon three days "
                  "later. Stops as soon as she orders.")),
    SopTemplate("repurchase", _("Repurchase reminder"),
                _("Three days before the product she bought should run out (its consumption cycle), a friendly "
                  "reminder naming the product at 10:00, and a check-in a few days later. Stops when she orders.")),
    SopTemplate("birthday", _("Birthday gift"),
                _("On her birthday at 09:00, wishes with a birthday coupon. At most once every 300 days.")),
    SopTemplate("dormant", _("Reactivate dormant customers"),
                _("When a customer has not ordered for 90 days: useful content first, and an offer only to those "
                  "who read it within three days. Add your content's tracked link to the first message.")),
    SopTemplate("winback", _("Win back important customers"),
                _("When a customer becomes an important retention customer (RFM): a personal care message and a "
                  "call task for her rep. Stops when she orders.")),
    SopTemplate("group_weekly", _("Weekly group SOP"),
                _("For every customer group: Monday 20:00 knowledge, Wednesday 20:00 Q&A, Friday 20:00 the week's "
                  "group offer.")),
    SopTemplate("new_group_rhythm", _("New group rhythm: 5 days of seeding, 1 day of conversion"),
                _("For every new customer group: five evenings of useful content at 20:00, then the group offer "
                  "on the sixth day.")),
]  # fmt: skip


class UnknownTemplate(LookupError):
    """No built-in SOP template has this code."""


def template(code: str) -> SopTemplate:
    for found in TEMPLATES:
        if found.code == code:
            return found
    raise UnknownTemplate(code)


def create_from_template(code: str, *, by: Any) -> Journey:
    """A new draft journey built from the template (owned by `by`), creating the group or segment it needs when
    there is none. Its draft validates; the operator edits it, then publishes."""
    sop = template(code)
    with transaction.atomic():
        draft = definitions.validate(_BUILDERS[code](by))
        return Journey.objects.create(
            name=str(sop.title)[:100], description=str(sop.description), owner=by if _is_user(by) else None,
            status=JourneyStatus.DRAFT, draft=draft, template_code=code,
        )  # fmt: skip


def _is_user(by: Any) -> bool:
    return bool(getattr(by, "is_authenticated", False) and getattr(by, "pk", None))


def _send(step_id: str, text: str, *, next: str | None = None, **params: Any) -> dict[str, Any]:
    step = {"id": step_id, "type": "send", "channel": "wecom", "to": "customer", "kind": "marketing", "text": text}
    return {**step, **params, **({"next": next} if next else {})}


# ----------------------------------------------------------------------------------------------- what they need


def welcome_group() -> Any:
    """The group new customers are invited to: the oldest live customer group, else any live group, else a
    "新人福利群" created for the template (the operator links it to the real WeCom group and adds its join link)."""
    from customers.models import CommunityGroup

    live = CommunityGroup.objects.filter(dismissed_at__isnull=True).order_by("created_at", "pk")
    found = live.filter(group_type=GROUP_TYPE).first() or live.first()
    if found is not None:
        return found
    group, _created = CommunityGroup.objects.get_or_create(
        chat_id=WELCOME_GROUP_CHAT_ID,
        defaults={"name": WELCOME_GROUP_NAME, "group_type": GROUP_TYPE, "created_at": timezone.now()},
    )
    return group


def dormant_segment(by: Any) -> Any:
    """The dynamic segment of customers whose last order is over 90 days old, created when missing."""
    from segments.models import Segment, SegmentKind
    from segments.services.segments import save_segment

    found = Segment.objects.filter(name=DORMANT_SEGMENT_NAME, kind=SegmentKind.DYNAMIC, is_archived=False).first()
    if found is not None:
        return found
    return save_segment(
        None, name=DORMANT_SEGMENT_NAME, rule=DORMANT_RULE, by=by if _is_user(by) else None,
        description="最近一次下单在 90 天以前的客户（从未下单的不算）",
    )  # fmt: skip


def winback_segment() -> Any:
    """The RFM model segment of 重要保持客户 ("rfm:important_keep"): the one the RFM recompute keeps, so entering it
    is a real segment-entered event. Created (empty until the next recompute) when RFM has never run."""
    from segments.models import Segment
    from segments.services.layers.model_segments import ensure_segments
    from segments.services.layers.rfm import model_segments

    found = Segment.objects.filter(model_key=WINBACK_MODEL_KEY).first()
    if found is not None:
        return found
    wanted = [spec for spec in model_segments() if spec.key == WINBACK_MODEL_KEY]
    return ensure_segments("rfm:", wanted)[WINBACK_MODEL_KEY]


# The product of the consumption-cycle trigger: the enrollment's context carries it to the message.
PRODUCT_NAME = '{{ product_name|default:"宝贝" }}'


# ------------------------------------------------------------------------------------------------- the drafts


def _welcome(by: Any) -> dict[str, Any]:
    group = welcome_group()
    not_in_group = {"not": {"predicate": "in_group", "groups": [group.pk]}}
    return {
        "trigger": {"type": "customer_added"},
        "reentry": {"policy": "never"},
        "exit": {"policy": "goal"},
        "goal": ORDER_GOAL,
        "start": "greet",
        "steps": [
            _send("greet", f"{NAME}，你好呀～我是你的专属顾问，很高兴认识你！送你一份新人见面礼：10 元无门槛券已放进"
                           "你的账户，7 天内有效。平时有任何使用上的小问题，随时来问我就好～", next="wait"),
            {"id": "wait", "type": "wait", "mode": "days_at", "days": 1, "at": "10:00", "next": "check"},
            {"id": "check", "type": "branch",
             "branches": [{"label": "未入群", "rule": not_in_group, "next": "invite"}]},
            {"id": "invite", "type": "invite_group", "group": group.pk, "channel": "wecom", "kind": "marketing",
             "text": "我们有一个新人福利群，每周分享实用的小知识，还有群友专属福利。"
                     "想进群的话回复「进群」，我拉你进来～"},
        ],
    }  # fmt: skip


def _first_order(by: Any) -> dict[str, Any]:
    return {
        "trigger": {"type": "customer_added"},
        "entry_filter": {"predicate": "days_since_last_order", "op": "not_set"},
        "reentry": {"policy": "never"},
        "exit": {"policy": "goal"},
        "goal": ORDER_GOAL,
        "start": "trial",
        "steps": [
            _send("trial", f"{NAME}，先不急着买～我们为新朋友准备了一份免费试用装，回复「试用」告诉我收货地址，"
                           "用着合适再说！", next="wait"),
            {"id": "wait", "type": "wait", "mode": "days_at", "days": 3, "at": "10:00", "next": "coupon"},
            _send("coupon", f"{NAME}，试用装用着还习惯吗？送你一张首单专享券：满 99 减 30，7 天内有效。"
                            "有任何问题随时问我～"),
        ],
    }  # fmt: skip


def _repurchase(by: Any) -> dict[str, Any]:
    product = PRODUCT_NAME
    return {
        "trigger": {"type": "consumption_cycle", "days_before": 3, "at": "10:00"},
        "reentry": {"policy": "every"},
        "exit": {"policy": "goal"},
        "goal": {"type": "order", "window_days": 14},
        "start": "remind",
        "steps": [
            _send("remind", f"{NAME}，算算时间，你上次入手的{product}差不多快用完啦。需要补货的话回复我，帮你留意"
                            "最近的活动价；还有的话也不着急，用完再说～", next="wait"),
            {"id": "wait", "type": "wait", "mode": "days_at", "days": 5, "at": "10:00", "next": "check_in"},
            _send("check_in", f"{NAME}，{product}用得还顺手吗？有任何使用上的问题随时找我，我一直都在～"),
        ],
    }  # fmt: skip


def _birthday(by: Any) -> dict[str, Any]:
    return {
        "trigger": {"type": "birthday", "days_before": 0, "at": "09:00"},
        "reentry": {"policy": "after_days", "days": 300},
        "exit": {"policy": "goal"},
        "goal": ORDER_GOAL,
        "start": "wish",
        "steps": [
            _send("wish", f"{NAME}，生日快乐！今天是属于你的日子，我们准备了一份生日礼：专属生日券已放进你的账户，"
                          "30 天内有效。祝你新的一岁一切顺意～"),
        ],
    }  # fmt: skip


def _dormant(by: Any) -> dict[str, Any]:
    segment = dormant_segment(by)
    return {
        "trigger": {"type": "segment_entered", "segment": segment.pk},
        "reentry": {"policy": "every"},
        "exit": {"policy": "goal"},
        "goal": ORDER_GOAL,
        "start": "content",
        "steps": [
            _send("content", f"{NAME}，好久不见～最近整理了几条换季护理的小建议，几个简单的小习惯就很有用，"
                             "有空可以看看。有什么想了解的也可以直接问我～", next="engaged"),
            {"id": "engaged", "type": "wait_event", "event_type": "content_view", "timeout_hours": 72,
             "next": "offer"},
            _send("offer", f"{NAME}，看到你对这些内容感兴趣～送你一张老朋友回归券，7 天内有效，"
                           "有需要随时找我。"),
        ],
    }  # fmt: skip


def _winback(by: Any) -> dict[str, Any]:
    segment = winback_segment()
    return {
        "trigger": {"type": "segment_entered", "segment": segment.pk},
        "reentry": {"policy": "after_days", "days": 90},
        "exit": {"policy": "goal"},
        "goal": ORDER_GOAL,
        "start": "care",
        "steps": [
            _send("care", f"{NAME}，好久没联系啦，一直记得你是我们的老朋友。最近过得好吗？为你准备了一份老客专属"
                          "关怀礼，回复我就能领取～", next="call"),
            {"id": "call", "type": "task", "title": "回访重要保持客户", "due_hours": 24,
             "script": "先关心近况和使用感受，不急于推荐产品；对方有需求时，再介绍老客专属关怀礼。"},
        ],
    }  # fmt: skip


def _group_weekly(by: Any) -> dict[str, Any]:
    plan = [
        {"weekday": 0, "at": "20:00", "channel": "wecom",
         "text": "【周一干货】今晚聊聊防晒的几个误区：阴天同样需要防晒，室内靠窗也有紫外线。大家平时是怎么防晒的？"
                 "欢迎在群里交流～"},
        {"weekday": 2, "at": "20:00", "channel": "wecom",
         "text": "【周三答疑】今晚 8 点到 9 点是群内答疑时间，使用上的任何问题都可以直接在群里提问，我们逐一回复～"},
        {"weekday": 4, "at": "20:00", "channel": "wecom",
         "text": "【周五福利】本周群友专属福利来啦：群内下单享 9 折，周日 24 点截止，有需要的朋友私聊我就好～"},
    ]  # fmt: skip
    return {"trigger": {"type": "group_weekly", "group_type": GROUP_TYPE, "plan": plan}, "steps": []}


def _new_group_rhythm(by: Any) -> dict[str, Any]:
    texts = [
        "欢迎大家入群！接下来几天每晚 8 点会分享实用的小知识，有问题随时在群里提问～",
        "【第 2 天】护理第一步是了解自己的肤质：干性、油性还是混合性？今晚教大家一个简单的自测方法。",
        "【第 3 天】群友分享：坚持一个月的小习惯，带来了哪些变化？欢迎大家也说说自己的经验～",
        "【第 4 天】答疑时间：这几天大家问得最多的几个问题，今晚统一解答。",
        "【第 5 天】感谢大家这几天的陪伴！明晚 8 点有一份群友专属福利，记得来看哦～",
        "【群友专属福利】今晚开启：群内下单享专属价，另送试用装一份，48 小时内有效，有需要私聊我～",
    ]
    plan = [{"day": day, "at": "20:00", "channel": "wecom", "text": text} for day, text in enumerate(texts, start=1)]
    return {"trigger": {"type": "group_rhythm", "group_type": GROUP_TYPE, "plan": plan}, "steps": []}


_BUILDERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "welcome": _welcome,
    "first_order": _first_order,
    "repurchase": _repurchase,
    "birthday": _birthday,
    "dormant": _dormant,
    "winback": _winback,
    "group_weekly": _group_weekly,
    "new_group_rhythm": _new_group_rhythm,
}
