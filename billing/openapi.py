"""The billing API's answers, described for the OpenAPI schema."""
from rest_framework import serializers

from jobs.openapi import WEI, JobBillingSerializer
from jobs.serializers import AnyJsonField


class AccountSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    balance = serializers.CharField(**WEI)
    reserved = serializers.CharField(**WEI)
    available = serializers.CharField(**WEI)


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


class JobBillSerializer(JobBillingSerializer):
    job_id = serializers.CharField()


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
