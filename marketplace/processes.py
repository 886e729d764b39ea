"""Child processes that go when their parent goes, and that are started again when they die."""
from __future__ import annotations

import signal
import subprocess
import threading
import time


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when its parent dies, even by SIGKILL (Linux),
    so no orphan keeps a port or a queue after a supervisor is killed."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # elsewhere: a supervisor that kills the process group does the same


class Supervised:
    """A child process started again whenever it exits until ``stop()``, backing off while it
    keeps dying at once; ``command()`` is asked anew for each start. The child goes when
    this process goes, even by SIGKILL (``die_with_parent``)."""

    FIRST_DELAY_SECONDS = 0.5
    LONGEST_DELAY_SECONDS = 30.0
    STEADY_SECONDS = 60.0

    def __init__(self, name: str, command, log, **popen) -> None:
        self.name, self._command, self._log, self._popen = name, command, log, popen
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a start and a stop never cross: no child outlives stop()
        self.restarts = 0
        self.process = self._start()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name=f"supervise-{name}")
        self._watcher.start()

    def _start(self):
        return subprocess.Popen(self._command(), preexec_fn=die_with_parent, **self._popen)

    def poll(self):
        return self.process.poll()

    def _watch(self) -> None:
        delay = self.FIRST_DELAY_SECONDS
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self.process.wait()
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            delay = self.FIRST_DELAY_SECONDS if ran >= self.STEADY_SECONDS else min(delay * 2, self.LONGEST_DELAY_SECONDS)
            self._log(f"{self.name} exited (code {code}); starting it again in {delay:.1f} s")
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = self._start()
                self.restarts += 1

    def stop(self, timeout: float = 10) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
