"""Who calls the gateway: the API key in the path, held to the key's rate limits like any API call."""
from __future__ import annotations

from marketplace.authentication import CustomerPrincipal
from marketplace.selectors import api_key_get_active
from marketplace.services import api_key_touch
from marketplace.throttles import rate_limit_wait
from jobs.gateway.errors import InfernetError


def gateway_principal(secret: str) -> CustomerPrincipal:
    api_key = api_key_get_active(secret=secret)
    if api_key is None:
        raise InfernetError("Unauthorized", status=401)
    refused = rate_limited(api_key)
    if refused is not None:
        raise refused
    api_key_touch(api_key=api_key)
    return CustomerPrincipal(customer=api_key.customer, api_key=api_key)


def rate_limited(api_key) -> InfernetError | None:
    """Count one request for the key: None if it may go on, else the gateway's 429."""
    wait = rate_limit_wait(api_key)
    if wait:
        return InfernetError("Too many requests", status=429, retry_after=max(1, int(wait + 0.999)))
    return None
