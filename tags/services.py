"""Writes for tags: add/remove (by hand, import, API, questionnaire), auto-tag rules, questionnaire answers.

Every write is one set-based statement that also writes the history rows and the `tag.added` / `tag.removed`
domain events (only when the customer gains the tag's first source or loses its last one).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from customers import domain_events
from customers.conditions import (
    Context,
    RuleError,
    RuleIssue,
    is_time_relative,
    leads_back,
    matching_customers,
    predicates_of,
)
from customers.conditions import validate as validate_rule
from customers.conditions.sets import materialize, refresh_statistics
from customers.models import Customer, DomainEventKind
from tags.models import (
    AnswerCode,
    CustomerTag,
    Question,
    Questionnaire,
    QuestionnaireResponse,
    Tag,
    TagKind,
    TagRule,
    TagSource,
)

RULE_LOCK_NAMESPACE = 0x7A65

Customers = QuerySet | Iterable[int]


class TagError(ValueError):
    """Bad input for a tag write; `errors` maps a field to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


# Above this many customers named by id (or for any queryset), a write is "bulk" for `_events_sql`.
FEW_CUSTOMERS = 1_000


def _targets(customers: Customers) -> tuple[str, list[Any], bool]:
    """SQL selecting `id` of the given customers (a queryset or ids), its parameters, and whether they may be many."""
    if isinstance(customers, QuerySet):
        sql, params = customers.order_by().values("pk").query.sql_with_params()
        return f"SELECT pk_ AS id FROM ({sql}) AS q(pk_)", list(params), True  # noqa: S608 - Django's own SQL
    ids = sorted({int(pk) for pk in customers})
    return "SELECT unnest(%s::bigint[]) AS id", [ids], len(ids) > FEW_CUSTOMERS


def lock_tags(tag_ids: Iterable[int], *, for_delete: bool = False) -> list[int]:
    """Lock these tags' rows until the transaction ends and return the ids that exist. Writers of links take
    FOR KEY SHARE (many at once), `delete_tag` FOR UPDATE, which waits for them: links have no per-row database
    check of their tag (see CustomerTag), so this is what keeps a link from outliving its tag."""
    mode = "UPDATE" if for_delete else "KEY SHARE"
    with connection.cursor() as cursor:
        sql = f"SELECT id FROM tags_tag WHERE id = ANY(%s::bigint[]) ORDER BY id FOR {mode}"  # noqa: S608 - constant
        cursor.execute(sql, [list(tag_ids)])
        return [row[0] for row in cursor.fetchall()]


def _user_id(by) -> int | None:
    return by.pk if by is not None and getattr(by, "is_authenticated", False) else None


def _events_sql(rows: str, kind: str, *, other_source_sql: str, bulk_of: list[int] | None = None) -> str:
    """Domain events for (customer_id, tag_id) pairs in CTE `rows` where no other source holds the tag.

    A few rows each look their pair up (an index probe). A bulk write (`bulk_of`: its tag ids) subtracts the
    holders from other sources, read once, with EXCEPT: a per-row lookup planned on statistics that call the link
    table tiny (analyzed while nearly empty) became a scan of the whole table per row, and the table holds the
    statement's own new links, so a first import of 300,000 links never finished."""
    if bulk_of is None:
        source = f"(SELECT DISTINCT customer_id, tag_id, source FROM {rows}) r"  # noqa: S608 - constants only
        where = (
            "NOT EXISTS (SELECT 1 FROM tags_customertag o WHERE o.customer_id = r.customer_id "  # noqa: S608
            f"AND o.tag_id = r.tag_id AND {other_source_sql})"
        )
    else:
        tags = "ARRAY[" + ",".join(str(int(pk)) for pk in bulk_of) + "]::bigint[]"
        source = f"""(
            SELECT DISTINCT x.customer_id, x.tag_id, x.source FROM {rows} x JOIN (
                SELECT customer_id, tag_id FROM {rows}
                EXCEPT SELECT o.customer_id, o.tag_id FROM tags_customertag o
                WHERE o.tag_id = ANY({tags}) AND {other_source_sql}
            ) firsts USING (customer_id, tag_id)
        ) r"""  # noqa: S608 - constants and integers only
        where = "TRUE"
    return domain_events.outbox_insert_sql(
        source, f"'{kind}'", "jsonb_build_object('tag_id', r.tag_id, 'source', r.source)", where=where
    )


def add_tags(customers: Customers, tag_ids: Iterable[int], *, source: str, by=None) -> int:
    """Give these customers these tags from `source`; returns the links created. Idempotent, set-based."""
    tags = sorted(set(tag_ids))
    if not tags:
        return 0
    targets, params, bulk = _targets(customers)
    user_id = _user_id(by)
    with transaction.atomic(), connection.cursor() as cursor:
        if unknown := sorted(set(tags) - set(lock_tags(tags))):
            raise TagError({"tags": [_("No tag with id %(ids)s.") % {"ids": ", ".join(map(str, unknown))}]})
        cursor.execute(
            f"""
            WITH targets AS ({targets}),
            ins AS (
                INSERT INTO tags_customertag (customer_id, tag_id, source, added_by_id, added_at)
                SELECT t.id, g.tag_id, %s, %s, now()
                FROM targets t CROSS JOIN unnest(%s::bigint[]) AS g(tag_id)
                JOIN customers_customer c ON c.id = t.id AND c.merged_into_id IS NULL
                ON CONFLICT (customer_id, tag_id, source) DO NOTHING
                RETURNING customer_id, tag_id, source
            ),
            hist AS (
                INSERT INTO tags_taghistory (customer_id, tag_id, action, source, by_id, at)
                SELECT customer_id, tag_id, 'added', source, %s, now() FROM ins
            ),
            ev AS ({
                _events_sql(
                    "ins", DomainEventKind.TAG_ADDED, other_source_sql="o.source <> %s", bulk_of=tags if bulk else None
                )
            })
            SELECT count(*) FROM ins
            """,  # noqa: S608 - constants and Django's own SQL only
            [*params, source, user_id, tags, user_id, source],
        )
        created = cursor.fetchone()[0]
        refresh_statistics("tags_customertag", created)
        if created:
            domain_events.kick_after_commit()
    return created


def remove_tags(customers: Customers, tag_ids: Iterable[int], *, sources: Iterable[str], by=None) -> int:
    """Take these tags' links from `sources` off these customers; returns the links removed. Set-based."""
    tags, sources = sorted(set(tag_ids)), sorted(set(sources))
    if not tags or not sources:
        return 0
    targets, params, bulk = _targets(customers)
    user_id = _user_id(by)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH targets AS ({targets}),
            del AS (
                DELETE FROM tags_customertag ct USING targets t
                WHERE ct.customer_id = t.id AND ct.tag_id = ANY(%s::bigint[]) AND ct.source = ANY(%s::text[])
                RETURNING ct.customer_id, ct.tag_id, ct.source
            ),
            hist AS (
                INSERT INTO tags_taghistory (customer_id, tag_id, action, source, by_id, at)
                SELECT customer_id, tag_id, 'removed', source, %s, now() FROM del
            ),
            ev AS ({
                _events_sql(
                    "del",
                    DomainEventKind.TAG_REMOVED,
                    other_source_sql="o.source <> ALL(%s::text[])",
                    bulk_of=tags if bulk else None,
                )
            })
            SELECT count(*) FROM del
            """,  # noqa: S608 - constants and Django's own SQL only
            [*params, tags, sources, user_id, sources],
        )
        removed = cursor.fetchone()[0]
        refresh_statistics("tags_customertag", removed)
        if removed:
            domain_events.kick_after_commit()
    return removed


MANUAL_SOURCES = [s for s in TagSource.values if s != TagSource.RULE]


# ------------------------------------------------------------------------------------------------ auto rules


@dataclass(frozen=True)
class RuleRun:
    matched: int
    added: int
    removed: int
    seconds: float
    full: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_rule(tag_rule: TagRule, *, customer_ids: Iterable[int] | None = None, now=None) -> RuleRun:
    """Make the rule's tag (source "rule") sit on exactly the customers matching it: one statement inserting the
    new matches and deleting the lapsed, with history and domain events. Over everyone, or only `customer_ids`
    (the incremental check after their change). Serialized per rule by an advisory lock."""
    started = time.monotonic()
    ctx = Context(now=now or timezone.now())
    ids = None if customer_ids is None else sorted(set(customer_ids))
    if ids is not None and not ids:
        return RuleRun(0, 0, 0, 0.0, full=False)
    if not tag_rule.is_active:
        raise ValueError("inactive rules are not applied")
    matches = matching_customers(tag_rule.rule, ctx=ctx, customer_ids=ids)
    match_sql, match_params = matches.order_by().values("pk").query.sql_with_params()
    scope_sql = "AND ct.customer_id = ANY(%s::bigint[])" if ids is not None else ""
    scope_params = [ids] if ids is not None else []
    tag_id = tag_rule.tag_id
    other = "o.source <> 'rule'"
    bulk = [tag_id] if ids is None or len(ids) > FEW_CUSTOMERS else None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [RULE_LOCK_NAMESPACE, tag_rule.pk])
        if not lock_tags([tag_id]):  # deleted meanwhile: its rule goes with it
            return RuleRun(0, 0, 0, round(time.monotonic() - started, 3), full=ids is None)
        if ids is None:  # over everyone: the match on its own, with parallel workers
            match_sql, match_params = f"SELECT * FROM {materialize(match_sql, match_params)}", ()  # noqa: S608
        cursor.execute(
            f"""
            WITH m(id) AS MATERIALIZED ({match_sql}),
            cur AS MATERIALIZED (
                SELECT ct.customer_id FROM tags_customertag ct
                WHERE ct.tag_id = %s AND ct.source = 'rule' {scope_sql}
            ),
            -- The diff as a FULL JOIN, which Postgres can only run as a hash or merge join: with NOT EXISTS it
            -- picked a nested loop from stale estimates and a re-run at a million customers took 30 s.
            diff AS MATERIALIZED (
                SELECT m.id AS gained, cur.customer_id AS lapsed FROM m FULL JOIN cur ON cur.customer_id = m.id
                WHERE m.id IS NULL OR cur.customer_id IS NULL
            ),
            -- In customer order, so the unique index is appended to rather than written all over. ON CONFLICT
            -- stays: a merge moving a customer's links does not take the rule's lock.
            ins AS (
                INSERT INTO tags_customertag (customer_id, tag_id, source, added_at)
                SELECT gained, %s, 'rule', now() FROM diff WHERE gained IS NOT NULL ORDER BY gained
                ON CONFLICT (customer_id, tag_id, source) DO NOTHING
                RETURNING customer_id, tag_id, source
            ),
            del AS (
                DELETE FROM tags_customertag ct USING diff
                WHERE ct.customer_id = diff.lapsed AND ct.tag_id = %s AND ct.source = 'rule'
                RETURNING ct.customer_id, ct.tag_id, ct.source
            ),
            hist AS (
                INSERT INTO tags_taghistory (customer_id, tag_id, action, source, at)
                SELECT customer_id, tag_id, 'added', source, now() FROM ins
                UNION ALL SELECT customer_id, tag_id, 'removed', source, now() FROM del
            ),
            ev_in AS ({_events_sql("ins", DomainEventKind.TAG_ADDED, other_source_sql=other, bulk_of=bulk)}),
            ev_out AS ({_events_sql("del", DomainEventKind.TAG_REMOVED, other_source_sql=other, bulk_of=bulk)})
            SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM ins), (SELECT count(*) FROM del)
            """,  # noqa: S608 - constants and Django's own SQL only
            [*match_params, tag_id, *scope_params, tag_id, tag_id],
        )
        matched, added, removed = cursor.fetchone()
        refresh_statistics("tags_customertag", added + removed)
        run = RuleRun(matched, added, removed, round(time.monotonic() - started, 3), full=ids is None)
        if ids is None:
            TagRule.objects.filter(pk=tag_rule.pk).update(last_run_at=ctx.now, last_run_stats=run.as_dict())
        if added or removed:
            domain_events.kick_after_commit()
    return run


def _referenced_tags(rule: Any) -> set[int]:
    node = validate_rule(rule)
    return {
        tag_id for name, params in predicates_of(node) if name in ("has_tag", "lacks_tag") for tag_id in params["tags"]
    }


def _check_no_cycle(tag: Tag, rule: Any) -> None:
    """Refuse a rule whose tag feeds back into itself through rules (it would flip on every evaluation)."""
    graph = {r.tag_id: _referenced_tags(r.rule) for r in TagRule.objects.exclude(tag=tag).filter(is_active=True)}
    if leads_back(tag.pk, _referenced_tags(rule), graph):
        raise RuleError([RuleIssue("$", _("The rule depends on its own tag (directly or through other rules)."))])


def save_rule(tag: Tag, rule: Any, *, by=None, is_active: bool = True) -> TagRule:
    """Create or replace the tag's auto-tag rule; validates (RuleError), refuses cycles, then evaluates it in full
    after commit (in a worker). Turning a rule off removes the tags it gave."""
    node = validate_rule(rule)
    _check_no_cycle(tag, rule)
    with transaction.atomic():
        Tag.objects.filter(pk=tag.pk).update(kind=TagKind.AUTO)
        tag_rule, _created = TagRule.objects.update_or_create(
            tag=tag,
            defaults={"rule": rule, "is_active": is_active, "is_time_relative": is_time_relative(node)},
            create_defaults={"rule": rule, "is_active": is_active, "is_time_relative": is_time_relative(node),
                             "created_by": by if _user_id(by) else None},
        )  # fmt: skip
        if not is_active:
            remove_rule_tags(tag_rule)
        else:
            transaction.on_commit(lambda: _enqueue_full_run(tag_rule.pk))
    return tag_rule


def remove_rule_tags(tag_rule: TagRule) -> int:
    return remove_tags(
        Customer.objects.filter(tag_links__tag_id=tag_rule.tag_id, tag_links__source=TagSource.RULE),
        [tag_rule.tag_id],
        sources=[TagSource.RULE],
    )


def delete_rule(tag_rule: TagRule) -> None:
    """Delete the rule and the tags it gave (tags given by hand stay); the tag becomes a manual one."""
    with transaction.atomic():
        remove_rule_tags(tag_rule)
        Tag.objects.filter(pk=tag_rule.tag_id).update(kind=TagKind.MANUAL)
        tag_rule.delete()


def _enqueue_full_run(rule_id: int) -> None:
    from scrm.celery import send_quietly
    from tags.tasks import evaluate_rule

    send_quietly(evaluate_rule, rule_id)  # if the broker is down, the minute's sweep of pending rules runs it


def apply_rules(*, time_relative_only: bool = False, pending_only: bool = False) -> dict[int, RuleRun]:
    """Full evaluation of every active rule, or only the time-relative ones (the hourly sweep), or only those saved
    since their last full run (the minute's sweep: a run whose task was lost, e.g. with the broker down)."""
    rules = TagRule.objects.filter(is_active=True).order_by("pk")
    if time_relative_only:
        rules = rules.filter(is_time_relative=True)
    if pending_only:
        rules = rules.filter(Q(last_run_at__isnull=True) | Q(last_run_at__lt=F("updated_at")))
    return {rule.pk: apply_rule(rule) for rule in rules}


# ------------------------------------------------------------------------------------------------------- tags


def rules_using(tag: Tag) -> list[TagRule]:
    """Other tags' rules that name this tag (has_tag / lacks_tag)."""
    using = []
    for tag_rule in TagRule.objects.exclude(tag=tag).select_related("tag").order_by("pk"):
        try:
            node = validate_rule(tag_rule.rule)
        except RuleError:
            continue
        if any(name in ("has_tag", "lacks_tag") and tag.pk in p["tags"] for name, p in predicates_of(node)):
            using.append(tag_rule)
    return using


def delete_tag(tag: Tag, *, by=None) -> None:
    """Take the tag off every customer (with `tag.removed` events, so what reacts to tags hears of it), then delete
    it; its history goes with it."""
    with transaction.atomic():
        lock_tags([tag.pk], for_delete=True)  # waits for writers of its links; later ones find it gone
        if hasattr(tag, "rule"):
            delete_rule(tag.rule)
        carriers = Customer.objects.filter(tag_links__tag=tag)
        remove_tags(carriers, [tag.pk], sources=TagSource.values, by=by)
        tag.delete()


# ----------------------------------------------------------------------------------------------- questionnaires


@transaction.atomic
def save_questionnaire(questionnaire: Questionnaire | None, data: dict[str, Any]) -> Questionnaire:
    """Create or replace a questionnaire with its questions and answer codes, matched by code: kept codes keep
    their rows, missing ones are deleted. Stored answers are not re-read; changed codebooks apply to answers
    submitted afterwards."""
    fields = {k: v for k, v in data.items() if k != "questions"}
    if questionnaire is None:
        questionnaire = Questionnaire.objects.create(**fields)
    else:
        for name, value in fields.items():
            setattr(questionnaire, name, value)
        questionnaire.save()
    questions = Question.objects.bulk_create(
        [Question(questionnaire=questionnaire, **{k: v for k, v in q.items() if k != "codes"})
         for q in data["questions"]],
        update_conflicts=True, unique_fields=["questionnaire", "code"],
        update_fields=["text", "allows_many", "position"],
    )  # fmt: skip
    questionnaire.questions.exclude(pk__in=[q.pk for q in questions]).delete()
    codes = AnswerCode.objects.bulk_create(
        [AnswerCode(question=question, **code) for question, q in zip(questions, data["questions"], strict=True)
         for code in q["codes"]],
        update_conflicts=True, unique_fields=["question", "code"], update_fields=["label", "tag"],
    )  # fmt: skip
    AnswerCode.objects.filter(question__questionnaire=questionnaire).exclude(pk__in=[c.pk for c in codes]).delete()
    return questionnaire


def submit_answers(
    questionnaire: Questionnaire, customer: Customer, answers: Mapping[str, Any], *, by=None
) -> QuestionnaireResponse:
    """Store the customer's answers (question code → answer code, or a list where several are allowed) and give
    the tags their codes map to; tags of answers no longer given are taken off. Refuses unknown questions or
    codes with every problem listed (TagError), writing nothing."""
    if not isinstance(answers, Mapping) or not answers:
        raise TagError({"answers": [_("Expected an object of question code → answer code.")]})
    questions = {q.code: q for q in questionnaire.questions.prefetch_related("codes")}
    errors: dict[str, list[str]] = {}
    chosen: list[AnswerCode] = []
    clean: dict[str, Any] = {}
    for question_code, given in answers.items():
        question = questions.get(str(question_code))
        if question is None:
            errors[f"answers.{question_code}"] = [_("No such question in this questionnaire.")]
            continue
        codes = given if isinstance(given, list) else [given]
        if not codes or (len(codes) > 1 and not question.allows_many):
            errors[f"answers.{question_code}"] = [_("Expected one answer code.")]
            continue
        by_code = {c.code: c for c in question.codes.all()}
        unknown = [str(c) for c in codes if str(c) not in by_code]
        if unknown:
            errors[f"answers.{question_code}"] = [
                _("Unknown answer code %(codes)s; expected one of %(allowed)s.")
                % {"codes": ", ".join(unknown), "allowed": ", ".join(by_code)}
            ]
            continue
        chosen.extend(by_code[str(c)] for c in codes)
        clean[question.code] = [str(c) for c in codes] if question.allows_many else str(codes[0])
    if errors:
        raise TagError(errors)
    with transaction.atomic():
        response, _created = QuestionnaireResponse.objects.update_or_create(
            questionnaire=questionnaire,
            customer=customer,
            defaults={"answers": clean, "submitted_by": by if _user_id(by) else None, "submitted_at": timezone.now()},
        )
        wanted = _questionnaire_tags(customer)
        given = set(
            CustomerTag.objects.filter(customer=customer, source=TagSource.QUESTIONNAIRE).values_list(
                "tag_id", flat=True
            )
        )
        remove_tags([customer.pk], given - wanted, sources=[TagSource.QUESTIONNAIRE], by=by)
        add_tags([customer.pk], wanted - given, source=TagSource.QUESTIONNAIRE, by=by)
    return response


def _questionnaire_tags(customer: Customer) -> set[int]:
    """Tags that all of the customer's current answers (to every questionnaire) map to."""
    answered = Q(pk__in=[])
    for response in QuestionnaireResponse.objects.filter(customer=customer):
        for question_code, given in response.answers.items():
            codes = given if isinstance(given, list) else [given]
            answered |= Q(
                question__questionnaire_id=response.questionnaire_id, question__code=question_code, code__in=codes
            )
    return set(AnswerCode.objects.filter(answered, tag__isnull=False).values_list("tag_id", flat=True))
