from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.querysets import CustomerOwnedQuerySet


class TagGroup(models.Model):
    """A family of tags: basic attributes, interests, consumption, interaction, lifecycle…"""

    name = models.CharField(_("name"), max_length=50, unique=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("tag group")
        verbose_name_plural = _("tag groups")
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class TagKind(models.TextChoices):
    MANUAL = "manual", _("Manual")
    AUTO = "auto", _("Automatic (rule)")


class Tag(models.Model):
    group = models.ForeignKey(TagGroup, on_delete=models.PROTECT, related_name="tags", verbose_name=_("group"))
    name = models.CharField(_("name"), max_length=50)
    colour = models.CharField(_("colour"), max_length=7, default="#6c757d", help_text=_("A hex colour like #0d6efd."))
    description = models.CharField(_("description"), max_length=200, blank=True)
    kind = models.CharField(_("kind"), max_length=8, choices=TagKind.choices, default=TagKind.MANUAL)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["group__position", "group__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["group", "name"], name="tag_unique_in_group"),
            models.CheckConstraint(condition=models.Q(colour__regex=r"^#[0-9a-fA-F]{6}$"), name="tag_colour_hex"),
        ]

    def __str__(self) -> str:
        return self.name


class TagSource(models.TextChoices):
    MANUAL = "manual", _("By hand")
    RULE = "rule", _("Auto-tag rule")
    IMPORT = "import", _("Import")
    QUESTIONNAIRE = "questionnaire", _("Questionnaire")
    API = "api", _("API")
    EVENT = "event", _("Event")
    JOURNEY = "journey", _("Journey")


class CustomerTag(models.Model):
    """A customer carries a tag from one source; the same tag from two sources is two rows, so a rule that stops
    matching removes only its own row and a tag also given by hand stays.

    The references have no database constraint: a rule's first run writes tens of thousands of links, and the
    per-row checks (each locking the customer's or the tag's row) took two thirds of the write at a million
    customers. Every writer takes its customers from the customer table in the same statement, customers are
    never deleted (merged ones stay), and Django still applies `on_delete`. For the tag, writers hold its row
    FOR KEY SHARE once per statement and `delete_tag` takes it FOR UPDATE before taking the tag off everyone
    (`tags.services.lock_tags`): the one check a statement needs instead of one per row."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="tag_links", db_index=False, db_constraint=False
    )  # covered by customertag_unique
    tag = models.ForeignKey(
        Tag, on_delete=models.CASCADE, related_name="customer_links", db_index=False, db_constraint=False
    )  # covered by customertag_tag
    source = models.CharField(_("source"), max_length=16, choices=TagSource.choices)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        db_index=False, db_constraint=False,
    )  # fmt: skip
    added_at = models.DateTimeField(_("added at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("customer tag")
        verbose_name_plural = _("customer tags")
        constraints = [models.UniqueConstraint(fields=["customer", "tag", "source"], name="customertag_unique")]
        indexes = [
            models.Index(fields=["tag", "source", "customer"], name="customertag_tag"),
            models.Index(fields=["added_by"], name="customertag_added_by", condition=Q(added_by__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.tag_id} {self.source}"


class TagAction(models.TextChoices):
    ADDED = "added", _("Added")
    REMOVED = "removed", _("Removed")


class TagHistory(models.Model):
    """Every add and remove, per source; it survives the tag's removal from the customer. An append-only log
    written set-based next to the links it records, so its references have no database constraint (see
    CustomerTag)."""

    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="tag_history",
        db_index=False,
        db_constraint=False,
    )  # fmt: skip  (covered by taghistory_customer)
    tag = models.ForeignKey(
        Tag, on_delete=models.CASCADE, related_name="history", db_index=False, db_constraint=False
    )  # covered by taghistory_tag
    action = models.CharField(_("action"), max_length=8, choices=TagAction.choices)
    source = models.CharField(_("source"), max_length=16, choices=TagSource.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        db_index=False, db_constraint=False,
    )  # fmt: skip
    at = models.DateTimeField(_("at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("tag history")
        verbose_name_plural = _("tag history")
        indexes = [
            models.Index(fields=["customer", "-at"], name="taghistory_customer"),
            # A tag's history newest first (its page, the API's `?tag=`), read from the index in order.
            models.Index(fields=["tag", "-id"], name="taghistory_tag"),
            models.Index(fields=["by"], name="taghistory_by", condition=Q(by__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.action} {self.tag_id}"


class TagRule(models.Model):
    """An auto-tag rule: customers matching `rule` (the condition language) carry `tag` with source "rule"."""

    tag = models.OneToOneField(Tag, on_delete=models.CASCADE, related_name="rule", verbose_name=_("tag"))
    rule = models.JSONField(_("rule"))
    is_active = models.BooleanField(_("active"), default=True)
    is_time_relative = models.BooleanField(
        _("time-relative"), default=False, help_text=_("Uses windows relative to now; re-evaluated hourly.")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    last_run_at = models.DateTimeField(_("last full run"), null=True, blank=True)
    last_run_stats = models.JSONField(_("last run"), default=dict, blank=True)

    class Meta:
        verbose_name = _("auto-tag rule")
        verbose_name_plural = _("auto-tag rules")

    def __str__(self) -> str:
        return f"→ {self.tag}"


class Questionnaire(models.Model):
    """A questionnaire whose answer codes map to tags (a codebook)."""

    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("questionnaire")
        verbose_name_plural = _("questionnaires")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Question(models.Model):
    questionnaire = models.ForeignKey(Questionnaire, on_delete=models.CASCADE, related_name="questions")
    code = models.CharField(_("code"), max_length=20, help_text=_("How answers name the question, e.g. Q3."))
    text = models.CharField(_("question"), max_length=300)
    allows_many = models.BooleanField(_("several answers allowed"), default=False)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("question")
        verbose_name_plural = _("questions")
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["questionnaire", "code"], name="question_code_unique")]

    def __str__(self) -> str:
        return f"{self.code}. {self.text}"


class AnswerCode(models.Model):
    """One allowed answer of a question (code "3" = "acne"), and the tag it gives."""

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(_("code"), max_length=20)
    label = models.CharField(_("label"), max_length=200)
    tag = models.ForeignKey(
        Tag, on_delete=models.SET_NULL, null=True, blank=True, related_name="answer_codes", verbose_name=_("tag")
    )

    class Meta:
        verbose_name = _("answer code")
        verbose_name_plural = _("answer codes")
        ordering = ["question", "code"]
        constraints = [models.UniqueConstraint(fields=["question", "code"], name="answercode_unique")]

    def __str__(self) -> str:
        return f"{self.code} = {self.label}"


class QuestionnaireResponse(models.Model):
    """A customer's latest answers to a questionnaire (question code → answer code or codes)."""

    questionnaire = models.ForeignKey(Questionnaire, on_delete=models.CASCADE, related_name="responses")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="questionnaire_responses")
    answers = models.JSONField(_("answers"), default=dict)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    submitted_at = models.DateTimeField(_("submitted at"), default=timezone.now)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("questionnaire response")
        verbose_name_plural = _("questionnaire responses")
        constraints = [
            models.UniqueConstraint(fields=["questionnaire", "customer"], name="questionnaireresponse_unique")
        ]

    def __str__(self) -> str:
        return f"{self.questionnaire_id} / {self.customer_id}"
