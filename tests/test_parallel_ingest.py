"""Preparing batches in worker processes changes nothing: the same stories, in the same order."""

from __future__ import annotations

import os

import pytest

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
    from pipeline import ingest as ingest_module

    made: list[str] = []
    handed: list[str] = []
    real_own = ingest_module._own_handover_directory
    real_take = ingest_module.WorkerPool.take

    def remembered(base):
        directory, lock = real_own(base)
        made.append(directory)
        return directory, lock

    def take(pool, future):
        handed.append(future.result())
        assert os.path.exists(handed[-1])
        return real_take(pool, future)

    monkeypatch.setattr(ingest_module, "_own_handover_directory", remembered)
    monkeypatch.setattr(ingest_module.WorkerPool, "take", take)
    report = ingest([str(DATA / "giveme5w1h.jsonl")], settings, tmp_path / "s.db", workers=2)
    assert report.batches > 1 and len(made) == 1 and len(handed) == report.batches
    assert os.path.basename(made[0]).startswith(f"newsdedup-batches-{os.getpid()}-")
    assert all(os.path.dirname(path) == made[0] for path in handed)
    assert not os.path.exists(made[0])


def test_handover_uses_the_temporary_directory_when_memory_is_short(settings, tmp_path, monkeypatch):
    """A container's /dev/shm is often 64 MB: a run must not fail for want of it."""
    from pipeline import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_HANDOVER_MIN_FREE", 1 << 62)
    monkeypatch.setattr(ingest_module.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert ingest_module.handover_base() == str(tmp_path / "tmp")
    made: list[str] = []
    real_own = ingest_module._own_handover_directory

    def remembered(base):
        made.append(base)
        return real_own(base)

    monkeypatch.setattr(ingest_module, "_own_handover_directory", remembered)
    report = ingest([str(DATA / "giveme5w1h.jsonl")], settings, tmp_path / "s.db", workers=2)
    assert made == [str(tmp_path / "tmp")] and report.batches > 1 and report.new_articles > 0
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_batch_that_cannot_be_handed_back_stops_the_run_with_what_to_do(settings, tmp_path, monkeypatch):
    """A full disk under the handover directory: exit 6 with a plain line, no half-written file."""
    from pipeline import ingest as ingest_module
    from pipeline.errors import WorkerError

    with ingest_module.WorkerPool(1) as pool:
        # The worker is a forked copy of this process: patch what it writes with, in it.
        future = pool._pool.submit(_prepare_into_full_disk, pool.directory)
        with pytest.raises(WorkerError, match="No space left on device.*free some space"):
            pool.take(future)
        assert os.listdir(pool.directory) == [ingest_module._HANDOVER_LOCK]


def _prepare_into_full_disk(directory):
    import pickle

    from pipeline import ingest as ingest_module
    from pipeline.settings import load_settings

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    pickle.dump = full  # the file is made, then its writing fails: it must not stay
    return ingest_module.prepare_into_file([], load_settings(), directory)


def test_a_killed_runs_handover_directory_is_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys

    from pipeline.ingest import _HANDOVER_LOCK, _own_handover_directory, _remove_orphaned_handovers

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    orphan = tmp_path / f"newsdedup-batches-{ended.pid}-abc"  # made before the lock file existed
    live = tmp_path / f"newsdedup-batches-{os.getpid()}-def"
    unlocked = tmp_path / f"newsdedup-batches-{os.getpid()}-ghi"  # its owner died: nothing holds the lock
    elsewhere = tmp_path / "newsdedup-batches-1-jkl"  # its owner runs in another pid namespace
    unrelated = tmp_path / "other-123"
    for directory in (orphan, live, unlocked, elsewhere, unrelated):
        directory.mkdir()
        (directory / "batch-1.pickle").write_bytes(b"x")
    for directory in (unlocked, elsewhere):
        (directory / _HANDOVER_LOCK).write_bytes(b"")
    held, lock = _own_handover_directory(str(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; f = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         str(elsewhere / _HANDOVER_LOCK)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        _remove_orphaned_handovers(str(tmp_path))
        assert not orphan.exists() and not unlocked.exists()
        assert live.exists() and unrelated.exists() and os.path.exists(held) and elsewhere.exists()
    finally:
        holder.stdin.close()
        holder.wait()
        os.close(lock)
    # Both owners gone: the next sweep takes their directories.
    _remove_orphaned_handovers(str(tmp_path))
    assert not os.path.exists(held) and not elsewhere.exists()
