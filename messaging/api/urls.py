"""Touchpoints API routes. A SimpleRouter: the API root view at /api/v1/ stays the customers router's."""

from rest_framework.routers import SimpleRouter

from messaging.api import views

router = SimpleRouter()
router.register("touchpoints", views.TouchpointViewSet, basename="touchpoint")

urlpatterns = router.urls
