from django.urls import path

from messaging.views import templates

urlpatterns: list = [
    # --- message templates (messaging/views/templates.py) ------------------------------------------------------
    path("messaging/templates/", templates.template_list, name="messaging-template-list"),
    path("messaging/templates/new/", templates.create_template, name="messaging-template-create"),
    path("messaging/templates/preview/", templates.preview_template, name="messaging-template-preview"),
    path("messaging/templates/customers/", templates.customer_choices, name="messaging-template-customers"),
    path("messaging/templates/<int:pk>/", templates.edit_template, name="messaging-template-edit"),
    path("messaging/templates/<int:pk>/delete/", templates.delete_template, name="messaging-template-delete"),
    # --- end of message templates ------------------------------------------------------------------------------
]
