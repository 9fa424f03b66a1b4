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
        from customers.demo import register_demo_step
        from messaging.demo import seed_messaging_demo

        register_demo_step("messaging", seed_messaging_demo)
