"""The customer job API (the AITBC client surface): parse, call one service, render."""
from __future__ import annotations

import json
from datetime import date, datetime, time, timezone as dt_timezone

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.units import estimated_cost_fields
from jobs.exceptions import InvalidQuery, JobStateConflict
from jobs.models import Job, JobStatus
from jobs.openapi import (
    DAY_PARAMETERS,
    JobDetailSerializer,
    JobHistorySerializer,
    JobPageSerializer,
    JobSubmittedSerializer,
)
from jobs.selectors import job_get_for_customer, jobs_page
from jobs.serializers import JobSubmitSerializer, job_detail, job_summary
from jobs.services.lifecycle import job_cancel
from jobs.services.submit import JobSpec, job_submit
from marketplace.openapi import PAGE_PARAMETERS
from marketplace.paging import page_limit

def _page(request, queryset) -> dict:
    jobs, total, cursor = jobs_page(queryset=queryset, limit=page_limit(request), cursor=request.query_params.get("cursor"))
    return {"jobs": [job_summary(j) for j in jobs], "total": total, "has_more": cursor is not None, "next_cursor": cursor}


class JobListCreateApi(APIView):
    @extend_schema(
        operation_id="jobs_submit", request=JobSubmitSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="the same key again returns the same job (a different body: 409)")],
        responses={201: JobSubmittedSerializer, 200: JobSubmittedSerializer},
    )
    def post(self, request):
        serializer = JobSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        requirements = data["requirements"]
        spec = JobSpec(
            model=data.get("model", ""),
            containers=data.get("containers", []),
            input=data["input"],
            output_config={"destination": "local", "format": "json", **data["output_config"]},
            gpu_type=requirements.get("gpu_type", ""),
            gpu_count=requirements.get("gpu_count", 0),
            min_vram_gb=requirements.get("min_vram_gb", 0),
            priority=data["priority"],
            timeout_seconds=data["timeout_seconds"],
            max_price_wei=int(data["max_price_wei"]) if "max_price_wei" in data else None,
        )
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and not 1 <= len(key) <= 200:
            raise InvalidQuery("Idempotency-Key must be 1 to 200 characters")
        submission = job_submit(principal=request.user, spec=spec, idempotency_key=key)
        job = submission.job
        return Response(
            {
                "job_id": job.public_id,
                "status": job.status,
                **estimated_cost_fields(job.estimated_cost_wei),
                "estimated_time_seconds": job.estimated_time_seconds,
                "policy_version": job.policy_version,
            },
            status=201 if submission.created else 200,
        )

    @extend_schema(
        operation_id="jobs_list",
        parameters=[OpenApiParameter("status", str, enum=list(JobStatus.values)), *PAGE_PARAMETERS],
        responses=JobPageSerializer,
    )
    def get(self, request):
        queryset = Job.objects.filter(customer=request.user.customer)
        status = request.query_params.get("status")
        if status:
            if status not in JobStatus.values:
                raise InvalidQuery(f"status must be one of {', '.join(JobStatus.values)}")
            queryset = queryset.filter(status=status)
        return Response(_page(request, queryset))


def _parse_day(raw: str | None, name: str, end: bool) -> datetime | None:
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidQuery(f"{name} must be a date like 2026-01-31") from None
    return datetime.combine(day, time.max if end else time.min, tzinfo=dt_timezone.utc)


def parse_day_range(request) -> tuple[datetime | None, datetime | None]:
    start = _parse_day(request.query_params.get("from"), "from", end=False)
    end = _parse_day(request.query_params.get("to"), "to", end=True)
    if start and end and start > end:
        raise InvalidQuery("from must not be after to")
    return start, end


class JobHistoryApi(APIView):
    @extend_schema(operation_id="jobs_history", parameters=[*DAY_PARAMETERS, *PAGE_PARAMETERS],
                   responses=JobHistorySerializer)
    def get(self, request):
        start, end = parse_day_range(request)
        queryset = Job.objects.filter(customer=request.user.customer)
        if start:
            queryset = queryset.filter(created_at__gte=start)
        if end:
            queryset = queryset.filter(created_at__lte=end)
        body = _page(request, queryset)
        body["from"] = request.query_params.get("from")
        body["to"] = request.query_params.get("to")
        return Response(body)


class JobDetailApi(APIView):
    @extend_schema(operation_id="jobs_get", responses=JobDetailSerializer)
    def get(self, request, job_id: str):
        return Response(job_detail(job_get_for_customer(customer=request.user.customer, job_id=job_id)))

    @extend_schema(operation_id="jobs_cancel", responses={200: JobDetailSerializer})
    def delete(self, request, job_id: str):
        job = job_get_for_customer(customer=request.user.customer, job_id=job_id)
        return Response(job_detail(job_cancel(job=job)))


DOWNLOAD = 'the result: JSON, or text/plain for a job submitted with output_config {"format": "text"}'


class JobDownloadApi(APIView):
    @extend_schema(
        operation_id="jobs_download",
        # both media types are documented: a job submitted with output_config {"format": "text"} downloads as text
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.ANY, description=DOWNLOAD),
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description=DOWNLOAD),
        },
    )
    def get(self, request, job_id: str):
        job = job_get_for_customer(customer=request.user.customer, job_id=job_id)
        if job.status != JobStatus.COMPLETED:
            raise JobStateConflict(f"job {job.public_id} has no result to download (it is {job.status})")
        wants_text = job.output_config.get("format") == "text"
        if wants_text:
            text = job.result.get("text") if isinstance(job.result, dict) and "text" in job.result else None
            body = text if isinstance(text, str) else json.dumps(job.result)
            response = HttpResponse(body, content_type="text/plain; charset=utf-8")
            extension = "txt"
        else:
            response = HttpResponse(json.dumps(job.result), content_type="application/json")
            extension = "json"
        response["Content-Disposition"] = f'attachment; filename="{job.public_id}.{extension}"'
        return response
