"""Event subscriptions: the API (api/v1/subscriptions/, api/v1/deliveries/) and the pages (integrations/…, URL
names prefixed "subscription-"). Included at the site's root through messaging.urls."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from messaging import integrations_api, integrations_views

# Basenames differ from the pages' names ("api-subscription-list", not "subscription-list").
router = SimpleRouter()
router.register("subscriptions", integrations_api.SubscriptionViewSet, basename="api-subscription")
router.register("deliveries", integrations_api.DeliveryViewSet, basename="api-delivery")

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("integrations/subscriptions/", integrations_views.subscription_list, name="subscription-list"),
    path("integrations/subscriptions/new/", integrations_views.subscription_create, name="subscription-create"),
    path("integrations/subscriptions/<int:pk>/", integrations_views.subscription_detail, name="subscription-detail"),
    path("integrations/subscriptions/<int:pk>/edit/", integrations_views.subscription_edit, name="subscription-edit"),
    path("integrations/subscriptions/<int:pk>/test/", integrations_views.subscription_test, name="subscription-test"),
    path(
        "integrations/subscriptions/<int:pk>/rotate-secret/",
        integrations_views.subscription_rotate_secret,
        name="subscription-rotate-secret",
    ),
    path(
        "integrations/subscriptions/<int:pk>/delete/",
        integrations_views.subscription_delete,
        name="subscription-delete",
    ),
    path(
        "integrations/deliveries/<int:pk>/replay/",
        integrations_views.subscription_replay,
        name="subscription-replay",
    ),
]
