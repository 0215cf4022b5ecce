"""The ingest flow on seeds/ under Prefect's test harness: one story of five, re-runs add nothing."""

import asyncio
import sqlite3

import pytest


@pytest.fixture
def flow_env(prefect_harness, monkeypatch):
    # Sync flows wait for their heartbeat thread; the harness does not need it.
    monkeypatch.setenv("PREFECT_RUNNER_HEARTBEAT_FREQUENCY", "")
    return prefect_harness


def count(db, table):
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_flow_on_seeds_makes_one_story_and_publishes_a_summary(flow_env, seeds_dir, db_path):
    from prefect import get_client

    from flows.ingest import ingest_flow

    state = ingest_flow(paths=[str(seeds_dir)], db=str(db_path), return_state=True)
    assert state.is_completed()
    counts = state.result()
    assert counts["inputs"] == 5 and counts["new_articles"] == 5 and counts["rejects"] == 0
    assert count(db_path, "articles") == 5 and count(db_path, "stories") == 1

    again = ingest_flow(paths=[str(seeds_dir)], db=str(db_path))
    assert again["new_articles"] == 0 and again["unchanged"] == 5
    assert count(db_path, "articles") == 5 and count(db_path, "stories") == 1

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(flow_run_filter=None)

    found = asyncio.run(artifacts())
    summaries = [a for a in found if a.key == "ingest-summary"]
    assert summaries and "new articles" in summaries[0].data


def test_flow_counts_rejects_and_keeps_going(flow_env, seeds_dir, db_path):
    from flows.ingest import ingest_flow

    (seeds_dir / "empty.txt").write_bytes(b"")
    (seeds_dir / "broken.jsonl").write_text("{oops\n")
    counts = ingest_flow(paths=[str(seeds_dir)], db=str(db_path))
    assert counts["inputs"] == 7 and counts["rejects"] == 2 and counts["new_articles"] == 5
    assert count(db_path, "rejects") == 2
