import pytest

from customers.demo import seed_demo
from tags.demo import seed_tags_demo
from tags.models import CustomerTag, Questionnaire, Tag, TagRule

pytestmark = pytest.mark.django_db


def test_the_demo_has_hand_given_tags_auto_tag_rules_with_their_tags_and_a_questionnaire():
    seed_demo(customers=600, seed=42, progress=lambda _: None)

    summary = seed_tags_demo()

    assert TagRule.objects.filter(is_active=True).count() == 4
    for rule in TagRule.objects.select_related("tag"):
        assert rule.last_run_stats["added"] == CustomerTag.objects.filter(tag=rule.tag, source="rule").count()
    assert CustomerTag.objects.filter(tag__name="高价值", source="rule").exists()
    assert 60 < CustomerTag.objects.filter(tag__name="宝妈", source="import").count() < 160
    assert Questionnaire.objects.get(name="肌肤问卷").questions.get(code="Q1").codes.count() == 4
    assert Tag.objects.count() == 10
    assert "4 auto-tag rules" in summary
