"""The private-inference surface (B3IQ): nodes to seal to, and encrypted jobs."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.models import Job
from marketplace.times import iso_time
from privacy.openapi import PrivateJobAcceptedSerializer, PrivateJobSerializer, PrivateNodesSerializer
from privacy.selectors import private_job_get, private_nodes
from privacy.serializers import PrivateJobSubmitSerializer
from privacy.services import PrivateJobRequest, private_job_submit


def private_billing(job: Job) -> dict:
    return {
        "customer_id": job.customer.public_id,
        "policy_version": str(job.policy_version),
        "quoted_price_wei": str(job.quoted_price_wei),
        "reserved_price_wei": str(job.reserved_price_wei),
        "payout_price_wei": str(job.payout_price_wei),
        "status": job.billing_status,
    }


def private_job_detail(job: Job) -> dict:
    """Exactly the fields of seeds/b3iq-private-inference-get-job.txt."""
    return {
        "job_id": job.public_id,
        "node_id": job.pinned_node.public_id,
        "model_id": job.model,
        "status": job.status,
        "encrypted_request": job.encrypted_request,
        "encrypted_response": job.encrypted_response,
        "receipt_hash": job.receipt_hash or None,
        "billing": private_billing(job),
        "created_at": iso_time(job.created_at),
        "completed_at": iso_time(job.completed_at),
    }


class PrivateNodesApi(APIView):
    @extend_schema(operation_id="private_nodes", responses=PrivateNodesSerializer)
    def get(self, request):
        return Response({"nodes": private_nodes()})


class PrivateJobsApi(APIView):
    @extend_schema(operation_id="private_jobs_submit", request=PrivateJobSubmitSerializer,
                   responses={202: PrivateJobAcceptedSerializer})
    def post(self, request):
        serializer = PrivateJobSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        submission = private_job_submit(
            principal=request.user,
            request=PrivateJobRequest(
                job_id=data["job_id"],
                node_id=data["node_id"],
                model_id=data["model_id"],
                max_price_wei=int(data["max_price_wei"]),
                expires_at=data["expires_at"],
                encrypted_request=data["encrypted_request"],
            ),
        )
        job = submission.job
        return Response(
            {
                "status": job.status,
                "job_id": job.public_id,
                "node_id": job.pinned_node.public_id,
                "billing": private_billing(job),
                "created_at": iso_time(job.created_at),
            },
            status=202,
        )


class PrivateJobDetailApi(APIView):
    @extend_schema(operation_id="private_jobs_get", responses=PrivateJobSerializer)
    def get(self, request, job_id: str):
        return Response(private_job_detail(private_job_get(customer=request.user.customer, job_id=job_id)))
