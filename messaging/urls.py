"""The messaging app's pages and endpoints: the dashboard pages, the WeCom callback and setup check, and the
receipts providers post back."""

from django.urls import include, path

urlpatterns = [
    path("", include("messaging.views.urls")),
    path("", include("messaging.wecom.urls")),
]
