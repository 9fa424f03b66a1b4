from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from scrm.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include("tags.api.urls")),
    path("api/v1/", include("segments.api.urls")),
    path("api/v1/", include("customers.api.urls")),
    path("api/v1/", include("messaging.api.urls")),
    path("api/v1/", include("journeys.api.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("accounts/", include("accounts.urls")),
    path("", include("tags.urls")),
    path("", include("segments.urls")),
    path("", include("messaging.urls")),
    path("", include("journeys.urls")),
    path("", include("customers.urls")),
]
