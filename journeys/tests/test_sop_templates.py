"""Built-in SOP templates: each creates a draft that validates and publishes on an empty database, and the welcome
template runs end to end."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from customers import domain_events
from customers.models import CommunityGroup, Customer, DomainEventKind
from customers.tests.factories import CommunityGroupFactory, CustomerFactory, GroupMembershipFactory
from journeys import definition as definitions
from journeys import sop_templates
from journeys.models import Enrollment, JourneyStatus
from journeys.services import lifecycle, runtime
from journeys.services.dryrun import dry_run
from journeys.sop_templates import TEMPLATES, UnknownTemplate, create_from_template
from messaging.models import Touchpoint
from messaging.templating.rendering import RenderItem, render_batch
from segments.models import Segment, SegmentKind

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_2PM = datetime.datetime(2026, 11, 23, 14, 0, tzinfo=SHANGHAI)
CODES = ["welcome", "first_order", "repurchase", "birthday", "dormant", "winback", "group_weekly", "new_group_rhythm"]


def messages_of(draft) -> list[str]:
    texts = [step["text"] for step in draft["steps"] if step["type"] in ("send", "invite_group")]
    return texts + [item["text"] for item in draft["trigger"].get("plan", [])]


def test_the_eight_templates_are_listed_in_order_with_a_title_and_a_description():
    assert [sop.code for sop in TEMPLATES] == CODES
    assert all(str(sop.title) and str(sop.description) for sop in TEMPLATES)


@pytest.mark.parametrize("code", CODES)
def test_each_template_creates_a_draft_that_validates_and_publishes_on_an_empty_database(code, operator):
    journey = create_from_template(code, by=operator)

    assert (journey.status, journey.template_code, journey.owner) == (JourneyStatus.DRAFT, code, operator)
    assert journey.name == str(sop_templates.template(code).title)
    assert definitions.validate(journey.draft) == journey.draft
    version = lifecycle.publish(journey, by=operator)
    journey.refresh_from_db()
    assert (journey.status, journey.current_version, version.number) == (JourneyStatus.ACTIVE, version, 1)


@pytest.mark.parametrize("code", CODES)
def test_each_templates_draft_can_be_dry_run(code, operator):
    CustomerFactory()
    journey = create_from_template(code, by=operator)

    result = dry_run(journey)

    expected = 1 if code in ("welcome", "first_order") else 0  # every customer for a customer_added trigger
    assert result.entering == expected
    assert set(result.step_counts) == {step["id"] for step in journey.draft["steps"]}


@pytest.mark.parametrize("code", CODES)
def test_every_message_of_every_template_renders_for_a_customer_without_a_name(code, operator):
    customer = CustomerFactory(name="")
    journey = create_from_template(code, by=operator)

    texts = messages_of(journey.draft)
    rendered = render_batch([RenderItem(template=None, content={"text": text}, customer=customer, channel="wecom")
                             for text in texts])  # fmt: skip

    assert texts
    assert [type(result) for result in rendered] == [dict] * len(texts)
    assert all("{{" not in result["text"] for result in rendered)


def test_an_unknown_template_code_is_refused(operator):
    with pytest.raises(UnknownTemplate):
        create_from_template("nope", by=operator)


def test_the_welcome_template_invites_to_an_existing_customer_group_and_creates_none(operator):
    CommunityGroupFactory(name="宝妈群", group_type="mums")
    customer_group = CommunityGroupFactory(name="老客群", group_type="customer")

    journey = create_from_template("welcome", by=operator)

    invite = definitions.by_id(journey.draft)["invite"]
    assert invite["group"] == customer_group.pk
    assert CommunityGroup.objects.count() == 2


def test_what_templates_create_is_created_once(operator):
    for _time in range(2):
        create_from_template("welcome", by=operator)
        create_from_template("dormant", by=operator)
        create_from_template("winback", by=operator)

    group = CommunityGroup.objects.get()
    assert (group.name, group.chat_id, group.group_type) == ("新人福利群", "sop-welcome-group", "customer")
    dormant = Segment.objects.get(kind=SegmentKind.DYNAMIC)
    assert (dormant.name, dormant.rule) == ("沉睡客户 (90 天未下单)", sop_templates.DORMANT_RULE)
    assert list(Segment.objects.filter(kind=SegmentKind.MODEL).values_list("model_key", flat=True)) == [
        "rfm:important_keep"
    ]


def test_the_winback_template_enters_customers_from_the_rfm_model_segment(operator):
    journey = create_from_template("winback", by=operator)

    segment = Segment.objects.get(pk=journey.draft["trigger"]["segment"])
    assert (segment.kind, segment.model_key) == (SegmentKind.MODEL, "rfm:important_keep")
    assert [step["type"] for step in journey.draft["steps"]] == ["send", "task"]


def test_the_repurchase_reminder_names_the_product_its_enrollment_is_about(operator):
    journey = create_from_template("repurchase", by=operator)
    customer = CustomerFactory(name="小美")

    remind = definitions.by_id(journey.draft)["remind"]["text"]
    [text] = render_batch([RenderItem(template=None, content={"text": remind}, customer=customer, channel="wecom",
                                      context={"product_name": "补水面膜"})])  # fmt: skip

    assert "你上次入手的补水面膜差不多快用完啦" in text["text"]


def test_the_welcome_journey_greets_a_new_customer_then_invites_her_the_next_day_at_ten(operator):
    with time_machine.travel(MONDAY_2PM, tick=False):
        journey = create_from_template("welcome", by=operator)
        lifecycle.publish(journey, by=operator)
        customer = CustomerFactory(name="小美")
        domain_events.record(DomainEventKind.CUSTOMER_CREATED, [customer.pk])
        domain_events.consume_all()
        runtime.advance_due()

        greeting = Touchpoint.objects.get(customer=customer)
        assert (greeting.channel, greeting.kind, greeting.source_ref) == ("wecom", "marketing", journey.source_ref)
        assert greeting.content["text"].startswith('{{ customer.name|default:"亲" }}，你好呀～')
        enrollment = Enrollment.objects.get(journey=journey, customer=customer)
        assert (enrollment.step, enrollment.next_run_at) == ("wait", datetime.datetime(2026, 11, 24, 10, 0,
                                                                                         tzinfo=SHANGHAI))  # fmt: skip

    with time_machine.travel(datetime.datetime(2026, 11, 24, 9, 59, tzinfo=SHANGHAI), tick=False):
        runtime.advance_due()
        assert Touchpoint.objects.filter(customer=customer).count() == 1

    with time_machine.travel(datetime.datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI), tick=False):
        runtime.advance_due()

    invite = Touchpoint.objects.filter(customer=customer).exclude(pk=greeting.pk).get()
    group = CommunityGroup.objects.get(chat_id="sop-welcome-group")
    assert invite.content["text"].startswith("我们有一个新人福利群")
    assert invite.due_at == datetime.datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason) == ("completed", "end")
    assert list(enrollment.step_runs.order_by("seq").values_list("step", "outcome")) == [
        ("greet", "queued"), ("wait", "done"), ("check", "branch:0"), ("invite", "invited")
    ]  # fmt: skip
    assert group.name == "新人福利群"


def test_the_welcome_journey_does_not_invite_a_customer_already_in_the_group(operator):
    with time_machine.travel(MONDAY_2PM, tick=False):
        journey = create_from_template("welcome", by=operator)
        lifecycle.publish(journey, by=operator)
        customer = CustomerFactory()
        domain_events.record(DomainEventKind.CUSTOMER_CREATED, [customer.pk])
        domain_events.consume_all()
        runtime.advance_due()
        group = CommunityGroup.objects.get(chat_id="sop-welcome-group")
        GroupMembershipFactory(group=group, customer=customer)

    with time_machine.travel(datetime.datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI), tick=False):
        runtime.advance_due()

    assert Touchpoint.objects.filter(customer=customer).count() == 1  # the greeting only
    assert Enrollment.objects.get(customer=customer).exit_reason == "end"
    assert Customer.objects.count() == 1
