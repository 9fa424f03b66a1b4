from django.urls import path

from messaging.views import channels, outbox, policy, templates

urlpatterns: list = [
    # --- message templates (messaging/views/templates.py) ------------------------------------------------------
    path("messaging/templates/", templates.template_list, name="messaging-template-list"),
    path("messaging/templates/new/", templates.create_template, name="messaging-template-create"),
    path("messaging/templates/preview/", templates.preview_template, name="messaging-template-preview"),
    path("messaging/templates/customers/", templates.customer_choices, name="messaging-template-customers"),
    path("messaging/templates/<int:pk>/", templates.edit_template, name="messaging-template-edit"),
    path("messaging/templates/<int:pk>/delete/", templates.delete_template, name="messaging-template-delete"),
    # --- end of message templates ------------------------------------------------------------------------------
    # --- outbox, channels, contact policy (messaging/views/outbox.py, channels.py, policy.py) ------------------------
    path("messaging/outbox/", outbox.outbox, name="messaging-outbox"),
    path("messaging/outbox/dead-letter/", outbox.dead_letter, name="messaging-outbox-dead-letter"),
    path("messaging/outbox/dead-letter/retry/", outbox.bulk_retry, name="messaging-outbox-bulk-retry"),
    path("messaging/outbox/<int:pk>/", outbox.outbox_detail, name="messaging-outbox-detail"),
    path("messaging/outbox/<int:pk>/retry/", outbox.retry, name="messaging-outbox-retry"),
    path("messaging/outbox/<int:pk>/cancel/", outbox.cancel, name="messaging-outbox-cancel"),
    path("messaging/channels/", channels.channel_settings, name="messaging-channels"),
    path("messaging/channels/test/", channels.send_test, name="messaging-channel-test"),
    path("messaging/channels/test/customers/", channels.test_customers, name="messaging-channel-test-customers"),
    path("messaging/channels/<str:channel>/", channels.save_channel, name="messaging-channel-save"),
    path("messaging/console/", channels.console, name="messaging-console"),
    path("messaging/policy/", policy.contact_policy, name="messaging-policy"),
    # --- end of outbox, channels, contact policy -------------------------------------------------------------------
]
