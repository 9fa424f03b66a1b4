from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from customers import domain_events
from customers.conditions import RuleError, sets
from customers.models import DomainEvent
from customers.tests.factories import CustomerFactory, OrderFactory, UserFactory
from tags import services, tasks
from tags.models import CustomerTag, TagHistory, TagKind, TagSource
from tags.tests.factories import AnswerCodeFactory, QuestionFactory, TagFactory

pytestmark = pytest.mark.django_db


def tags_of(customer) -> set[tuple[int, str]]:
    return set(CustomerTag.objects.filter(customer=customer).values_list("tag_id", "source"))


def events_of(kind: str) -> list[tuple[int, int]]:
    return [(e.customer_id, e.payload["tag_id"]) for e in DomainEvent.objects.filter(kind=kind).order_by("id")]


def big_spender_rule(threshold=1000):
    return {"predicate": "orders_sum", "op": "gt", "value": threshold, "window": {"last_days": 365}}


def test_adding_a_tag_twice_links_it_once_with_one_history_row_and_one_event():
    customer, tag = CustomerFactory(), TagFactory()
    user = UserFactory()

    assert services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL, by=user) == 1
    assert services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL, by=user) == 0

    assert tags_of(customer) == {(tag.pk, "manual")}
    assert list(TagHistory.objects.values_list("action", "source", "by")) == [("added", "manual", user.pk)]
    assert events_of("tag.added") == [(customer.pk, tag.pk)]


def test_a_second_source_adds_a_link_but_no_tag_added_event():
    customer, tag = CustomerFactory(), TagFactory()
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)

    services.add_tags([customer.pk], [tag.pk], source=TagSource.API)

    assert tags_of(customer) == {(tag.pk, "manual"), (tag.pk, "api")}
    assert len(events_of("tag.added")) == 1


def test_removing_one_source_keeps_the_tag_and_removing_the_last_emits_tag_removed():
    customer, tag = CustomerFactory(), TagFactory()
    services.add_tags([customer.pk], [tag.pk], source=TagSource.MANUAL)
    services.add_tags([customer.pk], [tag.pk], source=TagSource.API)

    services.remove_tags([customer.pk], [tag.pk], sources=[TagSource.API])
    assert events_of("tag.removed") == []
    services.remove_tags([customer.pk], [tag.pk], sources=[TagSource.MANUAL])

    assert tags_of(customer) == set()
    assert events_of("tag.removed") == [(customer.pk, tag.pk)]
    assert TagHistory.objects.filter(action="removed").count() == 2


def test_a_rule_tags_matching_customers_and_untags_the_lapsed_but_not_the_hand_given():
    tag = TagFactory()
    spender, lapsed, hand_tagged = CustomerFactory(), CustomerFactory(), CustomerFactory()
    OrderFactory(customer=spender, amount=Decimal(1500), ordered_at=timezone.now())
    services.add_tags([lapsed.pk], [tag.pk], source=TagSource.RULE)
    services.add_tags([hand_tagged.pk], [tag.pk], source=TagSource.RULE)
    services.add_tags([hand_tagged.pk], [tag.pk], source=TagSource.MANUAL)
    rule = services.save_rule(tag, big_spender_rule())

    run = services.apply_rule(rule)

    assert (run.matched, run.added, run.removed) == (1, 1, 2)
    assert tags_of(spender) == {(tag.pk, "rule")}
    assert tags_of(lapsed) == set()
    assert tags_of(hand_tagged) == {(tag.pk, "manual")}
    tag.refresh_from_db()
    assert tag.kind == TagKind.AUTO
    rule.refresh_from_db()
    assert rule.is_time_relative is True
    assert rule.last_run_stats["added"] == 1


def test_incremental_evaluation_touches_only_the_given_customers():
    tag = TagFactory()
    asked, other = CustomerFactory(), CustomerFactory()
    for customer in (asked, other):
        OrderFactory(customer=customer, amount=Decimal(2000), ordered_at=timezone.now())
    rule = services.save_rule(tag, big_spender_rule())

    run = services.apply_rule(rule, customer_ids=[asked.pk])

    assert (run.added, run.full) == (1, False)
    assert tags_of(asked) == {(tag.pk, "rule")}
    assert tags_of(other) == set()


def test_an_order_event_makes_the_consumer_apply_the_rule():
    tag = TagFactory()
    customer = CustomerFactory()
    rule = services.save_rule(tag, big_spender_rule())
    services.apply_rule(rule)
    DomainEvent.objects.update(processed_at=timezone.now())
    OrderFactory(customer=customer, amount=Decimal(3000), ordered_at=timezone.now())
    domain_events.record("order.placed", [customer.pk])

    domain_events.consume_all()

    assert tags_of(customer) == {(tag.pk, "rule")}
    assert DomainEvent.objects.filter(processed_at__isnull=True).count() == 0
    assert events_of("tag.added") == [(customer.pk, tag.pk)]


def test_a_rule_that_feeds_back_into_its_own_tag_is_refused():
    first, second = TagFactory(), TagFactory()
    services.save_rule(second, {"predicate": "has_tag", "tags": [first.pk]})

    with pytest.raises(RuleError) as refused:
        services.save_rule(first, {"predicate": "lacks_tag", "tags": [second.pk]})

    assert "own tag" in str(refused.value)
    first.refresh_from_db()
    assert first.kind == TagKind.MANUAL


def test_turning_a_rule_off_removes_the_tags_it_gave():
    tag = TagFactory()
    customer = CustomerFactory()
    OrderFactory(customer=customer, amount=Decimal(3000), ordered_at=timezone.now())
    rule = services.save_rule(tag, big_spender_rule())
    services.apply_rule(rule)

    services.save_rule(tag, big_spender_rule(), is_active=False)

    assert tags_of(customer) == set()


def test_questionnaire_answers_give_their_codes_tags_and_replace_earlier_answers():
    acne, dry = TagFactory(name="痘痘困扰"), TagFactory(name="干皮")
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3", label="痘痘", tag=acne)
    AnswerCodeFactory(question=question, code="4", label="干燥", tag=dry)
    customer = CustomerFactory()

    services.submit_answers(question.questionnaire, customer, {"Q1": "3"})
    assert tags_of(customer) == {(acne.pk, "questionnaire")}
    response = services.submit_answers(question.questionnaire, customer, {"Q1": "4"})

    assert tags_of(customer) == {(dry.pk, "questionnaire")}
    assert response.answers == {"Q1": "4"}


def test_unknown_questions_and_codes_are_refused_with_every_problem_and_nothing_written():
    question = QuestionFactory(code="Q1")
    AnswerCodeFactory(question=question, code="3")
    customer = CustomerFactory()

    with pytest.raises(services.TagError) as refused:
        services.submit_answers(question.questionnaire, customer, {"Q1": "9", "Q7": "1"})

    assert set(refused.value.errors) == {"answers.Q1", "answers.Q7"}
    assert "expected one of 3" in refused.value.errors["answers.Q1"][0]
    assert not customer.questionnaire_responses.exists()


def test_links_and_history_keep_no_orphans_without_database_constraints(django_user_model):
    customer, tag, user = CustomerFactory(), TagFactory(), UserFactory()
    services.add_tags([customer.pk, 10**12], [tag.pk], source=TagSource.MANUAL, by=user)  # no such customer

    assert list(CustomerTag.objects.values_list("customer_id", flat=True)) == [customer.pk]
    django_user_model.objects.filter(pk=user.pk).delete()
    assert list(CustomerTag.objects.values_list("added_by", flat=True)) == [None]
    assert list(TagHistory.objects.values_list("by", flat=True)) == [None]
    services.delete_tag(tag)
    assert not CustomerTag.objects.exists()
    assert not TagHistory.objects.filter(tag_id=tag.pk).exists()


def reltuples(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
        return cursor.fetchone()[0]


def test_a_large_tagging_refreshes_the_statistics_rules_are_planned_with(monkeypatch):
    monkeypatch.setattr(sets, "REFRESH_STATISTICS_AFTER", 5)
    tag, customers = TagFactory(), CustomerFactory.create_batch(6)
    before = reltuples("tags_customertag")

    services.add_tags([c.pk for c in customers[:4]], [tag.pk], source=TagSource.MANUAL)
    assert reltuples("tags_customertag") == before  # a small write leaves them to autovacuum
    services.add_tags([c.pk for c in customers], [tag.pk], source=TagSource.API)
    assert reltuples("tags_customertag") == 10


def test_a_rule_whose_run_after_saving_was_lost_is_run_by_the_minutes_sweep(
    monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "_enqueue_full_run", lambda rule_id: None)  # the broker was down
    customer = CustomerFactory()
    OrderFactory(customer=customer, amount=Decimal("2000.00"))
    with django_capture_on_commit_callbacks(execute=True):
        rule = services.save_rule(TagFactory(), big_spender_rule())
    tasks.evaluate_pending_rules()
    assert tags_of(customer) == {(rule.tag_id, "rule")}

    customer2 = CustomerFactory()
    OrderFactory(customer=customer2, amount=Decimal("2000.00"))
    tasks.evaluate_pending_rules()  # nothing pending: run once, not every minute
    assert tags_of(customer2) == set()


def test_tagging_with_an_unknown_tag_is_refused_and_writes_nothing():
    customer, tag = CustomerFactory(), TagFactory()

    with pytest.raises(services.TagError) as refused:
        services.add_tags([customer.pk], [tag.pk, 10**12], source=TagSource.API)

    assert refused.value.errors == {"tags": [f"No tag with id {10**12}."]}
    assert not CustomerTag.objects.exists()
    assert not TagHistory.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_tag_waits_for_a_tagging_in_flight_and_leaves_no_link_behind():
    import threading

    from django.db import transaction

    customers, tag = CustomerFactory.create_batch(3), TagFactory()
    tag_id = tag.pk
    tagged, release, failures = threading.Event(), threading.Event(), []

    def tag_everyone() -> None:
        try:
            with transaction.atomic():
                services.add_tags([c.pk for c in customers], [tag.pk], source=TagSource.MANUAL)
                tagged.set()
                release.wait(timeout=10)  # still uncommitted while the deletion starts
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    def delete() -> None:
        try:
            services.delete_tag(tag)
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    writer = threading.Thread(target=tag_everyone)
    writer.start()
    assert tagged.wait(timeout=10)
    deleter = threading.Thread(target=delete)
    deleter.start()
    assert wait_for_a_lock_wait()  # the deletion waits on the writer's lock
    release.set()
    writer.join(timeout=10)
    deleter.join(timeout=10)

    assert failures == []
    assert not CustomerTag.objects.filter(tag_id=tag_id).exists()
    assert sorted(events_of("tag.removed")) == sorted((c.pk, tag_id) for c in customers)


def wait_for_a_lock_wait(seconds: float = 10) -> bool:
    import time

    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.01)
    return False


def test_a_first_big_tagging_finishes_although_the_statistics_call_the_link_table_empty():
    from customers.models import Customer

    tag = TagFactory()
    Customer.objects.bulk_create([Customer(name=f"c{n}") for n in range(20_000)], batch_size=5_000)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tags_customertag")  # as after a clean-up: no page left
        cursor.execute("ANALYZE tags_customertag")  # no links: every lookup in it looks free to the planner
        # A per-row lookup of the other sources, planned as a scan of this "empty" table, scans the 20,000 links
        # the statement itself is writing, once per link: minutes. Read once, it takes well under a second.
        cursor.execute("SET LOCAL statement_timeout = '5s'")

    added = services.add_tags(Customer.objects.all(), [tag.pk], source=TagSource.IMPORT)

    assert added == 20_000
    assert DomainEvent.objects.filter(kind="tag.added").count() == 20_000
