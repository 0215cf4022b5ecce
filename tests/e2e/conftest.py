"""A real Prefect server and a served deployment, started once per session for the server and browser tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"
# The labelled development corpus (tests/data, with its licence) gives the run enough stories
# for the charts to mean something; the test config's 50-article batches make it 8 batches.
CORPUS = ROOT / "tests" / "data" / "giveme5w1h.jsonl"
PAGES = ROOT / "tests" / "data" / "html" / "html"
TEST_CONFIG = ROOT / "config" / "test.toml"
NEWSDEDUP = str(Path(sys.executable).with_name("newsdedup"))
SERVER_START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 180
# Measured on 2 busy cores; kept so the report of a slow CI run says where the time went.
TIMINGS: dict[str, float] = {}


def api(base: str, method: str, path: str, body: dict | None = None) -> object:
    """One JSON call to the Prefect REST API at `base` (".../api")."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    # The server answers 503 while its own SQLite database is locked by its background services
    # (as Prefect's own client does, retry those with a growing pause).
    for attempt in range(6):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or "null")
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503) or attempt == 5:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(api_url + "/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> int:
    """Stop a child started in its own session: `sig` first, SIGKILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
    return process.returncode


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`newsdedup server` on 127.0.0.1 and a free port, with a temporary PREFECT_HOME.

    Yields the API URL. At the end it sends Ctrl-C (SIGINT) as a person would, and checks that
    the command exits 0 and the API is gone.
    """
    from flows.server import free_port

    home = tmp_path_factory.mktemp("prefect-server-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    out = home / "newsdedup-server.out"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    started = time.monotonic()
    with open(out, "wb") as handle:
        process = subprocess.Popen(
            [NEWSDEDUP, "server", "--port", str(port), "--home", str(home)],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
    try:
        while not _healthy(api_url):
            if process.poll() is not None or time.monotonic() - started > SERVER_START_TIMEOUT_S:
                pytest.fail(f"the Prefect server did not start:\n{_tail(out)}\n{_tail(home / 'server.log')}")
            time.sleep(0.5)
        TIMINGS["server start"] = time.monotonic() - started
        yield api_url
    finally:
        code = _stop(process, signal.SIGINT)
    assert code == 0, f"newsdedup server exited with {code} on Ctrl-C:\n{_tail(out)}"
    assert "stopped" in out.read_text(), _tail(out)
    assert not _healthy(api_url), "the Prefect server still answers after newsdedup server stopped"


@pytest.fixture(scope="session")
def served_deployment(prefect_server, tmp_path_factory):
    """`newsdedup serve` of one source (seeds/, the development corpus and three HTML pages),
    registered with the server.

    Yields (deployment JSON, database path).
    """
    work = tmp_path_factory.mktemp("served")
    inputs = work / "inputs"
    shutil.copytree(SEEDS, inputs / "seeds")
    shutil.copyfile(CORPUS, inputs / CORPUS.name)
    # A few HTML pages: a batch holding one is cached (extraction is the costly stage).
    (inputs / "pages").mkdir()
    for page in sorted(PAGES.glob("*.html.gz"))[:3]:
        shutil.copyfile(page, inputs / "pages" / page.name)
    sources = work / "sources.toml"
    sources.write_text(
        "[[sources]]\n"
        'name = "e2e-seeds"\nkind = "directory"\n'
        f'location = "{inputs}"\n'
        "schedule = { interval_minutes = 60 }\n\n"
        "[[sources]]\n"
        'name = "switched-off"\nkind = "directory"\n'
        f'location = "{inputs}"\nenabled = false\n'
    )
    db = work / "stories.db"
    out = work / "serve.out"
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(tmp_path_factory.mktemp("prefect-serve-home")),
        # The runner looks for due runs every 10 s by default; a test has no time to spare.
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )
    started = time.monotonic()
    with open(out, "wb") as handle:
        process = subprocess.Popen(
            [NEWSDEDUP, "serve", "--sources", str(sources), "--db", str(db), "--config", str(TEST_CONFIG)],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, cwd=str(work),
        )
    try:
        deployment = None
        while deployment is None:
            try:
                deployment = api(prefect_server, "GET", "/deployments/name/newsdedup-ingest/e2e-seeds")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            if deployment is None:
                if process.poll() is not None or time.monotonic() - started > 120:
                    pytest.fail(f"newsdedup serve did not register its deployment:\n{_tail(out)}")
                time.sleep(0.5)
        TIMINGS["serve registers deployment"] = time.monotonic() - started
        yield deployment, db, out
    finally:
        code = _stop(process, signal.SIGINT)
    # Ctrl-C pauses the schedules through the (still running) server and exits cleanly.
    assert code == 0 and "stopped serving; 1 deployment paused, schedules and all" in out.read_text(), _tail(out)
    assert "never awaited" not in out.read_text()


def run_deployment(api_url: str, deployment_id: str, serve_log: Path) -> dict:
    """Create a flow run of the deployment through the REST API and wait for its final state."""
    started = time.monotonic()
    run = api(api_url, "POST", f"/deployments/{deployment_id}/create_flow_run", {})
    while run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        if time.monotonic() - started > RUN_TIMEOUT_S:
            pytest.fail(f"flow run stuck in {run['state_type']} after {RUN_TIMEOUT_S}s:\n{_tail(serve_log)}")
        time.sleep(0.5)
        run = api(api_url, "GET", f"/flow_runs/{run['id']}")
    return run


@pytest.fixture(scope="session")
def completed_run(prefect_server, served_deployment):
    """A flow run of the served deployment, triggered through the REST API and waited for."""
    deployment, db, out = served_deployment
    started = time.monotonic()
    run = run_deployment(prefect_server, deployment["id"], out)
    TIMINGS["flow run, trigger to completed"] = time.monotonic() - started
    assert run["state_type"] == "COMPLETED", f"{run['state_name']}: {run['state']}\n{_tail(out)}"
    return run, db


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "Prefect server e2e timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<34} {seconds:6.1f}s")
