"""The messaging app's pages and endpoints: the dashboard pages, the WeCom callback and setup check, and the
receipts providers post back."""

from django.urls import include, path

urlpatterns = [
    path("", include("messaging.views.urls")),
    path("", include("messaging.wecom.urls")),
    path("", include("messaging.wecom.callback_urls")),
    path("", include("messaging.wecom.setup_urls")),
    path("", include("messaging.receipts_urls")),
    path("", include("messaging.integrations_urls")),
]
