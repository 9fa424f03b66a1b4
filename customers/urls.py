from django.urls import include, path

from customers import views

customer_patterns = [
    path("", views.customer_list, name="list"),
    path("<int:pk>/", views.customer_detail, name="detail"),
    path("<int:pk>/events/", views.customer_events, name="events"),
    path("groups/", views.group_list, name="groups"),
    path("groups/<int:pk>/", views.group_detail, name="group_detail"),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("customers/", include((customer_patterns, "customers"))),
]
