"""``rundramatiq``, supervised: django_dramatiq's command, started again when it dies.

Dramatiq's main process shuts every worker down and exits when one of them dies (a
segfault, the OOM killer, ``kill -9``), and nothing would start it again: the queue
and the watchdog's sweeps would stop being served. This command runs django_dramatiq's
``rundramatiq`` as its child and starts it again after an exit it did not ask for,
backing off while it keeps dying at once. SIGTERM and SIGINT are passed on and end the
supervisor once the child has stopped; the child gets SIGTERM if the supervisor is
killed outright, so no orphan keeps consuming.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from django_dramatiq.management.commands.rundramatiq import Command as DramatiqCommand

from marketplace.processes import die_with_parent

CHILD_FLAG = "--supervised-child"
FIRST_DELAY_SECONDS = 0.5
LONGEST_DELAY_SECONDS = 30.0
# a child that ran this long had a good run: the next restart is quick again
STEADY_SECONDS = 60.0


class Command(DramatiqCommand):
    help = "Runs Dramatiq workers, and starts them again if they die."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(CHILD_FLAG, action="store_true", dest="supervised_child", help=argparse.SUPPRESS)

    def handle(self, *args, supervised_child=False, **options):
        if supervised_child:
            return super().handle(*args, **options)  # becomes dramatiq (exec)
        sys.exit(self._supervise([sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:], CHILD_FLAG]))

    def _supervise(self, command: list[str]) -> int:
        stopping = False
        child: subprocess.Popen | None = None

        def stop(signum, frame):
            nonlocal stopping
            stopping = True
            if child is not None and child.poll() is None:
                child.send_signal(signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        delay = FIRST_DELAY_SECONDS
        while True:
            started = time.monotonic()
            child = subprocess.Popen(command, preexec_fn=die_with_parent)
            code = child.wait()
            if stopping:
                return code
            ran = time.monotonic() - started
            delay = FIRST_DELAY_SECONDS if ran >= STEADY_SECONDS else min(delay * 2, LONGEST_DELAY_SECONDS)
            self.stderr.write(f"dramatiq exited on its own (code {code}) after {ran:.0f} s: "
                              f"starting it again in {delay:.1f} s")
            deadline = time.monotonic() + delay
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            if stopping:
                return code
