"""``manage.py runmarket``: the whole marketplace on one machine, ready to use.

Migrates, makes the demo data on first run, and starts Daphne (HTTP, SSE,
WebSocket), a Dramatiq worker inside this process when no broker is configured,
and a local node agent with the built-in containers, enrolled with this
marketplace. Then it prints where everything is and a curl line to try.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from marketplace.management.demo import demo_ensure
from marketplace.processes import Supervised
from marketplace.web_server import serve
from nodes.agent.marketplace_link import ENROLLMENT_FILE

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _python() -> str:
    """This Python, as the person who started runmarket would type it (.venv/bin/python)."""
    here = Path.cwd()
    executable = Path(sys.executable)
    return str(executable.relative_to(here)) if executable.is_relative_to(here) else str(executable)


class Command(BaseCommand):
    help = "Run the marketplace with a worker and a local node agent (the embedded default needs no services)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--agent-port", type=int, default=settings.NODE_AGENT_PORT)
        parser.add_argument("--no-agent", action="store_true", help="do not start the local node agent")
        parser.add_argument("--worker-threads", type=int, default=8)
        parser.add_argument(
            "--worker",
            choices=["auto", "yes", "no"],
            default="auto",
            help="run a Dramatiq worker in this process (auto: only without DRAMATIQ_BROKER_URL)",
        )

    def handle(self, *args, **options):
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        credentials = demo_ensure(settings.VAR_DIR)
        base_url = f"http://{options['host']}:{options['port']}"

        worker = None
        if options["worker"] == "yes" or (options["worker"] == "auto" and settings.DRAMATIQ_IN_PROCESS):
            worker = self._start_worker(options["worker_threads"])
        agent = None if options["no_agent"] else self._start_agent(base_url, options["agent_port"])
        threading.Thread(
            target=self._announce, args=(base_url, credentials, agent, worker is not None), daemon=True
        ).start()
        try:
            serve(options["host"], options["port"])
        finally:
            if agent is not None:
                agent.stop()
            if worker is not None:
                worker.stop(timeout=5000)

    def _start_worker(self, threads: int):
        import dramatiq

        import jobs.tasks  # noqa: F401  (registers the actors)

        worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=threads, worker_timeout=100)
        worker.start()
        return worker

    def _start_agent(self, base_url: str, port: int) -> Supervised:
        """The local node agent, started again if it dies, and gone when this process goes."""
        state_dir = settings.NODE_AGENT_STATE_DIR

        def command() -> list[str]:
            from marketplace.services import miner_get_or_create
            from nodes.services import enrollment_token_create

            line = [
                sys.executable, "manage.py", "runnode", "--port", str(port), "--state-dir", str(state_dir),
                "--marketplace", base_url, "--name", "demo-node",
            ]
            enrolled = (state_dir / ENROLLMENT_FILE).exists() and base_url in (state_dir / ENROLLMENT_FILE).read_text()
            if not enrolled:
                token = enrollment_token_create(miner=miner_get_or_create(name="demo-miner"))
                line += ["--enroll-token", token.secret]
            return line

        return Supervised("the local node agent", command, log=self.stderr.write, cwd=PROJECT_ROOT)

    def _announce(self, base_url: str, credentials: dict, agent, in_process_worker: bool) -> None:
        from nodes.selectors import nodes_online

        deadline = time.monotonic() + 60
        while agent is not None and time.monotonic() < deadline:
            if agent.poll() is not None:
                self.stderr.write("the local node agent exited; see its output above")
                break
            if nodes_online().exists():
                break
            time.sleep(0.2)
        key = credentials["customer"]["api_key"]
        lines = [
            "",
            "Inference marketplace is running",
            f"  API              {base_url}/v1/",
            f"  admin            {base_url}/admin/   user admin / {credentials['admin']['password']}",
            f"  dashboards       {base_url}/dashboard/ (customers)   {base_url}/miner/ (miners)",
            f"  demo customer    {credentials['customer']['customer_id']}   user demo / {credentials['customer']['password']}"
            f"   API key {key}",
            f"  demo miner       {credentials['miner']['miner_id']}   user demo-miner / {credentials['miner']['password']}",
            f"  worker           {'in this process' if in_process_worker else 'run: python manage.py rundramatiq'}",
            "",
            "Try it:",
            f"  curl -s -X POST {base_url}/v1/jobs -H 'Authorization: Bearer {key}' "
            "-H 'Content-Type: application/json' -d '{\"model\": \"echo\", \"input\": \"hello\"}'",
            f"  curl -s {base_url}/v1/jobs/<job_id> -H 'Authorization: Bearer {key}'",
            "A private (end-to-end encrypted) job, sealed and opened on this machine:",
            f"  {_python()} -m privacy.cli --url {base_url} --api-key {key} run --model echo 'a secret prompt'",
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

