"""Demo tags for `make run`: tag groups, hand-given tags on a deterministic share of customers, auto-tag rules
evaluated in full, and a skin questionnaire with its codebook. Set-based; runs in a couple of seconds at 10k."""

from django.db import connection, transaction

from customers.models import AttributeType, CustomAttribute
from tags import services
from tags.models import AnswerCode, Question, Questionnaire, Tag, TagGroup, TagSource

GROUPS = [("基础属性", "#0d6efd"), ("兴趣偏好", "#6f42c1"), ("消费", "#dc3545"), ("互动", "#198754"),
          ("生命周期", "#fd7e14")]  # fmt: skip
# (group, name, description, share of customers given it by hand in per mille, or None)
MANUAL = [
    ("基础属性", "宝妈", "家有婴幼儿", 180),
    ("基础属性", "学生党", "在校学生", 90),
    ("兴趣偏好", "成分党", "关注成分与功效", 140),
    ("兴趣偏好", "敏感肌", "皮肤易敏，偏好温和配方", 160),
    ("兴趣偏好", "痘痘困扰", "问卷：最关心痘痘问题", None),
    ("兴趣偏好", "干皮", "问卷：肤质偏干", None),
]
RULES = [
    ("消费", "高价值", "近365天消费超过¥1,000",
     {"predicate": "orders_sum", "op": "gt", "value": 1000, "window": {"last_days": 365}}),
    ("消费", "面膜复购", "近180天买过至少2次面膜",
     {"predicate": "orders_count", "op": "gte", "value": 2, "window": {"last_days": 180}, "categories": ["面膜"]}),
    ("互动", "内容活跃", "近30天阅读内容至少3次",
     {"predicate": "event_count", "type": "content_view", "op": "gte", "value": 3, "window": {"last_days": 30}}),
    ("生命周期", "沉睡客户", "超过120天没有下单",
     {"predicate": "days_since_last_order", "op": "gt", "value": 120}),
]  # fmt: skip


def seed_tags_demo() -> str:
    with transaction.atomic():
        groups = {}
        for position, (name, _colour) in enumerate(GROUPS):
            groups[name] = TagGroup.objects.get_or_create(name=name, defaults={"position": position})[0]
        colours = dict(GROUPS)
        tags = {}
        for group, name, description, _share in MANUAL:
            tags[name] = Tag.objects.get_or_create(
                group=groups[group], name=name, defaults={"description": description, "colour": colours[group]}
            )[0]
        for _group, name, _description, per_mille in MANUAL:
            if per_mille:
                with connection.cursor() as cursor:  # a deterministic share of customers, by id
                    cursor.execute(
                        "SELECT id FROM customers_customer WHERE merged_into_id IS NULL "
                        "AND (id * 7919 + %s) %% 1000 < %s",
                        [len(name) * 131, per_mille],
                    )
                    ids = [row[0] for row in cursor.fetchall()]
                services.add_tags(ids, [tags[name].pk], source=TagSource.IMPORT)
        CustomAttribute.objects.get_or_create(key="skin_type", defaults={"label": "肤质", "type": AttributeType.TEXT})
        CustomAttribute.objects.get_or_create(
            key="member_level", defaults={"label": "会员等级", "type": AttributeType.TEXT}
        )
        questionnaire, created = Questionnaire.objects.get_or_create(name="肌肤问卷", defaults={
            "description": "新客入群时填写，答案映射为兴趣标签"})  # fmt: skip
        if created:
            concern = Question.objects.create(
                questionnaire=questionnaire, code="Q1", text="您最关心的肌肤问题", position=1
            )
            AnswerCode.objects.create(question=concern, code="1", label="干燥缺水", tag=tags["干皮"])
            AnswerCode.objects.create(question=concern, code="2", label="敏感泛红", tag=tags["敏感肌"])
            AnswerCode.objects.create(question=concern, code="3", label="痘痘", tag=tags["痘痘困扰"])
            AnswerCode.objects.create(question=concern, code="4", label="暗沉", tag=None)
        rules = []
        for group, name, description, rule in RULES:
            tag = Tag.objects.get_or_create(
                group=groups[group], name=name, defaults={"description": description, "colour": colours[group]}
            )[0]
            rules.append(services.save_rule(tag, rule))
    runs = [services.apply_rule(rule) for rule in rules]
    return (
        f"{len(tags) + len(rules)} tags, {len(rules)} auto-tag rules tagging {sum(r.matched for r in runs):,} customers"
    )
