"""The ingest flow prepares its batches on a Dask cluster and gets the same stories as the default runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATA

pytestmark = pytest.mark.slow


def _stories(db: Path) -> set[frozenset[str]]:
    from pipeline.store import open_store

    store = open_store(db)
    try:
        members: dict[int, set[str]] = {}
        for story_id, external_id in store.conn.execute("SELECT story_id, external_id FROM articles"):
            members.setdefault(story_id, set()).add(external_id)
    finally:
        store.close()
    return {frozenset(ids) for ids in members.values()}


@pytest.fixture
def dask_cluster():
    from distributed import LocalCluster

    # Two worker processes on the loopback interface, as a two-machine cluster would see it.
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
    )
    try:
        yield cluster
    finally:
        cluster.close()


def test_dask_runner_gives_the_same_stories(prefect_harness, dask_cluster, tmp_path):
    from flows.ingest import with_runner

    # Few, big batches: each Dask task costs about 0.3 s of overhead.
    config = tmp_path / "dask.toml"
    config.write_text("[ingest]\nbatch_size = 100\n", encoding="utf-8")
    corpus = str(DATA / "giveme5w1h.jsonl")

    on_dask = with_runner("dask", dask_cluster.scheduler_address)(
        paths=[corpus], db=str(tmp_path / "dask.db"), config=str(config)
    )
    on_threads = with_runner("threads")(paths=[corpus], db=str(tmp_path / "threads.db"), config=str(config))

    # Every count the same; only each flow's own time differs.
    assert on_dask.pop("seconds") > 0 and on_threads.pop("seconds") > 0
    assert on_dask == on_threads
    assert on_dask["inputs"] == 383 and on_dask["new_articles"] > 300
    # The prepare tasks really ran on the cluster (its scheduler timed all four batches).
    prepared_on_dask = dask_cluster.scheduler.task_prefixes["prepare_task"]
    assert prepared_on_dask.state_counts["memory"] == 4
    assert prepared_on_dask.all_durations["compute"] > 0
    dask_stories = _stories(tmp_path / "dask.db")
    assert dask_stories == _stories(tmp_path / "threads.db")
    assert any(len(story) > 1 for story in dask_stories)
