from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import marketplace.converters  # noqa: F401  (registers the "id" converter the apps' routes use)
from marketplace.health import healthz, readyz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="home", permanent=False)),
    path("", include("marketplace.web.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/", include("jobs.urls")),
    path("v1/", include("nodes.urls")),
    path("v1/", include("billing.urls")),
    path("v1/", include("privacy.urls")),
    path("", include("jobs.gateway.urls")),
]
