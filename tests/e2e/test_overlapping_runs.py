"""Two ingest flow runs over the same inputs at the same time leave the database a single run leaves.

(Two library/CLI ingests at once interleave batch by batch instead, which SQLite's per-batch
transactions make safe: tests/test_crash_and_concurrency.py.)"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from pipeline.ingest import ingest
from pipeline.runlock import WAITING_MESSAGE, exclusive_run

CORPUS = Path(__file__).resolve().parents[1] / "data" / "giveme5w1h.jsonl"

# Everything a run decides, without the columns that say when or by which run it was written.
_CONTENT_QUERIES = {
    "articles": "SELECT id, external_id, url, title, source, published, text, content_hash, story_id, "
    "duplicate_of, similarity, extra FROM articles ORDER BY id",
    "stories": "SELECT id, canonical_article_id, title, article_count, first_published, last_published "
    "FROM stories ORDER BY id",
    "rejects": "SELECT ref, stage, reason, detail, input FROM rejects ORDER BY ref, input",
    "signatures": "SELECT * FROM _signatures ORDER BY article_id",
    "lsh": "SELECT * FROM _lsh ORDER BY level, key, article_id",
    "story_state": "SELECT * FROM _story_state ORDER BY story_id",
}


def database_content(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in _CONTENT_QUERIES.items()}


@pytest.fixture
def inputs(tmp_path: Path, seeds_dir: Path) -> list[str]:
    shutil.copyfile(CORPUS, tmp_path / CORPUS.name)
    return [str(seeds_dir), str(tmp_path / CORPUS.name)]


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _statuses(db: Path) -> list[str]:
    """`newsdedup runs --json`'s status of every run recorded in `db`."""
    import contextlib
    import io
    import json

    from pipeline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["runs", "--db", str(db), "--json"]) == 0
    return [json.loads(line)["status"] for line in out.getvalue().splitlines()]


def _overlapping(run, hold: Path | None = None) -> tuple[list[BaseException], list[str], list[str]]:
    """Start `run()` twice at once: whichever takes the database first, the other finds it held.

    (Both start together because a run's own start-up, a flow run's especially, can take longer
    than the whole of the other run when the second is started only once the first holds it.)

    Returns the errors of both, the run lock's log lines and, with `hold`, what `newsdedup runs`
    said of the runs while both waited. (A handler of our own: Prefect's
    logging set-up replaces the root handlers that pytest's caplog relies on.)
    """
    errors: list[BaseException] = []
    recorder = _Recorder()
    lock_logger = logging.getLogger("pipeline.runlock")
    lock_logger.addHandler(recorder)

    def guarded() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    first = threading.Thread(target=guarded)
    second = threading.Thread(target=guarded)
    waiting: list[str] = []
    try:
        if hold is None:
            first.start()
            second.start()
        else:
            # Hold the database ourselves until both runs are waiting for it, so they overlap
            # however long either takes to start (a flow run's start-up varies by seconds).
            with exclusive_run(hold, "test-holder"):
                first.start()
                second.start()
                deadline = time.monotonic() + 240
                while sum(WAITING_MESSAGE in m for m in recorder.messages) < 2 and time.monotonic() < deadline:
                    time.sleep(0.2)
                waiting = _statuses(hold)
        first.join(300)
        second.join(300)
    finally:
        lock_logger.removeHandler(recorder)
    assert not first.is_alive() and not second.is_alive(), "a run never finished"
    return errors, recorder.messages, waiting


@pytest.mark.slow
def test_overlapping_flow_runs_leave_the_database_of_one_run(inputs, settings, tmp_path, prefect_harness, monkeypatch):
    from flows.ingest import ingest_flow

    # Sync flows wait for their heartbeat thread; the harness does not need it.
    monkeypatch.setenv("PREFECT_RUNNER_HEARTBEAT_FREQUENCY", "")
    config = str(Path(__file__).resolve().parents[2] / "config" / "test.toml")
    single = tmp_path / "single.db"
    ingest(inputs, settings, single)
    expected = database_content(single)

    overlapped = tmp_path / "overlapped.db"
    errors, messages, waiting = _overlapping(
        lambda: ingest_flow(paths=inputs, db=str(overlapped), config=config), hold=overlapped
    )
    assert errors == []
    assert sum(WAITING_MESSAGE in message for message in messages) >= 2, f"the runs did not overlap: {messages}"
    # Alive but waiting for the database: neither holds the run lock, neither is dead.
    assert waiting == ["reading", "reading"]
    assert _statuses(overlapped) == ["finished", "finished"]
    assert database_content(overlapped) == expected
