"""Sign-in throttling: a run of failed sign-ins locks the username, and the address, for a while.

Counted in the cache (shared by every web process where Redis is configured), and
enforced in the authentication backend, so the dashboards' sign-in page and the
admin's are held to the same limit. While locked, even the right password fails:
guessing gains nothing from the lock's end being near.
"""
from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.dispatch import receiver


def _client_address(request) -> str:
    return (request.META.get("REMOTE_ADDR") or "unknown") if request is not None else "unknown"


def _keys(username: str, request) -> list[str]:
    name = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]
    return [f"login-fail:user:{name}", f"login-fail:addr:{_client_address(request)}"]


def _failures(key: str) -> list[float]:
    horizon = time.time() - settings.LOGIN_FAILURE_WINDOW_SECONDS
    return [t for t in cache.get(key, []) if t > horizon]


def login_locked_for(username: str, request) -> int:
    """Seconds until sign-in is allowed again for this username and address (0: allowed now)."""
    wait = 0.0
    for key in _keys(username, request):
        failures = _failures(key)
        if len(failures) >= settings.LOGIN_FAILURES_ALLOWED:
            wait = max(wait, failures[0] + settings.LOGIN_FAILURE_WINDOW_SECONDS - time.time())
    return int(wait + 0.999) if wait > 0 else 0


def login_failure_record(username: str, request) -> None:
    for key in _keys(username, request):
        failures = _failures(key)
        failures.append(time.time())
        cache.set(key, failures[-50:], settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_failures_clear(username: str, request) -> None:
    cache.delete(_keys(username, request)[0])  # the address keeps its count: it may be guessing many names


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    login_failure_record(credentials.get("username", ""), request)


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is not None and login_locked_for(username, request):
            return None  # counted as one more failure by the signal; the form says why
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            login_failures_clear(username, request)
        return user
