"""The job API's answers, described for the OpenAPI schema (views build plain dicts)."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from jobs.serializers import AnyJsonField

WEI = {"help_text": "wei, as a decimal string"}


class JobSubmittedSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    status = serializers.CharField()
    estimated_cost = serializers.CharField(**WEI)
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
    estimated_cost = serializers.CharField(**WEI)
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


PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="1 to 100 (default 20)"),
    OpenApiParameter("cursor", str, description="next_cursor from the previous page"),
]
DAY_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="first day, YYYY-MM-DD"),
    OpenApiParameter("to", OpenApiTypes.DATE, description="last day, YYYY-MM-DD"),
]
