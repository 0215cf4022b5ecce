"""Is a story database whole? SQLite's own checks, then what newsdedup's tables promise each other.

For an operator after a crash, a full disk, a copy between machines or a restore from backup:
`newsdedup check` answers before anything more is built on the database. Every check reads,
so it works on a read-only copy and beside a run that is writing (it sees one snapshot).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Callable, TypeVar

from .remove import has_removed
from .store import IndexReads, unpack_story_ids

T = TypeVar("T")

# At most this many offending keys are named per problem: enough to look one up.
_EXAMPLES = 5

# What the writer keeps true after every committed batch (`ingest.commit_batch`): each query
# lists the keys that break it. Foreign keys (article -> story, signature -> article, matching
# state -> story) are SQLite's own `foreign_key_check`, run before these.
INVARIANTS: dict[str, str] = {
    "stories whose article_count is wrong": (
        "SELECT id FROM stories s WHERE article_count != (SELECT count(*) FROM articles a WHERE a.story_id = s.id)"
    ),
    "stories without articles": (
        "SELECT id FROM stories s WHERE NOT EXISTS (SELECT 1 FROM articles a WHERE a.story_id = s.id)"
    ),
    "stories whose canonical article is not theirs": (
        "SELECT id FROM stories s WHERE canonical_article_id IS NULL "
        "OR canonical_article_id NOT IN (SELECT id FROM articles a WHERE a.story_id = s.id)"
    ),
    # A story merged away lives on in story_merges (show follows it, exports named it): its id
    # given to a new story would make both mean two things.
    "stories whose id was merged into another story": (
        "SELECT id FROM stories WHERE id IN (SELECT absorbed_story_id FROM story_merges)"
    ),
    "articles without a signature": "SELECT id FROM articles WHERE id NOT IN (SELECT article_id FROM _signatures)",
    "signatures without an article": "SELECT article_id FROM _signatures WHERE article_id NOT IN (SELECT id FROM articles)",
    "stories without matching state": "SELECT id FROM stories WHERE id NOT IN (SELECT story_id FROM _story_state)",
    "articles stored twice": (
        "SELECT external_id FROM articles GROUP BY external_id, content_hash HAVING count(*) > 1"
    ),
    # The matching state: what later runs compare new articles with. Damage here loses no row
    # people read, but later articles would miss matches or be weighed against wrong counts.
    "stories whose matching state counts other members": (
        # against the articles themselves, not `article_count`: a wrong count is its own problem
        "SELECT t.story_id FROM _story_state t WHERE t.members != "
        "(SELECT count(*) FROM articles a WHERE a.story_id = t.story_id)"
    ),
    "articles missing from the near-duplicate index": (
        "SELECT id FROM articles WHERE id NOT IN (SELECT article_id FROM _lsh)"
    ),
    "near-duplicate index entries of articles that are gone": (
        "SELECT DISTINCT article_id FROM _lsh WHERE article_id NOT IN (SELECT id FROM articles)"
    ),
    "story buckets that are not whole story ids": (
        "SELECT period || ':' || key FROM _story_buckets WHERE length(stories) = 0 OR length(stories) % 4 != 0"
    ),
    # (A database older than the count has no row for it: nothing to compare. Archived articles
    # stay counted: the term statistics cover every article the database ever stored; removed
    # ones leave the count.)
    "the article count term weights are based on (_meta.documents) is wrong": (
        "SELECT value FROM _meta WHERE key = 'documents' "
        "AND CAST(value AS INTEGER) != (SELECT count(*) FROM articles) + {archived}"
    ),
}
# Only in a database stories were archived from (pipeline/archive.py).
ARCHIVE_INVARIANTS: dict[str, str] = {
    "articles both stored here and recorded as archived": (
        "SELECT id FROM articles WHERE id IN (SELECT article_id FROM _archived)"
    ),
    "story ids given again after an archive (_meta.last_story_id)": (
        "SELECT value FROM _meta WHERE key = 'last_story_id' "
        "AND CAST(value AS INTEGER) < (SELECT coalesce(max(story_id), 0) FROM _archived)"
    ),
}
# Only in a database articles were removed from (pipeline/remove.py).
REMOVED_INVARIANTS: dict[str, str] = {
    "articles both stored here and recorded as removed": (
        "SELECT id FROM articles WHERE id IN (SELECT article_id FROM removed_articles)"
    ),
}


@dataclass(frozen=True)
class CheckReport:
    """What `check_database` found: problems (the database is not whole) and notes (it is, but
    something is worth knowing)."""

    articles: int | None  # None: damaged beyond counting
    stories: int | None
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    # Articles moved to an archive (`newsdedup archive`) and taken out (`newsdedup remove`): with
    # `articles`, every input the database ever stored.
    archived: int = 0
    removed: int = 0

    @property
    def sound(self) -> bool:
        return not self.problems


def check_database(conn: sqlite3.Connection, quick: bool = False) -> CheckReport:
    """Check the story database on `conn`, a connection in autocommit mode (`isolation_level=None`).

    The checks read in one snapshot, so a run committing meanwhile cannot make the tables seem
    to disagree, and they hold nobody back. Then, where the connection may write, FTS5's check
    of the search index, which SQLite takes as a write: it waits for a batch being committed
    (the busy timeout) and holds the next one back while it reads the index. On a read-only
    connection that one check is left out, and a note says so.

    `quick` runs SQLite's `quick_check` (no comparison of indexes with their tables: much
    faster on a large database) instead of its full `integrity_check`.
    """
    problems: list[str] = []
    notes: list[str] = []
    conn.execute("BEGIN")
    try:
        pragma = "quick_check" if quick else "integrity_check"
        integrity = _unless_damaged(problems, pragma, lambda: [row[0] for row in conn.execute(f"PRAGMA {pragma}({_EXAMPLES})")])
        if integrity not in (["ok"], None):
            # One line a problem: SQLite's report has a line per damaged page.
            problems.append(f"SQLite's {pragma}: " + "; ".join(" ".join(row.split()) for row in integrity))
        foreign = _unless_damaged(problems, "foreign_key_check", lambda: conn.execute("PRAGMA foreign_key_check").fetchall())
        if foreign:
            problems.append(
                f"rows pointing at rows that are gone (foreign_key_check): {len(foreign):,}, e.g. "
                + ", ".join(f"{table} row {rowid} -> {parent}" for table, rowid, parent, _ in foreign[:_EXAMPLES])
            )
        archived = _unless_damaged(problems, "the schema", IndexReads(conn).has_archived)
        removed = _unless_damaged(problems, "the schema", lambda: has_removed(conn))
        invariants = {
            **INVARIANTS, **(ARCHIVE_INVARIANTS if archived else {}), **(REMOVED_INVARIANTS if removed else {}),
        }
        for label, sql in invariants.items():
            sql = sql.format(archived="(SELECT count(*) FROM _archived)" if archived else "0")
            keys = _unless_damaged(problems, label, lambda: [row[0] for row in conn.execute(f"{sql} LIMIT {_EXAMPLES}")])
            if keys:
                problems.append(f"{label}: e.g. {', '.join(map(str, keys))}")
        problems.extend(_unless_damaged(problems, "story buckets", lambda: _story_bucket_problems(conn)) or [])
        problems.extend(_unless_damaged(problems, "the search index", lambda: _search_index_problems(conn, notes)) or [])
        articles = _unless_damaged(problems, "articles", lambda: conn.execute("SELECT count(*) FROM articles").fetchone()[0])
        stories = _unless_damaged(problems, "stories", lambda: conn.execute("SELECT count(*) FROM stories").fetchone()[0])
        archived_count = _unless_damaged(
            problems, "_archived", lambda: conn.execute("SELECT count(*) FROM _archived").fetchone()[0] if archived else 0
        )
        removed_count = _unless_damaged(
            problems, "removed_articles",
            lambda: conn.execute("SELECT count(*) FROM removed_articles").fetchone()[0] if removed else 0,
        )
    finally:
        if conn.in_transaction:  # (SQLite ends it itself after some errors)
            conn.execute("ROLLBACK")
    problems.extend(_search_index_structure_problems(conn, notes))
    return CheckReport(articles, stories, tuple(problems), tuple(notes), archived_count or 0, removed_count or 0)


def _unless_damaged(problems: list[str], what: str, read: Callable[[], T]) -> T | None:
    """`read()`, or None with a problem noted if SQLite finds the pages it needs damaged: the
    other checks still run, and the report says everything that could not be read."""
    try:
        return read()
    except sqlite3.OperationalError:
        raise  # locked, out of memory, interrupted: not a finding about the database
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        problems.append(f"{what}: could not be read ({exc})")
        return None


def _story_bucket_problems(conn: sqlite3.Connection) -> list[str]:
    """Every story id a story bucket names is a story, or one merged into another (lookups
    follow the merge). The buckets' ids are unpacked all at once, not bucket by bucket."""
    packed = b"".join(
        blob for (blob,) in conn.execute("SELECT stories FROM _story_buckets WHERE length(stories) % 4 = 0")
    )
    known = {row[0] for row in conn.execute("SELECT id FROM stories UNION SELECT absorbed_story_id FROM story_merges")}
    unknown = sorted(set(unpack_story_ids(packed)) - known)
    if not unknown:
        return []
    return [
        f"story buckets naming stories that never existed: {len(unknown):,}, e.g. "
        + ", ".join(map(str, unknown[:_EXAMPLES]))
    ]


def _indexed_up_to(conn: sqlite3.Connection) -> tuple[int, int]:
    """The rowid the search index holds articles up to (`_meta.fts_rowid`), and the last article's."""
    row = conn.execute("SELECT value FROM _meta WHERE key = 'fts_rowid'").fetchone()
    last = conn.execute("SELECT coalesce(max(rowid), 0) FROM articles").fetchone()[0]
    return (int(row[0]) if row else 0), last


def _search_index_problems(conn: sqlite3.Connection, notes: list[str]) -> list[str]:
    """The search index holds each article up to `_meta.fts_rowid` once. Articles after it are
    a note, not a problem: a run indexes its last batch after committing it, and a run killed
    in between leaves it to the next run's first batch (docs/guarantees.md)."""
    mark, last = _indexed_up_to(conn)
    indexed = conn.execute("SELECT count(*) FROM articles_fts_docsize").fetchone()[0]
    expected = conn.execute("SELECT count(*) FROM articles WHERE rowid <= ?", (mark,)).fetchone()[0]
    if indexed != expected or mark > last:
        return [
            f"the search index holds {indexed:,} articles where it should hold {expected:,} "
            f"(those up to rowid {mark:,})"
        ]
    if mark < last:
        waiting = conn.execute("SELECT count(*) FROM articles WHERE rowid > ?", (mark,)).fetchone()[0]
        notes.append(
            f"{waiting:,} of the latest articles are not in the search index yet: "
            + (
                # (an archive is never ingested into: the archive that copied them indexes them)
                "running the archive that copied them again adds them"
                if IndexReads(conn).is_archive()
                else "the next ingest run adds them"
            )
        )
    return []


def _search_index_structure_problems(conn: sqlite3.Connection, notes: list[str]) -> list[str]:
    """FTS5's own check of the search index; with every article indexed, also of each entry
    against the article's title and text. Run in a write transaction, as SQLite requires."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        mark, last = _indexed_up_to(conn)
        conn.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('integrity-check', ?)", (int(mark == last),))
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc):  # locked past the busy timeout, say: not a finding about the index
            raise
        # A read-only connection: BEGIN IMMEDIATE passes, the check does not.
        notes.append("the search index's own structure was not checked: the database could only be read")
        return []
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT_VTAB: the index disagrees with itself or the texts
        return [f"the search index is damaged ({exc})"]
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # nothing was written
    return []
