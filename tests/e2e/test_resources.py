"""No per-request resource kept: the web process's file handles stay flat over 10,000 submits.

The submits go to a runmarket whose one node has gone away, so each is the whole submit path
(key lookup, rate limit, quote, reservation, the job and its event, the arrival pass) and
nothing else; the handles (sockets, files, pipes) are counted from /proc before and after.
A leak of one handle per request, such as a broker connection per request thread, shows as
thousands.
"""
import os
import threading
from pathlib import Path

import requests

from tests.support.market import start_market

SUBMITS = int(os.environ.get("LEAK_TEST_SUBMITS", "10000"))
CLIENTS = 8


def _handles(pid: int) -> dict[str, str]:
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass  # closed meanwhile
    return found


def test_file_handles_stay_flat_over_ten_thousand_submits(tmp_path: Path):
    market = start_market(tmp_path, agent=False, workers=1, env={
        "MAX_CONCURRENT_JOBS": str(SUBMITS * 2), "JOB_QUEUE_TIMEOUT_SECONDS": "3600"})
    try:
        gone = market.add_agent(tmp_path / "gone", "gone")  # the model is served; then nobody is there
        gone.process.terminate()
        gone.process.wait(timeout=30)
        failures = []

        def submit(count: int) -> None:
            with requests.Session() as session:
                for _ in range(count):
                    response = session.post(f"{market.url}/v1/jobs", json={"model": "echo", "input": "x"},
                                            headers=market.headers(), timeout=30)
                    if response.status_code != 201:
                        failures.append(response.text[:200])

        def submit_all(total: int) -> None:
            threads = [threading.Thread(target=submit, args=(total // CLIENTS,)) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        submit_all(CLIENTS * 25)  # warm: pools, caches and threads reach their working size
        before = _handles(market.process.pid)
        submit_all(SUBMITS)
        after = _handles(market.process.pid)
        assert not failures, failures[:3]
        assert market.sql("SELECT count(*) FROM jobs_job")[0][0] == CLIENTS * 25 + SUBMITS // CLIENTS * CLIENTS
        added = sorted(target for fd, target in after.items() if before.get(fd) != target)
        print(f"\nweb process file handles: {len(before)} after warming, {len(after)} after {SUBMITS} more "
              f"submits; new or changed: {sorted(set(added))[:10]}")
        # pools and per-thread connections move by a few dozen as threads come and go; one handle
        # per request would be thousands
        assert len(after) - len(before) <= 100, f"{len(after) - len(before)} more handles: {added[:20]}"
    finally:
        market.stop()
