from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("Messaging")

    def ready(self) -> None:
        from customers.services.merge import MergeRelation, register_merge_relation
        from messaging import integrations

        register_merge_relation(MergeRelation("messaging.Touchpoint"))
        integrations.ready()
        from messaging.views.customer_panel import register_customer_page_extensions

        register_customer_page_extensions()
