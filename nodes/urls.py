from django.urls import path

from nodes.apis import NodeEnrollApi

urlpatterns = [
    path("nodes/enroll", NodeEnrollApi.as_view(), name="node-enroll"),
]
