"""Merge: join stories an editor knows are one, as a batch's own merges join them.

Matching joins two stored stories only through a verified link at `merge_similarity`; two
outlets' reports of one event that share too few names can stay apart (docs/quality.md). An
editor who sees that merges them by hand. The merge is recorded in `story_merges`, as
automatic ones are, so every lookup of the absorbed ids (story buckets, `show`, exports of
earlier ids) follows it, and later articles of either story meet the merged one. Matching
never splits a story, so the editor's decision stays (an editor's `newsdedup split` can).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import UsageError
from .runlock import exclusive_run
from .remove import story_removal
from .store import Store, now_iso, open_store, pack_vector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeReport:
    """What `merge_stories` did."""

    database: str
    into: int
    absorbed: tuple[int, ...]
    articles: int  # in the merged story
    title: str | None
    seconds: float


def merge_stories(
    db_path: str | Path, story_ids: Sequence[int], into: int | None = None, busy_timeout_s: float = 120.0
) -> MergeReport:
    """Merge the stories `story_ids` into one: `into` if given (one of them), else the largest
    (the lowest id of equals), as a batch's merges keep the largest.

    Takes the database's run lock, so it waits for a running ingest.

    Raises:
        UsageError: fewer than two stories, or an id that is no story here (merged away
            already, archived, or never given), or `into` not among them.
    """
    started = time.monotonic()
    wanted = list(dict.fromkeys(story_ids))
    if into is not None and into not in wanted:
        wanted.insert(0, into)
    if len(wanted) < 2:
        if len(story_ids) + (into is not None) > 1:
            raise UsageError(f"story {wanted[0]} was named twice: name two different stories to merge")
        raise UsageError("name at least two stories to merge (see: newsdedup stories, newsdedup search)")
    if not os.path.exists(db_path):
        raise UsageError(f"no story database at {db_path}: nothing to merge")
    with exclusive_run(db_path, f"merge-{int(time.time())}"):
        store = open_store(db_path, busy_timeout_s)
        try:
            conn = store.conn
            store.refuse_if_archive("merge stories in")
            with store.transaction():
                sizes = dict(conn.execute(
                    f"SELECT id, article_count FROM stories WHERE id IN ({','.join('?' * len(wanted))})", wanted
                ).fetchall())
                missing = [story_id for story_id in wanted if story_id not in sizes]
                if missing:
                    raise UsageError(_why_missing(store, missing[0]))
                keep = into if into is not None else min(wanted, key=lambda s: (-sizes[s], s))
                absorbed = tuple(story_id for story_id in wanted if story_id != keep)
                states = store.story_states(wanted)
                state = states[keep]
                for story_id in absorbed:
                    state.absorb(states[story_id])
                state.trim()
                at = now_iso()
                store.remember_story_ids()
                for story_id in absorbed:
                    # As a batch records its own merges (Store.save_outcome), with no run.
                    conn.execute(
                        "INSERT INTO story_merges (absorbed_story_id, into_story_id, run_id, at) VALUES (?, ?, NULL, ?)",
                        (story_id, keep, at),
                    )
                    # (similarities to the absorbed story's canonical article: recomputed below)
                    conn.execute("UPDATE articles SET story_id = ?, similarity = NULL WHERE story_id = ?", (keep, story_id))
                    conn.execute("DELETE FROM _story_state WHERE story_id = ?", (story_id,))
                    conn.execute("DELETE FROM stories WHERE id = ?", (story_id,))
                conn.execute(
                    "UPDATE _story_state SET terms = ?, weights = ?, members = ?, first_day = ?, last_day = ? "
                    "WHERE story_id = ?",
                    (*pack_vector(state.vector_sum), state.members, state.first_day, state.last_day, keep),
                )
                store.refresh_stories([keep], at, recompute=[keep])
                _unsplit(store, keep)
                articles, title = conn.execute("SELECT article_count, title FROM stories WHERE id = ?", (keep,)).fetchone()
        finally:
            store.close()
    log.info("merged stories %s into story %d by hand", ", ".join(map(str, absorbed)), keep)
    return MergeReport(str(db_path), keep, absorbed, articles, title, time.monotonic() - started)


def _unsplit(store: Store, keep: int) -> None:
    """An editor's merge undoes their earlier splits between the stories merged: the records
    whose two sides are now one story go, so matching stops keeping them apart."""
    conn = store.conn
    if not store.has_table("story_splits"):
        return
    rows = conn.execute("SELECT rowid, story_id, split_from FROM story_splits").fetchall()
    now = store.resolve_merged({story for _, a, b in rows for story in (a, b)})
    conn.executemany(
        "DELETE FROM story_splits WHERE rowid = ?",
        [(rowid,) for rowid, a, b in rows if now.get(a) == keep and now.get(b) == keep],
    )


def _why_missing(store: Store, story_id: int) -> str:
    now = store.resolve_merged({story_id}).get(story_id)
    if now is not None and now != story_id:
        return f"story {story_id} was merged into story {now} already: name {now} instead; nothing was merged"
    archive = store.archived_to(story_id)
    if archive is not None:
        return f"story {story_id} was archived to {archive}: archived stories are no longer matched; nothing was merged"
    removal = story_removal(store.conn, story_id)
    if removal is not None:
        return f"story {story_id} was removed with its last article on {removal[0][:10]} ({removal[1]}); nothing was merged"
    return f"no story {story_id} here (see: newsdedup stories); nothing was merged"
