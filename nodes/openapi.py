"""The node-facing API's answers, described for the OpenAPI schema."""
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers


class EnrolledSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    node_token = serializers.CharField(help_text="shown once: the node presents it when it opens its socket")
    approval = serializers.CharField()
    miner_id = serializers.CharField()
    heartbeat_interval_seconds = serializers.IntegerField()


SIGNED_REQUEST = [
    OpenApiParameter("X-Node-Timestamp", str, OpenApiParameter.HEADER, required=True,
                     description="Unix seconds"),
    OpenApiParameter("X-Node-Nonce", str, OpenApiParameter.HEADER, required=True,
                     description="16 to 64 hex digits, new for each request: a request seen twice is refused"),
    OpenApiParameter("X-Node-Signature", str, OpenApiParameter.HEADER, required=True,
                     description="Ed25519 over timestamp, nonce, method, path and the body's SHA-256, base64url"),
]
