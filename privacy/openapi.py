"""The private-inference answers (fields of seeds/b3iq-private-inference-get-job.txt), for the schema."""
from rest_framework import serializers

from marketplace.openapi import WEI


class EnvelopeSerializer(serializers.Serializer):
    version = serializers.ChoiceField(choices=["b3iq-private-transport-v1"])
    key_id = serializers.CharField()
    algorithm = serializers.ChoiceField(choices=["x25519-hkdf-sha256-chacha20poly1305"])
    client_public_key_x25519 = serializers.CharField(help_text="base64url X25519 client public key")
    nonce = serializers.CharField(help_text="base64url 12-byte AEAD nonce")
    ciphertext = serializers.CharField(help_text="base64url encrypted payload")
    aad_hash = serializers.CharField(required=False, help_text="SHA-256 of the AAD, lowercase hex")


class PrivateBillingSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    policy_version = serializers.CharField()
    quoted_price_wei = serializers.CharField(**WEI)
    reserved_price_wei = serializers.CharField(**WEI)
    payout_price_wei = serializers.CharField(**WEI)
    status = serializers.CharField()


class PrivateJobAcceptedSerializer(serializers.Serializer):
    status = serializers.CharField()
    job_id = serializers.CharField()
    node_id = serializers.CharField()
    billing = PrivateBillingSerializer()
    created_at = serializers.DateTimeField()


class PrivateJobSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    node_id = serializers.CharField()
    model_id = serializers.CharField()
    status = serializers.CharField()
    encrypted_request = EnvelopeSerializer()
    encrypted_response = EnvelopeSerializer(allow_null=True)
    receipt_hash = serializers.CharField(allow_null=True)
    billing = PrivateBillingSerializer()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class TransportKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    public_key_x25519 = serializers.CharField()
    not_before = serializers.CharField(help_text="Unix seconds")
    not_after = serializers.CharField(help_text="Unix seconds")
    signature = serializers.CharField(help_text="Ed25519 by the node's identity key, base64url")


class ModelQuoteSerializer(serializers.Serializer):
    model_id = serializers.CharField()
    quoted_price_wei = serializers.CharField(**WEI)
    worst_case_price_wei = serializers.CharField(**WEI)


class PrivateNodeSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    identity_public_key = serializers.CharField()
    models = ModelQuoteSerializer(many=True)
    gpu_type = serializers.CharField(allow_blank=True)
    gpu_count = serializers.IntegerField()
    vram_gb = serializers.FloatField()
    price_per_second_wei = serializers.CharField(**WEI)
    policy_version = serializers.CharField()
    transport_keys = TransportKeySerializer(many=True)


class PrivateNodesSerializer(serializers.Serializer):
    nodes = PrivateNodeSerializer(many=True)
