from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = _("Segments")

    def ready(self) -> None:
        from customers.domain_events import register_consumer
        from customers.services.merge import MergeRelation, register_merge_relation
        from segments import consumers, predicates  # noqa: F401  (registers in_segment)

        register_merge_relation(MergeRelation("segments.SegmentMembership", unique_with=("segment",)))
        register_merge_relation(MergeRelation("segments.SegmentExclusion", unique_with=("segment",)))
        register_consumer("segments.membership", consumers.KINDS, consumers.update_changed_customers)
