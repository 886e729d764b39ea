from django.urls import path

from nodes.apis import NodeEnrollApi, NodeHeartbeatApi

urlpatterns = [
    path("nodes/enroll", NodeEnrollApi.as_view(), name="node-enroll"),
    path("nodes/<id:node_id>/heartbeat", NodeHeartbeatApi.as_view(), name="node-heartbeat"),
]
