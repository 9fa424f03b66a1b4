from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = _("Journeys")

    def ready(self) -> None:
        from customers.domain_events import register_consumer
        from customers.services.merge import MergeRelation, register_merge_relation
        from journeys import consumers, steps  # noqa: F401  (registers the step types)

        # Enrollments and refusals stay with the merged record as its history; its active runs end (consumers).
        register_merge_relation(MergeRelation("journeys.Task"))
        register_consumer("journeys.triggers", consumers.KINDS, consumers.handle_events)
        from messaging.sources import register_source_namer

        register_source_namer("journey", consumers.name_journeys)
        self.register_customer_page_extensions()
        from customers.demo import register_demo_step
        from journeys.demo import seed_journeys_demo

        register_demo_step("journeys", seed_journeys_demo)

    def register_customer_page_extensions(self) -> None:
        """The journeys panel on a customer's page: her journeys past and present, refusals with their reasons
        (J7) and her open tasks."""
        from customers import extensions
        from journeys.views import customer_pages as views

        extensions.register_detail_panel(
            extensions.DetailPanel("journeys", "journeys/_customer_panel.html", views.journeys_panel)
        )
