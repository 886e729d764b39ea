"""Reads on accounts."""
from __future__ import annotations

from marketplace.ids import secret_hash
from marketplace.models import ApiKey


def api_key_get_active(*, secret: str) -> ApiKey | None:
    try:
        return ApiKey.objects.select_related("customer").get(
            secret_hash=secret_hash(secret), revoked_at__isnull=True
        )
    except ApiKey.DoesNotExist:
        return None
