"""Remove: take articles out of the story database for good, and keep them out.

A newsroom takes an article down (a legal request, a retraction, a page stored by mistake): its
text, title and signatures must leave every table people or matching read, the stories it was
in must read as if it had never been stored (canonical article, title, size, dates, the
matching state later articles are compared with), and the next scheduled run, which reads the
same feed again, must not bring it back. `remove_articles` does all of that in one
transaction and leaves a row in `removed_articles` (ids, URL, content hash, reason, when; no
text or title): an input of the same article is then refused by the writer with the reason,
into `rejects`, and a crawl does not fetch its URL again; removed with its copies, its text is
refused under any URL (`refused`).

What stays: `_term_df`, how many articles each word was among (counts, no text), which term
weights are computed from. Taking one article's words out of it exactly would need the scored
terms it was counted with, which are not stored; one count among thousands moves no weight.
The article count beside it (`_meta.documents`) drops.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .errors import UsageError
from .report import plural
from .runlock import exclusive_run
from .store import IndexReads, Store, now_iso, open_store

log = logging.getLogger(__name__)

_CHUNK = 900  # host parameters a statement (SQLite allows 32,766)

# The writer's stage name for inputs it refuses because their article was removed.
STAGE = "store"

# Created on first use, so databases nothing was ever removed from need no migration. No
# title or text: what is kept is only what is needed to recognise the article when it comes back.
REMOVED_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS removed_articles (
    article_id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL,
    url TEXT,
    content_hash TEXT NOT NULL,
    story_id INTEGER,
    reason TEXT NOT NULL,
    removed_at TEXT NOT NULL,
    with_copies INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS removed_articles_url ON removed_articles(url)",
    "CREATE INDEX IF NOT EXISTS removed_articles_external_id ON removed_articles(external_id)",
    "CREATE INDEX IF NOT EXISTS removed_articles_content_hash ON removed_articles(content_hash)",
)


@dataclass(frozen=True)
class RemovedArticle:
    """One article `remove_articles` took out (or, in a dry run, would take out)."""

    article_id: str
    title: str | None
    source: str | None
    url: str | None
    story_id: int
    database: str  # the live database, or the archive the article had been moved to
    copy_of: str | None = None  # set when it goes only because it copies a removed article (with_copies)


@dataclass(frozen=True)
class RemovalReport:
    """What `remove_articles` did, or with `dry_run` would do."""

    database: str
    reason: str
    removed: tuple[RemovedArticle, ...]
    already_removed: tuple[tuple[str, str, str], ...]  # (ref, removed_at, reason)
    stories_changed: tuple[int, ...]  # stories that keep other articles
    stories_gone: tuple[int, ...]  # stories whose every article went
    copies_kept: int  # near-duplicates of removed articles that stay (without with_copies)
    dry_run: bool
    seconds: float
    archive_of: bool = False  # the database is an archive (pipeline/archive.py), not a live one


def has_removed(conn: sqlite3.Connection) -> bool:
    """Whether articles were ever removed from this database."""
    return IndexReads(conn).has_table("removed_articles")


def removal_of(conn: sqlite3.Connection, given: str) -> tuple[str, str, str] | None:
    """(article id, removed_at, reason) of the removed article `given` names (its id, URL or
    input id), None when it names none."""
    if not has_removed(conn):
        return None
    from .extract import canonical_url  # a URL as stored

    row = conn.execute(
        "SELECT article_id, removed_at, reason FROM removed_articles WHERE article_id = ? "
        "UNION ALL SELECT article_id, removed_at, reason FROM removed_articles WHERE url = ? "
        "UNION ALL SELECT article_id, removed_at, reason FROM removed_articles WHERE external_id = ? LIMIT 1",
        (given, canonical_url(given) or given, given),
    ).fetchone()
    return (row[0], row[1], row[2]) if row else None


@dataclass(frozen=True)
class Removal:
    """What the writer needs to know of a removed article to refuse it coming back."""

    removed_at: str
    reason: str
    with_copies: bool  # its text is out, whoever publishes it (removed with --with-copies)


def story_removal(conn: sqlite3.Connection, story_id: int) -> tuple[str, str] | None:
    """(removed_at, reason) of the last removal that took a story's last article, None when no
    removal did (the story is here, or went another way)."""
    if not has_removed(conn) or conn.execute("SELECT 1 FROM stories WHERE id = ?", (story_id,)).fetchone():
        return None
    row = conn.execute(
        "SELECT removed_at, reason FROM removed_articles WHERE story_id = ? ORDER BY removed_at DESC LIMIT 1", (story_id,)
    ).fetchone()
    return (row[0], row[1]) if row else None


def removed_matching(
    conn: sqlite3.Connection, article_ids: Sequence[str], content_hashes: Sequence[str]
) -> tuple[dict[str, Removal], dict[str, Removal]]:
    """Removed articles with one of `article_ids`, and those with one of `content_hashes`: each
    matched id (hash) mapped to its `Removal`."""
    if not has_removed(conn):
        return {}, {}
    found: tuple[dict[str, Removal], dict[str, Removal]] = ({}, {})
    for into, column, values in (
        (found[0], "article_id", sorted(set(article_ids))), (found[1], "content_hash", sorted(set(content_hashes))),
    ):
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, removed_at, reason, with_copies in conn.execute(
                f"SELECT {column}, removed_at, reason, with_copies FROM removed_articles WHERE {column} IN ({marks}) "
                "ORDER BY with_copies DESC",
                chunk,
            ):
                into.setdefault(key, Removal(removed_at, reason, bool(with_copies)))
    return found


def removed_urls(conn: sqlite3.Connection, urls: Sequence[str]) -> dict[str, Removal]:
    """The removed articles among `urls` (by URL or input id): a crawl does not fetch them, and
    rejects them with the reason."""
    if not has_removed(conn):
        return {}
    found: dict[str, Removal] = {}
    for start in range(0, len(urls), _CHUNK):
        chunk = list(urls[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        for column in ("url", "external_id"):
            for key, removed_at, reason, with_copies in conn.execute(
                f"SELECT {column}, removed_at, reason, with_copies FROM removed_articles WHERE {column} IN ({marks})", chunk
            ):
                found.setdefault(key, Removal(removed_at, reason, bool(with_copies)))
    return found


def refused(article_id: str, content_hash: str, url: str | None, by_id: Mapping[str, Removal], by_hash: Mapping[str, Removal]) -> Removal | None:
    """The removal that keeps an incoming article out, None if none does: the same article (its
    URL, or its input id and text), or the same text when that was removed with its copies or
    when the article comes without a URL (a file or record read again under another name). A
    reprint from another outlet of an article removed alone is its own publication, as the
    reprints stored already stay."""
    found = by_id.get(article_id)
    if found is not None:
        return found
    found = by_hash.get(content_hash)
    if found is not None and (found.with_copies or not url):
        return found
    return None


def refusal_reason(removed_at: str, reason: str) -> str:
    """The reject reason of an input whose article was removed."""
    return f"removed from this database on {removed_at[:10]} ({reason}): 'newsdedup remove' keeps it out"


def remove_articles(
    db_path: str | Path, refs: Sequence[str], reason: str, with_copies: bool = False, dry_run: bool = False,
    busy_timeout_s: float = 120.0,
) -> RemovalReport:
    """Remove the articles `refs` name (article ids, URLs or input ids) from the story database
    at `db_path`, and from the archive of those that were archived; record each in
    `removed_articles` with `reason`.

    A removed article's near-duplicates stay, one of them becoming the original of the others,
    unless `with_copies`, which removes them too. Every ref must name an article (or one removed
    already, which is reported and left alone); otherwise nothing is removed.

    Takes the database's run lock, so it waits for a running ingest or archive.

    Raises:
        UsageError: a ref names no article, the reason is empty, or there is no database.
    """
    started = time.monotonic()
    reason = " ".join(reason.split())
    if not reason:
        raise UsageError("give the reason for the removal (--reason): it is recorded with the article and shown when it comes back")
    if not refs:
        raise UsageError("name at least one article to remove: its id, URL or input id")
    if not os.path.exists(db_path):
        raise UsageError(f"no story database at {db_path}: nothing to remove")
    with nullcontext() if dry_run else exclusive_run(db_path, f"remove-{int(time.time())}"):
        live = open_store(db_path, busy_timeout_s, read_only=dry_run)
        try:
            here, archived, already = _find(live.conn, refs, db_path)
            is_archive = live.is_archive()
            plan = _plan(live.conn, here, with_copies, str(db_path))
            removed = list(plan.removed)
            changed, gone, kept = set(plan.changed), set(plan.gone), plan.copies_kept
            for archive_path, named in sorted(archived.items()):
                archive_plan = _archive_removal(archive_path, named, reason, with_copies, dry_run, busy_timeout_s)
                removed.extend(archive_plan.removed)
                changed |= set(archive_plan.changed)
                gone |= set(archive_plan.gone)
                kept += archive_plan.copies_kept
            if not dry_run and removed:
                with _unchecked_references(live), live.transaction():
                    _apply(live, plan, reason)
                    _forget_archived(live.conn, [r for r in removed if r.database != str(db_path)], reason, with_copies)
        finally:
            live.close()
    if not dry_run:
        for article in removed:  # (no title or URL: logs outlive the removal)
            log.info("removed article %s from story %d: %s", article.article_id, article.story_id, reason)
    return RemovalReport(
        database=str(db_path), reason=reason, removed=tuple(removed), already_removed=tuple(already),
        stories_changed=tuple(sorted(changed - gone)), stories_gone=tuple(sorted(gone)), copies_kept=kept,
        dry_run=dry_run, seconds=time.monotonic() - started, archive_of=is_archive,
    )


def _find(
    conn: sqlite3.Connection, refs: Sequence[str], db_path: str | Path
) -> tuple[list[str], dict[str, list[RemovedArticle]], list[tuple[str, str, str]]]:
    """The article ids `refs` name here, the archived articles they name (by archive), and refs
    removed before. A ref names every article stored under it: an input read again with other
    content is stored again, under the same URL or input id."""
    here: list[str] = []
    archived: dict[str, list[RemovedArticle]] = {}
    already: list[tuple[str, str, str]] = []
    unknown: list[str] = []
    has_archived = IndexReads(conn).has_archived()
    for ref in dict.fromkeys(refs):
        found = named_rows(conn, ref, "articles", "id")
        archived_rows = named_rows(conn, ref, "_archived", "article_id", "archive, title, source, url, story_id") if has_archived else []
        if not found and not archived_rows:
            # A file given by another path than the one it was ingested by (seeds/a.txt for a.txt).
            found = named_by_path(conn, ref, "articles", "id")
            archived_rows = named_by_path(conn, ref, "_archived", "article_id", "archive, title, source, url, story_id") if has_archived else []
        here.extend(row[0] for row in found)
        for article_id, archive, title, source, url, story_id in archived_rows:
            archived.setdefault(archive, []).append(RemovedArticle(article_id, title, source, url, story_id, archive))
        if found or archived_rows:
            continue
        removal = removal_of(conn, ref)
        if removal is not None:
            already.append((ref, removal[1], removal[2]))
            continue
        unknown.append(ref)
    if unknown:
        raise UsageError(
            f"no article {', '.join(map(repr, unknown[:5]))}{' and more' if len(unknown) > 5 else ''} in {db_path}: "
            "give an article's id, its URL as stored, or its input id (the URL given, the file's path as ingested, "
            "a JSON Lines record's id); 'newsdedup show STORY' lists a story's, 'newsdedup search WORDS' finds one; "
            "nothing was removed"
        )
    return list(dict.fromkeys(here)), archived, already


def named_rows(conn: sqlite3.Connection, ref: str, table: str, id_column: str, more: str = "") -> list[tuple]:
    """Rows of `table` whose id, URL (as stored: canonical) or input id is `ref`."""
    from .extract import canonical_url  # a URL as stored

    columns = f"{id_column}{', ' + more if more else ''}"
    url = canonical_url(ref) or ref
    rows = conn.execute(
        f"SELECT {columns} FROM {table} WHERE {id_column} = ? UNION SELECT {columns} FROM {table} WHERE url = ? "
        f"UNION SELECT {columns} FROM {table} WHERE external_id = ?",
        (ref, url, ref),
    ).fetchall()
    return sorted(rows)


def named_by_path(conn: sqlite3.Connection, ref: str, table: str, id_column: str, more: str = "") -> list[tuple]:
    """Rows of `table` stored from a file `ref` names by another path: their input id (the path
    as ingested, relative to the directory named) is the end of `ref`'s path. The longest such
    input id wins (b/story.txt before story.txt)."""
    if ref.startswith(("http://", "https://")) or "/" not in ref and not os.path.exists(ref):
        return []
    path = os.path.abspath(ref)
    columns = f"{id_column}{', ' + more if more else ''}"
    # (A scan of the table's input ids: a few hundred milliseconds at 100,000 articles, once a name.)
    rows = conn.execute(
        f"SELECT external_id, {columns} FROM {table} WHERE url IS NULL AND length(external_id) < length(?1) "
        "AND substr(?1, -length(external_id)) = external_id AND substr(?1, -length(external_id) - 1, 1) = '/'",
        (path,),
    ).fetchall()
    if not rows:
        return []
    longest = max(len(row[0]) for row in rows)
    return sorted(row[1:] for row in rows if len(row[0]) == longest)


@dataclass(frozen=True)
class _Plan:
    removed: tuple[RemovedArticle, ...]
    changed: tuple[int, ...]
    gone: tuple[int, ...]
    copies_kept: int
    # (new original, the copies that now point at it) for each removed original whose copies stay
    reoriginals: tuple[tuple[str, tuple[str, ...]], ...]
    with_copies: bool = False


def _plan(conn: sqlite3.Connection, article_ids: Sequence[str], with_copies: bool, database: str) -> _Plan:
    """What removing `article_ids` means: which articles go (their copies too, `with_copies`),
    which stories shrink or go, and which copies become originals. Reads only."""
    if not article_ids:
        return _Plan((), (), (), 0, (), with_copies)
    going: dict[str, str | None] = {article_id: None for article_id in article_ids}
    if with_copies:
        # A copy named stands for its text: its original goes too, and with it every copy.
        originals = chunked_rows(conn, "SELECT duplicate_of FROM articles WHERE id IN ({}) AND duplicate_of IS NOT NULL", list(going))
        going.update((original, None) for (original,) in originals if original not in going)
        frontier = list(going)
        while frontier:  # copies point at originals, which copy nothing: one round in practice
            found = chunked_rows(conn, "SELECT id, duplicate_of FROM articles WHERE duplicate_of IN ({})", frontier)
            frontier = [article_id for article_id, _ in found if article_id not in going]
            going.update((article_id, of) for article_id, of in found if article_id not in going)
    rows = chunked_rows(conn, "SELECT id, title, source, url, story_id FROM articles WHERE id IN ({}) ORDER BY rowid", list(going))
    removed = tuple(RemovedArticle(r[0], r[1], r[2], r[3], r[4], database, going[r[0]]) for r in rows)
    stories = sorted({article.story_id for article in removed})
    left = dict(chunked_rows(
        conn, "SELECT story_id, count(*) FROM articles WHERE story_id IN ({}) AND id NOT IN temp_going GROUP BY story_id",
        stories, going=list(going),
    ))
    gone = tuple(story_id for story_id in stories if not left.get(story_id))
    changed = tuple(story_id for story_id in stories if left.get(story_id))
    copies = chunked_rows(
        conn, "SELECT duplicate_of, id FROM articles WHERE duplicate_of IN ({}) AND id NOT IN temp_going ORDER BY rowid",
        list(going), going=list(going),
    )
    by_original: dict[str, list[str]] = {}
    for original, copy in copies:
        by_original.setdefault(original, []).append(copy)
    reoriginals = tuple((ids[0], tuple(ids[1:])) for _, ids in sorted(by_original.items()))
    return _Plan(removed, changed, gone, len(copies), reoriginals, with_copies)


def chunked_rows(conn: sqlite3.Connection, sql: str, values: Sequence, going: Sequence[str] | None = None) -> list[tuple]:
    """`sql` run over `values` in chunks ({} takes the placeholders); `temp_going` in it stands
    for the list `going`, passed as a JSON array (no temporary table: a dry run only reads)."""
    found: list[tuple] = []
    extra: list = []
    if going is not None:
        sql = sql.replace("temp_going", "(SELECT value FROM json_each(?))")
        extra = [json.dumps(list(going))]
    for start in range(0, len(values), _CHUNK):
        chunk = list(values[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        found.extend(conn.execute(sql.format(marks), [*chunk, *extra]).fetchall())
    return found


def _apply(store: Store, plan: _Plan, reason: str) -> None:
    """Carry `plan` out on `store`, inside its transaction."""
    from .archive import _buckets_left_behind  # the same bucket clean-up an archive does

    if not plan.removed:
        return
    conn = store.conn
    at = now_iso()
    # The delete trigger takes each deleted row out of the search index, which must hold it.
    store.index_new_articles()
    for statement in REMOVED_SCHEMA:
        conn.execute(statement)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS going (id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM temp.going")
    conn.executemany("INSERT INTO temp.going (id) VALUES (?)", [(a.article_id,) for a in plan.removed])
    conn.execute(
        "INSERT OR REPLACE INTO removed_articles (article_id, external_id, url, content_hash, story_id, reason, "
        "removed_at, with_copies) SELECT id, external_id, url, content_hash, story_id, ?, ?, ? FROM articles "
        "WHERE id IN (SELECT id FROM temp.going)",
        (reason, at, int(plan.with_copies)),
    )
    # Copies that stay: the earliest becomes the original the others copy.
    for original, others in plan.reoriginals:
        conn.execute("UPDATE articles SET duplicate_of = NULL WHERE id = ?", (original,))
        conn.executemany("UPDATE articles SET duplicate_of = ? WHERE id = ?", [(original, other) for other in others])
    store.remember_story_ids()  # a later story never takes a removed one's id
    # (One scan of the near-duplicate index for all of them: it is keyed by bucket, not article.)
    conn.execute("DELETE FROM _lsh WHERE article_id IN (SELECT id FROM temp.going)")
    conn.execute("DELETE FROM _signatures WHERE article_id IN (SELECT id FROM temp.going)")
    conn.execute("DELETE FROM articles WHERE id IN (SELECT id FROM temp.going)")
    # The article count term weights are based on drops with them; their words stay counted in
    # `_term_df` (see the module's docstring).
    conn.execute("UPDATE _meta SET value = CAST(value AS INTEGER) - ? WHERE key = 'documents'", (len(plan.removed),))
    if plan.gone:
        gone = set(plan.gone)
        _buckets_left_behind(conn, gone)
        absorbed = {row[0] for row in conn.execute("SELECT absorbed_story_id FROM story_merges")}
        ended = gone | {story for story, now in IndexReads(conn).resolve_merged(absorbed).items() if now in gone}
        conn.executemany("DELETE FROM story_merges WHERE into_story_id = ?", [(story,) for story in sorted(ended)])
        conn.executemany("DELETE FROM _story_state WHERE story_id = ?", [(story,) for story in sorted(gone)])
        conn.executemany("DELETE FROM stories WHERE id = ?", [(story,) for story in sorted(gone)])
    store.rebuild_states(plan.changed)
    store.refresh_stories(plan.changed, at, recompute=plan.changed)
    # A row stored next may take a deleted row's rowid: the search index's mark comes down to
    # the last row it holds.
    conn.execute(
        "UPDATE _meta SET value = (SELECT coalesce(max(rowid), 0) FROM articles) "
        "WHERE key = 'fts_rowid' AND CAST(value AS INTEGER) > (SELECT coalesce(max(rowid), 0) FROM articles)"
    )
    conn.execute("DROP TABLE temp.going")


@contextmanager
def _unchecked_references(store: Store) -> Iterator[None]:
    """SQLite's foreign key checks off for the block (set outside a transaction): deleting an
    article makes it look for rows pointing at it in `articles.duplicate_of`, which has no index,
    a scan of every article's row per article. `_apply` repoints those rows itself first."""
    store.conn.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        store.conn.execute("PRAGMA foreign_keys = ON")


def _archive_removal(
    archive_path: str, named: list[RemovedArticle], reason: str, with_copies: bool, dry_run: bool, busy_timeout_s: float
) -> _Plan:
    """Archived articles are removed from their archive first (its own transaction): stopped
    between the two, the next removal finds them recorded as archived still, and finishes.

    Raises:
        UsageError: the archive is not where it was written: its copy of the text would stay.
    """
    if not os.path.exists(archive_path):
        raise UsageError(
            f"{plural(len(named), 'article')} named ({named[0].article_id}{', ...' if len(named) > 1 else ''}) "
            f"{'was' if len(named) == 1 else 'were'} archived to {archive_path}, which is not there: its text would "
            "stay in the archive wherever it is now; put the archive back at that path (or link it there) and run "
            "this again; nothing was removed"
        )
    article_ids = [article.article_id for article in named]
    archive = open_store(archive_path, busy_timeout_s, read_only=dry_run)
    try:
        present = [row[0] for row in chunked_rows(archive.conn, "SELECT id FROM articles WHERE id IN ({})", article_ids)]
        plan = _plan(archive.conn, present, with_copies, archive_path)
        if not dry_run:
            with _unchecked_references(archive), archive.transaction():
                _apply(archive, plan, reason)
    finally:
        archive.close()
    # Those a stopped removal (or one run on the archive itself) took out already are still to
    # be forgotten here: named as the live database recorded them.
    done = {article.article_id for article in plan.removed}
    missing = tuple(article for article in named if article.article_id not in done)
    return _Plan(plan.removed + missing, plan.changed, plan.gone, plan.copies_kept, plan.reoriginals, with_copies)


def _forget_archived(conn: sqlite3.Connection, removed: Sequence[RemovedArticle], reason: str, with_copies: bool) -> None:
    """Archived articles removed from their archive: their `_archived` record in the live
    database becomes a `removed_articles` one (no title left here either)."""
    if not removed or not IndexReads(conn).has_archived():
        return
    for statement in REMOVED_SCHEMA:
        conn.execute(statement)
    ids = [(article.article_id,) for article in removed]
    # They leave the article count term weights are based on, as removed articles do (`_apply`).
    recorded = sum(
        conn.execute("SELECT count(*) FROM _archived WHERE article_id = ?", article_id).fetchone()[0] for article_id in ids
    )
    conn.execute("UPDATE _meta SET value = CAST(value AS INTEGER) - ? WHERE key = 'documents'", (recorded,))
    conn.executemany(
        "INSERT OR REPLACE INTO removed_articles (article_id, external_id, url, content_hash, story_id, reason, "
        "removed_at, with_copies) SELECT article_id, external_id, url, content_hash, story_id, ?, ?, ? FROM _archived "
        "WHERE article_id = ?",
        [(reason, now_iso(), int(with_copies), article_id) for (article_id,) in ids],
    )
    conn.executemany("DELETE FROM _archived WHERE article_id = ?", ids)


def as_rows(report: RemovalReport) -> list[Mapping[str, object]]:
    """The report's articles as plain rows (for --json)."""
    return [
        {"article_id": a.article_id, "story_id": a.story_id, "title": a.title, "source": a.source, "url": a.url,
         "database": a.database, "copy_of": a.copy_of}
        for a in report.removed
    ]
