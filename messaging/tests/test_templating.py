import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import Customer
from customers.tests.factories import (
    CustomerFactory,
    EventFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    StaffFactory,
)
from messaging.models import MessageTemplate, TemplateFormat
from messaging.templating import RenderError, RenderItem, render_batch, render_preview, validate_template
from tags.models import CustomerTag, TagSource
from tags.tests.factories import TagFactory

pytestmark = pytest.mark.django_db


def sms(body: str, **fields) -> MessageTemplate:
    return MessageTemplate(name="t", channel="sms", body=body, **fields)


def render(template: MessageTemplate, customer: Customer | None = None, **item) -> dict | RenderError:
    return render_batch([RenderItem(template=template, customer=customer, **item)])[0]


# ------------------------------------------------------------------------------------ J37: defaults and failures


def test_a_missing_or_empty_variable_renders_its_declared_default():
    template = MessageTemplate.objects.create(
        name="welcome", channel="sms", body="您好，{{ customer.name }}！{{ customer.attributes.level }}会员专享",
        defaults={"customer.name": "亲爱的顾客", "customer.attributes.level": "普通"},
    )  # fmt: skip
    nameless = CustomerFactory(name="", attributes={})
    known = CustomerFactory(name="王芳", attributes={"level": "金卡"})

    results = render_batch([RenderItem(template, customer=nameless), RenderItem(template, customer=known)])

    assert [result["text"] for result in results] == ["您好，亲爱的顾客！普通会员专享", "您好，王芳！金卡会员专享"]
    assert nameless.attributes == {}  # the default went into the message, not into the customer


def test_a_missing_variable_with_no_default_fails_the_render_and_names_it():
    template = sms("您好，{{ customer.name }}，您的等级：{{ customer.attributes.level }}")

    result = render(template, CustomerFactory(name="王芳", attributes={}))

    assert isinstance(result, RenderError)
    assert (result.code, result.variable) == ("missing_variable", "customer.attributes.level")
    assert str(result) == "The variable “customer.attributes.level” is missing and has no default."


def test_an_empty_value_with_no_default_fails_like_a_missing_one():
    result = render(sms("来自{{ customer.city }}的朋友"), CustomerFactory(city=""))

    assert isinstance(result, RenderError)
    assert result.variable == "customer.city"


def test_an_inline_default_filter_counts_as_a_default_and_a_condition_on_a_missing_variable_is_false():
    template = sms(
        "{{ customer.attributes.level|default:'普通' }}会员"
        "{% if coupon_code %}，券码 {{ coupon_code }}{% endif %}"
        "{% for tag in tags %}#{{ tag }}{% endfor %}"
    )

    result = render(template, CustomerFactory(attributes={}))

    assert result["text"] == "普通会员"


def test_a_template_that_renders_to_nothing_fails_rather_than_sending_a_blank_message():
    result = render(sms("{% if coupon_code %}券码 {{ coupon_code }}{% endif %}"), CustomerFactory())

    assert isinstance(result, RenderError)
    assert result.code == "empty"


def test_a_failing_item_fails_alone_and_the_rest_of_the_batch_renders():
    template = sms("{{ customer.name }}您好")
    good, nameless = CustomerFactory(name="李雷"), CustomerFactory(name="")

    results = render_batch([RenderItem(template, customer=good), RenderItem(template, customer=nameless)])

    assert results[0]["text"] == "李雷您好"
    assert isinstance(results[1], RenderError)


def test_an_invalid_template_fails_at_render_time_too():
    template = MessageTemplate.objects.create(name="bad", channel="sms", body="{% load static %}hi")

    result = render(template, CustomerFactory())

    assert isinstance(result, RenderError)
    assert result.code == "invalid_template"
    assert "{% load %}" in str(result)


def test_dispatch_fails_a_touchpoint_whose_template_cannot_render_and_sends_nothing(scripted):
    from messaging.models import TouchpointStatus
    from messaging.services.dispatch import dispatch_touchpoints
    from messaging.services.scheduling import schedule_touchpoint

    template = MessageTemplate.objects.create(name="level", channel="sms", body="{{ customer.attributes.level }}会员")
    customer = CustomerFactory(phone="13800000001", attributes={})
    touchpoint = schedule_touchpoint(channel="sms", idempotency_key="j37", customer=customer, template=template)

    dispatch_touchpoints([touchpoint.pk])

    touchpoint.refresh_from_db()
    assert (touchpoint.status, touchpoint.reason) == (TouchpointStatus.FAILED, "render_error")
    assert scripted.calls == []


# --------------------------------------------------------------------------------------------------- the sandbox


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{% load static %}", "The tag {% load %} is not allowed in messages"),
        ("{% include 'base.html' %}", "The tag {% include %} is not allowed in messages"),
        ("{% extends 'base.html' %}", "The tag {% extends %} is not allowed in messages"),
        ("{% url 'dashboard' %}", "The tag {% url %} is not allowed in messages"),
        ("{% debug %}", "The tag {% debug %} is not allowed in messages"),
        ("{% csrf_token %}", "The tag {% csrf_token %} is not allowed in messages"),
        ("{{ customer.name|safe }}", "The filter |safe is not allowed in messages"),
        ("{{ customer._meta }}", "Names starting with an underscore are not allowed"),
        ("{{ customer.name.upper }}", "“customer.name.upper” is not a variable you can use."),
        ("{{ tags.pop }}", "“tags.pop” is not a variable you can use."),
        ("{{ customer.owner.user.password }}", "“customer.owner.user.password” is not a variable you can use."),
        ("{{ settings.SECRET_KEY }}", "“settings.SECRET_KEY” is not a variable you can use."),
        ("{% for tag in tags %}{{ tag.delete }}{% endfor %}", "“tag.delete” is not a variable you can use."),
        ("{{ customer }}", "“customer” is a group of variables: use one of customer.name,"),
        ("{% if %}", "Template syntax error:"),
    ],
)
def test_validation_refuses_what_the_sandbox_does_not_allow_with_a_clear_message(body, error):
    errors = validate_template(sms(body))

    assert len(errors) == 1
    assert errors[0].startswith(error)


def test_validation_accepts_the_whitelisted_language():
    body = (
        "{% with name=customer.name %}{{ name|default:'您' }}{% endwith %} {{ customer.birthday|date:'n月j日' }} "
        "{% for product in order.products %}{{ forloop.counter }}.{{ product|truncatechars:10 }}{% endfor %} "
        "{{ event.properties.sku|upper }} {% now 'Y' as year %}{{ year }} {{ tags|join:'、' }}"
    )

    assert validate_template(sms(body)) == []


def test_custom_attribute_lookups_are_key_lookups_never_attribute_access_or_calls():
    # `items`, `keys` and `values` are dict methods: Django would call them; the sandbox only looks up keys.
    template = sms("{{ customer.attributes.items|default:'-' }}/{{ customer.attributes.values }}")

    result = render(template, CustomerFactory(attributes={"values": "正品"}))

    assert result["text"] == "-/正品"


def test_conditions_read_variables_through_the_same_whitelist():
    template = sms(
        "{% if 'VIP' in tags and not customer.attributes.blocked %}尊贵的{% endif %}"
        "{% if customer.attributes.level == '金卡' %}金卡{% else %}普通{% endif %}会员"
    )
    customer = CustomerFactory(attributes={"level": "金卡"})
    CustomerTag.objects.create(customer=customer, tag=TagFactory(name="VIP"), source=TagSource.MANUAL)

    assert render(template, customer)["text"] == "尊贵的金卡会员"
    assert validate_template(sms("{% if customer.secret == 1 %}x{% endif %}")) == [
        "“customer.secret” is not a variable you can use."
    ]


def test_a_huge_floatformat_precision_is_capped_rather_than_building_a_huge_string():
    order = OrderFactory(customer=(customer := CustomerFactory()), amount=Decimal("199.50"))

    result = render(sms("{{ order.amount|floatformat:'1000000000' }}"), customer, context={"order_id": order.pk})

    assert result["text"] == "199." + "5" + "0" * 19


def test_rendering_reads_no_model_relation_or_method(django_assert_num_queries):
    owner = StaffFactory(name="导购小李")
    customer = CustomerFactory(name="王芳", owner=owner)
    customer = Customer.objects.select_related("owner").get(pk=customer.pk)
    template = sms("{{ customer.name }}，我是{{ owner.name }}")

    with django_assert_num_queries(0):  # plain data only: nothing lazy for a template to reach into
        result = render(template, customer)

    assert result["text"] == "王芳，我是导购小李"


def test_sms_refuses_card_formats_and_each_format_requires_its_card_fields():
    link_sms = sms("看看", format=TemplateFormat.LINK, card={"title": "新品", "url": "https://x.test"})
    miniprogram = MessageTemplate(channel="wecom", format=TemplateFormat.MINIPROGRAM, card={"title": "小程序"})
    email = MessageTemplate(channel="email", body="hi")

    assert validate_template(link_sms) == ["This channel cannot send this format; it sends: Text."]
    assert validate_template(miniprogram) == [
        "This format needs the card's appid.",
        "This format needs the card's page.",
        "This format needs the card's image_url.",
    ]
    assert validate_template(email) == ["An email needs a subject."]


def test_defaults_must_name_whitelisted_variables():
    template = sms("{{ customer.name }}", defaults={"customer.name": "您", "customer.password": "x"})

    assert validate_template(template) == ["“customer.password” is not a variable you can use."]


# ------------------------------------------------------------------------------------------------ the variables


def test_a_customer_tags_owner_sender_order_and_event_are_rendered_from_the_touchpoint_context():
    owner, sender = StaffFactory(name="导购小李"), StaffFactory(name="店长老王")
    customer = CustomerFactory(name="王芳", owner=owner, phone="13812345678", gender="female")
    for name in ("宝妈", "高价值"):
        CustomerTag.objects.create(customer=customer, tag=TagFactory(name=name), source=TagSource.MANUAL)
    order = OrderFactory(customer=customer, external_id="E1001", amount=Decimal("299.00"))
    OrderLineFactory(order=order, name="面膜")
    OrderLineFactory(order=order, name="", product=ProductFactory(name="精华"))
    event = EventFactory(customer=customer, type="cart_add", properties={"sku": "A12"})
    template = sms(
        "{{ customer.name }}({{ customer.gender }}, {{ customer.phone }}) {{ tags|join:'/' }} "
        "{{ owner.name }}→{{ staff.name }} {{ order.number }} ¥{{ order.amount }} {{ order.status }} "
        "{{ order.products|join:'+' }} {{ event.label }} {{ event.properties.sku }} {{ coupon_code }} {{ link }}",
        language="en",
    )
    context = {"order_id": order.pk, "event_id": event.pk, "coupon_code": "SAVE10", "link": "https://s.test/a"}

    result = render(template, customer, staff=sender, context=context)

    assert result["text"] == (
        "王芳(female, 138****5678) 宝妈/高价值 导购小李→店长老王 E1001 ¥299.00 Paid 面膜+精华 "
        "Added to cart A12 SAVE10 https://s.test/a"
    )


def test_the_sender_defaults_to_the_customer_owner():
    customer = CustomerFactory(owner=StaffFactory(name="导购小李"))

    assert render(sms("我是{{ staff.name }}"), customer)["text"] == "我是导购小李"


def test_another_customer_order_is_never_shown():
    order = OrderFactory(customer=CustomerFactory(), external_id="SECRET")

    result = render(sms("订单 {{ order.number }}"), CustomerFactory(), context={"order_id": order.pk})

    assert isinstance(result, RenderError)
    assert result.variable == "order.number"


def test_render_batch_runs_a_fixed_number_of_queries_whatever_the_batch_size(django_assert_num_queries):
    template = MessageTemplate.objects.create(
        name="order", channel="wecom",
        body="{{ customer.name }} {{ tags|join:',' }} {{ staff.name }} {{ order.number }} "
        "{{ order.products|join:',' }} {{ event.type }}",
    )  # fmt: skip
    tag = TagFactory(name="VIP")

    def items(count: int) -> list[RenderItem]:
        batch = []
        for _n in range(count):
            customer = CustomerFactory(owner=StaffFactory())
            CustomerTag.objects.create(customer=customer, tag=tag, source=TagSource.MANUAL)
            order = OrderFactory(customer=customer)
            OrderLineFactory(order=order, name="面膜")
            event = EventFactory(customer=customer)
            batch.append(RenderItem(template, customer=customer, context={"order_id": order.pk, "event_id": event.pk}))
        return [*batch]

    few, many = items(5), items(50)
    for batch in (few, many):
        for item in batch:
            item.customer.refresh_from_db()  # the owner is not loaded: fetched for the whole batch
        with django_assert_num_queries(4):  # tags, owners, orders with their products, events
            results = render_batch(batch)
        assert all(isinstance(result, dict) for result in results)
    assert results[0]["text"].endswith("面膜 content_view")


def test_compiled_templates_are_cached_per_version_so_an_edit_renders_at_once():
    template = MessageTemplate.objects.create(name="v", channel="sms", body="第一版 {{ customer.name }}")
    customer = CustomerFactory(name="王芳")
    assert render(template, customer)["text"] == "第一版 王芳"

    template.body = "第二版 {{ customer.name }}"
    template.save()

    assert render(MessageTemplate.objects.get(pk=template.pk), customer)["text"] == "第二版 王芳"


def test_content_without_a_template_is_rendered_the_same_way():
    content = {"text": "{{ customer.name }}，{{ link }}", "defaults": {"customer.name": "您好"}}

    result = render_batch([RenderItem(None, content=content, customer=CustomerFactory(name=""), context={"link": "L"})])

    assert result[0] == {"format": "text", "text": "您好，L", "subject": "", "card": {}, "html": ""}


def test_a_group_message_has_no_customer_and_uses_defaults():
    template = sms("各位{{ customer.name }}好", defaults={"customer.name": "群友"})

    assert render(template, None)["text"] == "各位群友好"


# ------------------------------------------------------------------------------------ formats and languages


def test_a_wecom_miniprogram_card_renders_each_field():
    template = MessageTemplate(
        channel="wecom", format=TemplateFormat.MINIPROGRAM, body="",
        card={"title": "{{ customer.name }}的专属礼", "appid": "wx123", "page": "pages/gift?c={{ coupon_code }}",
              "image_url": "https://img.test/a.png"},
    )  # fmt: skip

    result = render_preview(template, CustomerFactory(name="王芳"), context={"coupon_code": "C9"})

    assert result["format"] == "miniprogram"
    assert result["card"] == {
        "title": "王芳的专属礼", "description": "", "url": "", "image_url": "https://img.test/a.png",
        "appid": "wx123", "page": "pages/gift?c=C9",
    }  # fmt: skip


def test_text_is_never_escaped_but_the_email_html_part_is():
    template = MessageTemplate(
        channel="email", format=TemplateFormat.LINK, subject="给{{ customer.name }}",
        body="您好 {{ customer.name }}\n新品上市", card={"title": "看看 {{ customer.name }}", "url": "{{ link }}"},
    )  # fmt: skip
    customer = CustomerFactory(name="<b>Tom & Jerry</b>")

    result = render_preview(template, customer, context={"link": "https://s.test/?a=1&b=2"})

    assert result["text"] == "您好 <b>Tom & Jerry</b>\n新品上市"
    assert result["subject"] == "给<b>Tom & Jerry</b>"
    assert result["html"] == (
        "<p>您好 &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;<br>新品上市</p>"
        '<p><a href="https://s.test/?a=1&amp;b=2">看看 &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</a></p>'
    )
    assert type(result["text"]) is str  # not SafeString: whoever shows it must escape it


@pytest.mark.parametrize(("language", "expected"), [("en", "March 5 Paid"), ("zh-hans", "三月 5 已付款")])
def test_dates_and_labels_use_the_template_language(language, expected):
    order = OrderFactory(customer=(customer := CustomerFactory(birthday=datetime.date(1990, 3, 5))))
    template = sms("{{ customer.birthday|date:'F j' }} {{ order.status }}", language=language)

    assert render(template, customer, context={"order_id": order.pk})["text"] == expected


def test_times_are_shown_in_the_customer_time_zone():
    customer = CustomerFactory(time_zone="America/New_York")
    occurred = datetime.datetime(2026, 1, 10, 12, 0, tzinfo=datetime.UTC)
    event = EventFactory(customer=customer, occurred_at=occurred)
    shanghai = CustomerFactory(time_zone="")
    other = EventFactory(customer=shanghai, occurred_at=occurred)
    template = sms("{{ event.occurred_at|date:'H:i' }}")

    assert render(template, customer, context={"event_id": event.pk})["text"] == "07:00"
    assert render(template, shanghai, context={"event_id": other.pk})["text"] == "20:00"
    assert timezone.get_current_timezone_name() == "Asia/Shanghai"  # the override ended with the render
