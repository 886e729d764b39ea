"""The billing API's answers, described for the OpenAPI schema."""
from rest_framework import serializers

from marketplace.openapi import WEI


class AccountSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    balance = serializers.CharField(**WEI)
    reserved = serializers.CharField(**WEI)
    available = serializers.CharField(**WEI)
