"""One error shape for the whole /v1 surface: ``{"error": {status, title, detail, code}}``.

Domain exceptions subclass ``ApiError`` and are rendered here once: by DRF's
exception handler for API views, and by ``ApiErrorMiddleware`` for what never
reaches a view (unknown routes, oversized bodies, server errors).
"""
from __future__ import annotations

import logging
from http import HTTPStatus

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.json_input import JsonBodyRefused

log = logging.getLogger(__name__)

# what a request meets when PostgreSQL is down or unreachable (the pool's wait included):
# a 503 the client may retry, never a 500 or a hang
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)

API_PREFIXES = ("/v1/", "/v1")


class ApiError(Exception):
    status = 400
    code = "invalid_request"
    title = ""

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None, **extra) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status
        self.extra = extra


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


def problem(status: int, detail: str, code: str, title: str = "", headers: dict | None = None, **extra) -> JsonResponse:
    body = {
        "error": {
            "status": status,
            "title": title or HTTPStatus(status).phrase,
            "detail": detail,
            "code": code,
            **extra,
        }
    }
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(detail, list) and detail and all(isinstance(d, (str, drf.ErrorDetail)) for d in detail):
        return {prefix.rstrip(".") or "non_field_errors": [str(d) for d in detail]}
    if isinstance(detail, list):
        flat = {}
        for index, value in enumerate(detail):
            flat.update(_flatten(value, f"{prefix}{index}."))
        return flat
    return {prefix.rstrip(".") or "non_field_errors": [str(detail)]}


def api_exception_handler(exc, context):
    if isinstance(exc, ApiError):
        return problem(exc.status, exc.detail, exc.code, exc.title, **exc.extra)
    if isinstance(exc, drf.ValidationError):
        fields = _flatten(exc.detail)
        summary = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
        return problem(422, summary, "validation_error", fields=fields)
    if isinstance(exc, JsonBodyRefused):
        if exc.status == 413:
            return problem(413, str(exc.detail), "payload_too_large")
        if exc.status == 422:
            return problem(422, str(exc.detail), "validation_error")
        return problem(400, f"the request body is refused: {exc.detail}", "invalid_json")
    if isinstance(exc, drf.ParseError):
        return problem(400, f"the request body is not valid JSON: {exc.detail}", "invalid_json")
    if isinstance(exc, drf.UnsupportedMediaType):
        return problem(415, "send the request body as application/json", "unsupported_media_type")
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return problem(
            401,
            str(exc.detail),
            "unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    if isinstance(exc, drf.Throttled):
        wait = max(1, int(exc.wait or 1))
        return problem(
            429,
            f"rate limit exceeded; retry in {wait} s",
            "rate_limited",
            headers={"Retry-After": str(wait)},
        )
    if isinstance(exc, (Http404, drf.NotFound)):
        return problem(404, "not found", "not_found")
    if isinstance(exc, drf.MethodNotAllowed):
        return problem(405, str(exc.detail), "method_not_allowed")
    if isinstance(exc, drf.PermissionDenied):
        return problem(403, str(exc.detail), "forbidden")
    if isinstance(exc, drf.APIException):
        return problem(exc.status_code, str(exc.detail), exc.default_code)
    response = drf_exception_handler(exc, context)
    return response  # None: an unexpected error, rendered as a 500 by the middleware


class ApiErrorMiddleware:
    """Keep /v1 JSON where no API view answers: unknown routes, big bodies, crashes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIXES):
            return self.get_response(request)
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return problem(
                413,
                f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
                "payload_too_large",
            )
        response = self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith("application/json"):
            return problem(404, f"no such endpoint: {request.method} {request.path}", "not_found")
        return response

    def process_exception(self, request, exception):
        if not request.path.startswith(API_PREFIXES):
            return None
        if isinstance(exception, Http404):
            return problem(404, "not found", "not_found")
        if isinstance(exception, DATABASE_UNAVAILABLE):
            log.error("the database is unavailable on %s %s: %s", request.method, request.path, exception)
            return problem(503, "the database is unavailable; try again shortly", "database_unavailable",
                           headers={"Retry-After": "5"})
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "the server failed to handle this request; it has been logged", "server_error")
