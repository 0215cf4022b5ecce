"""Split: move articles an editor knows tell another event out of their story, into one of their own.

Matching joins an article to a story at `story_similarity` (docs/quality.md); a look-alike
report (the same town and officials, another event) can join the wrong one. An editor moves
it out: the articles named, with their near-duplicates (a copy's story is always its
original's), become a new story, and both stories are worked out again. The split is recorded
in `story_splits`, and story assignment never merges the two again (`assign_batch`'s kept-apart
pairs, followed through later merges); later articles of either event find their own story
through the story buckets, which name the new story from now on.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from .errors import UsageError
from .fingerprint import band_keys, index_layout, story_bands
from .remove import named_rows, named_by_path, chunked_rows
from .runlock import exclusive_run
from .settings import MatchingSettings
from .store import Store, now_iso, open_store, pack_story_ids
from .stories import STORY_PERIOD, latest_stories

log = logging.getLogger(__name__)

# A public table (people read it, as they read story_merges), made on first use.
SPLITS_SCHEMA = """CREATE TABLE IF NOT EXISTS story_splits (
    story_id INTEGER NOT NULL,
    split_from INTEGER NOT NULL,
    articles INTEGER NOT NULL,
    at TEXT NOT NULL
)"""


@dataclass(frozen=True)
class SplitReport:
    """What `split_articles` did."""

    database: str
    story_id: int  # the new story
    split_from: int
    moved: tuple[str, ...]  # article ids, copies of the named ones included
    title: str | None
    left: int  # articles the old story keeps
    seconds: float


def split_articles(
    db_path: str | Path, refs: Sequence[str], settings: MatchingSettings, busy_timeout_s: float = 120.0
) -> SplitReport:
    """Move the articles `refs` name (ids, URLs or input ids), all of one story, with their
    near-duplicates, into a new story, and keep the two apart from now on.

    Takes the database's run lock, so it waits for a running ingest.

    Raises:
        UsageError: a ref names no article here, the articles are in more than one story, or
            they are the whole story.
        ConfigError: the database was built under other matching settings (its story buckets
            are keyed by them).
    """
    started = time.monotonic()
    if not refs:
        raise UsageError("name the articles to move out of their story: their ids, URLs or input ids")
    if not os.path.exists(db_path):
        raise UsageError(f"no story database at {db_path}: nothing to split")
    with exclusive_run(db_path, f"split-{int(time.time())}"):
        store = open_store(db_path, busy_timeout_s)
        try:
            store.refuse_if_archive("split stories in")
            store.check_can_ingest(index_layout(settings))  # keys as stored
            with store.transaction():
                report = _split(store, refs, settings, str(db_path))
        finally:
            store.close()
    log.info("moved %d articles of story %d into story %d by hand", len(report.moved), report.split_from, report.story_id)
    return replace(report, seconds=time.monotonic() - started)


def _split(store: Store, refs: Sequence[str], settings: MatchingSettings, database: str) -> SplitReport:
    conn = store.conn
    named: list[str] = []
    for ref in dict.fromkeys(refs):
        found = named_rows(conn, ref, "articles", "id") or named_by_path(conn, ref, "articles", "id")
        if not found:
            raise UsageError(f"{_not_here(store, ref, database)}; nothing was moved")
        named.extend(row[0] for row in found)
    where = chunked_rows(conn, "SELECT id, story_id FROM articles WHERE id IN ({}) ORDER BY story_id, id", named)
    stories = sorted({story for _, story in where})
    if len(stories) > 1:
        listed = "; ".join(
            f"story {story}: {', '.join(a for a, s in where if s == story)}" for story in stories
        )
        raise UsageError(
            f"the articles named are in {len(stories)} stories ({listed}): split one story at a time, naming "
            "articles by id (an input read again with other content is stored once per version); nothing was moved"
        )
    old = stories[0]
    # A copy's story is its original's: originals of copies named, and copies of every original, move too.
    moving = set(named) | {r[0] for r in chunked_rows(conn, "SELECT duplicate_of FROM articles WHERE id IN ({}) AND duplicate_of IS NOT NULL", named)}
    moving |= {r[0] for r in chunked_rows(conn, "SELECT id FROM articles WHERE duplicate_of IN ({})", sorted(moving))}
    size = conn.execute("SELECT count(*) FROM articles WHERE story_id = ?", (old,)).fetchone()[0]
    if len(moving) >= size:
        raise UsageError(
            f"those are all {size} articles of story {old} (with their near-duplicates): a story cannot be split "
            "from itself; nothing was moved"
        )
    at = now_iso()
    new = store.next_story_id()
    ordered = sorted(moving)
    conn.execute("INSERT INTO stories (id, article_count, created_at, updated_at) VALUES (?, 0, ?, ?)", (new, at, at))
    conn.executemany(
        # (similarities were to the old story's canonical article: worked out again below)
        "UPDATE articles SET story_id = ?, similarity = NULL WHERE id = ?", [(new, article_id) for article_id in ordered]
    )
    store.rebuild_states([old, new])
    _add_to_buckets(store, new, ordered, settings)
    conn.execute(SPLITS_SCHEMA)
    conn.execute(
        "INSERT INTO story_splits (story_id, split_from, articles, at) VALUES (?, ?, ?, ?)", (new, old, len(ordered), at)
    )
    store.refresh_stories([old, new], at, recompute=[old, new])
    title = conn.execute("SELECT title FROM stories WHERE id = ?", (new,)).fetchone()[0]
    left = conn.execute("SELECT article_count FROM stories WHERE id = ?", (old,)).fetchone()[0]
    return SplitReport(database, new, old, tuple(ordered), title, left, 0.0)


def _not_here(store: Store, ref: str, database: str) -> str:
    """Why `ref` names no article to split here: archived, removed, or unknown."""
    from .remove import removal_of

    found = store.story_of_article(ref)
    if found is not None and found[1] is not None:
        return f"{ref!r} was archived with story {found[0]} to {found[1]}: archived stories are no longer matched"
    removal = removal_of(store.conn, ref)
    if removal is not None:
        return f"article {removal[0]} was removed on {removal[1][:10]} ({removal[2]})"
    return f"no article {ref!r} in {database}: give an article's id, URL or input id (see: newsdedup show STORY)"


def _add_to_buckets(store: Store, story_id: int, article_ids: Sequence[str], settings: MatchingSettings) -> None:
    """The new story into the story buckets of its originals' signatures, as a batch adds a
    story (most recent last, at most `story_bucket_cap`): later articles of its event find it.
    The old story stays in them too; verification tells the two apart."""
    shape = story_bands(settings)
    keys = sorted({
        (STORY_PERIOD, key)
        for (packed,) in chunked_rows(
            store.conn,
            "SELECT s.story_minhash FROM _signatures s JOIN articles a ON a.id = s.article_id "
            "WHERE a.id IN ({}) AND a.duplicate_of IS NULL",
            list(article_ids),
        )
        for key in band_keys(packed, *shape)
    })
    stored = store.story_buckets(keys)
    store.conn.executemany(
        "INSERT OR REPLACE INTO _story_buckets (period, key, stories) VALUES (?, ?, ?)",
        [
            (period, key, pack_story_ids(latest_stories([*stored.get((period, key), []), story_id], settings.story_bucket_cap)))
            for period, key in keys
        ],
    )
