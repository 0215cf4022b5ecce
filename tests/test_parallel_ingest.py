"""Preparing batches in worker processes changes nothing: the same stories, in the same order."""

from __future__ import annotations

import os

from pipeline.ingest import ingest
from pipeline.store import open_store
from tests.conftest import DATA
from tests.processes import running, wait_until_ended


def _assignments(db) -> list[tuple]:
    store = open_store(db)
    try:
        return store.conn.execute(
            "SELECT external_id, story_id, duplicate_of, similarity FROM articles ORDER BY external_id"
        ).fetchall()
    finally:
        store.close()


def test_two_worker_processes_give_the_same_stories_as_one(settings, tmp_path):
    corpus = str(DATA / "giveme5w1h.jsonl")
    serial = ingest([corpus], settings, tmp_path / "serial.db", workers=1)
    parallel = ingest([corpus], settings, tmp_path / "parallel.db", workers=2)

    assert parallel.counts() == serial.counts()
    assert parallel.batches == serial.batches > 1
    assert _assignments(tmp_path / "parallel.db") == _assignments(tmp_path / "serial.db")


def test_dask_address_without_the_dask_runner_is_a_usage_error(seeds_dir, tmp_path, capsys):
    from pipeline.cli import main

    code = main(["ingest", str(seeds_dir), "--db", str(tmp_path / "s.db"), "--dask-address", "tcp://127.0.0.1:1"])
    assert code == 2
    assert "--runner dask" in capsys.readouterr().err


def test_worker_processes_end_when_the_run_is_killed(tmp_path):
    """A run killed with SIGKILL leaves no worker process behind (they would wait for ever)."""
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from pipeline.ingest import exit_with\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(2, initializer=exit_with, initargs=(os.getpid(), 0.2))\n"
        "    futures = [pool.submit(os.getpid) for _ in range(8)]\n"
        "    print(' '.join(sorted({str(f.result()) for f in futures})), flush=True)\n"
        "    time.sleep(60)\n",
        encoding="utf-8",
    )
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    workers = [int(pid) for pid in run.stdout.readline().split()]
    assert workers and run.pid not in workers

    assert all(running(pid) for pid in workers)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not wait_until_ended(workers, 10), "worker processes outlived the killed run"


def test_batches_come_back_through_files_that_the_run_removes(settings, tmp_path, monkeypatch):
    """Workers hand batches back through files (a half-sent result in the pool's pipe hung the
    run); the files and their directory are gone when the run ends."""
    import tempfile

    from pipeline import ingest as ingest_module

    made: list[str] = []
    real = tempfile.TemporaryDirectory

    def remembered(*args, **kwargs):
        directory = real(*args, **kwargs)
        made.append(directory.name)
        return directory

    monkeypatch.setattr(ingest_module.tempfile, "TemporaryDirectory", remembered)
    report = ingest([str(DATA / "giveme5w1h.jsonl")], settings, tmp_path / "s.db", workers=2)
    assert report.batches > 1 and len(made) == 1
    assert "newsdedup-batches-" in made[0]
    assert not os.path.exists(made[0])


def test_a_killed_runs_handover_directory_is_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys

    from pipeline.ingest import _remove_orphaned_handovers

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    orphan = tmp_path / f"newsdedup-batches-{ended.pid}-abc"
    live = tmp_path / f"newsdedup-batches-{os.getpid()}-def"
    unrelated = tmp_path / "other-123"
    for directory in (orphan, live, unrelated):
        directory.mkdir()
        (directory / "batch-1.pickle").write_bytes(b"x")
    _remove_orphaned_handovers(str(tmp_path))
    assert not orphan.exists()
    assert live.exists() and unrelated.exists()
