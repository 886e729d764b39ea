from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="home", permanent=False)),
    path("", include("marketplace.web.urls")),
    path("admin/", admin.site.urls),
    path("v1/", include("jobs.urls")),
    path("v1/", include("nodes.urls")),
    path("v1/", include("billing.urls")),
    path("v1/", include("privacy.urls")),
    path("", include("jobs.gateway.urls")),
]
