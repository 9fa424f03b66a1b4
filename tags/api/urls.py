"""Tags API routes. A SimpleRouter: the API root view at /api/v1/ stays the customers router's."""

from rest_framework.routers import SimpleRouter

from tags.api import views

router = SimpleRouter()
router.register("tag-groups", views.TagGroupViewSet, basename="tag-group")
router.register("tags", views.TagViewSet, basename="tag")
router.register("rules", views.RuleViewSet, basename="rule")
router.register(r"customers/(?P<customer_pk>\d+)/tags", views.CustomerTagViewSet, basename="customer-tag")
router.register("tag-history", views.TagHistoryViewSet, basename="tag-history")
router.register("questionnaires", views.QuestionnaireViewSet, basename="questionnaire")

urlpatterns = router.urls
