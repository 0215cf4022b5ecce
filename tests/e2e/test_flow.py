"""The ingest flow on seeds/ under Prefect's test harness: one story of five, re-runs add nothing."""

import asyncio
import os
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


PAGE = "042bb7b5fedab6eac7db576522b89b93904c237d344bcbe14a6a5ab7f7335856.html.gz"


def test_batches_with_an_html_page_are_cached_and_expired_ones_deleted(flow_env, seeds_dir, db_path):
    import os
    import shutil
    import time
    from pathlib import Path

    from prefect.settings import get_current_settings

    from flows.caching import PREPARE_CACHE_EXPIRATION
    from flows.ingest import ingest_flow

    storage = Path(get_current_settings().results.local_storage_path)
    storage.mkdir(parents=True, exist_ok=True)

    def cached() -> set[str]:
        return {path.name for path in storage.iterdir() if path.name.startswith("prepare-")}

    expired = storage / "prepare-expired-for-this-test"
    expired.write_bytes(b"stale")
    stamp = time.time() - PREPARE_CACHE_EXPIRATION.total_seconds() - 2 * 3600
    os.utime(expired, (stamp, stamp))
    before = cached() - {expired.name}

    # Text files only: preparing them again is cheaper than caching them.
    assert ingest_flow(paths=[str(seeds_dir)], db=str(db_path))["new_articles"] == 5
    assert not expired.exists()
    assert cached() == before

    # With an HTML page in the batch (extraction is the costly stage), the batch is cached, and
    # a second run reads it back and adds nothing.
    shutil.copyfile(Path(__file__).parents[1] / "data" / "html" / "html" / PAGE, seeds_dir / PAGE)
    assert ingest_flow(paths=[str(seeds_dir)], db=str(db_path))["new_articles"] == 1
    written = cached() - before
    assert len(written) == 1
    again = ingest_flow(paths=[str(seeds_dir)], db=str(db_path))
    assert again["unchanged"] == 6 and again["new_articles"] == 0
    assert cached() - before == written


def test_flow_counts_rejects_and_keeps_going(flow_env, seeds_dir, db_path):
    from flows.ingest import ingest_flow

    (seeds_dir / "empty.txt").write_bytes(b"")
    (seeds_dir / "broken.jsonl").write_text("{oops\n")
    counts = ingest_flow(paths=[str(seeds_dir)], db=str(db_path))
    assert counts["inputs"] == 7 and counts["rejects"] == 2 and counts["new_articles"] == 5
    assert count(db_path, "rejects") == 2


def test_a_flow_run_given_only_missing_paths_fails_and_says_why(flow_env, tmp_path, db_path):
    """A scheduled source whose directory is gone shows as a failed run, not a green one with a reject."""
    from flows.ingest import ingest_flow
    from pipeline.errors import UsageError

    gone = str(tmp_path / "inbox-that-was-never-mounted")
    with pytest.raises(UsageError, match="no such file or directory: .*inbox-that-was-never-mounted"):
        ingest_flow(paths=[gone], db=str(db_path))
    assert not db_path.exists()


def test_threads_runner_prepares_big_batches_in_worker_processes_with_the_same_stories(flow_env, tmp_path, monkeypatch):
    import flows.ingest as flows_ingest
    from pipeline.ingest import ingest
    from pipeline.settings import load_settings
    from tests.conftest import DATA
    from tests.e2e.test_dask import _stories

    config = tmp_path / "big.toml"
    # A batch size of this test's own: with another test's settings the prepare tasks would be
    # read from Prefect's cache (the harness lives for the session) and never run.
    config.write_text("[ingest]\nbatch_size = 96\n", encoding="utf-8")
    corpus = str(DATA / "giveme5w1h.jsonl")
    monkeypatch.setattr(flows_ingest, "_LOCAL_WORKERS_MIN_BATCH", 50)
    pools: list[object] = []
    close = flows_ingest._LocalWorkers.close

    def spy(self) -> None:
        pools.append(self._pool)
        close(self)

    monkeypatch.setattr(flows_ingest._LocalWorkers, "close", spy)

    # workers=1, a flow parameter (`newsdedup ingest --workers`): the default is one per core.
    counts = flows_ingest.with_runner("threads")(
        paths=[corpus], db=str(tmp_path / "flow.db"), config=str(config), workers=1
    )
    assert len(pools) == 1 and pools[0] is not None, "the batches were not handed to worker processes"
    assert pools[0].workers == 1
    assert flows_ingest._local_workers is None

    report = ingest([corpus], load_settings(str(config)), tmp_path / "library.db")
    assert counts["inputs"] == report.inputs == 383 and counts["new_articles"] == report.new_articles
    assert _stories(tmp_path / "flow.db") == _stories(tmp_path / "library.db")


def test_processes_runner_hands_batches_back_through_files_with_the_same_stories(prefect_harness, tmp_path, monkeypatch):
    """Under Prefect's process pool a batch came back through the pool's pipe, where a worker
    killed mid-write hung the run; uncached batches now come back through files, as paths."""
    import flows.ingest as flows_ingest
    from pipeline import ingest as ingest_module
    from pipeline.settings import load_settings
    from tests.conftest import DATA
    from tests.e2e.test_dask import _stories

    config = tmp_path / "processes.toml"
    config.write_text("[ingest]\nbatch_size = 97\n", encoding="utf-8")
    corpus = str(DATA / "giveme5w1h.jsonl")
    taken: list[str] = []
    take = ingest_module.take_handed_over

    def spy(path: str):
        taken.append(path)
        assert os.path.exists(path)
        return take(path)

    monkeypatch.setattr(ingest_module, "take_handed_over", spy)
    counts = flows_ingest.with_runner("processes")(
        paths=[corpus], db=str(tmp_path / "flow.db"), config=str(config), workers=2
    )
    assert len(taken) == 4  # 383 records in batches of 97
    directories = {os.path.dirname(path) for path in taken}
    assert len(directories) == 1 and os.path.basename(directories.pop()).startswith("newsdedup-batches-")
    assert not any(os.path.exists(path) for path in taken)
    report = ingest_module.ingest([corpus], load_settings(str(config)), tmp_path / "library.db")
    assert counts["inputs"] == report.inputs == 383 and counts["new_articles"] == report.new_articles
    assert _stories(tmp_path / "flow.db") == _stories(tmp_path / "library.db")


def test_processes_runner_keeps_html_batches_in_cache_files_and_reads_them_again(prefect_harness, tmp_path, monkeypatch):
    """Batches with an HTML page are cached: under the process pool they too come back as a path
    (a kill mid-write of a batch in the pool's pipe hung a run), to a file kept for the cache."""
    import shutil

    import flows.ingest as flows_ingest
    from flows.caching import kept_batches_directory
    from pipeline import ingest as ingest_module
    from pipeline.settings import load_settings
    from tests.conftest import DATA
    from tests.e2e.test_dask import _stories

    pages = tmp_path / "pages"
    pages.mkdir()
    for page in sorted((DATA / "html" / "html").glob("*.html.gz"))[10:16]:
        shutil.copy(page, pages / page.name)
    config = tmp_path / "processes.toml"
    config.write_text("[ingest]\nbatch_size = 3\n", encoding="utf-8")
    kept = kept_batches_directory()
    before = set(kept.iterdir())
    prepared_in_flow: list[int] = []
    prepare = ingest_module.prepare_batch

    def counting(items, settings):
        prepared_in_flow.append(len(items))
        return prepare(items, settings)

    def run(name: str) -> dict:
        return flows_ingest.with_runner("processes")(
            paths=[str(pages)], db=str(tmp_path / f"{name}.db"), config=str(config), workers=2
        )

    first = run("first")
    files = set(kept.iterdir()) - before
    assert len(files) == 2 and first["new_articles"] >= 4  # 6 pages in batches of 3
    # Again, into a new database: the cache names the same two files; nothing is extracted.
    monkeypatch.setattr(ingest_module, "prepare_batch", counting)
    second = run("second")
    assert set(kept.iterdir()) - before == files and prepared_in_flow == []
    # A kept file gone while its cache record lives: that batch is prepared again, in the flow.
    for path in files:
        path.unlink()
    third = run("third")
    assert prepared_in_flow == [3, 3]
    report = ingest_module.ingest([str(pages)], load_settings(str(config)), tmp_path / "library.db")
    assert first["new_articles"] == second["new_articles"] == third["new_articles"] == report.new_articles
    stories = _stories(tmp_path / "library.db")
    assert _stories(tmp_path / "first.db") == _stories(tmp_path / "second.db") == _stories(tmp_path / "third.db") == stories


def _opens_during(monkeypatch, run) -> int:
    from pipeline import store as store_module

    opened = []
    init = store_module.Store.__init__

    def counting(self, *args, **kwargs):
        opened.append(args[0] if args else kwargs.get("path"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(store_module.Store, "__init__", counting)
    try:
        run()
    finally:
        monkeypatch.setattr(store_module.Store, "__init__", init)
    return len(opened)


def test_commit_tasks_share_one_open_database_and_a_failed_one_retries_on_a_fresh_one(flow_env, seeds_dir, tmp_path, monkeypatch):
    import sqlite3 as sqlite

    import flows.ingest as flows_ingest
    from flows.ingest import ingest_flow

    configs = {}
    for size in (1, 2):
        configs[size] = tmp_path / f"batch-{size}.toml"
        configs[size].write_text(f"[ingest]\nbatch_size = {size}\n", encoding="utf-8")
    five = _opens_during(monkeypatch, lambda: ingest_flow(paths=[str(seeds_dir)], db=str(tmp_path / "five.db"), config=str(configs[1])))
    three = _opens_during(monkeypatch, lambda: ingest_flow(paths=[str(seeds_dir)], db=str(tmp_path / "three.db"), config=str(configs[2])))
    assert five == three, "each batch (5 and 3 of them) opened the database again"
    assert flows_ingest._run_stores == {}

    # The second batch fails once, as when another writer holds the lock past the busy timeout.
    commit = flows_ingest.ingest.commit_batch
    calls = []

    def failing_once(batch, store, settings, run_id):
        calls.append(store)
        if len(calls) == 2:
            raise sqlite.OperationalError("database is locked")
        return commit(batch, store, settings, run_id)

    monkeypatch.setattr(flows_ingest.ingest, "commit_batch", failing_once)
    db = tmp_path / "retried.db"
    counts = ingest_flow(paths=[str(seeds_dir)], db=str(db), config=str(configs[2]))
    assert counts["new_articles"] == 5 and count(db, "articles") == 5 and count(db, "stories") == 1
    assert len(calls) == 4 and calls[0] is calls[1] and calls[2] is not calls[1] and calls[3] is calls[2]


def _reaches(root, target, limit: int = 200_000) -> bool:
    """Whether `target` can be reached from `root` by following references (breadth first)."""
    import gc

    seen, frontier = {id(root)}, [root]
    while frontier and len(seen) < limit:
        following = []
        for obj in frontier:
            for referent in gc.get_referents(obj):
                if referent is target:
                    return True
                if id(referent) not in seen and not isinstance(referent, (str, bytes, int, float, type)):
                    seen.add(id(referent))
                    following.append(referent)
        frontier = following
    return False


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached-like-html"])
def test_a_consumed_prepared_batch_is_not_held_by_its_prefect_future(flow_env, seeds_dir, settings, cached):
    """A Prefect future and the concurrent future it wraps refer to each other, so whatever the
    future holds lives until a full garbage collection, which batches make rare: a 100,000-record
    flow run kept its prepared batches and grew to 1.9 GB. Once the flow has a batch, neither
    the future nor its state may hold it."""
    from prefect import flow

    from flows.ingest import _let_go_of_result, _prepare_uncached, prepare_task
    from pipeline.ingest import batches

    raw = next(iter(batches([str(seeds_dir)], settings)))
    # Batches with HTML pages go to the cached task, whose results are also written to disk.
    task = prepare_task if cached else _prepare_uncached

    @flow
    def prepare_once() -> tuple[bool, bool]:
        future = task.submit(raw, settings)
        batch = future.result()
        assert len(batch.prepared) == 5
        before = _reaches(future, batch)
        _let_go_of_result(future)
        return before, _reaches(future, batch)

    held_before, held_after = prepare_once()
    assert held_before, "the test no longer exercises what it checks: the future should hold its result"
    assert not held_after


def test_a_flow_run_whose_feed_is_down_fails_after_recording_it(flow_env, tmp_path, db_path, monkeypatch):
    """(QA pass: HTTP 500, 404, timeouts all ended Completed, so a source down for days looked
    healthy.) The run is recorded and its reject stored, and then the run fails, saying why."""
    from flows.ingest import ingest_flow
    from pipeline.errors import SourceError
    from tests.localweb import LocalWeb

    config = tmp_path / "web.toml"
    config.write_text("[fetch]\nallow_private_hosts = [\"127.0.0.1\"]\n")
    with LocalWeb() as web:
        feed = web.add("/feed.xml", "gone", status=404, content_type="text/plain")
        with pytest.raises(SourceError, match=r"nothing could be read from .*feed\.xml .*HTTP 404"):
            ingest_flow(paths=[feed], db=str(db_path), config=str(config))
    assert count(db_path, "rejects") == 1
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL").fetchone()[0] == 1


def test_a_run_with_nothing_to_commit_never_waits_for_the_database(flow_env, tmp_path, db_path):
    """The run lock is taken when a first batch is ready to commit, not before reading: a feed
    with nothing new neither holds back the other sources' runs nor waits behind them (QA pass:
    a feed timing out held the lock 14.6 s, 94 s with the default retries)."""
    import threading

    from flows.ingest import ingest_flow
    from pipeline.ingest import ingest
    from pipeline.runlock import exclusive_run
    from pipeline.settings import load_settings
    from tests.localweb import LocalWeb, eval_page

    config = tmp_path / "web.toml"
    config.write_text("[fetch]\nallow_private_hosts = [\"127.0.0.1\"]\n")
    outcome: list[object] = []
    with LocalWeb() as web:
        page = web.add("/p.html", eval_page(5))
        feed = web.add(
            "/feed.xml", f"<rss version=\"2.0\"><channel><item><title>P</title><link>{page}</link></item></channel></rss>",
            content_type="application/rss+xml", etag='"v1"',
        )
        assert ingest([feed], load_settings(str(config)), db_path).new_articles == 1
        holder = exclusive_run(db_path, "another-run")
        holder.__enter__()  # another run holds the database while the feed is read again: 304

        def run() -> None:
            try:
                outcome.append(ingest_flow(paths=[feed], db=str(db_path), config=str(config)))
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome.append(exc)

        try:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            worker.join(120)
            assert not worker.is_alive(), "the run waited for the database it had nothing to write to"
        finally:
            holder.__exit__(None, None, None)
    assert len(outcome) == 1 and isinstance(outcome[0], dict), outcome
    assert outcome[0]["listings_not_modified"] == 1 and outcome[0]["new_articles"] == 0


def test_the_archive_flow_moves_stories_and_publishes_what_moved(flow_env, tmp_path, settings):
    """What `newsdedup serve` runs on the [archive] schedule: stories not grown for N days move."""
    from prefect import get_client

    from flows.archive import archive_flow
    from pipeline.ingest import ingest
    from tests.conftest import SEEDS
    from tests.test_archive import COUNT, FLOOD, _jsonl

    db = tmp_path / "live.db"
    ingest([_jsonl(tmp_path / "old.jsonl", {"id": "flood", "text": FLOOD}, {"id": "count", "text": COUNT})], settings, db)
    with sqlite3.connect(db) as conn:  # both stories last grew 100 days ago
        conn.execute("UPDATE articles SET ingested_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-100 days')")
    ingest([str(SEEDS)], settings, db)  # and one story grew now
    moved = archive_flow(db=str(db), to=str(tmp_path / "archive.db"), older_than_days=30)
    assert (moved["stories"], moved["articles"]) == (2, 2)
    assert count(db, "stories") == 1 and count(tmp_path / "archive.db", "stories") == 2

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(flow_run_filter=None)

    summaries = [a for a in asyncio.run(artifacts()) if a.key == "archive-summary"]
    assert summaries and "| stories moved | 2 |" in summaries[0].data
