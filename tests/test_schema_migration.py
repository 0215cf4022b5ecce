"""Schema versions: a database from another schema is migrated or refused clearly, never misread."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from pipeline import store as store_module
from pipeline.errors import StoreError
from pipeline.ingest import ingest
from pipeline.store import SCHEMA_VERSION, open_store
from tests.synthetic import consistency_problems

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


def _story_buckets(db: Path) -> dict[tuple[int, int], list[int]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT period, key, stories FROM _story_buckets")
        return {(period, key): store_module.unpack_story_ids(packed) for period, key, packed in rows}
    finally:
        conn.close()


def _lsh_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM _lsh ORDER BY level, period, key, article_id").fetchall()
    finally:
        conn.close()


def _story_states(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT * FROM _story_state ORDER BY story_id").fetchall()
        return [(row[0], store_module.unpack_vector(row[1], row[2]), *row[3:]) for row in rows]
    finally:
        conn.close()


# Versions 1 to 3 indexed new articles for search with this trigger (sqlite-utils' own).
_INSERT_TRIGGER = """CREATE TRIGGER "articles_ai" AFTER INSERT ON "articles" BEGIN
  INSERT INTO "articles_fts" (rowid, "title", "text") VALUES (new.rowid, new."title", new."text");
END"""


def _with_insert_trigger(conn: sqlite3.Connection) -> None:
    """The search index of versions before 4: every article indexed, by the insert trigger."""
    conn.execute("DELETE FROM _meta WHERE key = 'fts_rowid'")
    conn.execute(_INSERT_TRIGGER)


def _search(db: Path, query: str) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT a.external_id FROM articles_fts JOIN articles a ON a.rowid = articles_fts.rowid "
            "WHERE articles_fts MATCH ?", (query,),
        )
        return {Path(row[0]).name for row in rows}
    finally:
        conn.close()


def _as_version_2(db: Path, settings) -> None:
    """Take a current database back to the version 2 layout: one `_lsh` table without periods that
    also holds story-level rows per article, no `_story_buckets`, no `_signatures.chars`, and
    story centroids as JSON."""
    from pipeline.fingerprint import band_keys, lsh_bands

    matching = settings.matching
    bands, rows = lsh_bands(matching.story_lsh_threshold, matching.num_perm, tuple(matching.story_lsh_weights))
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        signatures = conn.execute("SELECT article_id, story_minhash FROM _signatures").fetchall()
        conn.execute("ALTER TABLE _lsh RENAME TO _lsh_v3")
        conn.execute(
            "CREATE TABLE _lsh (level TEXT NOT NULL, key INTEGER NOT NULL, article_id TEXT NOT NULL, "
            "PRIMARY KEY (level, key, article_id)) WITHOUT ROWID"
        )
        conn.execute("INSERT INTO _lsh SELECT level, key, article_id FROM _lsh_v3")
        conn.execute("DROP TABLE _lsh_v3")
        conn.executemany(
            "INSERT INTO _lsh (level, key, article_id) VALUES ('story', ?, ?)",
            [(key, article_id) for article_id, packed in signatures for key in band_keys(packed, bands, rows)],
        )
        states = conn.execute("SELECT story_id, terms, weights, members, first_day, last_day FROM _story_state").fetchall()
        conn.execute("DROP TABLE _story_state")
        conn.execute(
            "CREATE TABLE _story_state (story_id INTEGER PRIMARY KEY REFERENCES stories(id), "
            "vector_sum TEXT NOT NULL, members INTEGER NOT NULL, first_day INTEGER, last_day INTEGER)"
        )
        conn.executemany(
            "INSERT INTO _story_state VALUES (?, ?, ?, ?, ?)",
            [(story_id, json.dumps(store_module.unpack_vector(terms, weights)), *rest) for story_id, terms, weights, *rest in states],
        )
        conn.execute("DROP TABLE _story_buckets")
        conn.execute("DROP INDEX story_merges_absorbed")
        conn.execute("ALTER TABLE _signatures DROP COLUMN chars")
        conn.execute("ALTER TABLE articles DROP COLUMN language")
        _with_insert_trigger(conn)
        conn.execute("UPDATE _meta SET value = '2' WHERE key = 'schema_version'")
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_version_2_database_gets_story_buckets_equal_to_a_new_one(tmp_path, settings):
    """Version 3 keeps story ids per LSH bucket; migrating rebuilds them from the article rows."""
    db = tmp_path / "v2.db"
    # d is another write-up of a's story (not a copy), after c: buckets then name the museum
    # story twice, and its latest addition must come after the bridge story.
    other_write_up = (
        "Medieval frescoes hidden behind plaster for centuries greet visitors to the museum's east "
        "wing, reopened on Saturday at the end of a three-year restoration; its director waived the fee. "
    ) * 3
    bridge = (
        "Engineers closed the river bridge to lorries on Monday after inspectors found corroded "
        "girders under the north span; the council expects repairs to take until the spring. "
    ) * 3
    for name, title, body in (
        ("a", "Museum reopens", BODY), ("b", "Museum reopens its wing", BODY), ("c", "Bridge closed", bridge),
        ("d", "Frescoes greet museum visitors", other_write_up),
    ):
        (tmp_path / f"{name}.txt").write_text(f"{title}\n{body}")
        ingest([str(tmp_path / f"{name}.txt")], settings, db)
    built = _story_buckets(db)
    assert built and all(ids for ids in built.values())
    rows = sqlite3.connect(db).execute("SELECT story_id, duplicate_of IS NULL FROM articles").fetchall()
    assert len({story for story, _ in rows}) == 2, "the museum write-ups are one story, the bridge another"
    assert sum(original for _, original in rows) == 3, "a, c and d are originals: a and d both add museum keys"
    states, lsh = _story_states(db), _lsh_rows(db)
    _as_version_2(db, settings)
    assert "chars" not in _columns(db, "_signatures")
    store = open_store(db)
    try:
        chars = dict(store.conn.execute("SELECT article_id, chars FROM _signatures").fetchall())
        lengths = dict(store.conn.execute("SELECT id, length(text) FROM articles").fetchall())
        story_rows = store.conn.execute("SELECT count(*) FROM _lsh WHERE level = 'story'").fetchone()[0]
    finally:
        store.close()
    assert _version(db) == str(SCHEMA_VERSION) == "6"
    assert _story_buckets(db) == built
    assert _story_states(db) == states
    assert _lsh_rows(db) == lsh
    assert chars == lengths and story_rows == 0
    report = ingest([str(tmp_path / "a.txt")], settings, db, run_id="again")
    assert report.unchanged == 1


def _older_database(path: Path, settings, tmp_path: Path) -> Path:
    """A real story database taken back to a fake "version 0" whose rejects table has no `input`."""
    (tmp_path / "a.txt").write_text("Museum reopens\n" + BODY)
    (tmp_path / "bad.txt").write_bytes(b"")
    ingest([str(tmp_path / "a.txt"), str(tmp_path / "bad.txt")], settings, path)
    _as_version_2(path, settings)
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
    _as_version_2(db, settings)
    _run_sql(db, "DROP VIEW near_duplicate_pairs", "DROP VIEW outlet_days",
             "UPDATE _meta SET value = '1' WHERE key = 'schema_version'")
    store = open_store(db)
    try:
        assert [row["articles"] for row in store.db.query("SELECT articles FROM outlet_days")] == [1]
        assert list(store.db.query("SELECT * FROM near_duplicate_pairs")) == []
    finally:
        store.close()
    assert _version(db) == str(SCHEMA_VERSION) == "6"


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
    for trigger in ("articles_ad", "articles_au"):
        store.db.execute(f"DROP TRIGGER {trigger}")
    store.close()
    store = open_store(db_path)
    try:
        assert store.db["articles"].detect_fts() == "articles_fts"
    finally:
        store.close()


def test_version_3_database_keeps_its_search_index_and_indexes_new_articles_without_the_trigger(tmp_path, settings):
    """Version 4 indexes new articles after each batch instead of in an insert trigger."""
    db = tmp_path / "v3.db"
    (tmp_path / "a.txt").write_text("Museum reopens\n" + BODY)
    ingest([str(tmp_path / "a.txt")], settings, db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        _with_insert_trigger(conn)
        conn.execute("UPDATE _meta SET value = '3' WHERE key = 'schema_version'")
    finally:
        conn.close()
    (tmp_path / "c.txt").write_text(
        "Bridge closed\n" + "Engineers closed the river bridge to lorries after inspectors found corroded girders. " * 4
    )
    ingest([str(tmp_path / "c.txt")], settings, db)
    assert _version(db) == str(SCHEMA_VERSION) == "6"
    conn = sqlite3.connect(db)
    try:
        triggers = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        marked = conn.execute("SELECT value FROM _meta WHERE key = 'fts_rowid'").fetchone()[0]
    finally:
        conn.close()
    assert triggers == {"articles_ad", "articles_au"} and marked == "2"
    # Indexed once each: the old article by the trigger, the new one by the writer.
    assert _search(db, "museum") == {"a.txt"} and _search(db, "girders") == {"c.txt"}
    assert consistency_problems(db) == []


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


def _automerge(db: Path) -> int | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT v FROM articles_fts_config WHERE k = 'automerge'").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def test_new_and_version_4_databases_merge_search_segments_eight_at_a_time(tmp_path, settings):
    """Version 5 sets the search index's automerge to 8 (FTS5's default, 4, is stored as no row)."""
    new = tmp_path / "new.db"
    open_store(new).close()
    assert _automerge(new) == 8
    db = tmp_path / "v4.db"
    (tmp_path / "a.txt").write_text("Museum reopens\n" + BODY)
    ingest([str(tmp_path / "a.txt")], settings, db)
    _run_sql(
        db,
        "DELETE FROM articles_fts_config WHERE k = 'automerge'",
        "UPDATE _meta SET value = '4' WHERE key = 'schema_version'",
    )
    assert _automerge(db) is None
    (tmp_path / "c.txt").write_text(
        "Bridge closed\n" + "Engineers closed the river bridge to lorries after inspectors found corroded girders. " * 4
    )
    ingest([str(tmp_path / "c.txt")], settings, db)
    assert _version(db) == str(SCHEMA_VERSION) == "6" and _automerge(db) == 8
    assert _search(db, "museum") == {"a.txt"} and _search(db, "girders") == {"c.txt"}
    assert consistency_problems(db) == []


def test_version_5_database_gets_article_languages_from_then_on(tmp_path, settings):
    """Version 6 records the language each article's terms were weighed in; older articles have none."""
    from pipeline.export import write_jsonl

    db = tmp_path / "v5.db"
    (tmp_path / "a.txt").write_text("Museum reopens\n" + BODY)
    ingest([str(tmp_path / "a.txt")], settings, db)
    _run_sql(db, "ALTER TABLE articles DROP COLUMN language", "UPDATE _meta SET value = '5' WHERE key = 'schema_version'")
    assert "language" not in _columns(db, "articles")
    (tmp_path / "b.txt").write_text(
        "Brücke gesperrt\n" + "Die Stadt hat die alte Brücke über den Fluss gesperrt, weil die Prüfer "
        "Rost an den Trägern gefunden haben, und sie wird nicht vor dem Sommer wieder geöffnet. " * 3
    )
    ingest([str(tmp_path / "b.txt")], settings, db)
    assert _version(db) == str(SCHEMA_VERSION) == "6"
    conn = sqlite3.connect(db)
    try:
        languages = {Path(ref).name: told for ref, told in conn.execute("SELECT external_id, language FROM articles")}
    finally:
        conn.close()
    assert languages == {"a.txt": None, "b.txt": "de"}
    store = open_store(db, read_only=True)
    try:
        out = io.StringIO()
        write_jsonl(store.stories_with_articles(with_text=False), out)
    finally:
        store.close()
    exported = {Path(article["external_id"]).name: article["language"] for line in out.getvalue().splitlines()
                for article in json.loads(line)["articles"]}
    assert exported == languages
    assert consistency_problems(db) == []
