"""The story database's matching state: story-level LSH buckets and merged stories."""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given, strategies as st

from pipeline.store import _in_period_key_order, open_store, pack_article_vector, pack_story_ids, unpack_article_vector, unpack_story_ids


def _story(store, story_id: int) -> None:
    store.conn.execute(
        "INSERT INTO stories (id, article_count, created_at, updated_at) VALUES (?, 0, 'now', 'now')", (story_id,)
    )


def test_story_ids_pack_and_unpack_in_order():
    ids = [5, 1, 2**32 - 1, 70_000]
    assert unpack_story_ids(pack_story_ids(ids)) == ids
    assert len(pack_story_ids(ids)) == 4 * len(ids)


_TERM = st.text(alphabet=st.characters(blacklist_characters="\x1f", blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(st.dictionaries(_TERM, st.floats(allow_nan=False, allow_infinity=False), max_size=120))
def test_article_vectors_pack_and_unpack_exactly_and_old_json_rows_still_read(vector):
    assert unpack_article_vector(pack_article_vector(vector)) == vector
    assert list(unpack_article_vector(pack_article_vector(vector))) == list(vector)  # order kept
    # Databases written before the packed form hold the vector as JSON text.
    assert unpack_article_vector(json.dumps(vector, ensure_ascii=False)) == vector


def test_buckets_name_the_stories_that_absorbed_merged_ones(db_path):
    store = open_store(db_path)
    try:
        with store.transaction():
            for story_id in (3, 4):
                _story(store, story_id)
            # 1 was merged into 2, and 2 later into 3; 9 vanished without a record.
            store.conn.executemany(
                "INSERT INTO story_merges (absorbed_story_id, into_story_id, at) VALUES (?, ?, 'now')",
                [(1, 2), (2, 3)],
            )
            store.conn.executemany(
                "INSERT INTO _story_buckets (period, key, stories) VALUES (?, ?, ?)",
                [(0, 10, pack_story_ids([1, 4, 3])), (0, 11, pack_story_ids([9, 2])), (1, 10, pack_story_ids([4]))],
            )
        found = store.story_buckets([(0, 10), (0, 11), (1, 10), (1, 11), (2, 10)])
    finally:
        store.close()
    # Story 3 appears twice in bucket 10 after resolving; it keeps its latest place.
    assert found == {(0, 10): [4, 3], (0, 11): [3], (1, 10): [4]}


def _story_view(store) -> tuple[list, list, list]:
    stories = store.conn.execute(
        "SELECT id, canonical_article_id, title, article_count, first_published, last_published FROM stories ORDER BY id"
    ).fetchall()
    similarities = store.conn.execute("SELECT id, story_id, similarity FROM articles ORDER BY id").fetchall()
    pools = store.conn.execute("SELECT story_id, pool_day FROM _story_state ORDER BY story_id").fetchall()
    return stories, similarities, pools


def test_refreshing_grown_stories_incrementally_equals_refreshing_them_whole(tmp_path, settings):
    """Batch by batch, grown stories are refreshed from their canonical article and new members
    only; recomputing every story from all its members afterwards must change nothing."""
    from pathlib import Path

    from pipeline.ingest import ingest

    corpus = Path(__file__).parent / "data" / "giveme5w1h.jsonl"
    small = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"batch_size": 40})})
    db = tmp_path / "stories.db"
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    # Shuffled, so earlier reports often arrive after later ones (the window must move).
    random.Random(5).shuffle(lines)
    grown = 0
    for part in range(3):  # interleaved runs, so stories grow across runs as well as batches
        path = tmp_path / f"part{part}.jsonl"
        path.write_text("".join(lines[part::3]), encoding="utf-8")
        grown += len(ingest([str(path)], small, db).grown_stories)
    assert grown > 20
    store = open_store(db)
    try:
        incremental = _story_view(store)
        ids = [row[0] for row in incremental[0]]
        with store.transaction():
            store.refresh_stories(ids, recompute=ids)
        assert _story_view(store) == incremental
    finally:
        store.close()


@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 2), st.text(max_size=2))))
def test_rows_go_in_in_period_key_order_and_equal_keys_keep_their_order(rows):
    from operator import itemgetter

    ordered = _in_period_key_order(rows, itemgetter(0), itemgetter(1))
    # sorted() is stable: the plain definition, ties in input order.
    assert ordered == sorted(rows, key=itemgetter(0, 1))



def test_a_background_checkpoint_brings_committed_pages_into_the_database_file(db_path, tmp_path):
    """The writer checkpoints on a thread of its own after each commit (SQLite's own checkpoint
    in COMMIT is off): the database file alone, without its write-ahead log, holds the rows."""
    import shutil
    import sqlite3

    store = open_store(db_path)
    try:
        for first in range(0, 300, 100):
            with store.transaction():
                for story_id in range(first + 1, first + 101):
                    _story(store, story_id)
            store._checkpointer.join()
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        snapshot = tmp_path / "file-only.db"
        shutil.copyfile(db_path, snapshot)  # the main file as it is now, no -wal beside it
    finally:
        store.close()
    copy = sqlite3.connect(snapshot)
    try:
        assert copy.execute("SELECT count(*) FROM stories").fetchone()[0] == 300
    finally:
        copy.close()


@pytest.mark.parametrize("checkpoint_delay_s", [0.0, 0.3], ids=["fast-disk", "slow-checkpoints"])
def test_the_write_ahead_log_restarts_when_transactions_follow_each_other_at_once(
    db_path, monkeypatch, checkpoint_delay_s
):
    """Each commit starts a checkpoint on a thread, and SQLite writes the log from its start
    again only when a transaction begins after a checkpoint copied everything back. Batches
    committed back to back always began first, so the log grew for the whole run (1.5 GB
    building the 100,000-article benchmark database). Once it passes `_LOG_RESTART_FRAMES`,
    the next transaction now waits for the checkpoint, and the log stays near that length.
    (Without the wait, this test's log grew to ~48 MB.) Checkpoints slower than the
    transactions (a busy CI disk once let the log reach 6,000 frames against a 2,000 limit)
    are waited for once a commit has passed them, so the bound holds whatever the timing."""
    from pathlib import Path

    from pipeline import store as store_module

    restart_frames = 2_000
    monkeypatch.setattr(store_module, "_LOG_RESTART_FRAMES", restart_frames)
    if checkpoint_delay_s:
        checkpoint = store_module.Store._checkpoint

        def slow_checkpoint(self):
            time.sleep(checkpoint_delay_s)
            checkpoint(self)

        monkeypatch.setattr(store_module.Store, "_checkpoint", slow_checkpoint)
    store = open_store(db_path)
    try:
        store.conn.execute("CREATE TABLE filler (x BLOB)")
        page_size = store.conn.execute("PRAGMA page_size").fetchone()[0]
        for _ in range(12):
            with store.transaction():  # ~1,000 pages of 4 KB each
                store.conn.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "
                    "INSERT INTO filler SELECT randomblob(3000) FROM n"
                )
        log_bytes = Path(f"{db_path}-wal").stat().st_size
    finally:
        store.close()
    # A log frame is a page and a 24-byte header, after a 32-byte file header. The rule keeps
    # the log under the limit plus three transactions (~5,000 frames); 12 transactions of
    # ~1,000 pages are ~12,000 frames if it never restarts.
    log_frames = (log_bytes - 32) // (page_size + 24)
    assert log_frames < 3 * restart_frames


def test_periods_without_stored_keys_are_not_probed_and_the_rest_still_match(db_path):
    store = open_store(db_path)
    try:
        with store.transaction():
            store.conn.executemany(
                "INSERT INTO _lsh (level, period, key, article_id) VALUES ('dup', ?, ?, ?)",
                [(5, 11, "a"), (5, 12, "b"), (6, 11, "c")],
            )
        probed: list = []
        store.conn.set_trace_callback(probed.append)
        found = store.lsh_matches("dup", [((4, 5, 6), [11, 12, 13]), ((7, 8), [11])])
        store.conn.set_trace_callback(None)
    finally:
        store.close()
    assert found == {(5, 11): ["a"], (5, 12): ["b"], (6, 11): ["c"]}
    lookups = [sql for sql in probed if "key IN" in sql]
    assert lookups == ["SELECT period, key, article_id FROM _lsh WHERE level = 'dup' AND period IN (5,6) AND key IN (11,12,13)"]


def test_a_batch_reads_on_the_write_connection_unless_earlier_articles_await_indexing(db_path):
    """With nothing to index (a run's first batch) the batch reads where it will write, so the
    pages its writes change are already cached there; otherwise it reads on a second connection
    while the earlier articles are indexed for search beside it."""
    store = open_store(db_path)
    try:
        with store.transaction(), store.indexing_in_background() as view:
            assert view is store
        with store.transaction():
            _story(store, 1)
            store.conn.execute(
                "INSERT INTO articles (id, external_id, text, content_hash, story_id, ingested_at) "
                "VALUES ('a1', 'x', 'harbour bridge closed', 'h1', 1, 'now')"
            )
        assert store.search("harbour") == []
        with store.transaction(), store.indexing_in_background() as view:
            assert view is not store and view.conn is not store.conn
        assert [row["article_id"] for row in store.search("harbour")] == ["a1"]
        with store.transaction(), store.indexing_in_background() as view:
            assert view is store
    finally:
        store.close()


def test_stories_are_largest_first_and_limit_and_min_size_pick_from_all(story_db):
    store = open_store(story_db)
    try:
        every = store.stories()
        sizes = [row["article_count"] for row in every]
        assert len(every) == store.conn.execute("SELECT count(*) FROM stories").fetchone()[0]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
        assert store.stories(2) == every[:2]
        larger = [row for row in every if row["article_count"] >= 2]
        assert 0 < len(larger) < len(every)
        assert store.stories(None, 2) == larger
        assert store.stories(1, 2) == larger[:1]
        assert store.stories(None, sizes[0] + 1) == []
    finally:
        store.close()


def test_a_read_only_open_cannot_write(db_path):
    import sqlite3

    open_store(db_path).close()
    reader = open_store(db_path, read_only=True)
    try:
        assert reader.read_only
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.conn.execute("INSERT INTO _meta (key, value) VALUES ('x', 'y')")
    finally:
        reader.close()


def test_read_only_opens_are_live_and_immutable_only_where_nothing_waits_in_the_log(db_path, monkeypatch, capsys):
    """Read-only opens use mode=ro, which sees a writer's commits. Only when mode=ro cannot open
    (a directory this user may not write, faked here since these tests run as root) is the file
    read immutable, and not while a writer's changes wait in the log: a reviewer showed that who
    may write the directory says nothing about whether another user's ingest is writing it."""
    import sqlite3 as real_sqlite3

    from pipeline import cli, store as store_module
    from pipeline.errors import StoreError
    from pipeline.store import read_only_connection

    writer = open_store(db_path)
    try:
        with writer.transaction():
            _story(writer, 7)
            writer.conn.execute(
                "INSERT INTO rejects (ref, stage, reason, at) VALUES ('bad-input.txt', 'read', 'empty file', 'now')"
            )
        reader, immutable = read_only_connection(db_path)
        try:
            assert not immutable
            with writer.transaction():
                _story(writer, 8)
            assert reader.execute("SELECT count(*) FROM stories").fetchone()[0] == 2  # the live commit is seen
        finally:
            reader.close()

        connect = real_sqlite3.connect

        def no_mode_ro(target, *args, **kwargs):
            if "mode=ro" in str(target):
                target = str(target).replace(str(db_path.resolve()), str(db_path.parent / "unreachable" / "x.db"))
            return connect(target, *args, **kwargs)

        monkeypatch.setattr(store_module.sqlite3, "connect", no_mode_ro)
        with pytest.raises(StoreError, match="write-ahead log"):
            read_only_connection(db_path)  # the writer's changes still wait in the log
    finally:
        writer.close()  # checkpoints: nothing waits in the log now
    reader, immutable = read_only_connection(db_path)
    try:
        assert immutable and reader.execute("SELECT count(*) FROM stories").fetchone()[0] == 2
    finally:
        reader.close()
    assert cli.main(["rejects", "--db", str(db_path)]) == 0
    assert "bad-input.txt" in capsys.readouterr().out


def test_an_older_database_is_still_migrated_by_a_read_command(db_path):
    """A read-only open cannot migrate: an older database is opened for writing instead."""
    store = open_store(db_path)
    try:
        store.conn.execute("UPDATE _meta SET value = '4' WHERE key = 'schema_version'")
    finally:
        store.close()
    again = open_store(db_path, read_only=True)
    try:
        assert not again.read_only
        assert again.conn.execute("SELECT value FROM _meta WHERE key = 'schema_version'").fetchone()[0] == "6"
    finally:
        again.close()


# One index layout per database (fingerprint.index_layout): articles fingerprinted under another
# would never be compared with the stored ones.

def _with_matching(settings, **changes):
    return settings.model_copy(update={"matching": settings.matching.model_copy(update=changes)})


def _counts(db_path) -> tuple[int, int]:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("articles", "runs"))


def test_a_run_under_another_index_layout_is_refused_before_it_stores_anything(seeds_dir, db_path, settings):
    from pipeline.errors import ConfigError
    from pipeline.ingest import ingest

    ingest([str(seeds_dir)], settings, db_path)
    before = _counts(db_path)
    (seeds_dir / "more.txt").write_text("A new report\n\n" + "More words about the council meeting. " * 20)
    for change, named in [({"num_perm": 64}, "num_perm 128 here, 64 now"),
                          ({"seed": 7}, "seed 1 here, 7 now"),
                          ({"shingle_size": 4}, "shingle_size 3 here, 4 now"),
                          ({"story_lsh_threshold": 0.3}, "story_rows 1 here, 2 now")]:
        with pytest.raises(ConfigError, match=named) as raised:
            ingest([str(seeds_dir)], _with_matching(settings, **change), db_path)
        assert "--format articles" in str(raised.value)  # says how to rebuild
        assert _counts(db_path) == before  # no article, and no run row either


def test_settings_that_leave_the_layout_alone_may_change_between_runs(seeds_dir, db_path, settings):
    import sqlite3

    from pipeline.ingest import ingest

    ingest([str(seeds_dir)], settings, db_path)
    seed = sorted(seeds_dir.glob("*.txt"))[0]
    (seeds_dir / "more.txt").write_text(seed.read_text(encoding="utf-8").replace(" the ", " this ", 1), encoding="utf-8")
    # Verification thresholds apply from now on; an LSH threshold that changes only the number
    # of bands (37 -> 33 of 3 rows; 36 -> 32 of 1) keeps the layout.
    changed = _with_matching(settings, story_similarity=0.2, dup_lsh_threshold=0.31, story_lsh_threshold=0.11)
    report = ingest([str(seeds_dir)], changed, db_path)
    assert report.new_articles == 1 and report.near_duplicates == 1  # found through the shared bands
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(DISTINCT story_id) FROM articles").fetchone()[0] == 1


def test_a_database_from_before_the_layout_was_recorded_is_checked_by_its_signatures(seeds_dir, db_path, settings):
    import sqlite3

    from pipeline.errors import ConfigError
    from pipeline.ingest import ingest

    ingest([str(seeds_dir)], settings, db_path)
    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM _meta WHERE key = 'index_layout'")
    with pytest.raises(ConfigError, match="num_perm 128 here, 256 now"):
        ingest([str(seeds_dir)], _with_matching(settings, num_perm=256), db_path)
    ingest([str(seeds_dir)], settings, db_path)
    with sqlite3.connect(db_path) as conn:
        recorded = json.loads(conn.execute("SELECT value FROM _meta WHERE key = 'index_layout'").fetchone()[0])
    assert recorded == {"scheme": "affine32", "num_perm": 128, "seed": 1, "shingle_size": 3, "dup_rows": 3, "story_rows": 1}


def test_a_signal_as_the_search_index_thread_starts_leaves_the_index_whole(tmp_path, settings, seeds_dir, monkeypatch):
    """Ctrl-C or SIGTERM held back while the search index thread starts is raised as the start
    ends. Raised before the batch waited for the thread, the batch rolled back while the thread
    was between its two statements, and its second (the mark of what is indexed) committed
    alone: `check` then found the index damaged for good (a QA pass, one SIGTERM in eight)."""
    from pipeline import store as store_module
    from pipeline.ingest import ingest
    from tests.conftest import assert_sound

    db = tmp_path / "stories.db"
    ingest([str(seeds_dir)], settings, db)
    store = open_store(db)
    try:
        # The last two articles stored but not yet indexed, as a run stopped after its commit leaves them.
        with store.transaction():
            rows = store.conn.execute("SELECT rowid, title, text FROM articles ORDER BY rowid DESC LIMIT 2").fetchall()
            for rowid, title, text in rows:
                store.conn.execute(
                    "INSERT INTO articles_fts (articles_fts, rowid, title, text) VALUES ('delete', ?, ?, ?)", (rowid, title, text)
                )
            store.conn.execute("UPDATE _meta SET value = ? WHERE key = 'fts_rowid'", (min(r[0] for r in rows) - 1,))
        assert_sound(db)
        marked = store_module._set_indexed_up_to

        def slowly_marked(conn, rowid):  # the thread caught between its two statements
            time.sleep(0.5)
            marked(conn, rowid)

        def start_then_signal(thread):
            thread.start()
            time.sleep(0.2)  # the thread has indexed the rows and not yet marked them
            raise KeyboardInterrupt  # the held-back Ctrl-C, raised as the start ends

        monkeypatch.setattr(store_module, "_set_indexed_up_to", slowly_marked)
        monkeypatch.setattr(store_module, "_start_uninterrupted", start_then_signal)
        with pytest.raises(KeyboardInterrupt):
            with store.transaction():
                with store.indexing_in_background():
                    pass
        time.sleep(1.0)  # whatever the thread still had to do, done
    finally:
        store.close()
    assert_sound(db)
