from django.urls import path, re_path

from jobs.gateway import views

KEY = "infernet/<str:api_key>/"

urlpatterns = [
    path(KEY + "health", views.health),
    path(KEY + "info", views.info),
    path(KEY + "resources", views.resources),
    path(KEY + "api/jobs", views.jobs),
    path(KEY + "api/jobs/batch", views.jobs_batch),
    path(KEY + "api/status", views.status),
    re_path(r"^infernet/(?P<api_key>[^/]+)/(?P<rest>.*)$", views.not_found),
]
