"""The OpenAPI 3 contract of /v1 (drf-spectacular): auth schemes and the problem shape everywhere.

Every operation documents its success bodies (``@extend_schema`` on the views) and,
as its ``default`` response, the one error shape of the whole surface, so a client
generated from the schema can read any refusal.
"""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

# the description of every wei amount in the contract (exact integers, sent as strings)
WEI = {"help_text": "wei, as a decimal string"}
# the keyset pages of marketplace.paging
PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="1 to 100 (default 20; 50 for statements)"),
    OpenApiParameter("cursor", str, description="next_cursor from the previous page"),
]


class ProblemDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    title = serializers.CharField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="machine-readable, e.g. insufficient_balance, invalid_encrypted_request")
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="validation errors by field (422 validation_error)")


class ProblemSerializer(serializers.Serializer):
    error = ProblemDetailSerializer()


class MarketplaceAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction == "response":
            responses.setdefault("default", self._get_response_for_code(ProblemSerializer, "default"))
        return responses


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """A customer API key: ``Authorization: Bearer <key>``, or the B3IQ header pair."""

    target_class = "marketplace.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "a customer API key (mk_...); the pair "
                "X-B3IQ-Customer-ID + X-B3IQ-Customer-Token is accepted too"}
