"""``manage.py runweb``: the web tier in its production topology, on one machine.

REST, pages and the admin run under gunicorn (WSGI, thread workers); Daphne serves only
what needs ASGI: the WebSocket routes and the long-lived streams (SSE, the Infernet job
stream). Measured here, the same DRF view costs Daphne 2.5x the CPU that gunicorn spends
(ENVIRONMENT.md, ``bench/web_tier.py``), while a stream held open costs a thread-per-request
server a whole thread. A reverse proxy in front sends each route to its server (README,
"Production"). ``runmarket`` stays the one-process embedded default.

Daphne runs in this process; gunicorn is its child and goes when this process goes. If
either server stops, both stop and the command exits non-zero, so the process supervisor
(systemd, a container runtime) restarts the pair.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from marketplace.processes import die_with_parent
from marketplace.web_server import serve

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def route_path(pattern) -> str:
    """``^v1/jobs/(?P<job_id>[A-Za-z0-9_-]{1,64})/events$`` → ``/v1/jobs/<job_id>/events``."""
    regex = pattern.pattern.regex.pattern
    return "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", regex).strip("^$")


def asgi_routes() -> tuple[list[str], list[str]]:
    """(WebSocket paths, streaming HTTP paths): what the proxy must send to Daphne."""
    from jobs.routing import http_urlpatterns, websocket_urlpatterns

    return [route_path(p) for p in websocket_urlpatterns], [route_path(p) for p in http_urlpatterns]


class Command(BaseCommand):
    help = "Run the web tier as in production: gunicorn for REST and pages, Daphne for WebSocket and streams."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--wsgi-port", type=int, default=8000, help="gunicorn: REST, pages, admin")
        parser.add_argument("--asgi-port", type=int, default=8001, help="Daphne: /ws/ and the streaming routes")
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn worker processes")
        parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
        parser.add_argument("--backlog", type=int, default=2048, help="listen backlog of both servers")
        parser.add_argument(
            "--allow-embedded", action="store_true",
            help="start without Redis and a broker (to try the topology: live events then stay inside "
                 "Daphne, and jobs submitted to gunicorn are not dispatched; use runmarket for that)",
        )

    def handle(self, *args, **options):
        try:
            import gunicorn  # noqa: F401
        except ImportError:
            raise CommandError("gunicorn is not installed: pip install -r requirements.txt") from None
        missing = [name for name, value in (("REDIS_URL", settings.REDIS_URL),
                                            ("DRAMATIQ_BROKER_URL", settings.DRAMATIQ_BROKER_URL)) if not value]
        child_env = dict(os.environ)
        if missing:
            if not options["allow_embedded"]:
                raise CommandError(
                    f"{' and '.join(missing)} must be set: several processes share the cache, the channel "
                    "layer and the broker (or pass --allow-embedded; runmarket is the one-process default)"
                )
            # each process has its own in-memory cache: a key revoked through one must not live on in another
            child_env["API_KEY_CACHE_SECONDS"] = "0"
            settings.API_KEY_CACHE_SECONDS = 0

        gunicorn_process = self._start_gunicorn(options, child_env)
        stopping = threading.Event()
        gunicorn_died = threading.Event()
        threading.Thread(
            target=self._watch, args=(gunicorn_process, stopping, gunicorn_died), daemon=True, name="runweb-watch"
        ).start()
        self._announce(options)
        try:
            serve(options["host"], options["asgi_port"], backlog=options["backlog"])
        finally:
            stopping.set()
            if gunicorn_process.poll() is None:
                gunicorn_process.terminate()  # gunicorn's graceful stop: finish requests in flight
                try:
                    gunicorn_process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    gunicorn_process.kill()
        if gunicorn_died.is_set():
            raise CommandError(f"gunicorn exited (status {gunicorn_process.returncode}); Daphne stopped with it")

    def _start_gunicorn(self, options, env) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "gunicorn", "marketplace.wsgi:application",
            "--bind", f"{options['host']}:{options['wsgi_port']}",
            "--worker-class", "gthread",
            "--workers", str(options["workers"]),
            "--threads", str(options["threads"]),
            "--backlog", str(options["backlog"]),
            # REST calls are short; a worker stuck longer than this is restarted
            "--timeout", "60",
            "--graceful-timeout", "20",
            "--keep-alive", "5",
            # its runtime control socket has one default path per user: two web tiers would share it
            "--no-control-socket",
        ]
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, preexec_fn=die_with_parent)

    def _watch(self, process: subprocess.Popen, stopping: threading.Event, died: threading.Event) -> None:
        process.wait()
        if stopping.is_set():
            return
        died.set()
        self.stderr.write(f"gunicorn exited (status {process.returncode}); stopping Daphne")
        from twisted.internet import reactor

        reactor.callFromThread(reactor.stop)

    def _announce(self, options) -> None:
        websockets, streams = asgi_routes()
        wsgi_url = f"http://{options['host']}:{options['wsgi_port']}"
        asgi_url = f"http://{options['host']}:{options['asgi_port']}"
        lines = [
            "",
            "Web tier (production topology)",
            f"  gunicorn  {wsgi_url}  REST API, pages, admin"
            f"  ({options['workers']} workers x {options['threads']} threads)",
            f"  Daphne    {asgi_url}  WebSocket: {', '.join(websockets)}",
            f"            {' ' * len(asgi_url)}  streams:   {', '.join(streams)}",
            "  In front: a reverse proxy sending /ws/ and the streams to Daphne, the rest to gunicorn",
            "  (README.md, \"Production\", has an nginx example).",
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

