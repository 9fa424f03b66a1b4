"""Segments and layering API routes. A SimpleRouter: the API root view at /api/v1/ stays the customers router's."""

from rest_framework.routers import SimpleRouter

from segments.api import views

router = SimpleRouter()
router.register("segments", views.SegmentViewSet, basename="segment")
router.register(r"customers/(?P<customer_pk>\d+)/segments", views.CustomerSegmentViewSet, basename="customer-segment")
router.register("layers", views.LayerViewSet, basename="layer")

urlpatterns = router.urls
