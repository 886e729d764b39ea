"""Child processes that go when their parent goes."""
from __future__ import annotations

import signal


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when its parent dies, even by SIGKILL (Linux),
    so no orphan keeps a port or a queue after a supervisor is killed."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # elsewhere: a supervisor that kills the process group does the same
