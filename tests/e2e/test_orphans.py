"""A SIGKILLed `newsdedup ingest` leaves no Prefect server behind.

The run starts Prefect's embedded server (no PREFECT_API_URL), is caught waiting on a page
that a local server is slow to send, and is killed with SIGKILL, which runs none of Prefect's
exit handlers. Before flows/watchdog.py the server's uvicorn process lived on as an orphan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.localweb import LocalWeb
from tests.processes import children, running, wait_until_ended

from .conftest import NEWSDEDUP, ROOT

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 180


def test_sigkill_of_an_ingest_run_takes_its_embedded_prefect_server_with_it(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(
        '[fetch]\nallow_private_hosts = ["127.0.0.1"]\nper_domain_delay_s = 0.0\nretries = 0\n'
        "read_timeout_s = 300.0\ntotal_timeout_s = 300.0\nrespect_robots = false\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with LocalWeb() as web:
        url = web.add("/slow.html", "<html><body><p>late</p></body></html>", delay_s=300)
        servers: list[int] = []
        run = subprocess.Popen(
            [NEWSDEDUP, "ingest", url, "--kind", "page", "--db", str(tmp_path / "stories.db"), "--config", str(config)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not web.hits("/slow.html"):
                assert run.poll() is None, f"the ingest run ended early (exit {run.returncode})"
                assert time.monotonic() < deadline, "the ingest run never asked for the page"
                time.sleep(0.2)
            found = children(run.pid)
            servers = [pid for pid, command in found.items() if "uvicorn" in command and "prefect" in command]
            watchdogs = [pid for pid, command in found.items() if "watchdog.py" in command]
            assert len(servers) == 1, f"expected Prefect's embedded server among {found}"
            assert len(watchdogs) == 1, f"expected one watchdog among {found}"

            run.send_signal(signal.SIGKILL)
            run.wait(10)
            left = wait_until_ended(servers + watchdogs, 30)
            assert not set(left) & set(servers), "the embedded Prefect server outlived its killed parent"
            assert not left
        finally:
            leftover = [*children(run.pid), *servers]
            if run.poll() is None:
                run.kill()
            for pid in leftover:
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
