from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("jobs.urls")),
    path("v1/", include("nodes.urls")),
    path("v1/", include("billing.urls")),
    path("v1/", include("privacy.urls")),
]
