"""The node-facing REST API: enrolment, signed with the node's identity key. Everything after it
(heartbeats, jobs, results) rides the node socket (``jobs.dispatch.node_socket``)."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes.openapi import SIGNED_REQUEST, EnrolledSerializer
from nodes.serializers import EnrollSerializer
from nodes.services import node_enroll


class NodeApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class NodeEnrollApi(NodeApi):
    @extend_schema(operation_id="nodes_enroll", request=EnrollSerializer, parameters=SIGNED_REQUEST,
                   responses={201: EnrolledSerializer})
    def post(self, request):
        body = request.body  # the signature covers the raw bytes
        serializer = EnrollSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = dict(serializer.validated_data)
        enrollment = node_enroll(
            secret=spec.pop("token"), spec=spec, headers=request.headers, path=request.path, body=body
        )
        node = enrollment.node
        return Response(
            {
                "node_id": node.public_id,
                "node_token": enrollment.node_token,
                "approval": node.approval,
                "miner_id": node.miner.public_id,
                "heartbeat_interval_seconds": settings.NODE_HEARTBEAT_SECONDS,
            },
            status=201,
        )
