"""Liveness and readiness, for a load balancer or an orchestrator.

``/healthz``: the process answers (nothing else is asked). ``/readyz``: each dependency
this process was configured with answers, checked now with a short timeout each, and
which one does not; 503 while any is down. A dependency down is not a crash: the API
keeps answering what it can (the cache fails open, live events are best effort), and
readiness says what is degraded.
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse


CHECK_TIMEOUT_SECONDS = 2.0


def healthz(request):
    return JsonResponse({"status": "alive"})


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _cache() -> str:
    cache.get("readyz-probe")
    return "ok"


def _broker() -> str:
    """A TCP connection to the broker's port: enough to say it is reachable, and cheap."""
    parts = urlsplit(settings.DRAMATIQ_BROKER_URL)
    default_port = {"amqp": 5672, "amqps": 5671, "redis": 6379, "rediss": 6379}.get(parts.scheme, 5672)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port),
                                  timeout=CHECK_TIMEOUT_SECONDS):
        return "ok"


def readyz(request):
    checks = {"database": _database}
    if settings.REDIS_URL:
        checks["cache"] = _cache
    if settings.DRAMATIQ_BROKER_URL:
        checks["broker"] = _broker
    results = {}
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001  (each probe's own failure is what it reports)
            results[name] = f"down: {type(exc).__name__}: {str(exc)[:200]}"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse({"status": "ready" if ready else "degraded", "checks": results}, status=200 if ready else 503)
