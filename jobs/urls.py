from django.urls import path

from jobs.apis import JobDetailApi, JobDownloadApi, JobHistoryApi, JobListCreateApi

urlpatterns = [
    path("jobs", JobListCreateApi.as_view(), name="jobs"),
    path("jobs/history", JobHistoryApi.as_view(), name="job-history"),
    path("jobs/<id:job_id>", JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<id:job_id>/download", JobDownloadApi.as_view(), name="job-download"),
]
