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


class WithdrawalRequestSerializer(serializers.Serializer):
    amount_wei = serializers.RegexField(r"^\d{1,78}$", help_text="wei, as a decimal string")
    address = serializers.CharField(max_length=42, help_text="an Ethereum address: 0x and 40 hex digits")


class WithdrawalSerializer(serializers.Serializer):
    withdrawal_id = serializers.IntegerField()
    amount_wei = serializers.CharField(**WEI)
    address = serializers.CharField()
    status = serializers.CharField(help_text="requested (held on your account), paid or rejected")
    payout_reference = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


class WithdrawalListSerializer(serializers.Serializer):
    withdrawals = WithdrawalSerializer(many=True)
