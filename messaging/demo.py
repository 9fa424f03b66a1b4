"""Demo messaging for `make run`: message templates, a contact policy with a daily cap and a rate limit, and a
small campaign's touchpoints dispatched through the console backend, so the outbox, the customer's message
history and the dead letters have something to show."""

from django.db import transaction
from django.utils import timezone

from customers.models import Consent, ConsentStatus, Customer
from messaging.models import ContactPolicy, FrequencyCap, MessageTemplate, RateLimit, TemplateFormat
from messaging.services.dispatch import dispatch_until_idle
from messaging.services.scheduling import schedule_touchpoint

TEMPLATES = [
    ("欢迎语", "wecom", TemplateFormat.TEXT, "{{ customer.name }}您好，我是您的专属顾问{{ staff.name }}，"
     "有任何护肤问题都可以随时问我～", {"customer.name": "亲", "staff.name": "小美"}),
    ("面膜复购提醒", "sms", TemplateFormat.TEXT, "【美颜】{{ customer.name }}，您上次购买的面膜快用完啦，"
     "本周会员价8折，回复TD退订", {"customer.name": "亲爱的会员"}),
    ("会员日活动", "wecom", TemplateFormat.LINK, "{{ customer.name }}，会员日福利已到账",
     {"customer.name": "亲"}),
]  # fmt: skip
CARD = {"title": "会员日 全场8折", "description": "仅限本周六", "url": "https://example.com/member-day"}


def seed_messaging_demo() -> str:
    with transaction.atomic():
        templates = {}
        for name, channel, fmt, body, defaults in TEMPLATES:
            templates[name] = MessageTemplate.objects.update_or_create(
                name=name,
                defaults={"channel": channel, "format": fmt, "body": body, "defaults": defaults,
                          "card": CARD if fmt == TemplateFormat.LINK else {}},
            )[0]  # fmt: skip
        ContactPolicy.current()
        FrequencyCap.objects.get_or_create(channel="", period="day", defaults={"limit": 2})
        RateLimit.objects.get_or_create(channel="sms", sender="", defaults={"per_minute": 600})
        customers = list(Customer.objects.exclude(phone="").order_by("id")[:60])
        for customer in customers[:3]:  # a few customers replied "TD": their SMS are suppressed
            Consent.objects.update_or_create(
                customer=customer, channel="sms", defaults={"status": ConsentStatus.OPTED_OUT, "reason": "TD"}
            )
        now = timezone.now()
        for customer in customers:
            schedule_touchpoint(
                channel="sms",
                customer=customer,
                idempotency_key=f"demo:repurchase:{customer.pk}",
                template=templates["面膜复购提醒"],
                kind="transactional",  # so the demo shows sent messages at any hour
                source="campaign",
                source_ref="campaign:demo-repurchase",
                due_at=now,
            )
    report = dispatch_until_idle(seconds=30)
    return f"{len(templates)} templates, {report.claimed} touchpoints dispatched ({dict(report.outcomes)})"
