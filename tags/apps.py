from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TagsConfig(AppConfig):
    name = "tags"
    verbose_name = _("Tags")

    def ready(self) -> None:
        from customers.domain_events import register_consumer
        from customers.services.merge import MergeRelation, register_merge_relation
        from tags import consumers, predicates  # noqa: F401  (registers has_tag / lacks_tag)

        register_merge_relation(MergeRelation("tags.CustomerTag", unique_with=("tag", "source")))
        register_merge_relation(MergeRelation("tags.TagHistory"))
        register_merge_relation(MergeRelation("tags.QuestionnaireResponse", unique_with=("questionnaire",)))
        register_consumer("tags.auto_rules", consumers.KINDS, consumers.apply_rules_to_changed_customers)
