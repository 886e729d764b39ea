"""Sign-in throttling under concurrency: attempts are counted before any password is checked.

Guesses sent at once each take their count first, so no more of them reach the password
hasher than the limit allows, and once over it the right password is refused too. The
guesser's address is what gets locked; a spread-out guess locks the account only after
many more tries; staff lift an account's locks; behind trusted proxies the client's address
is the one the outermost proxy saw.
"""
import threading

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.hashers import check_password as real_check_password
from django.db import close_old_connections
from django.test import Client, RequestFactory

from marketplace.web.login_throttle import client_address, login_locked_for

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def one_window(monkeypatch, settings):
    """The counters' windows are fixed slices of the clock: a test that crossed a boundary would
    see its counts start again. Each test here runs in the middle of one window."""
    import time
    import types

    from marketplace.web import login_throttle

    length = settings.LOGIN_FAILURE_WINDOW_SECONDS
    middle = (time.time() // length) * length + length / 2
    monkeypatch.setattr(login_throttle, "time", types.SimpleNamespace(time=lambda: middle, time_ns=time.time_ns))


@pytest.fixture
def alice(transactional_db):
    return get_user_model().objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def checked(monkeypatch):
    """How many times a password was put to the hasher."""
    calls = []
    lock = threading.Lock()

    def counting(password, encoded, setter=None, preferred="default"):
        with lock:
            calls.append(password)
        return real_check_password(password, encoded, setter, preferred)

    monkeypatch.setattr("django.contrib.auth.base_user.check_password", counting)
    return calls


def _from(address: str):
    return RequestFactory().post("/accounts/login/", REMOTE_ADDR=address)


def test_a_hundred_guesses_at_once_get_at_most_the_allowed_password_checks(alice, checked, settings):
    settings.LOGIN_FAILURES_ALLOWED = 5
    barrier = threading.Barrier(20)
    results = []

    def guess(index: int) -> None:
        barrier.wait()
        for attempt in range(5):
            results.append(authenticate(_from("203.0.113.7"), username="alice", password=f"wrong-{index}-{attempt}"))
        close_old_connections()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 100 and not any(results)
    assert len(checked) <= 5, f"{len(checked)} of 100 concurrent guesses reached the password hasher"
    assert authenticate(_from("203.0.113.7"), username="alice", password=PASSWORD) is None, "the limit holds"
    assert len(checked) <= 5
    assert authenticate(_from("198.51.100.1"), username="alice", password=PASSWORD) == alice, (
        "the guesser's address is locked, not the owner: refused guesses do not spend the account's allowance")


def test_a_guess_spread_over_many_addresses_locks_the_account_only_after_many_more(alice, checked, settings):
    settings.LOGIN_FAILURES_ALLOWED, settings.LOGIN_ACCOUNT_ATTEMPTS_ALLOWED = 5, 12
    for index in range(12):
        assert authenticate(_from(f"192.0.2.{index}"), username="alice", password="wrong") is None
    assert authenticate(_from("198.51.100.1"), username="alice", password=PASSWORD) is None
    assert len(checked) == 12
    assert login_locked_for("alice", _from("198.51.100.1")) > 0


def test_one_address_trying_many_names_is_stopped(alice, checked, settings):
    settings.LOGIN_ADDRESS_ATTEMPTS_ALLOWED = 10
    for index in range(15):
        authenticate(_from("203.0.113.9"), username=f"someone-{index}", password="guess")
    assert authenticate(_from("203.0.113.9"), username="alice", password=PASSWORD) is None
    assert authenticate(_from("203.0.113.10"), username="alice", password=PASSWORD) == alice


def test_signing_in_gives_the_attempt_back(alice, settings):
    settings.LOGIN_FAILURES_ALLOWED = 2
    for _ in range(5):
        assert authenticate(_from("198.51.100.1"), username="alice", password=PASSWORD) == alice


def test_staff_lift_an_accounts_locks_in_the_admin(alice, settings):
    settings.LOGIN_FAILURES_ALLOWED = 2
    for _ in range(3):
        authenticate(_from("203.0.113.7"), username="alice", password="wrong")
    assert authenticate(_from("203.0.113.7"), username="alice", password=PASSWORD) is None
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    staff = Client()
    staff.login(username="root", password=PASSWORD)
    response = staff.post("/admin/auth/user/", {"action": "lift_sign_in_locks", "_selected_action": [alice.pk]},
                          follow=True)
    assert "Sign-in locks lifted for alice" in response.content.decode()
    assert authenticate(_from("203.0.113.7"), username="alice", password=PASSWORD) == alice


@pytest.mark.parametrize("depth, forwarded, remote, expected", [
    (0, "1.2.3.4", "10.0.0.1", "10.0.0.1"),  # no proxy trusted: the header is anyone's to write
    (1, "6.6.6.6, 1.2.3.4", "10.0.0.1", "1.2.3.4"),  # one proxy: the address it saw, not the claim before it
    (2, "6.6.6.6, 1.2.3.4, 10.0.0.2", "10.0.0.1", "1.2.3.4"),
    (1, "", "10.0.0.1", "10.0.0.1"),
    (1, "not-an-address", "10.0.0.1", "unknown"),
])
def test_the_client_address_comes_from_the_trusted_proxies_only(settings, depth, forwarded, remote, expected):
    settings.TRUSTED_PROXY_DEPTH = depth
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected
