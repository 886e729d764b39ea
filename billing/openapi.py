"""The billing API's answers, described for the OpenAPI schema."""
from rest_framework import serializers

from marketplace.openapi import WEI


class StatementLineSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="deposit, reservation, charge (a customer's) or payout (a miner's), "
                                           "release, refund, withdrawal")
    job_id = serializers.CharField(allow_null=True)
    amount_wei = serializers.CharField(help_text="what it did to the balance (available + reserved), signed")
    available_change_wei = serializers.CharField(help_text="signed")
    reserved_change_wei = serializers.CharField(help_text="signed")
    created_at = serializers.DateTimeField()


class StatementSerializer(serializers.Serializer):
    transactions = StatementLineSerializer(many=True)
    has_more = serializers.BooleanField()
    next_cursor = serializers.CharField(allow_null=True)


class AccountSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    balance = serializers.CharField(**WEI)
    reserved = serializers.CharField(**WEI)
    available = serializers.CharField(**WEI)
