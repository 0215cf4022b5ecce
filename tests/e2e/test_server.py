"""The served deployment on a real Prefect server: run through the API, checked through the API."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess

import pytest

from pipeline.ingest import batches
from pipeline.settings import load_settings

from .conftest import NEWSDEDUP, RUN_TIMEOUT_S, TEST_CONFIG, api, run_deployment

pytestmark = pytest.mark.slow


def _artifacts(api_url: str, flow_run_id: str) -> dict[str, dict]:
    rows = api(api_url, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {row["key"]: row for row in rows}


def test_server_runs_the_served_deployment_and_publishes_artifacts(prefect_server, served_deployment, completed_run):
    deployment, _, _ = served_deployment
    run, db = completed_run

    # The deployment is the configured source, with its schedule and absolute paths.
    assert deployment["name"] == "e2e-seeds"
    assert [s["schedule"].get("interval") for s in deployment["schedules"]] == [3600.0]
    assert deployment["parameters"]["db"] == str(db)
    names = [d["name"] for d in api(prefect_server, "POST", "/deployments/filter", {})]
    assert "switched-off" not in names, "a disabled source was deployed"

    # The database the run wrote: every input accounted for, the five seeds one story of five.
    with sqlite3.connect(db) as conn:
        articles, rejects = conn.execute("SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM rejects)").fetchone()
        seed_stories = conn.execute(
            "SELECT DISTINCT s.id, s.article_count FROM articles a JOIN stories s ON s.id = a.story_id "
            "WHERE a.external_id LIKE 'seeds/%'"
        ).fetchall()
        run_ids = conn.execute("SELECT DISTINCT run_id FROM articles").fetchall()
        finished = conn.execute("SELECT inputs, finished_at FROM runs").fetchall()
    assert len(seed_stories) == 1 and seed_stories[0][1] == 5
    assert run_ids == [(run["id"],)]  # the flow run's whole id, as the Prefect UI shows it
    assert len(finished) == 1 and finished[0][0] == articles + rejects and finished[0][1]

    artifacts = _artifacts(prefect_server, run["id"])
    assert set(artifacts) >= {"ingest-summary", "new-and-grown-stories", "ingest-progress"}

    summary = artifacts["ingest-summary"]
    assert summary["type"] == "markdown"
    text = summary["data"]
    assert f"| inputs | {articles + rejects:,} |" in text and f"| new articles | {articles:,} |" in text
    assert f"| rejects | {rejects:,} |" in text
    assert "## Time per stage" in text and "| extract+fingerprint |" in text and "| assign+store |" in text
    assert "## Story sizes" in text and "## How close the new articles are" in text and "█" in text

    table = artifacts["new-and-grown-stories"]
    assert table["type"] == "table"
    rows = table["data"] if isinstance(table["data"], list) else json.loads(table["data"])
    assert len(rows) > 1 and all(row["title"] and row["article_count"] >= 1 for row in rows)
    assert any(row["story_id"] == seed_stories[0][0] and row["article_count"] == 5 for row in rows)
    assert set(rows[0]) == {"story_id", "title", "article_count", "outlets", "canonical_url"}
    assert any(row["canonical_url"] and row["outlets"] for row in rows)

    progress = artifacts["ingest-progress"]
    assert progress["type"] == "progress" and float(progress["data"]) == 100.0

    # Library logs reach the run's logs (PREFECT_LOGGING_EXTRA_LOGGERS=pipeline). The run's
    # process sends them in batches every 2 s and the rest as it exits, which may be after the
    # API shows the run Completed: wait for them a little.
    import time

    deadline = time.monotonic() + 30
    while True:
        logs = api(prefect_server, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200})
        if any(log["name"] == "pipeline.runlock" and "to itself" in log["message"] for log in logs):
            break
        assert time.monotonic() < deadline, [(log["name"], log["message"]) for log in logs]
        time.sleep(0.5)


def test_server_second_run_reads_batches_with_html_pages_from_the_cache(prefect_server, served_deployment, completed_run):
    deployment, db, serve_log = served_deployment
    first, _ = completed_run
    run = run_deployment(prefect_server, deployment["id"], serve_log)
    assert run["state_type"] == "COMPLETED", run["state"]

    def prepare_states(flow_run_id: str) -> list[str]:
        task_runs = api(prefect_server, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        return sorted(t["state_name"] for t in task_runs if t["name"].startswith("prepare-batch"))

    # The served inputs, batched as the run batches them: those holding an HTML page are cached.
    settings = load_settings(TEST_CONFIG, environ={})
    with_pages = [
        any(getattr(item, "kind", None) == "html" for item in chunk)
        for chunk in batches([deployment["parameters"]["paths"][0]], settings)
    ]
    assert 0 < sum(with_pages) < len(with_pages), with_pages
    first_states, second_states = prepare_states(first["id"]), prepare_states(run["id"])
    assert first_states == ["Completed"] * len(with_pages)
    assert second_states == sorted(["Cached" if html else "Completed" for html in with_pages]), second_states

    summary = next(a for a in api(prefect_server, "POST", "/artifacts/filter",
                                   {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}) if a["key"] == "ingest-summary")
    with sqlite3.connect(db) as conn:
        articles = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
    assert "| new articles | 0 |" in summary["data"] and f"| unchanged re-ingests | {articles:,} |" in summary["data"]


def test_quiet_ingest_prints_only_the_summary_while_the_run_keeps_its_full_log(prefect_server, seeds_dir, tmp_path):
    # `newsdedup ingest --quiet` (the Prefect engine, the default) against the running server,
    # as a cron job would run it: Prefect's per-batch lines stay off the terminal, not out of the UI.
    db = tmp_path / "quiet.db"
    env = dict(os.environ, PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "prefect-home"))
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
    result = subprocess.run(
        [NEWSDEDUP, "ingest", str(seeds_dir), "--db", str(db), "--quiet"],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"newsdedup ingest {seeds_dir} -> {db}"
    assert "database now     5 articles, 1 story, 0 rejects" in result.stdout
    assert re.search(r"time +[\d.]+s in the flow \([\d,.]+ inputs/s\), [\d.]+s with Prefect's start", result.stdout)
    chatter = [line for line in result.stderr.splitlines() if "INFO" in line]
    assert not chatter, chatter

    runs = api(prefect_server, "POST", "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 20})
    run = next(r for r in runs if r["parameters"].get("db") == str(db))
    assert run["state_type"] == "COMPLETED"
    logs = api(prefect_server, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200})
    messages = [log["message"] for log in logs]
    assert any("5 inputs, 5 new articles" in message for message in messages), messages


def test_serve_stops_within_its_grace_when_the_server_went_first(tmp_path, seeds_dir):
    """SIGTERM to `newsdedup serve` whose Prefect server has already stopped: it cannot pause the
    schedules, and says so and exits within its grace, instead of waiting out the client's
    retries (72 s here) with a traceback and a never-awaited coroutine."""
    import signal
    import time

    from flows.serve import STOP_GRACE_S
    from flows.server import free_port

    from .conftest import _healthy, _stop, _tail

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    server_out, serve_out = tmp_path / "server.out", tmp_path / "serve.out"
    with open(server_out, "wb") as handle:
        server = subprocess.Popen(
            [NEWSDEDUP, "server", "--port", str(port), "--home", str(tmp_path / "home")],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    serve = None
    try:
        deadline = time.monotonic() + 180
        while not _healthy(api_url):
            assert server.poll() is None and time.monotonic() < deadline, _tail(server_out)
            time.sleep(0.5)
        sources = tmp_path / "sources.toml"
        sources.write_text(f'[[sources]]\nname = "gone-server"\nkind = "directory"\nlocation = "{seeds_dir}"\n')
        with open(serve_out, "wb") as handle:
            serve = subprocess.Popen(
                [NEWSDEDUP, "serve", "--sources", str(sources), "--db", str(tmp_path / "s.db")],
                stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=dict(env, PREFECT_API_URL=api_url, PREFECT_HOME=str(tmp_path / "serve-home")),
            )
        while "Ctrl-C (or SIGTERM) stops serving" not in _tail(serve_out):
            assert serve.poll() is None and time.monotonic() < deadline, _tail(serve_out)
            time.sleep(0.5)
        assert _stop(server, signal.SIGINT) == 0
        # (QA pass: "stopped (exit code -15)" read as a failure.)
        assert "\nstopped" in _tail(server_out) and "exit code -15" not in _tail(server_out), _tail(server_out)
        started = time.monotonic()
        os.killpg(serve.pid, signal.SIGTERM)
        code = serve.wait(STOP_GRACE_S + 20)
        took = time.monotonic() - started
    finally:
        _stop(server, signal.SIGINT)
        if serve is not None:
            _stop(serve, signal.SIGKILL)
    out = _tail(serve_out, 20_000)
    assert code == 1 and took < STOP_GRACE_S + 10, (code, took, out)
    assert "did not answer within" in out and "without pausing the schedules" in out
    assert "never awaited" not in out and "Traceback" not in out


def test_sigterm_pauses_every_served_schedule(prefect_server, seeds_dir, tmp_path):
    """(QA pass: SIGTERM raised inside the event loop cancelled Prefect's pausing part way, 1-2
    of 6 schedules paused, while serve said all were and exited 0.) Six sources; after SIGTERM
    the API shows all six paused, and serve says so."""
    import signal
    import time

    from .conftest import _stop, _tail, api

    names = [f"paused-{n}" for n in range(6)]
    sources = tmp_path / "sources.toml"
    sources.write_text("".join(
        f'[[sources]]\nname = "{name}"\nkind = "directory"\nlocation = "{seeds_dir}"\n'
        "schedule = { interval_minutes = 60 }\n\n"
        for name in names
    ))
    out = tmp_path / "serve.out"
    env = dict(os.environ, PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "serve-home"))
    with open(out, "wb") as handle:
        serve = subprocess.Popen(
            [NEWSDEDUP, "serve", "--sources", str(sources), "--db", str(tmp_path / "s.db")],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "stops serving" not in _tail(out):
            assert serve.poll() is None and time.monotonic() < deadline, _tail(out)
            time.sleep(0.5)
        assert "at most 2 runs at once" in _tail(out)
        assert not any(api(prefect_server, "GET", f"/deployments/name/newsdedup-ingest/{n}")["paused"] for n in names)
        os.killpg(serve.pid, signal.SIGTERM)
        code = serve.wait(60)
    finally:
        _stop(serve, signal.SIGKILL)
    text = _tail(out, 20_000)
    assert code == 0, text
    assert "stopped serving; 6 deployments paused, schedules and all" in text
    assert all(api(prefect_server, "GET", f"/deployments/name/newsdedup-ingest/{n}")["paused"] for n in names)
    assert "Traceback" not in text and "never awaited" not in text
