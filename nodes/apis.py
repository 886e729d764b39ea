"""The node-facing API: enrolment and heartbeats. Nodes sign every request with their identity key."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes.openapi import SIGNED_REQUEST, EnrolledSerializer, HeartbeatAnswerSerializer
from nodes.serializers import EnrollSerializer, HeartbeatSerializer
from nodes.services import node_authenticate, node_enroll, node_heartbeat


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


class NodeHeartbeatApi(NodeApi):
    @extend_schema(operation_id="nodes_heartbeat", request=HeartbeatSerializer, parameters=SIGNED_REQUEST,
                   responses=HeartbeatAnswerSerializer, auth=[{"nodeToken": []}])
    def post(self, request, node_id: str):
        body = request.body
        node = node_authenticate(node_id=node_id, headers=request.headers, method="POST", path=request.path, body=body)
        serializer = HeartbeatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node = node_heartbeat(node=node, report=dict(serializer.validated_data))
        return Response(
            {
                "node_id": node.public_id,
                "approval": node.approval,
                "heartbeat_interval_seconds": settings.NODE_HEARTBEAT_SECONDS,
            }
        )
