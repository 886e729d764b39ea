from django.urls import path

from privacy.apis import PrivateJobDetailApi, PrivateJobsApi, PrivateNodesApi

urlpatterns = [
    path("private-inference/nodes", PrivateNodesApi.as_view(), name="private-nodes"),
    path("private-inference/jobs", PrivateJobsApi.as_view(), name="private-jobs"),
    path("private-inference/jobs/<id:job_id>", PrivateJobDetailApi.as_view(), name="private-job-detail"),
]
