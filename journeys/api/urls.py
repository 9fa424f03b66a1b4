"""Journeys and tasks API routes. A SimpleRouter: the API root view at /api/v1/ stays the customers router's."""

from rest_framework.routers import SimpleRouter

from journeys.api import views

router = SimpleRouter()
router.register("journeys", views.JourneyViewSet, basename="journey")
router.register("tasks", views.TaskViewSet, basename="task")

urlpatterns = router.urls
