"""API-key authentication for the customer surfaces.

Two ways to present a key: ``Authorization: Bearer <key>``, or the B3IQ pair
``X-B3IQ-Customer-ID`` + ``X-B3IQ-Customer-Token``, where the key must belong to
that customer. Anything else is a JSON 401.
"""
from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from marketplace.models import ApiKey, Customer
from marketplace.selectors import api_key_get_active
from marketplace.services import api_key_touch


@dataclass(frozen=True)
class CustomerPrincipal:
    customer: Customer
    api_key: ApiKey | None  # None: a signed-in dashboard user

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self):
        return self.customer.pk


def authenticate_headers(headers) -> CustomerPrincipal | None:
    """Resolve the caller from request headers (also used by the WebSocket and SSE routes).

    Returns None when no credentials were sent; raises ``AuthenticationFailed`` for bad ones.
    """
    authorization = headers.get("Authorization", "")
    customer_id = headers.get("X-B3IQ-Customer-ID", "")
    token = headers.get("X-B3IQ-Customer-Token", "")
    if authorization:
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise exceptions.AuthenticationFailed("the Authorization header must be 'Bearer <api key>'")
        api_key = api_key_get_active(secret=secret.strip())
    elif customer_id or token:
        if not (customer_id and token):
            raise exceptions.AuthenticationFailed(
                "send both X-B3IQ-Customer-ID and X-B3IQ-Customer-Token, or an Authorization header"
            )
        api_key = api_key_get_active(secret=token)
        if api_key is not None and api_key.customer.public_id != customer_id:
            api_key = None
    else:
        return None
    if api_key is None:
        raise exceptions.AuthenticationFailed("the API key is not valid, or it was revoked")
    api_key_touch(api_key=api_key)
    return CustomerPrincipal(customer=api_key.customer, api_key=api_key)


def session_principal(user) -> CustomerPrincipal | None:
    """The customer a signed-in dashboard user acts as (no API key: limits are the customer's)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    customer = Customer.objects.filter(user=user).first()
    return CustomerPrincipal(customer=customer, api_key=None) if customer else None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        principal = authenticate_headers(request.headers)
        if principal is None:
            return None
        return principal, principal.api_key

    def authenticate_header(self, request):
        # present, so DRF answers 401 (not 403) when no credentials came
        return 'Bearer realm="api"'
