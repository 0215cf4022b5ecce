"""The story database: the only module that touches SQLite (through sqlite-utils).

Public tables (documented in the README): articles, stories, rejects, runs; views
story_overview, story_articles, near_duplicate_pairs and outlet_days; full-text search in
articles_fts. Tables whose names start with an underscore hold matching state (signatures,
LSH buckets, story centroids) and are not part of the public schema.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import threading
import time
from array import array
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import sqlite_utils

from .errors import ConfigError, DamagedDatabaseError, StoreError, UsageError
from .fingerprint import LAYOUT_SETTINGS, cosine
from .models import Prepared, Rejected, file_identity, file_name, little_endian, pack_terms, record_file, unpack_terms
from .settings import MatchingSettings
from .stories import (
    BatchOutcome,
    IndexedArticle,
    Member,
    StoryState,
    STORY_PERIOD,
    canonical_member,
    first_original_day,
    latest_stories,
    lsh_period,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
# SQLite's default limit on host parameters in one statement is 32766; stay well below it.
_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS _meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stories (
    id INTEGER PRIMARY KEY,
    canonical_article_id TEXT,
    title TEXT,
    article_count INTEGER NOT NULL DEFAULT 0,
    first_published TEXT,
    last_published TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL,
    url TEXT,
    title TEXT,
    source TEXT,
    published TEXT,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    story_id INTEGER NOT NULL REFERENCES stories(id),
    duplicate_of TEXT REFERENCES articles(id),
    similarity REAL,
    ingested_at TEXT NOT NULL,
    run_id TEXT,
    extra TEXT,
    language TEXT
);
CREATE INDEX IF NOT EXISTS articles_story_id ON articles(story_id);
CREATE INDEX IF NOT EXISTS articles_content_hash ON articles(content_hash);
CREATE INDEX IF NOT EXISTS articles_external_id ON articles(external_id);
CREATE INDEX IF NOT EXISTS articles_url ON articles(url);
CREATE INDEX IF NOT EXISTS articles_published ON articles(published);
CREATE INDEX IF NOT EXISTS articles_source ON articles(source);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY,
    ref TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT,
    input TEXT NOT NULL DEFAULT '',
    run_id TEXT,
    at TEXT NOT NULL,
    UNIQUE (ref, input) ON CONFLICT REPLACE
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    inputs INTEGER NOT NULL DEFAULT 0,
    new_articles INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    near_duplicates INTEGER NOT NULL DEFAULT 0,
    new_stories INTEGER NOT NULL DEFAULT 0,
    grown_stories INTEGER NOT NULL DEFAULT 0,
    merged_stories INTEGER NOT NULL DEFAULT 0,
    rejects INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS story_merges (
    absorbed_story_id INTEGER NOT NULL,
    into_story_id INTEGER NOT NULL,
    run_id TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _signatures (
    article_id TEXT PRIMARY KEY REFERENCES articles(id),
    scheme TEXT NOT NULL,
    num_perm INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    story_minhash BLOB NOT NULL,
    dup_minhash BLOB NOT NULL,
    terms TEXT NOT NULL,
    day INTEGER,
    chars INTEGER
);
CREATE TABLE IF NOT EXISTS _lsh (
    level TEXT NOT NULL,
    period INTEGER NOT NULL,
    key INTEGER NOT NULL,
    article_id TEXT NOT NULL,
    PRIMARY KEY (level, period, key, article_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _story_buckets (
    period INTEGER NOT NULL,
    key INTEGER NOT NULL,
    stories BLOB NOT NULL,
    PRIMARY KEY (period, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS story_merges_absorbed ON story_merges(absorbed_story_id);
CREATE TABLE IF NOT EXISTS _term_df (
    term TEXT PRIMARY KEY,
    df INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _story_state (
    story_id INTEGER PRIMARY KEY REFERENCES stories(id),
    terms TEXT NOT NULL,
    weights BLOB NOT NULL,
    members INTEGER NOT NULL,
    first_day INTEGER,
    last_day INTEGER,
    pool_day INTEGER
);
CREATE VIEW IF NOT EXISTS story_overview AS
SELECT
    s.id AS story_id,
    s.title,
    s.article_count,
    (SELECT group_concat(source, ', ') FROM
        (SELECT DISTINCT a.source FROM articles a WHERE a.story_id = s.id AND a.source IS NOT NULL ORDER BY a.source)
    ) AS outlets,
    s.first_published,
    s.last_published,
    s.canonical_article_id,
    c.url AS canonical_url,
    s.updated_at
FROM stories s LEFT JOIN articles c ON c.id = s.canonical_article_id;
CREATE VIEW IF NOT EXISTS story_articles AS
SELECT
    a.story_id,
    a.id AS article_id,
    a.id = s.canonical_article_id AS is_canonical,
    a.title,
    a.source,
    a.published,
    a.similarity,
    a.duplicate_of,
    a.url,
    a.external_id
FROM articles a JOIN stories s ON s.id = a.story_id;
CREATE VIEW IF NOT EXISTS near_duplicate_pairs AS
SELECT
    d.story_id,
    d.id AS article_id,
    d.title,
    d.source,
    d.published,
    d.url,
    o.id AS original_id,
    o.title AS original_title,
    o.source AS original_source,
    o.published AS original_published,
    o.url AS original_url,
    d.content_hash = o.content_hash AS exact_copy
FROM articles d JOIN articles o ON o.id = d.duplicate_of;
CREATE VIEW IF NOT EXISTS outlet_days AS
SELECT
    coalesce(source, '(no source)') AS outlet,
    substr(published, 1, 10) AS day,
    count(*) AS articles,
    count(DISTINCT story_id) AS stories,
    count(duplicate_of) AS near_duplicates
FROM articles
GROUP BY outlet, day
ORDER BY day, outlet;
"""


# Full-text search, created with the schema in the same transaction. The statements are
# those sqlite-utils' enable_fts(["title", "text"], create_triggers=True, tokenize="porter")
# writes, so sqlite-utils and Datasette detect the index, plus IF NOT EXISTS, less the insert
# trigger: new articles are indexed by `Store.index_new_articles`, from the rowid recorded in
# _meta ('fts_rowid') on, while the writer assigns the next batch (see `commit_batch`).
_FTS_AUTOMERGE = 8
_FTS_SCHEMA = (
    """CREATE VIRTUAL TABLE IF NOT EXISTS "articles_fts" USING FTS5 (
    "title", "text",
    tokenize='porter',
    content="articles"
)""",
    # FTS5 merges its segments as it goes, and the work a batch pays for grows with the number
    # of levels: one level per 4x growth by default, one per 8x here. Measured on a 1,000-article
    # run into 100,000 stored articles: the run end (indexing the batch) took 0.29-0.37 s with 4
    # and 0.14-0.19 s with 8. A search reads a few more segments (at most 7 a level instead of 3), a fraction of
    # a millisecond; 8 stays below FTS5's "crisis merge" of 16 segments, which would stall a batch.
    f"""INSERT INTO "articles_fts" ("articles_fts", rank) VALUES ('automerge', {_FTS_AUTOMERGE})""",
    """CREATE TRIGGER IF NOT EXISTS "articles_ad" AFTER DELETE ON "articles" BEGIN
  INSERT INTO "articles_fts" ("articles_fts", rowid, "title", "text") VALUES('delete', old.rowid, old."title", old."text");
END""",
    # Only title and text feed the index: story refreshes update similarity and story_id on
    # every batch, and re-indexing unchanged texts was the writer's largest cost.
    """CREATE TRIGGER IF NOT EXISTS "articles_au" AFTER UPDATE OF "title", "text" ON "articles" BEGIN
  INSERT INTO "articles_fts" ("articles_fts", rowid, "title", "text") VALUES('delete', old.rowid, old."title", old."text");
  INSERT INTO "articles_fts" (rowid, "title", "text") VALUES (new.rowid, new."title", new."text");
END""",
)

# MIGRATIONS[n] turns a database at schema version n-1 into version n. Store._migrate applies
# every step from the database's version to SCHEMA_VERSION in the one transaction that opens
# it; a version with no path is refused, never read as if it were current. When the schema
# changes: bump SCHEMA_VERSION, change _SCHEMA for new databases, add the step here, and
# extend tests/test_schema_migration.py with a database at the old version.
def _add_browsing_views(conn: sqlite3.Connection) -> None:
    """Version 2: the near_duplicate_pairs and outlet_days views, the story_merges record and
    the corpus term statistics (_term_df), which databases made at version 1 may lack.
    Their CREATE statements are taken from _SCHEMA; a later change to any of them needs a step
    of its own that drops and re-creates it."""
    for statement in _SCHEMA.split(";\n"):
        if statement.strip().startswith(
            (
                "CREATE VIEW IF NOT EXISTS near_duplicate_pairs",
                "CREATE VIEW IF NOT EXISTS outlet_days",
                "CREATE TABLE IF NOT EXISTS story_merges",
                "CREATE TABLE IF NOT EXISTS _term_df",
            )
        ):
            conn.execute(statement)


_ID_TYPE = next(code for code in "IL" if array(code).itemsize == 4)


def _in_period_key_order(rows: list, period: Callable, key: Callable) -> list:
    """`rows` sorted by their (period, key) integers. A batch writes ~37,000 LSH rows and
    ~17,000 buckets; numpy's sort of the two integer columns costs a third to a half of
    sorting the row tuples themselves. Rows with equal (period, key) keep their order."""
    if not rows:
        return rows
    periods = np.fromiter(map(period, rows), np.int64, len(rows))
    keys = np.fromiter(map(key, rows), np.int64, len(rows))
    return list(map(rows.__getitem__, np.lexsort((keys, periods)).tolist()))


def pack_story_ids(story_ids: Sequence[int]) -> bytes:
    """A story bucket's ids as stored: little-endian uint32 (story ids count up from 1), oldest
    first. Four bytes, not eight: every batch rewrites thousands of buckets, and smaller rows
    mean fewer pages to write."""
    return little_endian(array(_ID_TYPE, story_ids)).tobytes()


def unpack_story_ids(packed: bytes) -> list[int]:
    ids = array(_ID_TYPE)
    ids.frombytes(packed)
    return little_endian(ids).tolist()


# A story centroid is stored as its terms and a float64 array of their weights (models.pack_terms).


def pack_vector(vector: Mapping[str, float]) -> tuple[str, bytes]:
    return pack_terms(vector, vector.values())


def unpack_vector(terms: str, packed: bytes) -> dict[str, float]:
    return dict(unpack_terms(terms, packed))


def pack_article_vector(vector: Mapping[str, float]) -> bytes:
    """An article's term vector as one value for `_signatures.terms`: its length (uint16), its
    weights (float64), then its terms joined by the separator, UTF-8. Written once per article
    and read only to compare with a story's canonical article, it costs a fifth of JSON."""
    terms, weights = pack_vector(vector)
    return len(vector).to_bytes(2, "little") + weights + terms.encode("utf-8")


def unpack_article_vector(value: bytes | str) -> dict[str, float]:
    """The inverse of `pack_article_vector`; databases written before it hold JSON text."""
    if isinstance(value, str):
        return json.loads(value)
    end = 2 + 8 * int.from_bytes(value[:2], "little")
    return unpack_vector(value[end:].decode("utf-8"), value[2:end])


def _story_buckets_by_story(conn: sqlite3.Connection) -> None:
    """Version 3: story-level LSH buckets hold story ids, not articles, and signatures record the
    text length, so a batch reads one row per bucket and never re-reads member texts.

    Each bucket keeps its most recently added stories (article insertion order decides, the
    order the writer would have added them in); near-duplicates add nothing, as in the writer."""
    conn.execute("ALTER TABLE _signatures ADD COLUMN chars INTEGER")
    conn.execute("UPDATE _signatures SET chars = (SELECT length(text) FROM articles WHERE id = article_id)")
    conn.execute("ALTER TABLE _lsh RENAME TO _lsh_v2")
    for statement in _SCHEMA.split(";\n"):
        if statement.strip().startswith(
            (
                "CREATE TABLE IF NOT EXISTS _story_buckets", "CREATE INDEX IF NOT EXISTS story_merges_absorbed",
                "CREATE TABLE IF NOT EXISTS _lsh",
            )
        ):
            conn.execute(statement)
    # Each article's LSH partition, from its publication day (undated: the day it was ingested).
    period: dict[str, int] = {}
    for article_id, day, ingested in conn.execute(
        "SELECT a.id, s.day, a.ingested_at FROM articles a JOIN _signatures s ON s.article_id = a.id"
    ):
        if day is None:
            day = (date.fromisoformat(ingested[:10]) - date(1970, 1, 1)).days
        period[article_id] = lsh_period(day, day)
    conn.executemany(
        "INSERT INTO _lsh (level, period, key, article_id) VALUES (?, ?, ?, ?)",
        sorted(
            (level, period[article_id], key, article_id)
            for level, key, article_id in conn.execute("SELECT level, key, article_id FROM _lsh_v2 WHERE level != 'story'")
        ),
    )
    buckets: dict[tuple[int, int], list[int]] = {}
    rows = conn.execute(
        "SELECT l.key, l.article_id, a.story_id FROM _lsh_v2 l JOIN articles a ON a.id = l.article_id "
        "WHERE l.level = 'story' AND a.duplicate_of IS NULL ORDER BY a.rowid"
    )
    for key, _, story_id in rows:
        buckets.setdefault((STORY_PERIOD, key), []).append(story_id)
    cap = MatchingSettings().story_bucket_cap  # a migration has no run settings: the default's cap
    conn.executemany(
        "INSERT INTO _story_buckets (period, key, stories) VALUES (?, ?, ?)",
        [(*key, pack_story_ids(latest_stories(ids, cap))) for key, ids in sorted(buckets.items())],
    )
    conn.execute("DROP TABLE _lsh_v2")
    # Story centroids: JSON to packed terms and weights, plus the canonical window's first day.
    conn.execute("ALTER TABLE _story_state RENAME TO _story_state_v2")
    for statement in _SCHEMA.split(";\n"):
        if statement.strip().startswith("CREATE TABLE IF NOT EXISTS _story_state"):
            conn.execute(statement)
    rows = conn.execute("SELECT story_id, vector_sum, members, first_day, last_day FROM _story_state_v2")
    conn.executemany(
        "INSERT INTO _story_state (story_id, terms, weights, members, first_day, last_day) VALUES (?, ?, ?, ?, ?, ?)",
        [(story_id, *pack_vector(json.loads(vector)), *rest) for story_id, vector, *rest in rows],
    )
    conn.execute("DROP TABLE _story_state_v2")
    members: dict[int, list[Member]] = {}
    for story_id, *fields in conn.execute(
        "SELECT a.story_id, a.id, s.day, a.published, a.duplicate_of, s.chars FROM articles a "
        "JOIN _signatures s ON s.article_id = a.id"
    ):
        members.setdefault(story_id, []).append(Member(*fields))
    conn.executemany(
        "UPDATE _story_state SET pool_day = ? WHERE story_id = ?",
        [(first_original_day(found), story_id) for story_id, found in members.items()],
    )


def _start_uninterrupted(thread: threading.Thread) -> None:
    """Start `thread` with Ctrl-C and SIGTERM held back until it runs. Their handlers raise in
    the main thread, and raised inside `start()` they left a thread that runs (the checkpoint,
    the search index) but that `close` could not join: "cannot join thread before it is
    started" instead of the exit the signal asked for. The thread keeps them blocked, so they
    always reach the main thread."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _join_whatever_happens(worker: threading.Thread) -> None:
    """Wait for `worker` to end even if a signal's exception (Ctrl-C, SIGTERM) interrupts the wait,
    then raise that exception. The search index thread writes on the writer's connection: a
    transaction rolled back while it is still between its two statements would let its second
    one commit alone, recording as indexed rows that were rolled back."""
    interrupted: BaseException | None = None
    while worker.is_alive():
        try:
            worker.join()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, once the thread is done
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


def _last_article_rowid(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(rowid), 0) FROM articles").fetchone()[0]


def _set_indexed_up_to(conn: sqlite3.Connection, rowid: int) -> None:
    """Record that the search index holds every article up to `rowid` (`Store.index_new_articles`)."""
    conn.execute("INSERT OR REPLACE INTO _meta (key, value) VALUES ('fts_rowid', ?)", (str(rowid),))


def _index_after_the_batch(conn: sqlite3.Connection) -> None:
    """Version 4: new articles are indexed for search by the writer, not by an insert trigger.
    Every article already stored is indexed (the trigger did it)."""
    conn.execute('DROP TRIGGER IF EXISTS "articles_ai"')
    _set_indexed_up_to(conn, _last_article_rowid(conn))


def _merge_search_segments_less_often(conn: sqlite3.Connection) -> None:
    """Version 5: the search index merges its segments 8 at a time, not 4 (see _FTS_SCHEMA).
    A database left without its index gets one, so configured, when it is opened."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'articles_fts'").fetchone():
        conn.execute(f"INSERT INTO articles_fts (articles_fts, rank) VALUES ('automerge', {_FTS_AUTOMERGE})")


def _record_languages(conn: sqlite3.Connection) -> None:
    """Version 6: `articles.language`, the language an article's terms were weighed in (see
    pipeline/language.py). Articles stored before have none (NULL): they were weighed as English."""
    if "language" not in {row[1] for row in conn.execute("PRAGMA table_info(articles)")}:
        conn.execute("ALTER TABLE articles ADD COLUMN language TEXT")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _add_browsing_views, 3: _story_buckets_by_story, 4: _index_after_the_batch,
    5: _merge_search_segments_less_often, 6: _record_languages,
}

# The columns this version reads; a database missing one is refused instead of misread.
_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "articles": (
        "id", "external_id", "url", "title", "source", "published", "text", "content_hash",
        "story_id", "duplicate_of", "similarity", "ingested_at", "language",
    ),
    "stories": ("id", "canonical_article_id", "title", "article_count", "first_published", "last_published"),
    "rejects": ("ref", "stage", "reason", "detail", "input", "run_id", "at"),
    "_signatures": ("article_id", "story_minhash", "dup_minhash", "terms", "day", "chars"),
    "_story_buckets": ("period", "key", "stories"),
    "_lsh": ("level", "period", "key", "article_id"),
    "_story_state": ("story_id", "terms", "weights", "members", "pool_day"),
    "_term_df": ("term", "df"),
    "story_merges": ("absorbed_story_id", "into_story_id", "run_id", "at"),
    "story_overview": ("story_id", "title", "article_count", "outlets"),
    "story_articles": ("story_id", "article_id", "is_canonical", "similarity"),
    "near_duplicate_pairs": ("story_id", "article_id", "original_id", "exact_copy"),
    "outlet_days": ("outlet", "day", "articles"),
}


def _use_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch to WAL, waiting like any other write when another process holds the lock.

    Switching a new database to WAL needs an exclusive lock, and SQLite answers "database is
    locked" at once instead of calling the busy handler, so two processes creating one new
    database would fail without this loop.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
    if mode.lower() != "wal":
        log.warning("SQLite kept journal mode %r (WAL unsupported here); concurrent runs will wait longer", mode)


# What the canonical rule reads of a story member (the fields of stories.Member, in order).
_MEMBER_COLUMNS = (
    "a.id, s.day, a.published, a.duplicate_of, coalesce(s.chars, length(a.text)), a.title IS NOT NULL AND a.title != ''"
)
_MEMBER_TABLES = "FROM articles a JOIN _signatures s ON s.article_id = a.id"


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SavedBatch:
    """What one batch changed in the database."""

    inputs: int
    new_articles: int
    unchanged: int
    near_duplicates: int
    rejects: int
    new_stories: tuple[int, ...]
    grown_stories: tuple[int, ...]
    merged_stories: tuple[tuple[int, int], ...]


# Each connection's page cache (64 MB): a batch's reads and writes touch thousands of pages.
_PAGE_CACHE = "PRAGMA cache_size=-65536"
# The write-ahead log's length, in 4 KB pages, past which the writer lets it restart (see
# `Store._let_the_log_restart`): 64 MB, a few batches' pages into a 100,000-article database.
_LOG_RESTART_FRAMES = 16_384


class IndexReads:
    """The reads that story assignment makes (the `StoryIndex` protocol of pipeline/stories.py)
    on one connection: the store's own, or the second one `Store.reader()` opens for reading
    while the write connection indexes for search."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _chunks(self, values: Sequence) -> Iterator[Sequence]:
        for start in range(0, len(values), _CHUNK):
            yield values[start : start + _CHUNK]

    def has_table(self, name: str) -> bool:
        """Whether this database has the table `name`: the ones made on first use (`_archived`,
        `removed_articles`, `story_splits`) are missing until the command that writes them ran."""
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def has_archived(self) -> bool:
        """Whether stories were ever archived from this database (`pipeline/archive.py`)."""
        return self.has_table("_archived")

    def is_archive(self) -> bool:
        """Whether this database is another one's archive (`newsdedup archive` marks it)."""
        return self.conn.execute("SELECT 1 FROM _meta WHERE key = 'archive_of'").fetchone() is not None

    def existing_ids(self, article_ids: Iterable[str]) -> set[str]:
        """Which of `article_ids` are stored, here or in an archive (`_archived`)."""
        ids = sorted(set(article_ids))
        found: set[str] = set()
        sources = ["SELECT id FROM articles WHERE id IN ({})"]
        if self.has_archived():
            sources.append("SELECT article_id FROM _archived WHERE article_id IN ({})")
        for chunk in self._chunks(ids):
            marks = ",".join("?" * len(chunk))
            for sql in sources:
                found.update(r[0] for r in self.conn.execute(sql.format(marks), chunk))
        return found

    def stored_files(self, content_hashes: Iterable[str]) -> set[tuple]:
        """The `file_identity` of each stored article without a URL that has one of
        `content_hashes`: the same file ingested again by another path, or the same record on
        another line of a re-exported JSON Lines file, is among them. (Articles with ids of
        their own are among them too, and harmless: no input known only by its file matches
        their `external_id`.)"""
        found: set[tuple] = set()
        tables = ["articles", "_archived"] if self.has_archived() else ["articles"]
        for chunk in self._chunks(sorted(set(content_hashes))):
            marks = ",".join("?" * len(chunk))
            for table in tables:
                rows = self.conn.execute(
                    f"SELECT content_hash, external_id, title, source, published FROM {table} "
                    f"WHERE content_hash IN ({marks}) AND url IS NULL",
                    chunk,
                )
                found.update(
                    file_identity(content_hash, record_file(external_id), title, source, published)
                    for content_hash, external_id, title, source, published in rows
                )
        return found

    def _by_period(self, keys: Sequence[tuple[int, int]]) -> Iterator[tuple[int, Sequence[int]]]:
        """(period, chunk of keys) groups of `keys`, for one indexed lookup each."""
        grouped: dict[int, list[int]] = {}
        for period, key in keys:
            grouped.setdefault(period, []).append(key)
        for period, found in sorted(grouped.items()):
            for chunk in self._chunks(found):
                yield period, chunk

    def lsh_matches(
        self, level: str, groups: Sequence[tuple[Sequence[int], Iterable[int]]]
    ) -> dict[tuple[int, int], list[str]]:
        """The articles in the LSH buckets of `level` that `groups` name: each group is (periods,
        keys), every key looked up in every one of its periods. Keyed by (period, key)."""
        matches: dict[tuple[int, int], list[str]] = {}
        # Every (period, key) pair is one B-tree seek, ~2 microseconds each, and a batch probes
        # ~110,000 of them. A period with no rows (one after the newest stored, or an empty
        # database) cannot match: one seek per period finds those, and they are left out.
        # Measured on the 100k benchmark's increment, whose next period is empty: lookups 0.12 s
        # -> 0.11 s.
        stocked = {
            period
            for period in {p for periods, _ in groups for p in periods}
            if self.conn.execute(
                "SELECT 1 FROM _lsh WHERE level = ? AND period = ? LIMIT 1", (level, period)
            ).fetchone()
        }
        for wanted, keys in groups:
            periods = [p for p in wanted if p in stocked]
            if not periods:
                continue
            # One IN list of periods and one of keys: SQLite seeks each pair itself, so the
            # caller never builds the cross product.
            period_marks = ",".join("?" * len(periods))
            for chunk in self._chunks(list(keys)):
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    f"SELECT period, key, article_id FROM _lsh WHERE level = ? AND period IN ({period_marks}) "
                    f"AND key IN ({marks})",
                    (level, *periods, *chunk),
                )
                for period, key, article_id in rows:
                    matches.setdefault((period, key), []).append(article_id)
        return matches

    def story_buckets(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
        """The stories in each (period, key) story-level LSH bucket (oldest first), merged stories
        resolved to the story that absorbed them. Buckets are capped when written, so a lookup
        costs the same however large the database grows."""
        found: dict[tuple[int, int], list[int]] = {}
        for period, chunk in self._by_period(keys):
            marks = ",".join("?" * len(chunk))
            for key, packed in self.conn.execute(
                f"SELECT key, stories FROM _story_buckets WHERE period = ? AND key IN ({marks})", (period, *chunk)
            ):
                found[(period, key)] = unpack_story_ids(packed)
        # (A batch reads ~10,000 buckets of up to 32 ids; set.union keeps the loop over them in C.)
        named = set().union(*found.values())
        live = self.resolve_merged(named)
        # Only buckets naming a story merged away (or gone) need rewriting; most name none.
        stale = {s for s in named if live.get(s) != s}
        if stale:
            for key, ids in found.items():
                if stale.isdisjoint(ids):
                    continue
                resolved = [live[s] for s in ids if s in live]
                # A merge can leave one story twice in a bucket: keep its latest place.
                found[key] = latest_stories(resolved, len(resolved))
        return found

    def resolve_merged(self, story_ids: set[int]) -> dict[int, int]:
        """Each of `story_ids` mapped to the story holding its articles now (itself, unless it
        was merged away; a story gone without a merge record is left out)."""
        ids = sorted(story_ids)
        alive = self._resolve_alive(story_ids)
        mapping = {story_id: story_id for story_id in alive}
        pending = {story_id: story_id for story_id in ids if story_id not in alive}  # origin -> current
        for _ in range(64):  # merge chains are short; the bound only guards against a cycle
            if not pending:
                break
            current = sorted(set(pending.values()))
            into: dict[int, int] = {}
            for chunk in self._chunks(current):
                marks = ",".join("?" * len(chunk))
                into.update(
                    self.conn.execute(
                        f"SELECT absorbed_story_id, into_story_id FROM story_merges "
                        f"WHERE absorbed_story_id IN ({marks}) ORDER BY rowid",
                        chunk,
                    ).fetchall()
                )
            survivors = self._resolve_alive(set(into.values()))
            step: dict[int, int] = {}
            for origin, now in pending.items():
                if now not in into:
                    continue
                target = into[now]
                if target in survivors:
                    mapping[origin] = target
                else:
                    step[origin] = target
            pending = step
        return mapping

    def _resolve_alive(self, story_ids: set[int]) -> set[int]:
        alive: set[int] = set()
        for chunk in self._chunks(sorted(story_ids)):
            marks = ",".join("?" * len(chunk))
            alive.update(r[0] for r in self.conn.execute(f"SELECT id FROM stories WHERE id IN ({marks})", chunk))
        return alive

    def originals_by_content_hash(self, hashes: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in self._chunks(list(hashes)):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT content_hash, id FROM articles WHERE content_hash IN ({marks}) "
                "ORDER BY duplicate_of IS NOT NULL, ingested_at, id",
                chunk,
            )
            for content_hash, article_id in rows:
                found.setdefault(content_hash, article_id)
        return found

    def indexed_articles(self, article_ids: Iterable[str], with_text: bool) -> dict[str, IndexedArticle]:
        ids = sorted(set(article_ids))
        found: dict[str, IndexedArticle] = {}
        text_column = "a.text" if with_text else "NULL"
        for chunk in self._chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT a.id, a.story_id, a.duplicate_of, s.dup_minhash, {text_column} "
                f"FROM articles a JOIN _signatures s ON s.article_id = a.id WHERE a.id IN ({marks})",
                chunk,
            )
            for article_id, story_id, duplicate_of, dup_minhash, text in rows:
                found[article_id] = IndexedArticle(article_id, story_id, duplicate_of, dup_minhash, text)
        return found

    def story_states(self, story_ids: Iterable[int]) -> dict[int, StoryState]:
        ids = sorted(set(story_ids))
        states: dict[int, StoryState] = {}
        for chunk in self._chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT story_id, terms, weights, members, first_day, last_day FROM _story_state WHERE story_id IN ({marks})",
                chunk,
            )
            for story_id, terms, weights, members, first_day, last_day in rows:
                states[story_id] = StoryState(story_id, unpack_vector(terms, weights), members, first_day, last_day)
        return states

    def document_frequencies(self, terms: Iterable[str]) -> tuple[int, dict[str, int]]:
        """(number of articles counted, document frequency of each of `terms` among them)."""
        row = self.conn.execute("SELECT value FROM _meta WHERE key = 'documents'").fetchone()
        documents = int(row[0]) if row else 0
        found: dict[str, int] = {}
        for chunk in self._chunks(sorted(set(terms))):
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(f"SELECT term, df FROM _term_df WHERE term IN ({marks})", chunk).fetchall())
        return documents, found

    def kept_apart(self, story_ids: Iterable[int]) -> set[frozenset[int]]:
        """The pairs of `story_ids` an editor split apart (`story_splits`, written by `newsdedup
        split`): each story split out and the one it left, and the stories split out of the same
        one; each side followed through later merges to the story holding it now."""
        if not self.has_table("story_splits"):
            return set()
        pairs = self.conn.execute("SELECT story_id, split_from FROM story_splits").fetchall()
        if not pairs:
            return set()
        # Stories split out of the same story, one at a time, are other events than each other
        # too (a QA pass: the next run merged two such siblings, every time).
        siblings: dict[int, list[int]] = {}
        for story_id, split_from in pairs:
            siblings.setdefault(split_from, []).append(story_id)
        pairs += [(a, b) for group in siblings.values() for i, a in enumerate(group) for b in group[i + 1 :]]
        now = self.resolve_merged({story for pair in pairs for story in pair})
        wanted = set(story_ids)
        return {
            frozenset((now[a], now[b])) for a, b in pairs
            if a in now and b in now and now[a] != now[b] and now[a] in wanted and now[b] in wanted
        }

    def next_story_id(self) -> int:
        """One more than any story id this database ever gave, archived stories' included
        (`_meta.last_story_id`): an id is never given twice."""
        row = self.conn.execute(
            "SELECT max(coalesce((SELECT max(id) FROM stories), 0), "
            "coalesce((SELECT CAST(value AS INTEGER) FROM _meta WHERE key = 'last_story_id'), 0))"
        ).fetchone()
        return row[0] + 1


class Store(IndexReads):
    """The story database. Use `open_store(path)`; write a batch inside `writing()`."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 120.0, read_only: bool = False) -> None:
        self.path = Path(path)
        # An in-memory database has no second connection (it would open another database) and
        # no write-ahead log to checkpoint.
        self.in_memory = str(path) == ":memory:"
        self.busy_timeout_s = busy_timeout_s
        self.read_only = read_only and not self.in_memory
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a story database (give its file: --db {self.path / 'stories.db'})")
        try:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self.in_memory:
                    self._check_writable()
                # (`indexing_in_background` writes the search index on this connection from a
                # second thread, never at the same time as this one.)
                conn = self._connect()
                _use_wal(conn, busy_timeout_s)
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_PAGE_CACHE)
            if not self.in_memory and not self.read_only:
                # Checkpoints run on a thread of their own after each commit (see `_checkpoint_soon`).
                conn.execute("PRAGMA wal_autocheckpoint=0")
        except (sqlite3.Error, OSError) as exc:
            damaged = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CORRUPT
            raise (DamagedDatabaseError if damaged else StoreError)(
                f"cannot open the story database {self.path}: {_plain(exc)}"
            ) from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._reader: IndexReads | None = None
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._log_frames = 0  # frames in the write-ahead log at the last checkpoint
        self._commits = 0  # write transactions committed on this connection
        self._checkpoint_began_at = 0  # `_commits` when the running checkpoint thread started
        self._ensure_schema()

    def _check_writable(self) -> None:
        """Refuse at once, naming what to change, a database this process may not write: SQLite
        only says "attempt to write a readonly database", at the first write (for `newsdedup
        archive`, after the archive was written; for a flow run, after Prefect's start). Its
        directory must be writable too: the write-ahead log and its index are made beside it.

        Raises:
            StoreError: the file or its directory is read-only for this user.
        """
        for target, what in ((self.path, "file"), (self.path.parent, "directory")):
            if target.exists() and not os.access(target, os.W_OK):
                raise StoreError(
                    f"cannot write the story database {self.path}: its {what} {target} is read-only for this user "
                    f"(make it writable, e.g. chmod u+w {target}, or give another --db; the read commands work as it is)"
                )

    # -- schema -------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        """Create the schema in a new database, migrate an older one, refuse anything else.

        The common case (the current version) is one read without a lock. Creating and
        migrating happen under the write lock, re-checked there, so two processes opening a
        new database at once cannot both create it (the FTS table would be created twice).

        Raises:
            StoreError: not a story database, a newer schema, or (read-only) one that needs
                creating or migrating first (`NeedsWriting`).
        """
        try:
            tables = set(self.db.table_names())
            if tables and self._schema_version(tables) == SCHEMA_VERSION and "articles_fts" in tables:
                self._check_columns()
                return
            if self.read_only:
                version = self._schema_version(tables)
                if version is not None and version > SCHEMA_VERSION:
                    self._migrate(version)  # raises: newer than this code
                raise NeedsWriting(f"{self.path} must be created or migrated before it can be read")
            with self.transaction():
                tables = set(self.db.table_names())
                version = self._schema_version(tables)
                if version is None:
                    self._create_schema()
                elif version != SCHEMA_VERSION:
                    self._migrate(version)
                if "articles_fts" not in set(self.db.table_names()):
                    # Databases of the first release built the index after the schema, outside
                    # its transaction; a crash in between left them without one.
                    for statement in _FTS_SCHEMA:
                        self.conn.execute(statement)
                    self.conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")
                    _set_indexed_up_to(self.conn, _last_article_rowid(self.conn))
            self._check_columns()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable SQLite database: {exc}") from None

    def _schema_version(self, tables: set[str]) -> int | None:
        """The recorded schema version; None for an empty file (a new database).

        Raises:
            StoreError: another program's SQLite database, or no version recorded.
        """
        if not tables:
            return None
        if "_meta" not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database but not a newsdedup story database; "
                "choose another path with --db"
            )
        row = self.conn.execute("SELECT value FROM _meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else 0
        except ValueError:
            raise StoreError(f"{self.path} records a schema version of {row[0]!r}, which is not a number") from None

    def _create_schema(self) -> None:
        for statement in [*_SCHEMA.split(";\n"), *_FTS_SCHEMA]:
            if statement.strip():
                self.conn.execute(statement)
        self._set_version(SCHEMA_VERSION)

    def _set_version(self, version: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO _meta (key, value) VALUES ('schema_version', ?)", (str(version),)
        )

    def _migrate(self, version: int) -> None:
        """Bring a database at `version` to SCHEMA_VERSION, one step at a time (inside the
        caller's transaction, so a failed step leaves the database as it was).

        Raises:
            StoreError: the database is newer than this code, or no migration path exists.
        """
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this newsdedup "
                f"understands ({SCHEMA_VERSION}); upgrade newsdedup"
            )
        missing = [step for step in range(version + 1, SCHEMA_VERSION + 1) if step not in MIGRATIONS]
        if missing:
            raise StoreError(
                f"{self.path} has schema version {version}, which cannot be migrated to "
                f"{SCHEMA_VERSION} (no migration to version {missing[0]}); re-ingest into a new database"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            log.info("migrating %s from schema version %d to %d", self.path, step - 1, step)
            try:
                MIGRATIONS[step](self.conn)
            except sqlite3.Error as exc:
                raise StoreError(
                    f"{self.path}: migration to schema version {step} failed ({exc}); the database is unchanged"
                ) from None
            self._set_version(step)

    def _check_columns(self) -> None:
        """Refuse a database whose tables lack columns this version reads, rather than misread it.

        Raises:
            StoreError: a table or column is missing.
        """
        for table, columns in _REQUIRED_COLUMNS.items():
            present = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            absent = [column for column in columns if column not in present]
            if absent:
                what = f"table or view {table}" if not present else f"column {table}.{absent[0]}"
                raise DamagedDatabaseError(
                    f"{self.path} claims schema version {SCHEMA_VERSION} but has no {what}; "
                    "it was damaged or written by other software; re-ingest into a new database"
                )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken at once so readers-then-writers cannot deadlock."""
        self._let_the_log_restart()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
            self._commits += 1
            self._checkpoint_soon()

    def _checkpoint_soon(self) -> None:
        """Copy the committed pages from the write-ahead log into the database, on a second thread.

        SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 log pages, on the
        writer's critical path: a batch into a 100,000-article database commits ~12,000 pages,
        and copying them back took ~0.15 s of each ~0.36 s COMMIT. A PASSIVE checkpoint on its own
        connection never blocks the writer or readers; meanwhile the writer goes on (the run's
        last search-index update, or the next batch). It is SQLite's C code, which runs without
        Python's lock. If one is still running, the next commit's pages wait for the next one;
        `close` waits for it, and closing the last connection checkpoints the rest.
        """
        if self.in_memory or (self._checkpointer is not None and self._checkpointer.is_alive()):
            return
        if self._checkpoint_conn is None:
            self._checkpoint_conn = self._connect()
        self._checkpointer = threading.Thread(target=self._checkpoint, name="newsdedup-checkpoint", daemon=True)
        self._checkpoint_began_at = self._commits
        _start_uninterrupted(self._checkpointer)

    def _checkpoint(self) -> None:
        """One PASSIVE checkpoint on the checkpoint connection; notes how long the log is."""
        assert self._checkpoint_conn is not None
        try:
            _, frames, _ = self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # nothing is lost: the pages stay in the log
            log.warning("background checkpoint of %s failed (%s); the next one retries", self.path, exc)
        else:
            self._log_frames = frames

    def _let_the_log_restart(self) -> None:
        """Once the write-ahead log is long, finish the checkpoint before the next transaction.

        SQLite writes the log from its start again only when a write transaction begins after
        a checkpoint copied every frame back. With the checkpoint on its own thread and batches
        committed back to back, the next batch always began first and the log never restarted:
        building the 100,000-article benchmark database it grew to 1.5 GB, more than the
        database itself, until the run closed. Waiting here once the log passes
        `_LOG_RESTART_FRAMES` restarts it.

        The log's length is known only from a finished checkpoint, so a checkpoint still running
        after a later commit is waited for first: a slow disk could otherwise let commits run
        ahead of checkpoints that never report, and the log grow without bound (once in CI: 6,000
        frames against a limit of 2,000). With that wait the log stays under the limit plus three
        transactions, whatever the timing. In a pipeline run a checkpoint (~0.15 s at 100,000
        articles) ends long before the batch after next commits (~1 s of writer time each), so
        neither wait is usually felt.
        """
        if self.in_memory:
            return
        if (
            self._checkpointer is not None
            and self._checkpointer.is_alive()
            and self._commits > self._checkpoint_began_at
        ):
            _join_whatever_happens(self._checkpointer)
            self._checkpointer = None
        if self._log_frames < _LOG_RESTART_FRAMES:
            return
        if self._checkpointer is not None:
            _join_whatever_happens(self._checkpointer)
            self._checkpointer = None
        # The thread's checkpoint may have begun before the last commit: copy what is left.
        self._checkpoint()
        # Done for now: the next checkpoint reports the restarted log, or a log that readers in
        # other processes still hold, which is waited for again then.
        self._log_frames = 0

    def close(self) -> None:
        if self._checkpointer is not None:
            _join_whatever_happens(self._checkpointer)
            self._checkpointer = None
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None
        if self._reader is not None:
            self._reader.conn.close()
            self._reader = None
        self.conn.close()

    # -- the search index ---------------------------------------------------------------------

    def _indexed_up_to(self) -> int:
        row = self.conn.execute("SELECT value FROM _meta WHERE key = 'fts_rowid'").fetchone()
        return int(row[0]) if row else 0

    def awaiting_index(self) -> int:
        """How many stored articles the search index does not hold yet: the last batch of a run
        still going (indexed while the next one is assigned), or of a run that was stopped
        before it finished (indexed by the next run)."""
        return self.conn.execute(
            "SELECT count(*) FROM articles WHERE rowid > ?", (self._indexed_up_to(),)
        ).fetchone()[0]

    def index_new_articles(self) -> int:
        """Add the articles stored since the last call to the full-text index (inside
        `transaction()`); how many. Articles are rowid-ordered, so "since" is a rowid."""
        start, end = self._indexed_up_to(), _last_article_rowid(self.conn)
        if end <= start:
            return 0
        self.conn.execute(
            "INSERT INTO articles_fts (rowid, title, text) SELECT rowid, title, text FROM articles WHERE rowid > ?",
            (start,),
        )
        _set_indexed_up_to(self.conn, end)
        return end - start

    @contextmanager
    def indexing_in_background(self) -> Iterator[IndexReads]:
        """Index earlier batches' articles for search on a second thread, inside the caller's
        transaction, while the caller reads through the store this yields.

        The index is the largest single cost of a batch's writes (tokenising every text: about
        0.4 ms an article, a sixth of the writer's time), and it is SQLite's C code, which runs
        without Python's lock: done while the writer assigns the next batch, it comes off the
        writer's critical path. The reads go through a second connection: this one is busy. It
        sees what the last commit left, which is everything, since the caller holds the write
        lock. A batch is therefore searchable once the next batch (or `finish_run`) commits.
        When nothing awaits indexing, the caller reads on this connection instead (below).
        """
        if self.in_memory:
            self.index_new_articles()
            yield self
            return
        if self._indexed_up_to() >= _last_article_rowid(self.conn):
            # Nothing to index (a run's first batch, or a one-batch run): read here, so the pages
            # the batch's writes will change are already in this connection's cache. Measured on
            # the 100k benchmark's increment: commit 1.75 s -> 1.62 s (means of 8 alternating).
            yield self
            return
        failure: list[BaseException] = []

        def index() -> None:
            try:
                self.index_new_articles()
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)

        worker = threading.Thread(target=index, name="newsdedup-fts", daemon=True)
        try:
            # Inside the try: a Ctrl-C or SIGTERM held back during the start is raised the moment
            # it ends, and must find the thread waited for too. Raised before the try, the batch
            # rolled back while the thread was between its two statements, and the second one
            # committed alone (a QA pass: the index marked whole over rows it never got).
            _start_uninterrupted(worker)
            yield self.reader()
        finally:
            _join_whatever_happens(worker)
        if failure:
            raise failure[0]

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that cannot write: for the commands that only read (`stories`, `search`,
        `export`...), so they also work on a database the user may not write, a snapshot or a
        read-only mount (see `read_only_connection`)."""
        if not self.path.is_file():
            raise StoreError(f"cannot open the story database {self.path}: no such file")
        return read_only_connection(self.path, self.busy_timeout_s)[0]

    def _connect(self) -> sqlite3.Connection:
        """A connection to this store's file: the writer's own, the reader's or the checkpointer's.

        Autocommit (transactions are taken explicitly), and usable from any one thread at a time:
        a Prefect run's tasks share a store, and the search index and checkpoints run on threads.
        """
        return sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)

    def reader(self) -> IndexReads:
        """The matching reads on a connection of their own (opened once, closed with the store)."""
        if self._reader is None:
            # (Any one thread at a time: a Prefect run's commit tasks share one store.)
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            conn.execute(_PAGE_CACHE)
            self._reader = IndexReads(conn)
        return self._reader

    # -- writes ---------------------------------------------------------------------------------

    def check_can_ingest(self, layout: Mapping[str, object]) -> None:
        """Refuse to ingest into an archive, or under another index layout (inside `transaction()`).

        Raises:
            UsageError: the database is an archive (`refuse_if_archive`).
            ConfigError: the layout differs (`check_index_layout`).
        """
        self.refuse_if_archive()
        self.check_index_layout(layout)

    def refuse_if_archive(self, action: str = "ingest into") -> None:
        """Refuse to ingest into an archive (`newsdedup archive` marks one with `_meta.archive_of`),
        or to `action` it otherwise (merge or split its stories, which are no longer matched).

        Its stories are no longer matched by the live database, and its story ids are the live
        database's: a story made here could take an id the live database gives too, and the
        next archive would then put two stories under one id (a QA pass).

        Raises:
            UsageError: with what to do instead.
        """
        if self.is_archive():
            raise UsageError(
                f"{self.path} is an archive (made by 'newsdedup archive'): {action} the live story database "
                f"it came from; read the archive with stories, show, search, export or browse --db {self.path}"
            )

    def layout_differences(self, layout: Mapping[str, object]) -> str:
        """How `layout` differs from the stored one ("num_perm 128 here, 64 now (matching.num_perm)"),
        or "" when it does not, or nothing is stored yet."""
        row = self.conn.execute("SELECT value FROM _meta WHERE key = 'index_layout'").fetchone()
        if row is not None:
            stored = json.loads(row[0])
        else:
            signature = self.conn.execute("SELECT scheme, num_perm, seed FROM _signatures LIMIT 1").fetchone()
            stored = dict(layout)
            if signature is not None:
                stored.update(scheme=signature[0], num_perm=signature[1], seed=signature[2])
        return "; ".join(
            f"{key} {stored.get(key)!r} here, {layout[key]!r} now ({LAYOUT_SETTINGS.get(key, key)})"
            for key in layout if stored.get(key) != layout[key]
        )

    def check_index_layout(self, layout: Mapping[str, object]) -> None:
        """Refuse to add articles fingerprinted under another layout (`fingerprint.index_layout`)
        than the stored ones: they would never be compared, and every story would start again.

        The first write records the layout in `_meta`. A database from before it was recorded
        is checked against what its signatures carry (scheme, num_perm, seed). Call inside
        `transaction()`.

        Raises:
            ConfigError: the settings differ from the database's in something the layout holds.
        """
        differences = self.layout_differences(layout)
        if differences:
            raise ConfigError(
                f"the story database {self.path} was built with other matching settings: {differences}. "
                "New articles could not be compared with the stored ones. Run with the settings it was "
                f"built with, or rebuild it under the new ones: {rebuild_commands(self.path)}"
            )
        if self.conn.execute("SELECT 1 FROM _meta WHERE key = 'index_layout'").fetchone() is None:
            self.conn.execute(
                "INSERT INTO _meta (key, value) VALUES ('index_layout', ?)", (json.dumps(dict(layout), sort_keys=True),)
            )

    def save_rejects(self, rejected: Sequence[Rejected], run_id: str | None) -> None:
        """Record rejects; a re-run that rejects the same input again replaces its row, whatever
        path it was reached by this time."""
        self._forget_other_spellings([(r.ref, r.input or "") for r in rejected])
        at = now_iso()
        self.conn.executemany(
            "INSERT INTO rejects (ref, stage, reason, detail, input, run_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r.ref, r.stage, r.reason, r.detail or None, r.input or "", run_id, at) for r in rejected],
        )

    def forget_rejects(self, refs: Sequence[tuple[str, str]]) -> None:
        """Remove reject rows for inputs that have now been stored ((ref, input) pairs), under
        whichever path they were rejected."""
        self.conn.executemany("DELETE FROM rejects WHERE ref = ? AND input = ?", refs)
        self._forget_other_spellings(refs)

    def _forget_other_spellings(self, keys: Sequence[tuple[str, str]]) -> None:
        """Remove reject rows of the same inputs as `keys` reached by another path: the same
        `input` (a file's absolute path, or a URL) and the same file name in the ref (`a.txt`,
        `feed.jsonl:7`), as `seeds/a.txt` and `/abs/seeds/a.txt` are."""
        names: dict[str, set[str]] = {}
        for ref, where in keys:
            if where:
                names.setdefault(where, set()).add(file_name(ref))
        # (No index leads with `input`; most databases hold few rejects, or none.)
        if not names or self.conn.execute("SELECT 1 FROM rejects LIMIT 1").fetchone() is None:
            return
        stale: list[tuple[int]] = []
        for chunk in self._chunks(sorted(names)):
            marks = ",".join("?" * len(chunk))
            for row_id, ref, where in self.conn.execute(f"SELECT id, ref, input FROM rejects WHERE input IN ({marks})", chunk):
                if file_name(ref) in names[where]:
                    stale.append((row_id,))
        self.conn.executemany("DELETE FROM rejects WHERE id = ?", stale)

    def forget_earlier_rejects(self, refs: Sequence[tuple[str, str]], run_id: str) -> None:
        """Remove reject rows for inputs that worked in run `run_id`, unless that same run
        rejected them too (a sitemap index that answered, then listed itself too deep)."""
        self.conn.executemany(
            "DELETE FROM rejects WHERE ref = ? AND input = ? AND run_id IS NOT ?", [(*key, run_id) for key in refs]
        )

    def reject_keys(self) -> list[tuple[str, str]]:
        """(ref, input) of every recorded reject, oldest first: what `ingest --retry-rejects` replays."""
        return [(ref, input) for ref, input in self.conn.execute("SELECT ref, input FROM rejects ORDER BY id")]

    def reject_keys_of_run(self, run_id: str) -> set[tuple[str, str]]:
        """(ref, input) of the rejects recorded (or recorded again) by one run."""
        rows = self.conn.execute("SELECT ref, input FROM rejects WHERE run_id = ?", (run_id,))
        return {(ref, input) for ref, input in rows}

    def save_outcome(self, prepared: Sequence[Prepared], outcome: BatchOutcome, run_id: str | None) -> None:
        """Write a batch's articles, signatures, LSH keys and story changes (inside `transaction()`)."""
        at = now_iso()
        by_id = {p.article.article_id: p for p in prepared}
        self.conn.executemany(
            "INSERT INTO stories (id, article_count, created_at, updated_at) VALUES (?, 0, ?, ?)",
            [(story_id, at, at) for story_id in sorted(outcome.new_stories)],
        )
        rows = []
        signature_rows = []
        for assignment in outcome.assignments:
            item = by_id[assignment.article_id]
            article, fp = item.article, item.fingerprint
            rows.append(
                (
                    article.article_id, article.external_id, article.url, article.title, article.source,
                    article.published, article.text, article.content_hash, assignment.story_id,
                    assignment.duplicate_of, assignment.similarity, at, run_id,
                    json.dumps(dict(article.extra), ensure_ascii=False, default=str) if article.extra else None,
                    fp.language,
                )
            )
            signature_rows.append(
                (
                    article.article_id, fp.scheme, fp.num_perm, fp.seed, fp.story_hashvalues,
                    fp.dup_hashvalues, pack_article_vector(outcome.vectors[article.article_id]), fp.day,
                    len(article.text),
                )
            )
        self.conn.executemany(
            "INSERT INTO articles (id, external_id, url, title, source, published, text, content_hash, "
            "story_id, duplicate_of, similarity, ingested_at, run_id, extra, language) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        self.conn.executemany(
            "INSERT INTO _signatures (article_id, scheme, num_perm, seed, story_minhash, dup_minhash, terms, day, chars) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            signature_rows,
        )
        # Rows go in in index order, so neighbouring inserts land on the same B-tree pages.
        self.conn.executemany(
            "INSERT OR IGNORE INTO _lsh (level, period, key, article_id) VALUES (?, ?, ?, ?)",
            _in_period_key_order(outcome.band_rows, itemgetter(1), itemgetter(2)),
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO _story_buckets (period, key, stories) VALUES (?, ?, ?)",
            [
                (*key, pack_story_ids(outcome.story_buckets[key]))
                for key in _in_period_key_order(list(outcome.story_buckets), itemgetter(0), itemgetter(1))
            ],
        )
        frequencies = outcome.document_frequencies
        self.conn.executemany(
            "INSERT INTO _term_df (term, df) VALUES (?, ?) ON CONFLICT(term) DO UPDATE SET df = df + excluded.df",
            [(term, frequencies[term]) for term in sorted(frequencies)],
        )
        self.conn.execute(
            "INSERT INTO _meta (key, value) VALUES ('documents', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
            (len(outcome.assignments),),
        )
        if outcome.merges:
            self.remember_story_ids()
        for dropped, kept in outcome.merges:
            self.conn.execute(
                "INSERT INTO story_merges (absorbed_story_id, into_story_id, run_id, at) VALUES (?, ?, ?, ?)",
                (dropped, kept, run_id, at),
            )
            # Their similarities were to the absorbed story's canonical article: unknown until
            # the refresh below compares them with the merged story's (a QA pass found an absorbed
            # canonical article still at 1.0 when the kept story's canonical did not change).
            self.conn.execute("UPDATE articles SET story_id = ?, similarity = NULL WHERE story_id = ?", (kept, dropped))
            self.conn.execute("DELETE FROM _story_state WHERE story_id = ?", (dropped,))
            self.conn.execute("DELETE FROM stories WHERE id = ?", (dropped,))
        self.conn.executemany(
            # An upsert, not a replace: pool_day is the canonical rule's, kept by refresh_stories.
            "INSERT INTO _story_state (story_id, terms, weights, members, first_day, last_day) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(story_id) DO UPDATE SET terms = excluded.terms, "
            "weights = excluded.weights, members = excluded.members, first_day = excluded.first_day, "
            "last_day = excluded.last_day",
            [
                (s.story_id, *pack_vector(s.vector_sum), s.members, s.first_day, s.last_day)
                for s in outcome.states.values()
            ],
        )
        added: dict[int, list[Member]] = {}
        for assignment in outcome.assignments:
            article = by_id[assignment.article_id].article
            added.setdefault(assignment.story_id, []).append(
                Member(
                    article.article_id, by_id[assignment.article_id].fingerprint.day, article.published,
                    assignment.duplicate_of, len(article.text), bool(article.title),
                )
            )
        self.refresh_stories(
            sorted(outcome.touched), at, fresh=outcome.vectors, added=added,
            recompute={kept for _, kept in outcome.merges},
        )

    def remember_story_ids(self) -> None:
        """Record the highest story id given so far (`_meta.last_story_id`), before stories are
        deleted (merged away, archived, removed): `next_story_id` never gives one again. Without
        it, merging away the newest story let the next new story take its id, which `story_merges`
        and earlier exports still name (a QA pass; inside `transaction()`)."""
        self.conn.execute(
            "INSERT INTO _meta (key, value) VALUES ('last_story_id', (SELECT max(id) FROM stories)) "
            "ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), excluded.value)"
        )

    def rebuild_states(self, story_ids: Iterable[int]) -> None:
        """Each story's matching state summed again from the articles it holds now, written over
        the stored one (or made): after an editor took articles out of it or put them in
        (`newsdedup remove`, `newsdedup split`). A batch keeps the same sum, cut to its heaviest
        terms, as it goes (inside `transaction()`)."""
        for story_id in story_ids:
            state = StoryState(story_id, {}, 0, None, None)
            for terms, day in self.conn.execute(
                "SELECT s.terms, s.day FROM articles a JOIN _signatures s ON s.article_id = a.id "
                "WHERE a.story_id = ? ORDER BY a.rowid",
                (story_id,),
            ):
                state.add(unpack_article_vector(terms), day)
            state.trim()
            self.conn.execute(
                "INSERT INTO _story_state (story_id, terms, weights, members, first_day, last_day) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(story_id) DO UPDATE SET terms = excluded.terms, "
                "weights = excluded.weights, members = excluded.members, first_day = excluded.first_day, "
                "last_day = excluded.last_day",
                (story_id, *pack_vector(state.vector_sum), state.members, state.first_day, state.last_day),
            )

    def refresh_stories(
        self,
        story_ids: Sequence[int],
        at: str | None = None,
        fresh: Mapping[str, Mapping[str, float]] | None = None,
        added: Mapping[int, Sequence[Member]] | None = None,
        recompute: Iterable[int] = (),
    ) -> None:
        """Bring stories' canonical article, title, size, dates and member similarities up to date.

        `added` names the members a batch just added to each story and `fresh` their term
        vectors. A grown story whose new members cannot have moved the start of its early-report
        window is refreshed from its current canonical article and the new members alone, so
        the cost follows the batch, not the story's size. Anything else (new stories, stories
        in `recompute` because they absorbed another, an earlier report arriving late, a
        canonical article that changes) is recomputed from all members.
        """
        at = at or now_iso()
        fresh = fresh or {}
        added = added or {}
        recompute = set(recompute)
        for story_id in story_ids:
            if story_id in recompute or not self._refresh_grown(story_id, added.get(story_id, ()), fresh, at):
                self._refresh_whole(story_id, fresh, at)

    def _refresh_grown(self, story_id: int, new: Sequence[Member], fresh: Mapping[str, Mapping[str, float]], at: str) -> bool:
        """The incremental refresh of `refresh_stories`; False when only a whole refresh is right."""
        if not new:
            return False
        row = self.conn.execute(
            "SELECT s.canonical_article_id, s.article_count, s.first_published, s.last_published, t.pool_day "
            "FROM stories s JOIN _story_state t ON t.story_id = s.id WHERE s.id = ?",
            (story_id,),
        ).fetchone()
        if row is None or row[0] is None:
            return False
        canonical_id, count, first_published, last_published, pool_day = row
        current = self._members([canonical_id])
        if not current or current[0].duplicate_of is not None:
            return False
        # The window starts at the earliest original. If a new one is earlier, the window shrinks;
        # the current canonical, the best of the old window, is then still the best of what is
        # left of it, so the new choice is among it and the new members, or (when it fell out of
        # the window) it changes and the whole story is recomputed below.
        days = [m.day for m in new if m.duplicate_of is None and m.day is not None]
        if pool_day is not None:
            days.append(pool_day)
        start = min(days) if days else None
        chosen = canonical_member([current[0], *new], first_day=start)
        if chosen != canonical_id:
            return False
        vectors = self._vectors([m.article_id for m in new] + [canonical_id], fresh)
        self.conn.executemany(
            "UPDATE articles SET similarity = ? WHERE id = ?",
            [(self._similarity(m, canonical_id, vectors), m.article_id) for m in new],
        )
        dates = sorted(d for d in (first_published, last_published, *(m.published for m in new)) if d)
        self.conn.execute(
            "UPDATE stories SET article_count = ?, first_published = ?, last_published = ?, updated_at = ? WHERE id = ?",
            (count + len(new), dates[0] if dates else None, dates[-1] if dates else None, at, story_id),
        )
        self.conn.execute("UPDATE _story_state SET pool_day = ? WHERE story_id = ?", (start, story_id))
        return True

    def _refresh_whole(self, story_id: int, fresh: Mapping[str, Mapping[str, float]], at: str) -> None:
        rows = self.conn.execute(
            f"SELECT {_MEMBER_COLUMNS}, a.similarity {_MEMBER_TABLES} WHERE a.story_id = ?",
            (story_id,),
        ).fetchall()
        if not rows:
            return
        members = [Member(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]
        canonical_id = canonical_member(members)
        before = self.conn.execute("SELECT canonical_article_id FROM stories WHERE id = ?", (story_id,)).fetchone()
        everything = before is None or before[0] != canonical_id
        stale = [m for m, r in zip(members, rows) if everything or m.article_id in fresh or r[6] is None]
        if stale:
            vectors = self._vectors([m.article_id for m in stale] + [canonical_id], fresh)
            # Most members keep their similarity from batch to batch; rewriting them costs time.
            self.conn.executemany(
                "UPDATE articles SET similarity = ?1 WHERE id = ?2 AND similarity IS NOT ?1",
                [(self._similarity(m, canonical_id, vectors), m.article_id) for m in stale],
            )
        dates = sorted(m.published for m in members if m.published)
        title, text = self.conn.execute(
            "SELECT title, CASE WHEN title IS NULL OR title = '' THEN text END FROM articles WHERE id = ?",
            (canonical_id,),
        ).fetchone()
        self.conn.execute(
            "UPDATE stories SET canonical_article_id = ?, title = ?, article_count = ?, "
            "first_published = ?, last_published = ?, updated_at = ? WHERE id = ?",
            (
                canonical_id, title or headline_from(text or ""), len(rows),
                dates[0] if dates else None, dates[-1] if dates else None, at, story_id,
            ),
        )
        self.conn.execute(
            "UPDATE _story_state SET pool_day = ? WHERE story_id = ?", (first_original_day(members), story_id)
        )

    @staticmethod
    def _similarity(member: Member, canonical_id: str, vectors: Mapping[str, Mapping[str, float]]) -> float:
        """A member's similarity to its story's canonical article (1.0 for it and its copies)."""
        if member.article_id == canonical_id or member.duplicate_of == canonical_id:
            return 1.0
        return round(cosine(vectors[member.article_id], vectors[canonical_id]), 4)

    def _members(self, article_ids: Sequence[str]) -> list[Member]:
        marks = ",".join("?" * len(article_ids))
        rows = self.conn.execute(
            f"SELECT {_MEMBER_COLUMNS} {_MEMBER_TABLES} WHERE a.id IN ({marks})",
            list(article_ids),
        ).fetchall()
        return [Member(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def _vectors(self, article_ids: Sequence[str], fresh: Mapping[str, Mapping[str, float]]) -> dict[str, Mapping[str, float]]:
        """Term vectors of articles: this batch's from memory, stored ones from _signatures."""
        found: dict[str, Mapping[str, float]] = {a: fresh[a] for a in article_ids if a in fresh}
        stored = sorted({a for a in article_ids if a not in fresh})
        for chunk in self._chunks(stored):
            marks = ",".join("?" * len(chunk))
            for article_id, terms in self.conn.execute(
                f"SELECT article_id, terms FROM _signatures WHERE article_id IN ({marks})", chunk
            ):
                found[article_id] = unpack_article_vector(terms)
        return found

    def runs(self, limit: int | None = None, since: str | None = None) -> list[dict]:
        """Recorded runs, the latest started first; with `since`, those started at or after it."""
        return list(self.db.query(
            "SELECT * FROM runs " + ("WHERE started_at >= ? " if since else "")
            + "ORDER BY started_at DESC, rowid DESC LIMIT ?",
            ([since] if since else []) + [limit or -1],
        ))

    def finished_at(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """When each of `run_ids` finished (None: it has not), as `runs` records it now."""
        found: dict[str, str | None] = {}
        for chunk in self._chunks(list(run_ids)):
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(f"SELECT run_id, finished_at FROM runs WHERE run_id IN ({marks})", chunk))
        return found

    def run_count(self, since: str | None = None) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM runs" + (" WHERE started_at >= ?" if since else ""), [since] if since else []
        ).fetchone()[0]

    def record_run(self, run_id: str, started_at: str, counts: dict[str, int], finished: bool) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO runs (run_id, started_at, finished_at, inputs, new_articles, unchanged, "
            "near_duplicates, new_stories, grown_stories, merged_stories, rejects) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, started_at, now_iso() if finished else None, counts.get("inputs", 0),
                counts.get("new_articles", 0), counts.get("unchanged", 0), counts.get("near_duplicates", 0),
                counts.get("new_stories", 0), counts.get("grown_stories", 0), counts.get("merged_stories", 0),
                counts.get("rejects", 0),
            ),
        )

    def count_batch(self, run_id: str | None, saved: "SavedBatch") -> None:
        """Add a committed batch's counts to its run's row (inside the batch's `transaction()`),
        so that a run that dies still shows what it stored; the run's end writes its totals.
        (Grown stories are left to the end: one story may grow in several batches.)"""
        if run_id is None:
            return
        self.conn.execute(
            "UPDATE runs SET inputs = inputs + ?, new_articles = new_articles + ?, unchanged = unchanged + ?, "
            "near_duplicates = near_duplicates + ?, new_stories = new_stories + ?, "
            "merged_stories = merged_stories + ?, rejects = rejects + ? WHERE run_id = ? AND finished_at IS NULL",
            (
                saved.inputs, saved.new_articles, saved.unchanged, saved.near_duplicates, len(saved.new_stories),
                len(saved.merged_stories), saved.rejects, run_id,
            ),
        )

    # -- fetching state (pipeline/web.py) ---------------------------------------------------------

    def known_urls(self, urls: Iterable[str]) -> set[str]:
        """The URLs among `urls` already stored as an article, or fetched and found to hold none.

        A URL counts as known under its canonical form (`articles.url`) or as the input it was
        fetched from (`articles.external_id`, a reject's `ref`, `_url_aliases`), since a page's
        canonical link may differ from the link a feed gives; and so does an archived article's
        (`_archived`) and a removed one's (`removed_articles`).
        """
        wanted = sorted(set(urls))
        found: set[str] = set()
        tables = self.db.table_names()
        for chunk in self._chunks(wanted):
            marks = ",".join("?" * len(chunk))
            for sql in (
                f"SELECT url FROM articles WHERE url IN ({marks})",
                f"SELECT external_id FROM articles WHERE external_id IN ({marks})",
                f"SELECT ref FROM rejects WHERE stage = 'extract' AND ref IN ({marks})",
            ) + ((f"SELECT url FROM _url_aliases WHERE url IN ({marks})",) if "_url_aliases" in tables else ()) + (
                (f"SELECT url FROM _archived WHERE url IN ({marks})",
                 f"SELECT external_id FROM _archived WHERE external_id IN ({marks})") if "_archived" in tables else ()
            ) + (
                # removed by an editor (pipeline/remove.py): not fetched again either
                (f"SELECT url FROM removed_articles WHERE url IN ({marks})",
                 f"SELECT external_id FROM removed_articles WHERE external_id IN ({marks})")
                if "removed_articles" in tables else ()
            ):
                found.update(row[0] for row in self.conn.execute(sql, list(chunk)))
        return found

    def save_url_aliases(self, aliases: Iterable[tuple[str, str]]) -> None:
        """Remember (link, article id) pairs: links fetched that held an article already stored
        under another URL, its canonical one (a syndicated copy, a link with a campaign path),
        so a feed listing them again does not have them fetched again (inside `transaction()`)."""
        rows = sorted(set(aliases))
        if not rows:
            return
        # Created on first use rather than in _SCHEMA, so databases made before it need no migration.
        self.conn.execute("CREATE TABLE IF NOT EXISTS _url_aliases (url TEXT PRIMARY KEY, article_id TEXT NOT NULL)")
        self.conn.executemany("INSERT OR IGNORE INTO _url_aliases (url, article_id) VALUES (?, ?)", rows)

    def _ensure_listing_state(self) -> None:
        # Created on first use rather than in _SCHEMA, so databases made before it need no migration.
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS _listing_state (url TEXT PRIMARY KEY, etag TEXT, "
            "last_modified TEXT, checked_at TEXT NOT NULL)"
        )

    def listing_validators(self, url: str) -> tuple[str | None, str | None]:
        """The ETag and Last-Modified a feed or sitemap last answered with, for a conditional GET."""
        if "_listing_state" not in self.db.table_names():
            return None, None
        row = self.conn.execute("SELECT etag, last_modified FROM _listing_state WHERE url = ?", [url]).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def save_listing_validators(self, validators: dict[str, tuple[str | None, str | None]]) -> None:
        """Remember each listing's ETag and Last-Modified (inside `transaction()`)."""
        self._ensure_listing_state()
        at = now_iso()
        self.conn.executemany(
            "INSERT OR REPLACE INTO _listing_state (url, etag, last_modified, checked_at) VALUES (?, ?, ?, ?)",
            [(url, etag, modified, at) for url, (etag, modified) in sorted(validators.items())],
        )

    # -- reads for people ----------------------------------------------------------------------

    def stories(
        self, limit: int | None = None, min_size: int = 1, since: str | None = None, by: str = "size"
    ) -> list[dict]:
        """Stories with at least `min_size` articles, and with `since` (a UTC time as stored,
        "2026-11-23T00:00:00Z") only those created or changed at or after it.

        `by="size"`: largest first (ties: earliest first); `by="updated"`: last changed first.
        The stories are picked from `stories` alone before the overview's per-story columns
        (outlets, canonical URL) are worked out: for 50 of 30,000 stories that is 0.01 s
        instead of 0.3 s, and it stays so as the database grows."""
        # The same order in `stories` (id) and in the overview (story_id).
        order, overview_order = {
            "size": ("article_count DESC, first_published, id", "article_count DESC, first_published, story_id"),
            "updated": ("updated_at DESC, id DESC", "updated_at DESC, story_id DESC"),
        }[by]
        picked = "SELECT id FROM stories WHERE article_count >= ?"
        params: list[object] = [min_size]
        if since:
            picked += " AND updated_at >= ?"
            params.append(since)
        picked += f" ORDER BY {order}"
        if limit:
            picked += " LIMIT ?"
            params.append(int(limit))
        return list(self.db.query(f"SELECT * FROM story_overview WHERE story_id IN ({picked}) ORDER BY {overview_order}", params))

    def story_count(self, min_size: int = 1, since: str | None = None) -> int:
        """How many stories `stories` lists when it is given no limit."""
        sql, params = "SELECT count(*) FROM stories WHERE article_count >= ?", [min_size]
        if since:
            sql += " AND updated_at >= ?"
            params.append(since)
        return self.conn.execute(sql, params).fetchone()[0]

    def story(self, story_id: int) -> dict | None:
        rows = list(self.db.query("SELECT * FROM story_overview WHERE story_id = ?", [story_id]))
        return rows[0] if rows else None

    def merged_into(self, story_id: int) -> int | None:
        """The story a merged story now lives in (following chains of merges), None if never merged."""
        seen = set()
        current = story_id
        while current not in seen:
            seen.add(current)
            row = self.conn.execute(
                "SELECT into_story_id FROM story_merges WHERE absorbed_story_id = ? ORDER BY rowid DESC LIMIT 1",
                (current,),
            ).fetchone()
            if row is None:
                return None if current == story_id else current
            current = row[0]
        return current

    def archived_to(self, story_id: int) -> str | None:
        """The archive database a story was moved to (`pipeline/archive.py`), None if it was not."""
        if not self.has_archived():
            return None
        row = self.conn.execute("SELECT archive FROM _archived WHERE story_id = ? LIMIT 1", (story_id,)).fetchone()
        return row[0] if row else None

    def story_of_article(self, given: str) -> tuple[int, str | None] | None:
        """The story holding the article `given` names (its id, URL or input id), and the archive
        it was moved to (None when it is here); None when nothing here knows it."""
        from .extract import canonical_url  # a URL as stored (imported here: only `show` asks)

        keys = (given, canonical_url(given) or given, given)
        row = self.conn.execute(
            "SELECT story_id FROM articles WHERE id = ? UNION ALL SELECT story_id FROM articles WHERE url = ? "
            "UNION ALL SELECT story_id FROM articles WHERE external_id = ? LIMIT 1", keys,
        ).fetchone()
        if row is not None:
            return row[0], None
        if self.has_archived():
            row = self.conn.execute(
                "SELECT story_id, archive FROM _archived WHERE article_id = ? UNION ALL SELECT story_id, archive "
                "FROM _archived WHERE url = ? UNION ALL SELECT story_id, archive FROM _archived WHERE external_id = ? "
                "LIMIT 1", keys,
            ).fetchone()
            if row is not None:
                return row[0], row[1]
        return None

    def story_members(self, story_id: int) -> list[dict]:
        return list(
            self.db.query(
                "SELECT sa.*, a.language FROM story_articles sa JOIN articles a ON a.id = sa.article_id "
                "WHERE sa.story_id = ? ORDER BY sa.is_canonical DESC, sa.similarity DESC, sa.published, sa.article_id",
                [story_id],
            )
        )

    def article(self, article_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM articles WHERE id = ?", [article_id]))
        return rows[0] if rows else None

    def search(self, text: str, limit: int | None = 20) -> list[dict]:
        """Articles matching the FTS5 query `text`, best first; all of them when `limit` is None."""
        return list(
            self.db.query(
                "SELECT a.id AS article_id, a.story_id, a.title, a.source, a.published, "
                "snippet(articles_fts, 1, '[', ']', '…', 12) AS snippet "
                "FROM articles_fts JOIN articles a ON a.rowid = articles_fts.rowid "
                "WHERE articles_fts MATCH ? ORDER BY rank LIMIT ?",
                [text, -1 if limit is None else limit],  # SQLite reads a negative LIMIT as none
            )
        )

    def search_count(self, text: str) -> int:
        """How many articles `search` finds for `text` when it is given no limit."""
        return self.conn.execute(
            "SELECT count(*) FROM articles_fts JOIN articles a ON a.rowid = articles_fts.rowid "
            "WHERE articles_fts MATCH ?",
            [text],
        ).fetchone()[0]

    def stories_with_articles(
        self, with_text: bool = True, since: str | None = None
    ) -> Iterator[tuple[dict, list[dict]]]:
        """Every story (by id) with its articles, canonical first; streamed, one story in memory at a time.

        With `since` (a UTC time as stored), only the stories created or changed at or after it."""
        text_column = ", a.text" if with_text else ""
        changed = "IN (SELECT id FROM stories WHERE updated_at >= ?)"
        params = [since] if since else []
        stories = self.db.query(
            "SELECT * FROM story_overview " + (f"WHERE story_id {changed} " if since else "") + "ORDER BY story_id",
            params,
        )
        # Both cursors walk story ids in the same order, so they can be merged without holding either.
        articles = self.db.query(
            "SELECT sa.*, a.language, a.content_hash, a.ingested_at, a.run_id, a.extra" + text_column + " FROM story_articles sa "
            "JOIN articles a ON a.id = sa.article_id " + (f"WHERE sa.story_id {changed} " if since else "")
            + "ORDER BY sa.story_id, sa.is_canonical DESC, sa.similarity DESC, sa.published, sa.article_id",
            params,
        )
        pending = next(articles, None)
        for story in stories:
            members = []
            while pending is not None and pending["story_id"] <= story["story_id"]:
                if pending["story_id"] == story["story_id"]:
                    members.append(pending)
                pending = next(articles, None)
            yield story, members

    def articles_in_stored_order(self, since: str | None = None, min_size: int = 1) -> Iterator[dict]:
        """Every article in the order it was stored (rowid), streamed; for re-ingesting them.

        With `since` (a UTC time as stored), only those ingested at or after it; with `min_size`,
        only those of stories with at least that many articles."""
        where, params = [], []
        if since:
            where.append("a.ingested_at >= ?")
            params.append(since)
        if min_size > 1:
            where.append("a.story_id IN (SELECT id FROM stories WHERE article_count >= ?)")
            params.append(min_size)
        yield from self.db.query(
            "SELECT a.external_id, a.url, a.title, a.source, a.published, a.text, a.extra, a.story_id "
            "FROM articles a " + ("WHERE " + " AND ".join(where) + " " if where else "") + "ORDER BY a.rowid",
            params,
        )

    def counts(self) -> dict[str, int]:
        return {
            table: self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("articles", "stories", "rejects")
        }


def headline_from(text: str, limit: int = 90) -> str:
    """A stand-in title for an untitled article: its first sentence, shortened."""
    first = " ".join(text.split())
    for stop in (". ", "? ", "! "):
        index = first.find(stop)
        if 0 < index < limit:
            return first[: index + 1]
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


class NeedsWriting(StoreError):
    """A read-only open found a database that must be created or migrated first."""


def rebuild_commands(path: str | Path) -> str:
    """How to rebuild the database at `path` from its own articles (docs/querying.md), for messages."""
    return f"newsdedup export --db {path} --format articles -o all.jsonl, then newsdedup ingest all.jsonl --db NEW.db"


def open_store(path: str | Path, busy_timeout_s: float = 120.0, read_only: bool = False) -> Store:
    """Open (creating if needed) the story database at `path`.

    `read_only` opens it for reading only, unless it was made by an older version and must be
    migrated first, which needs writing.

    Raises:
        StoreError: the file cannot be opened, is not a story database, or has another schema.
    """
    if read_only:
        try:
            return Store(path, busy_timeout_s, read_only=True)
        except NeedsWriting:
            pass
    return Store(path, busy_timeout_s)


def _plain(exc: BaseException) -> str:
    """SQLite's message, with what it means when it only says it cannot open the file."""
    text = str(exc)
    if "unable to open database file" in text:
        return text + " (is the directory or the file read-only, or missing?)"
    return text


def has_unmerged_writes(path: str | Path) -> bool:
    """True when the write-ahead log holds changes not yet in the main file (a writer may be active)."""
    wal = Path(f"{path}-wal")
    return wal.exists() and wal.stat().st_size > 0


def read_only_connection(path: str | Path, busy_timeout_s: float = 5.0) -> tuple[sqlite3.Connection, bool]:
    """A connection to the database at `path` that cannot write, and whether it is immutable.

    `mode=ro` first: it sees what writers commit meanwhile. It needs the write-ahead log's index
    (`-shm`) beside the database, which it creates, or finds there while a writer is at work.
    Only when it cannot open (a directory this user may not write, and no writer) is the file
    read immutable, and never while a writer's changes wait in the log: an immutable reader
    would not see them, and may find pages changing under it. (Who may write the directory says
    nothing about whether another user's ingest is writing the database meanwhile.)

    Raises:
        StoreError: neither way opens it.
        sqlite3.DatabaseError: the file is not a SQLite database.
    """
    path = Path(path)
    uri = path.resolve().as_uri()

    def connect(options: str) -> sqlite3.Connection:
        return sqlite3.connect(
            f"{uri}?{options}", uri=True, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )

    conn = None
    try:
        conn = connect("mode=ro")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens the file here
        return conn, False
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        if has_unmerged_writes(path):
            raise StoreError(
                f"cannot read {path} ({exc}) while a writer's changes wait in its write-ahead log: "
                "this user may need write access to its directory"
            ) from None
    return connect("immutable=1"), True


def columns_read_only(path: str | Path) -> dict[str, list[str]]:
    """Each table and view of a story database with its columns, read without writing anything.

    One quick read of the schema, which only a migration changes: opened immutable (no -wal or
    -shm file, works on a read-only copy) unless a writer's changes are still in the
    write-ahead log, which an immutable reader would not see.

    Raises:
        StoreError: the file is missing, not a SQLite database, or not a story database.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no story database at {path}: run 'newsdedup ingest PATH --db {path}' first")
    mode = "mode=ro" if has_unmerged_writes(path) else "immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
        try:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
            layout = {name: [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')] for name in names}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a readable SQLite database: {exc}") from None
    if "_meta" not in layout:
        raise StoreError(f"{path} is a SQLite database but not a newsdedup story database; choose another with --db")
    return layout
