"""The job API's answers, described for the OpenAPI schema (views build plain dicts)."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from jobs.serializers import AnyJsonField
from marketplace.openapi import WEI


class JobSubmittedSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    status = serializers.CharField()
    estimated_cost = serializers.FloatField(help_text="the expected cost in ether, a JSON number (the AITBC "
                                                      "reference's shape); estimated_cost_wei is exact")
    estimated_cost_wei = serializers.CharField(**WEI)
    estimated_time_seconds = serializers.IntegerField()
    policy_version = serializers.IntegerField()


class JobBillingSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    policy_version = serializers.IntegerField()
    quoted_price_wei = serializers.CharField(**WEI)
    reserved_price_wei = serializers.CharField(**WEI)
    charged_price_wei = serializers.CharField(**WEI)
    payout_price_wei = serializers.CharField(**WEI)
    fee_price_wei = serializers.CharField(**WEI)
    status = serializers.CharField(help_text="none, reserved, settled or released")


class JobBillSerializer(JobBillingSerializer):
    job_id = serializers.CharField()


class JobReceiptSummarySerializer(serializers.Serializer):
    hash = serializers.CharField(allow_null=True)
    signer = serializers.CharField(allow_null=True)
    verified = serializers.BooleanField()
    url = serializers.CharField()


class JobSummarySerializer(serializers.Serializer):
    job_id = serializers.CharField()
    status = serializers.CharField()
    model = serializers.CharField(allow_null=True)
    containers = serializers.ListField(child=serializers.CharField(), allow_null=True)
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class JobDetailSerializer(JobSummarySerializer):
    status_reason = serializers.CharField(allow_blank=True)
    progress = serializers.IntegerField()
    priority = serializers.CharField()
    timeout_seconds = serializers.IntegerField()
    miner_id = serializers.CharField(allow_null=True)
    node_id = serializers.CharField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    result = AnyJsonField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    private = serializers.BooleanField()
    estimated_cost = serializers.FloatField(help_text="the expected cost in ether, a JSON number (the AITBC "
                                                      "reference's shape); estimated_cost_wei is exact")
    estimated_cost_wei = serializers.CharField(**WEI)
    estimated_time_seconds = serializers.IntegerField()
    policy_version = serializers.IntegerField()
    attempts = serializers.IntegerField()
    billing = JobBillingSerializer()
    receipt = JobReceiptSummarySerializer(allow_null=True)


class JobPageSerializer(serializers.Serializer):
    jobs = JobSummarySerializer(many=True)
    total = serializers.IntegerField()
    has_more = serializers.BooleanField()
    next_cursor = serializers.CharField(allow_null=True)


class JobHistorySerializer(JobPageSerializer):
    # ``from`` is a Python keyword: declared under another name, renamed below
    date_from = serializers.CharField(allow_null=True)
    to = serializers.CharField(allow_null=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("date_from")
        return fields


class UsageDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    jobs = serializers.IntegerField()
    completed = serializers.IntegerField()
    charged_wei = serializers.CharField(**WEI)
    reserved_wei = serializers.CharField(**WEI)


class UsageSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    date_from = serializers.CharField(allow_null=True)
    to = serializers.CharField(allow_null=True)
    days = UsageDaySerializer(many=True)
    total_charged_wei = serializers.CharField(**WEI)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("date_from")
        return fields


class ReceiptSerializer(serializers.Serializer):
    receipt_hash = serializers.CharField()
    job_id = serializers.CharField()
    node_id = serializers.CharField(allow_null=True)
    node_public_key = serializers.CharField(allow_null=True, help_text="Ed25519, base64url")
    verified = serializers.BooleanField()
    receipt = AnyJsonField(help_text="the signed body: job_id, node_id, model_id, hashes, status, times, duration_ms")
    signature = serializers.CharField()
    signature_algorithm = serializers.CharField()


class EarningsDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    jobs = serializers.IntegerField()
    payout_wei = serializers.CharField(**WEI)


class EarningSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    node_id = serializers.CharField()
    payout_wei = serializers.CharField(**WEI)
    completed_at = serializers.DateTimeField()


class EarningsSerializer(serializers.Serializer):
    miner_id = serializers.CharField()
    available_wei = serializers.CharField(**WEI)
    total_paid_wei = serializers.CharField(**WEI)
    jobs_paid = serializers.IntegerField()
    days = EarningsDaySerializer(many=True)
    recent = EarningSerializer(many=True)


DAY_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="first day, YYYY-MM-DD"),
    OpenApiParameter("to", OpenApiTypes.DATE, description="last day, YYYY-MM-DD"),
]
