from rest_framework import serializers

from jobs.serializers import StrictCharField


class PrivateJobSubmitSerializer(serializers.Serializer):
    # exactly as sealed into the envelope's context: a UUID in its canonical lowercase form
    job_id = serializers.RegexField(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        error_messages={"invalid": "must be a lowercase UUID, as sealed (e.g. 0b6f1c2e-...)"},
        help_text="made by the client before sealing",
    )
    node_id = StrictCharField(max_length=40)
    model_id = StrictCharField(max_length=100)
    max_price_wei = serializers.RegexField(r"^\d{1,78}$", help_text="wei, as a decimal string")
    expires_at = serializers.RegexField(r"^[1-9]\d{0,11}$", help_text="Unix seconds, as a decimal string")
    encrypted_request = serializers.DictField()

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("expires_at"), int) and not isinstance(data["expires_at"], bool):
            data = {**data, "expires_at": str(data["expires_at"])}  # a number is taken as its decimal string
        return super().to_internal_value(data)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(f"unknown fields: {', '.join(sorted(unknown))}")
        return attrs
