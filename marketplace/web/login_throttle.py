"""Sign-in throttling that holds under concurrency and locks out the guesser, not the owner.

Every attempt is counted before its password is checked, one atomic increment per counter
in the shared cache: a hundred guesses sent at once get at most the allowed number of
password checks, and an attempt over a limit is refused unchecked, the right password
included. Three counters, each over a window of LOGIN_FAILURE_WINDOW_SECONDS:

- this address on this account (LOGIN_FAILURES_ALLOWED): the guesser is locked out, and
  the owner, signing in from their own address, is not;
- this address on any account (LOGIN_ADDRESS_ATTEMPTS_ALLOWED): one address trying many names;
- this account from any address (LOGIN_ACCOUNT_ATTEMPTS_ALLOWED, far higher): guesses spread
  over many addresses. This one locks the owner out too, but only after that many guesses.

A sign-in that succeeds gives its attempt back. The address is the connection's, or with
TRUSTED_PROXY_DEPTH proxies in front, the one the outermost of them saw (X-Forwarded-For).
Staff lift an account's locks in the admin. Enforced in the authentication backend, so the
dashboards' sign-in page and the admin's are held alike. With the cache unreachable sign-in
is not throttled (logged), as the API's rate limits are not.

django-axes was weighed and not taken: it checks for a lockout before the password and
records the failure after it, so guesses sent at once are all checked, which is the hole
this module closes.
"""
from __future__ import annotations

import hashlib
import ipaddress
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache

from marketplace.shared_cache import CACHE_ERRORS, cache_get, cache_unavailable
from marketplace.throttles import TTL_MARGIN_SECONDS, counters_increment


def client_address(request) -> str:
    """The client's address: the connection's, or the one the outermost trusted proxy saw."""
    if request is None:
        return "unknown"
    address = request.META.get("REMOTE_ADDR") or "unknown"
    depth = settings.TRUSTED_PROXY_DEPTH
    if depth:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        # each trusted proxy appended the address it was reached from; hops further left are
        # the client's own claims, which anyone can write
        if hops:
            address = hops[max(len(hops) - depth, 0)]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "unknown"


def _account(username: str) -> str:
    return hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]


def _epoch(account: str) -> str:
    """The account's lock generation: staff lifting its locks start a new one."""
    return str(cache_get(f"login:epoch:{account}") or 0)


@dataclass(frozen=True)
class _Counters:
    keys: list[str]
    limits: list[int]
    window_ends_at: float


def _counters(username: str, request) -> _Counters:
    length = settings.LOGIN_FAILURE_WINDOW_SECONDS
    now = time.time()
    window = int(now // length)
    account, address = _account(username), client_address(request)
    epoch = _epoch(account)
    return _Counters(
        keys=[f"login:pair:{account}:{epoch}:{address}:{window}", f"login:addr:{address}:{window}",
              f"login:acct:{account}:{epoch}:{window}"],
        limits=[settings.LOGIN_FAILURES_ALLOWED, settings.LOGIN_ADDRESS_ATTEMPTS_ALLOWED,
                settings.LOGIN_ACCOUNT_ATTEMPTS_ALLOWED],
        window_ends_at=(window + 1) * length,
    )


@dataclass(frozen=True)
class LoginAttempt:
    counters: _Counters
    wait: int  # seconds until this address may try this account again; 0: check the password


def login_attempt_count(username: str, request) -> LoginAttempt:
    """Count one sign-in attempt before its password is checked."""
    counters = _counters(username, request)
    ttl = settings.LOGIN_FAILURE_WINDOW_SECONDS + TTL_MARGIN_SECONDS
    # the address's counters first: an attempt they refuse never reaches the account's, so
    # one address, however busy, cannot spend the owner's allowance
    for keys, limits in ((counters.keys[:2], counters.limits[:2]), (counters.keys[2:], counters.limits[2:])):
        counts = counters_increment(keys, [ttl] * len(keys), unenforced="sign-in is not throttled")
        if counts is not None and any(n > limit for n, limit in zip(counts, limits)):
            return LoginAttempt(counters, max(1, int(counters.window_ends_at - time.time() + 0.999)))
    return LoginAttempt(counters, 0)


def login_attempt_give_back(attempt: LoginAttempt) -> None:
    """A sign-in that succeeded: its attempt does not count against anyone (the very counters
    it was counted on, even if a new window began meanwhile)."""
    for key in attempt.counters.keys:
        try:
            cache.decr(key)
        except ValueError:
            continue  # that window has ended: nothing of it left to give back
        except CACHE_ERRORS as exc:
            cache_unavailable(exc, doing="sign-in is not throttled")
            return


def login_locked_for(username: str, request) -> int:
    """Seconds until this address may try this account again (0: now); counts nothing."""
    counters = _counters(username, request)
    try:
        counts = cache.get_many(counters.keys)
    except CACHE_ERRORS as exc:
        cache_unavailable(exc, doing="sign-in is not throttled")
        return 0
    if all(int(counts.get(key) or 0) < limit for key, limit in zip(counters.keys, counters.limits)):
        return 0
    return max(1, int(counters.window_ends_at - time.time() + 0.999))


def login_locks_lift(username: str) -> None:
    """Staff: the account's locks end now (its counters start again), from every address."""
    account = _account(username)
    key = f"login:epoch:{account}"
    try:
        cache.set(key, time.time_ns(), None)
    except CACHE_ERRORS as exc:
        cache_unavailable(exc, doing="no lock to lift")


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            return None
        attempt = login_attempt_count(username, request)
        if attempt.wait:
            return None  # over a limit: refused before the password is looked at
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            login_attempt_give_back(attempt)
        return user
