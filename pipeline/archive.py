"""Archive: move stories that stopped growing out of the live story database into another one.

A feed of 100,000 articles a day adds about 1.4 GB a day to the story database, and the tables
matching reads grow with it. Stories end: once a story has had no new article for weeks, it is
history. `archive_stories` moves such stories, whole, with their articles, signatures, matching
state and search entries, into an archive database (a story database of its own, which every
read command, `check` and Datasette open as they open the live one), and leaves behind only
what re-runs need to know: which articles were archived, so inputs read again count as
unchanged instead of being stored a second time.

Two transactions, archive first: a run killed between them leaves the stories in both files,
and running the same archive again completes the move (copies are idempotent). Nothing is ever
only in neither.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ConfigError, StoreError, UsageError
from .runlock import exclusive_run
from .store import IndexReads, Store, now_iso, open_store, pack_story_ids, read_only_connection, unpack_story_ids
from .stories import latest_stories

log = logging.getLogger(__name__)

# What decides a story's age: when it last grew (the default), or the publication date of its
# newest article (for a backfill of old articles ingested at once; undated stories fall back to
# when they last grew).
BY = ("ingested", "published")

# Tables copied whole, row for row, for the stories chosen: (table, the rows that belong to
# them). Parents before children, so the archive's foreign keys hold statement by statement.
_CHOSEN_ARTICLES = "SELECT id FROM main.articles WHERE story_id IN (SELECT id FROM temp.chosen)"
_COPIED = (
    ("stories", "id IN (SELECT id FROM temp.chosen)"),
    ("articles", "story_id IN (SELECT id FROM temp.chosen)"),
    ("_signatures", f"article_id IN ({_CHOSEN_ARTICLES})"),
    ("_story_state", "story_id IN (SELECT id FROM temp.chosen)"),
    ("_lsh", f"article_id IN ({_CHOSEN_ARTICLES})"),
    ("story_merges", "into_story_id IN (SELECT id FROM temp.chosen)"),
)
# Rows of a table without a key of their own: those a killed archive copied already are
# matched by their columns, not copied twice.
_NOT_COPIED_YET = {
    "story_merges": (
        " AND NOT EXISTS (SELECT 1 FROM archive.story_merges x WHERE x.absorbed_story_id = "
        "main.story_merges.absorbed_story_id AND x.into_story_id = main.story_merges.into_story_id "
        "AND x.at = main.story_merges.at)"
    ),
}

# What re-runs need of an archived article to know it (ingest's `_not_stored` and the web
# crawler's `known_urls`): created on first use, so databases never archived need no migration.
ARCHIVED_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS _archived (
    article_id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL,
    url TEXT,
    content_hash TEXT NOT NULL,
    title TEXT,
    source TEXT,
    published TEXT,
    story_id INTEGER NOT NULL,
    archive TEXT NOT NULL,
    archived_at TEXT NOT NULL
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS _archived_external_id ON _archived(external_id)",
    "CREATE INDEX IF NOT EXISTS _archived_url ON _archived(url)",
    "CREATE INDEX IF NOT EXISTS _archived_content_hash ON _archived(content_hash)",
    "CREATE INDEX IF NOT EXISTS _archived_story_id ON _archived(story_id)",
)


@dataclass(frozen=True)
class ArchiveReport:
    """What `archive_stories` moved (or, with `dry_run`, would move)."""

    database: str
    archive: str
    before: str
    by: str
    stories: int
    articles: int
    dry_run: bool
    spared_newest: bool  # the story holding the newest article stays, whatever its age
    seconds: float


def chosen_stories(conn: sqlite3.Connection, before: str, by: str = "ingested") -> tuple[list[int], bool]:
    """The ids of stories whose last growth (or, `by="published"`, newest publication date) is
    before `before` (the stored UTC format), and whether the story of the newest article was
    left out.

    That story always stays: SQLite gives a new row the id after the highest one left, and the
    search index counts articles by id, so the newest article must stay where it is.
    """
    if by not in BY:
        raise UsageError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    # Publication dates are stored as a date or a UTC time without its "Z"; ingest times with
    # it. A date alone stands for its last second: a story last published on the cut's own day
    # did not stop before the cut (a plain string comparison put "2026-01-01" before
    # "2026-01-01T00:00:00Z").
    published = "substr(s.last_published || 'T23:59:59', 1, 19) || 'Z'"
    age = "max(a.ingested_at)" if by == "ingested" else f"coalesce({published}, max(a.ingested_at))"
    rows = conn.execute(
        f"SELECT s.id FROM stories s JOIN articles a ON a.story_id = s.id GROUP BY s.id HAVING {age} < ? ORDER BY s.id",
        (before,),
    ).fetchall()
    chosen = [row[0] for row in rows]
    newest = conn.execute("SELECT story_id FROM articles ORDER BY rowid DESC LIMIT 1").fetchone()
    if newest is not None and newest[0] in chosen:
        chosen.remove(newest[0])
        return chosen, True
    return chosen, False


def archive_stories(
    db_path: str | Path, archive_path: str | Path, before: str, by: str = "ingested", dry_run: bool = False,
    busy_timeout_s: float = 120.0,
) -> ArchiveReport:
    """Move the stories `chosen_stories` picks from the database at `db_path` into the one at
    `archive_path` (made if missing; earlier archives of the same database add up in it).

    Takes the database's run lock for its length, so it waits for a running ingest, and an
    ingest due meanwhile waits for it.

    Raises:
        UsageError: the archive is the database itself, or `by` is unknown.
        ConfigError: the archive holds articles fingerprinted under other matching settings.
    """
    started = time.monotonic()
    if os.path.realpath(db_path) == os.path.realpath(archive_path):
        raise UsageError(f"the archive must be another file than the story database ({db_path})")
    if not os.path.exists(db_path):
        raise UsageError(f"no story database at {db_path}: nothing to archive")
    # A dry run only reads: it neither waits for a running ingest nor holds the next one back.
    with nullcontext() if dry_run else exclusive_run(db_path, f"archive-{int(time.time())}"):
        live = open_store(db_path, busy_timeout_s, read_only=dry_run)
        try:
            check_archive_target(live, archive_path)
            _check_nothing_pending_elsewhere(live, archive_path, dry_run)
            chosen, spared = chosen_stories(live.conn, before, by)
            # (a temporary table: the statements below name the stories through it, whatever their number)
            _choose(live.conn, chosen)
            articles = live.conn.execute(
                "SELECT count(*) FROM articles WHERE story_id IN (SELECT id FROM temp.chosen)"
            ).fetchone()[0]
            if not dry_run:
                # First, whatever a stopped archive left copied, whether or not this run chooses
                # anything (an ingest since may have grown every story it had chosen).
                _withdraw_provisional(live, archive_path, busy_timeout_s)
            if chosen and not dry_run:
                _mark_pending(live, archive_path)
                _copy_to_archive(live, chosen, archive_path, busy_timeout_s)
                _remove_archived(live, chosen, archive_path)
            elif not dry_run:
                _mark_pending(live, None)
        finally:
            live.close()
    return ArchiveReport(
        database=str(db_path), archive=str(archive_path), before=before, by=by, stories=len(chosen),
        articles=articles, dry_run=dry_run, spared_newest=spared, seconds=time.monotonic() - started,
    )


def check_archive_target(live: Store, archive_path: str | Path) -> None:
    """Refuse an archive target that is not this database's archive: a file that is not a story
    database, or one with stories of its own or of another database. Story ids are unique
    within one database and its archive only; moved into another, its stories and these would
    share ids and merge (a QA pass mixed two outlets' stories so, and `check` failed after).

    A new file, an empty story database, or one this database archived into before (named in
    its `_archived`, for archives made before they were marked) is accepted.

    Raises:
        UsageError: what the target is, and what to give instead.
    """
    path = Path(archive_path)
    if path.is_dir():
        raise UsageError(f"--to names a directory ({path}): give the archive's file, e.g. --to {path / 'archive.db'}")
    if not path.exists():
        return
    try:
        conn, _ = read_only_connection(path)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return  # an empty file: made into an archive
            if not {"stories", "articles", "_meta"} <= tables:
                raise UsageError(f"{path} is not a story database: give a new file for the archive, or this database's archive")
            archive_of = conn.execute("SELECT value FROM _meta WHERE key = 'archive_of'").fetchone()
            has_stories = conn.execute("SELECT EXISTS (SELECT 1 FROM stories)").fetchone()[0]
        finally:
            conn.close()
    except (sqlite3.DatabaseError, StoreError) as exc:
        raise UsageError(f"{path} is not a story database ({exc}): give a new file for the archive") from None
    own = database_id(live.conn, create=False)
    if archive_of is not None:
        if archive_of[0] != own:
            raise UsageError(
                f"{path} is the archive of another story database, not of {live.path}: their story ids would "
                "collide; give a new file, or this database's own archive"
            )
        return
    if has_stories and not _archived_into(live.conn, path):
        raise UsageError(
            f"{path} is a story database of its own, not an archive of {live.path}: archiving into it would put "
            "stories with the same ids together; give a new file, or this database's own archive"
        )


_PENDING = "archive_pending"


def _check_nothing_pending_elsewhere(live: Store, archive_path: str | Path, dry_run: bool) -> None:
    """Refuse to archive into one file while an archive into another was stopped between its
    two steps: its copies are withdrawn only by a run into the same file, and a run into this
    one would copy the same stories again (a QA pass: 8,872 articles in two archives). A pending
    archive whose file is gone has nothing left to withdraw, and is forgotten."""
    row = live.conn.execute("SELECT value FROM _meta WHERE key = ?", (_PENDING,)).fetchone()
    if row is None or row[0] == os.path.abspath(archive_path):
        return
    if not os.path.exists(row[0]):
        log.warning("an archive into %s was stopped before it finished, and that file is gone", row[0])
        if not dry_run:
            _mark_pending(live, None)
        return
    raise UsageError(
        f"an archive into {row[0]} was stopped between its two steps, so its stories are in both files: "
        f"run the archive into that file again first (newsdedup archive --to {row[0]} ...), which finishes it; "
        "nothing was archived"
    )


def _mark_pending(live: Store, archive_path: str | Path | None) -> None:
    """Record (or, with None, clear) the archive this database is being copied into, before the
    copy commits: `_remove_archived` clears it in the transaction that completes the move."""
    with live.transaction():
        if archive_path is None:
            live.conn.execute("DELETE FROM _meta WHERE key = ?", (_PENDING,))
        else:
            live.conn.execute(
                "INSERT INTO _meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (_PENDING, os.path.abspath(archive_path)),
            )


def database_id(conn: sqlite3.Connection, create: bool = True) -> str | None:
    """This story database's own id (`_meta.database_id`), which its archive records as
    `archive_of`; made on first need (with `create`, inside a write transaction)."""
    row = conn.execute("SELECT value FROM main._meta WHERE key = 'database_id'").fetchone()
    if row is not None or not create:
        return row[0] if row else None
    made = uuid.uuid4().hex
    conn.execute("INSERT INTO main._meta (key, value) VALUES ('database_id', ?)", (made,))
    return made


def _archived_into(conn: sqlite3.Connection, path: Path) -> bool:
    if not IndexReads(conn).has_archived():
        return False
    return conn.execute("SELECT EXISTS (SELECT 1 FROM _archived WHERE archive = ?)", (os.path.abspath(path),)).fetchone()[0]


def _choose(conn: sqlite3.Connection, chosen: list[int]) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS chosen (id INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM temp.chosen")
    conn.executemany("INSERT INTO temp.chosen (id) VALUES (?)", [(story_id,) for story_id in chosen])


def _copy_to_archive(live: Store, chosen: list[int], archive_path: str | Path, busy_timeout_s: float) -> None:
    """The first transaction: the chosen stories' rows into the archive, and their search
    entries there. Re-running it after a crash copies nothing twice."""
    archive = open_store(archive_path, busy_timeout_s)  # made, or migrated, to this version's schema
    try:
        layout = live.conn.execute("SELECT value FROM _meta WHERE key = 'index_layout'").fetchone()
        with archive.transaction():
            if layout is not None:
                # (the layout the live database was built with, not today's settings, is what must match)
                differences = archive.layout_differences(json.loads(layout[0]))
                if differences:
                    raise ConfigError(
                        f"the archive {archive_path} holds stories fingerprinted under other matching settings than "
                        f"{live.path}'s ({differences.replace(' now ', ' in the live database ')}): give a new file "
                        "for this database's archive"
                    )
                archive.check_index_layout(json.loads(layout[0]))  # recorded in a new archive
    finally:
        archive.close()
    conn = live.conn
    conn.execute("ATTACH DATABASE ? AS archive", (str(archive_path),))
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO archive._meta (key, value) VALUES ('archive_of', ?) ON CONFLICT(key) DO NOTHING",
                (database_id(conn),),
            )
            for table, rows in _COPIED:
                # Same schema version on both sides (open_store migrated the archive): * lines up.
                conn.execute(
                    f"INSERT OR IGNORE INTO archive.{table} SELECT * FROM main.{table} "
                    f"WHERE {rows}{_NOT_COPIED_YET.get(table, '')}"
                )
            _buckets_into_archive(conn, set(chosen))
            documents = conn.execute("SELECT count(*) FROM archive.articles").fetchone()[0]
            conn.execute(
                "INSERT INTO archive._meta (key, value) VALUES ('documents', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (documents,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("DETACH DATABASE archive")
    archive = open_store(archive_path, busy_timeout_s)
    try:
        with archive.transaction():
            archive.index_new_articles()
    finally:
        archive.close()


def _withdraw_provisional(live: Store, archive_path: str | Path, busy_timeout_s: float) -> None:
    """Take out of the archive every story that still has articles in the live database: the
    copies of an archive stopped between its two steps. Until the second step, the live
    database is where a story is; an ingest between the stop and the re-run may have grown it,
    and the re-run may no longer choose it. (Before this, its grown articles stayed in both
    files, and the next archive over them broke the archive's story counts: a QA pass.) The
    re-run then copies what it chooses afresh."""
    if not os.path.exists(archive_path):
        return
    live.conn.execute("ATTACH DATABASE ? AS archive", (str(archive_path),))
    try:
        provisional = [
            row[0] for row in live.conn.execute(
                "SELECT DISTINCT a.story_id FROM archive.articles a JOIN main.articles m ON m.id = a.id"
            )
        ]
    finally:
        live.conn.execute("DETACH DATABASE archive")
    if not provisional:
        return
    archive = open_store(archive_path, busy_timeout_s)
    try:
        with archive.transaction():
            archive.index_new_articles()  # the delete trigger takes rows out of the index, which must hold them
        # (As in `_remove_archived`: no per-article scan for near-duplicates pointing at each row;
        # a copy is always in its original's story, so whole stories take their references along.)
        archive.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            _withdraw(archive, provisional)
        finally:
            archive.conn.execute("PRAGMA foreign_keys = ON")
    finally:
        archive.close()
    log.info("withdrew %d stories an interrupted archive had copied into %s", len(provisional), archive_path)


def _withdraw(archive: Store, provisional: list[int]) -> None:
    conn = archive.conn
    with archive.transaction():
        _choose(conn, provisional)
        # Buckets first, while the merges into these stories are still there to say which
        # absorbed ids go with them (the copy put those ids in the archive's buckets too).
        _buckets_left_behind(conn, set(provisional))
        # The same rows `_COPIED` names, in the archive's own tables (its `main` here).
        for table, rows in reversed(_COPIED):
            conn.execute(f"DELETE FROM main.{table} WHERE {rows}")
        # Copies made next may take the deleted rows' rowids: the search index's mark comes
        # down to what it holds (the delete trigger took the deleted rows out of it).
        conn.execute(
            "UPDATE _meta SET value = (SELECT coalesce(max(rowid), 0) FROM articles) "
            "WHERE key = 'fts_rowid' AND CAST(value AS INTEGER) > (SELECT coalesce(max(rowid), 0) FROM articles)"
        )
        conn.execute("UPDATE _meta SET value = (SELECT count(*) FROM articles) WHERE key = 'documents'")


def _remove_archived(live: Store, chosen: list[int], archive_path: str | Path) -> None:
    """The second transaction: the chosen stories out of the live database, each archived
    article remembered in `_archived`, and the highest story id kept so it is never reused."""
    conn = live.conn
    # SQLite's foreign key check would look for the children of every deleted article in
    # `articles.duplicate_of`, which has no index: a scan of the table per article (45,000
    # articles of 100,000 ran for over ten minutes). The one reference that could cross from a
    # staying row to a leaving one is checked once instead, below. (The setting cannot change
    # inside a transaction.)
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        with live.transaction():
            # A copy joins its original's story, so no staying article should be a near-duplicate
            # of a leaving one; if one is, nothing is deleted.
            crossing = conn.execute(
                "SELECT id FROM articles WHERE story_id NOT IN (SELECT id FROM temp.chosen) "
                f"AND duplicate_of IN ({_CHOSEN_ARTICLES}) LIMIT 5"
            ).fetchall()
            if crossing:
                raise StoreError(
                    "articles of stories that stay are near-duplicates of articles that would be archived "
                    f"({', '.join(row[0] for row in crossing)}): nothing was archived; run 'newsdedup check'"
                )
            # Every article is in the search index before any is deleted: the delete trigger takes
            # each deleted row out of the index, which must hold it.
            live.index_new_articles()
            for statement in ARCHIVED_SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO _archived (article_id, external_id, url, content_hash, title, source, published, "
                "story_id, archive, archived_at) SELECT id, external_id, url, content_hash, title, source, published, "
                "story_id, ?, ? FROM articles WHERE story_id IN (SELECT id FROM temp.chosen)",
                (os.path.abspath(archive_path), now_iso()),
            )
            live.remember_story_ids()
            _buckets_left_behind(conn, set(chosen))
            for table, rows in reversed(_COPIED):
                conn.execute(f"DELETE FROM main.{table} WHERE {rows}")
            conn.execute("DELETE FROM _meta WHERE key = ?", (_PENDING,))  # the move is complete
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _bucket_split(conn: sqlite3.Connection, chosen: set[int]) -> Iterator[tuple[int, int, list[int], list[int]]]:
    """(period, key, ids leaving, ids staying) of each story bucket that names a chosen story,
    or a story merged into one (a bucket lookup follows merges, `IndexReads.resolve_merged`)."""
    absorbed = {row[0] for row in conn.execute("SELECT absorbed_story_id FROM main.story_merges")}
    now_in = IndexReads(conn).resolve_merged(absorbed)
    leaving = chosen | {story_id for story_id, current in now_in.items() if current in chosen}
    for period, key, packed in conn.execute("SELECT period, key, stories FROM main._story_buckets"):
        ids = unpack_story_ids(packed)
        if leaving.isdisjoint(ids):
            continue
        yield period, key, [i for i in ids if i in leaving], [i for i in ids if i not in leaving]


def _buckets_into_archive(conn: sqlite3.Connection, chosen: set[int]) -> None:
    """Each bucket's leaving ids into the archive's bucket of the same key (after what it holds)."""
    for period, key, ids, _ in list(_bucket_split(conn, chosen)):
        row = conn.execute("SELECT stories FROM archive._story_buckets WHERE period = ? AND key = ?", (period, key)).fetchone()
        if row:
            ids = unpack_story_ids(row[0]) + ids
        conn.execute(
            "INSERT OR REPLACE INTO archive._story_buckets (period, key, stories) VALUES (?, ?, ?)",
            (period, key, pack_story_ids(latest_stories(ids, len(ids)))),
        )


def _buckets_left_behind(conn: sqlite3.Connection, chosen: set[int]) -> None:
    """Each bucket keeps its staying ids; one left with none goes."""
    split = list(_bucket_split(conn, chosen))
    conn.executemany(
        "UPDATE main._story_buckets SET stories = ? WHERE period = ? AND key = ?",
        [(pack_story_ids(staying), period, key) for period, key, _, staying in split if staying],
    )
    conn.executemany(
        "DELETE FROM main._story_buckets WHERE period = ? AND key = ?",
        [(period, key) for period, key, _, staying in split if not staying],
    )
