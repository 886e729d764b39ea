"""Waiting for what another process or thread will do, with a deadline and a reason."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 30, interval: float = 0.05, message=""):
    """The predicate's first true value; ``message`` (text, or a function making it) if none in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError((message() if callable(message) else message) or "condition not met in time")
        time.sleep(interval)
