from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.units import estimated_cost_fields
from jobs.models import DEFAULT_TIMEOUT_SECONDS, Job, Priority
from marketplace.times import iso_time


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF would otherwise take 5 as "5"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class OutputConfigSerializer(serializers.Serializer):
    destination = serializers.ChoiceField(choices=["local"], default="local")
    format = serializers.ChoiceField(choices=["json", "text"], default="json")


class RequirementsSerializer(serializers.Serializer):
    gpu_type = StrictCharField(max_length=40, required=False, allow_blank=True, default="")
    gpu_count = serializers.IntegerField(min_value=0, max_value=64, required=False, default=0)
    min_vram_gb = serializers.FloatField(min_value=0, max_value=4096, required=False, default=0)


@extend_schema_field(OpenApiTypes.ANY)
class AnyJsonField(serializers.Field):
    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class JobSubmitSerializer(serializers.Serializer):
    model = StrictCharField(max_length=100, required=False, allow_blank=False)
    containers = serializers.ListField(
        child=StrictCharField(max_length=100), min_length=1, max_length=16, required=False
    )
    input = AnyJsonField()
    output_config = OutputConfigSerializer(required=False, default=dict)
    requirements = RequirementsSerializer(required=False, default=dict)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    timeout_seconds = serializers.IntegerField(min_value=1, default=DEFAULT_TIMEOUT_SECONDS)
    max_price_wei = serializers.RegexField(r"^\d{1,78}$", required=False, help_text="wei, as a decimal string")

    def validate_timeout_seconds(self, value):
        if value > settings.MAX_TIMEOUT_SECONDS:
            raise serializers.ValidationError(f"must be at most {settings.MAX_TIMEOUT_SECONDS}")
        return value

    def validate(self, attrs):
        if bool(attrs.get("model")) == bool(attrs.get("containers")):
            raise serializers.ValidationError("give either model or containers (a chain), not both or neither")
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(f"unknown fields: {', '.join(sorted(unknown))}")
        return attrs


def job_summary(job: Job) -> dict:
    return {
        "job_id": job.public_id,
        "status": job.status,
        "model": job.model or None,
        "containers": job.containers or None,
        "created_at": iso_time(job.created_at),
        "completed_at": iso_time(job.completed_at),
    }


def job_billing(job: Job) -> dict:
    """The job's money, in wei as decimal strings: the same figures /v1/billing/jobs/{id} shows."""
    return {
        "customer_id": job.customer.public_id,
        "policy_version": job.policy_version,
        "quoted_price_wei": str(job.quoted_price_wei),
        "reserved_price_wei": str(job.reserved_price_wei),
        "charged_price_wei": str(job.charged_price_wei),
        "payout_price_wei": str(job.payout_price_wei),
        "fee_price_wei": str(job.fee_price_wei),
        "status": job.billing_status,
    }


def job_detail(job: Job) -> dict:
    node = job.node
    return {
        "job_id": job.public_id,
        "status": job.status,
        "status_reason": job.status_reason,
        "progress": job.progress,
        "model": job.model or None,
        "containers": job.containers or None,
        "priority": job.priority,
        "timeout_seconds": job.timeout_seconds,
        "miner_id": node.miner.public_id if node else None,
        "node_id": node.public_id if node else None,
        "created_at": iso_time(job.created_at),
        "started_at": iso_time(job.started_at),
        "completed_at": iso_time(job.completed_at),
        "result": job.result,
        "error": job.error or None,
        "error_code": job.error_code or None,
        "private": job.is_private,
        **estimated_cost_fields(job.estimated_cost_wei),
        "estimated_time_seconds": job.estimated_time_seconds,
        "policy_version": job.policy_version,
        "attempts": job.attempt_count,
        "billing": job_billing(job),
        "receipt": (
            {"hash": job.receipt.get("hash"), "signer": job.receipt.get("signer"), "verified": job.receipt_verified,
             "url": f"/v1/receipts/{job.receipt.get('hash')}"}
            if job.receipt
            else None
        ),
    }
