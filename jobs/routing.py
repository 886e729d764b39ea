from django.urls import re_path

from jobs.consumers import CustomerJobsConsumer, JobWebSocketConsumer, job_event_stream
from jobs.dispatch.node_socket import NodeSocketConsumer
from jobs.gateway.stream import infernet_stream

JOB_ID = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"

websocket_urlpatterns = [
    re_path(rf"^ws/jobs/{JOB_ID}/$", JobWebSocketConsumer.as_asgi()),
    re_path(r"^ws/dashboard/jobs/$", CustomerJobsConsumer.as_asgi()),
    re_path(r"^ws/nodes/$", NodeSocketConsumer.as_asgi()),
]
http_urlpatterns = [
    re_path(rf"^v1/jobs/{JOB_ID}/events$", job_event_stream),
    re_path(r"^infernet/(?P<api_key>[^/]+)/api/jobs/stream$", infernet_stream),
]
