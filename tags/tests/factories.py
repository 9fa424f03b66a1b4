import factory

from tags.models import AnswerCode, Question, Questionnaire, Tag, TagGroup


class TagGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TagGroup
        django_get_or_create = ("name",)

    name = "兴趣"


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    group = factory.SubFactory(TagGroupFactory)
    name = factory.Sequence(lambda n: f"标签{n}")


class QuestionnaireFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Questionnaire

    name = "肌肤问卷"


class QuestionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Question

    questionnaire = factory.SubFactory(QuestionnaireFactory)
    code = factory.Sequence(lambda n: f"Q{n}")
    text = "您最关心的肌肤问题"


class AnswerCodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AnswerCode

    question = factory.SubFactory(QuestionFactory)
    code = factory.Sequence(lambda n: str(n))
    label = "痘痘"
