"""The WeCom setup check and the WeCom sandbox (development and demos)."""

from django.urls import path

from messaging.wecom import setup_views

urlpatterns = [
    path("messaging/wecom/setup/", setup_views.setup_check, name="wecom-setup"),
    path("messaging/wecom/setup/round-trip/", setup_views.setup_round_trip, name="wecom-setup-round-trip"),
    path("messaging/wecom/sandbox/", setup_views.sandbox_page, name="wecom-sandbox"),
    path("messaging/wecom/sandbox/<slug:action>/", setup_views.sandbox_action, name="wecom-sandbox-action"),
]
