from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = _("Segments")

    def ready(self) -> None:
        from customers.domain_events import register_consumer
        from customers.services.merge import MergeRelation, register_merge_relation
        from segments import consumers, layer_predicates, predicates  # noqa: F401  (register in_segment, rfm_class…)

        register_merge_relation(MergeRelation("segments.SegmentMembership", unique_with=("segment",)))
        register_merge_relation(MergeRelation("segments.SegmentExclusion", unique_with=("segment",)))
        register_consumer("segments.membership", consumers.KINDS, consumers.update_changed_customers)
        register_consumer("segments.rfm_rechecks", consumers.RFM_KINDS, consumers.recheck_rfm)
        self.register_customer_page_extensions()

    def register_customer_page_extensions(self) -> None:
        """Filters of the customer list by segment, RFM class, AIPL and lifecycle stage and ladder level (one query
        for all their controls: the segments' names), and the segments and layers panel on a customer's page."""
        from customers import extensions
        from segments.views import customer_pages as views

        for param, apply, choices in (
            ("segment", views.filter_by_segments, views.segment_filter_choices),
            ("rfm_class", views.filter_by_rfm_class, views.rfm_filter_choices),
            ("aipl_stage", views.filter_by_aipl_stage, views.aipl_filter_choices),
            ("lifecycle_stage", views.filter_by_lifecycle_stage, views.lifecycle_filter_choices),
            ("ladder_level", views.filter_by_ladder_level, views.ladder_filter_choices),
        ):
            extensions.register_list_filter(extensions.ListFilter(param, "segments/_list_filter.html", apply, choices))
        extensions.register_detail_panel(
            extensions.DetailPanel("segments", "segments/_customer_panel.html", views.segments_panel)
        )
