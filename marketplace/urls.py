from django.contrib import admin
from django.core.exceptions import DisallowedHost
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import marketplace.converters  # noqa: F401  (registers the "id" converter the apps' routes use)
from jobs.gateway.errors import InfernetError
from marketplace.errors import API_PREFIXES, problem
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


def bad_request(request, exception):
    """Django's 400 (a Host header not served here, a malformed request) in each surface's own
    shape: an HTML page would break every API client that reads the error."""
    if isinstance(exception, DisallowedHost):
        detail = "the Host header names no site this marketplace serves (ALLOWED_HOSTS)"
    else:
        detail = "the request could not be understood"
    if request.path.startswith(API_PREFIXES):
        return problem(400, detail, "bad_request")
    if request.path.startswith("/infernet/"):
        return InfernetError(detail).response()
    return defaults.bad_request(request, exception)


handler400 = bad_request
