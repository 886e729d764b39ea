from rest_framework import serializers


class EnrollSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)
    # informational only: the marketplace never connects to a node (nodes dial in)
    url = serializers.URLField(max_length=300, required=False)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    identity_public_key = serializers.RegexField(r"^[A-Za-z0-9_-]{43}$", help_text="Ed25519 public key, base64url")
    containers = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=200)
    models = serializers.DictField(child=serializers.CharField(max_length=100))
    hardware = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    capacity = serializers.IntegerField(min_value=1, max_value=10000, required=False, default=4)
    price_per_second_wei = serializers.RegexField(r"^\d{1,78}$", required=False, default="0")
    transport_keys = serializers.ListField(child=serializers.DictField(), max_length=16, required=False, default=list)
