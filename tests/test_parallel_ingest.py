"""Preparing batches in worker processes changes nothing: the same stories, in the same order."""

from __future__ import annotations

from pipeline.ingest import ingest
from pipeline.store import open_store
from tests.conftest import DATA


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
