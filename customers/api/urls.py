from rest_framework.routers import DefaultRouter

from customers.api import views

router = DefaultRouter()
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("merges", views.MergeViewSet, basename="merge")
router.register("orders", views.OrderViewSet, basename="order")
router.register("events", views.EventViewSet, basename="event")
router.register("staff", views.StaffViewSet, basename="staff")
router.register("channels", views.ChannelViewSet, basename="channel")
router.register("products", views.ProductViewSet, basename="product")
router.register("groups", views.GroupViewSet, basename="group")

urlpatterns = router.urls
