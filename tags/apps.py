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
        self.register_customer_page_extensions()
        from customers.demo import register_demo_step
        from tags.demo import seed_tags_demo

        register_demo_step("tags", seed_tags_demo)

    def register_customer_page_extensions(self) -> None:
        """Tag chips and a tag filter on the customer list, the tags and questionnaire panels on a customer's page."""
        from customers import extensions
        from tags import views

        extensions.register_list_filter(
            extensions.ListFilter("tag", "tags/_list_filter.html", views.filter_by_tags, views.tag_filter_choices)
        )
        extensions.register_row_decoration(
            extensions.RowDecoration("tags", _("Tags"), "tags/_row_chips.html", views.chips_by_customer)
        )
        extensions.register_detail_panel(extensions.DetailPanel("tags", "tags/_customer_panel.html", views.tags_panel))
        extensions.register_list_action(
            extensions.ListAction("bulk_tag", "tags/_bulk_action.html", views.bulk_action_context)
        )
        extensions.register_detail_panel(
            extensions.DetailPanel("questionnaires", "tags/_questionnaire_panel.html", views.questionnaires_panel)
        )
