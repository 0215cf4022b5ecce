"""Schema versions: a database from another schema is migrated or refused clearly, never misread."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from pipeline import store as store_module
from pipeline.errors import StoreError
from pipeline.ingest import ingest
from pipeline.store import SCHEMA_VERSION, open_store

BODY = (
    "The museum reopened its east wing on Saturday after a three-year restoration that uncovered "
    "medieval frescoes behind the plaster, and the director said entry would be free all month. "
) * 3


def _version(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT value FROM _meta WHERE key = 'schema_version'").fetchone()[0]
    finally:
        conn.close()


def _columns(db: Path, table: str) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


def _run_sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def _older_database(path: Path, settings, tmp_path: Path) -> Path:
    """A real story database taken back to a fake "version 0" whose rejects table has no `input`."""
    (tmp_path / "a.txt").write_text("Museum reopens\n" + BODY)
    (tmp_path / "bad.txt").write_bytes(b"")
    ingest([str(tmp_path / "a.txt"), str(tmp_path / "bad.txt")], settings, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        """
        BEGIN;
        CREATE TABLE rejects_old (id INTEGER PRIMARY KEY, ref TEXT NOT NULL, stage TEXT NOT NULL,
            reason TEXT NOT NULL, detail TEXT, run_id TEXT, at TEXT NOT NULL);
        INSERT INTO rejects_old SELECT id, ref, stage, reason, detail, run_id, at FROM rejects;
        DROP TABLE rejects;
        ALTER TABLE rejects_old RENAME TO rejects;
        UPDATE _meta SET value = '0' WHERE key = 'schema_version';
        COMMIT;
        """
    )
    conn.close()
    return path


def _add_input_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE rejects ADD COLUMN input TEXT NOT NULL DEFAULT ''")


def test_current_version_is_recorded(db_path):
    open_store(db_path).close()
    assert _version(db_path) == str(SCHEMA_VERSION)


def test_older_schema_without_a_migration_is_refused_clearly(tmp_path, settings):
    db = _older_database(tmp_path / "old.db", settings, tmp_path)
    with pytest.raises(StoreError, match=r"schema version 0, which cannot be migrated to \d+ \(no migration to version 1\).*re-ingest"):
        open_store(db)
    assert _version(db) == "0" and "input" not in _columns(db, "rejects")  # untouched


def test_version_1_database_is_migrated_to_the_current_schema(tmp_path, settings):
    """A real step: databases made at version 1 before the browsing views existed get them."""
    db = tmp_path / "v1.db"
    (tmp_path / "a.txt").write_text("Museum reopens\n" + BODY)
    ingest([str(tmp_path / "a.txt")], settings, db)
    _run_sql(db, "DROP VIEW near_duplicate_pairs", "DROP VIEW outlet_days",
             "UPDATE _meta SET value = '1' WHERE key = 'schema_version'")
    store = open_store(db)
    try:
        assert [row["articles"] for row in store.db.query("SELECT articles FROM outlet_days")] == [1]
        assert list(store.db.query("SELECT * FROM near_duplicate_pairs")) == []
    finally:
        store.close()
    assert _version(db) == str(SCHEMA_VERSION) == "2"


def test_older_schema_is_migrated_step_by_step_in_one_transaction(tmp_path, settings, monkeypatch):
    db = _older_database(tmp_path / "old.db", settings, tmp_path)
    monkeypatch.setattr(store_module, "MIGRATIONS", {**store_module.MIGRATIONS, 1: _add_input_column})
    store = open_store(db)
    try:
        assert store.counts() == {"articles": 1, "stories": 1, "rejects": 1}  # data kept
    finally:
        store.close()
    assert _version(db) == str(SCHEMA_VERSION) and "input" in _columns(db, "rejects")
    # And it is now a working database: another ingest goes through.
    (tmp_path / "b.txt").write_text("Museum reopens its doors\n" + BODY + " More.")
    report = ingest([str(tmp_path / "b.txt")], settings, db)
    assert report.new_articles == 1


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path, settings, monkeypatch):
    db = _older_database(tmp_path / "old.db", settings, tmp_path)

    def half_done(conn: sqlite3.Connection) -> None:
        _add_input_column(conn)
        conn.execute("ALTER TABLE no_such_table ADD COLUMN x")

    monkeypatch.setattr(store_module, "MIGRATIONS", {**store_module.MIGRATIONS, 1: half_done})
    with pytest.raises(StoreError, match="migration to schema version 1 failed.*unchanged"):
        open_store(db)
    assert _version(db) == "0" and "input" not in _columns(db, "rejects")


def test_newer_schema_is_refused(db_path):
    open_store(db_path).close()
    _run_sql(db_path, "UPDATE _meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer than this newsdedup understands"):
        open_store(db_path)


def test_a_database_missing_a_column_is_refused_not_misread(db_path):
    open_store(db_path).close()
    _run_sql(db_path, "DROP VIEW story_articles", "ALTER TABLE articles DROP COLUMN similarity")
    with pytest.raises(StoreError, match=rf"claims schema version {SCHEMA_VERSION} but has no column articles\.similarity"):
        open_store(db_path)


def test_other_sqlite_files_and_non_databases_are_refused(tmp_path):
    other = tmp_path / "other.db"
    _run_sql(other, "CREATE TABLE people (name TEXT)")
    with pytest.raises(StoreError, match="not a newsdedup story database"):
        open_store(other)
    text = tmp_path / "notes.db"
    text.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="cannot open the story database .*file is not a database"):
        open_store(text)


def test_a_database_without_its_search_index_gets_one(db_path):
    """Databases of the first release built the index outside the schema transaction."""
    store = open_store(db_path)
    store.db.execute("DROP TABLE articles_fts")
    for trigger in ("articles_ai", "articles_ad", "articles_au"):
        store.db.execute(f"DROP TRIGGER {trigger}")
    store.close()
    store = open_store(db_path)
    try:
        assert store.db["articles"].detect_fts() == "articles_fts"
    finally:
        store.close()


def _open_at_once(directory: str, rounds: int, barrier, results) -> None:
    for round_number in range(rounds):
        barrier.wait()
        try:
            open_store(Path(directory) / f"new-{round_number}.db", busy_timeout_s=30).close()
            results.put("ok")
        except Exception as exc:  # reported to the parent, which fails the test
            results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_one_new_database_at_once(tmp_path):
    """The first-open race: schema and search index are created once, by whoever locks first.

    Several processes open the same new database at the same moment, over and over (the race
    window is small); every open must succeed.
    """
    context = multiprocessing.get_context("spawn")
    processes, rounds = 4, 25
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_open_at_once, args=(str(tmp_path), rounds, barrier, results)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in range(processes * rounds)]
    for worker in workers:
        worker.join(timeout=60)
    failures = [outcome for outcome in outcomes if outcome != "ok"]
    assert failures == []
    assert {_version(path) for path in tmp_path.glob("new-*.db")} == {str(SCHEMA_VERSION)}
