"""A SIGKILLed `newsdedup ingest`, or one whose worker process is SIGKILLed, leaves no Prefect server behind.

The run starts Prefect's embedded server (no PREFECT_API_URL), is caught waiting on a page
that a local server is slow to send, and is killed with SIGKILL, which runs none of Prefect's
exit handlers. Before flows/watchdog.py the server's uvicorn process lived on as an orphan.
"""

from __future__ import annotations

import contextlib
import sqlite3
import os
import signal
import subprocess
import time

import pytest

from tests.localweb import LocalWeb
from tests.processes import children, descendants, running, wait_until_ended

from .conftest import NEWSDEDUP, ROOT, RUN_TIMEOUT_S

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


def test_sigkill_while_the_embedded_server_starts_takes_it_too(tmp_path, seeds_dir):
    """The whole process group SIGKILLed while Prefect's embedded server is still starting (10-30 s
    here): its watchdog must already be there. It was started only once the server answered, and a
    QA pass killing runs at random moments found seven servers left running."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    run = subprocess.Popen(
        [NEWSDEDUP, "ingest", str(seeds_dir), "--db", str(tmp_path / "stories.db")],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a group of its own, as a terminal gives a command
    )
    servers: list[int] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not servers:
            assert run.poll() is None, f"the ingest run ended before its server started (exit {run.returncode})"
            assert time.monotonic() < deadline, "no embedded server started"
            servers = [pid for pid, command in children(run.pid).items() if _is_server(command)]
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGKILL)  # the terminal's group: the run, not its server's own session
        run.wait(10)
        assert not wait_until_ended(servers, 40), "the embedded Prefect server outlived its killed parent"
    finally:
        if run.poll() is None:
            run.kill()
        for pid in servers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def _remember(seen: dict[int, str], found: dict[int, str]) -> None:
    """Add `found` to `seen`, keeping a process's latest command line that is not empty: an
    ending process's reads empty (a server seen as "" at its exit made the run look as if it
    had none), and a child caught between fork and exec still shows its parent's (a server
    first seen so read as another `newsdedup ingest`, in one fresh-clone run)."""
    for pid, command in found.items():
        if command:
            seen[pid] = command
        else:
            seen.setdefault(pid, command)


def _is_server(command: str) -> bool:
    return "uvicorn" in command and "prefect" in command


def _servers(seen: dict[int, str], parents: dict[int, int]) -> list[int]:
    """The Prefect servers among `seen`. A process the server forks reads as the server until it
    runs its own program (a make test run once caught one in that instant: "2 servers", consecutive
    pids), so a server's child is part of that server, not another one."""
    return [
        pid for pid, command in seen.items()
        if _is_server(command) and not _is_server(seen.get(parents.get(pid) or -1, ""))
    ]


@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_workers_share_the_runs_server_and_a_killed_one_leaves_nothing_running(tmp_path, runner):
    """`--runner processes` and `--runner dask` (a local cluster) in embedded mode: the workers
    were not told the server's address and each started an embedded server of its own; a
    process-pool worker killed mid-run left its server running after the command had exited."""
    import sqlite3

    from tests.synthetic import articles, write_jsonl

    corpus = write_jsonl(tmp_path / "corpus.jsonl", articles(stories=200, per_story=40, seed=5))
    config = tmp_path / "small-batches.toml"
    config.write_text("[ingest]\nbatch_size = 200\n")
    db = tmp_path / "stories.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    stderr = tmp_path / "stderr.txt"  # a file, not a pipe nobody reads while the run goes on
    with open(stderr, "w") as err_file:
        run = subprocess.Popen(
            [NEWSDEDUP, "ingest", str(corpus), "--db", str(db), "--config", str(config), "--runner", runner, "--quiet"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file,
            start_new_session=True,
        )
    seen: dict[int, str] = {}
    parents: dict[int, int] = {}  # each process's parent, as first found
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        workers: list[int] = []
        while not workers:
            assert run.poll() is None, f"the run ended before a batch was stored (exit {run.returncode})"
            assert time.monotonic() < deadline, "no batch was stored in time"
            found = descendants(run.pid, parents)
            _remember(seen, found)
            stored = 0
            if db.exists():
                with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db, timeout=1)) as conn:
                    stored = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
            if stored:
                workers = [pid for pid, command in found.items() if "spawn_main" in command]
            time.sleep(0.05)
        if runner == "processes":
            os.kill(workers[0], signal.SIGKILL)
        # Watch the whole run: a worker could start a server of its own at any batch.
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while run.poll() is None:
            assert time.monotonic() < deadline, "the run did not end in time"
            _remember(seen, descendants(run.pid, parents))
            time.sleep(0.05)
        err = stderr.read_text()
        servers = _servers(seen, parents)
        assert len(servers) == 1, f"expected the run's one embedded server, found {len(servers)}: {seen} {parents}"
        if runner == "processes":
            assert run.returncode == 6, err
            assert "a worker process preparing batches died" in err
        else:
            assert run.returncode == 0, err
            with contextlib.closing(sqlite3.connect(db)) as conn:
                assert conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 8000
        left = wait_until_ended(list(seen), 30)
        assert not left, f"still running after the run ended: {[seen[pid] for pid in left]}"
    finally:
        if run.poll() is None:
            run.kill()
        for pid in seen:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("runner", ["processes", "threads"])
def test_ctrl_c_on_a_flow_run_stops_it_promptly_and_leaves_nothing_running(tmp_path, runner):
    """Ctrl-C as a terminal sends it: SIGINT to every process of the command's group.

    (Found this session: Prefect's embedded server was in that group, died at once, and the
    interrupted run then spent minutes retrying to report itself Crashed to it. Under
    `--runner processes` the pool's workers, interrupted mid-task, broke the pool's manager
    thread and the command hung at exit for ever, after tracebacks; workers still preparing
    logged a HandoverError each. The server now has its own session, workers leave a Ctrl-C to
    the run, and whatever a broken pool leaves is stopped.)"""
    from tests.synthetic import articles, consistency_problems, write_jsonl

    records = articles(stories=60, per_story=50, seed=8)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    config = tmp_path / "small-batches.toml"
    config.write_text("[ingest]\nbatch_size = 200\n")
    db = tmp_path / "stories.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    run = subprocess.Popen(
        [NEWSDEDUP, "ingest", str(corpus), "--db", str(db), "--config", str(config), "--runner", runner],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # A group of its own, as a terminal gives a command; SIGINT not ignored (a shell starts
        # background jobs with it ignored).
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _stored_any(db):
            assert run.poll() is None, f"the run ended early (exit {run.returncode}): {run.stderr.read()}"
            assert time.monotonic() < deadline, "the run stored nothing in time"
            _remember(seen, descendants(run.pid))
            time.sleep(0.1)
        _remember(seen, descendants(run.pid))
        servers = [pid for pid, command in seen.items() if _is_server(command)]
        assert len(servers) == 1, f"expected Prefect's embedded server among {seen}"
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
    assert run.returncode == 130, stderr
    assert "newsdedup: interrupted; the batches committed before it are stored" in stderr
    assert "Traceback" not in stderr and "HandoverError" not in stderr, stderr
    assert wait_until_ended(list(seen), 30) == [], "processes outlived the interrupted run"
    assert consistency_problems(db, run_finished=False) == []
    stored = sqlite3.connect(db).execute("SELECT count(*) FROM articles").fetchone()[0]
    assert 0 < stored < len(records)


def _stored_any(db) -> bool:
    try:
        conn = sqlite3.connect(db, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM articles").fetchone()[0] > 0
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return False
