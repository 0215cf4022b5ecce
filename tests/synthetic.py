"""Generated news-like corpora for robustness tests: clear-cut stories, reproducible from a seed.

Each story has its own vocabulary of invented words, so which articles belong together does
not depend on the order they arrive in; that lets crash and concurrency tests compare story
partitions exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

_COMMON = (
    "the a of to in and said on for that with was at by from as officials after new year "
    "city people government report week told monday tuesday plans council local public"
).split()
_LETTERS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_LETTERS) + rng.choice(_VOWELS) for _ in range(rng.randint(3, 4)))


def articles(stories: int, per_story: int, seed: int = 0, words: int = 120) -> list[dict]:
    """`stories * per_story` JSON Lines records with ids `s<story>-a<n>` and a `story` label."""
    rng = random.Random(seed)
    records = []
    for story in range(stories):
        vocabulary = [_word(rng) for _ in range(40)]
        for number in range(per_story):
            body = [rng.choice(vocabulary) if rng.random() < 0.5 else rng.choice(_COMMON) for _ in range(words)]
            sentences = [" ".join(body[i : i + 12]).capitalize() + "." for i in range(0, words, 12)]
            records.append(
                {
                    "id": f"s{story}-a{number}",
                    "title": " ".join(rng.sample(vocabulary, 6)).title(),
                    "text": " ".join(sentences),
                    "published": f"2024-03-{1 + story % 27:02d}",
                    "story": story,
                }
            )
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def story_partition(db_path: Path) -> frozenset[frozenset[str]]:
    """The stories in a database as a set of sets of external ids (story ids left out)."""
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        groups: dict[int, set[str]] = {}
        for story_id, external_id in conn.execute("SELECT story_id, external_id FROM articles"):
            groups.setdefault(story_id, set()).add(external_id)
    finally:
        conn.close()
    return frozenset(frozenset(group) for group in groups.values())


def consistency_problems(db_path: Path, run_finished: bool = True) -> list[str]:
    """What is wrong with a story database: SQLite and FTS integrity, foreign keys, and stories
    whose counts, canonical article or matching state disagree with their articles.

    The search index holds every article up to `_meta.fts_rowid`, each once; after a finished
    run that is every article. (A killed run may leave its last committed batch unindexed
    until the next run's first batch.)"""
    import sqlite3

    conn = sqlite3.connect(db_path)
    problems: list[str] = []
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            problems.append(f"integrity_check: {integrity[:5]}")
        foreign = conn.execute("PRAGMA foreign_key_check").fetchall()
        if foreign:
            problems.append(f"foreign_key_check: {foreign[:5]}")
        try:
            conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")
            if run_finished:  # the index also equals the articles' titles and texts
                conn.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"full-text index: {exc}")
        row = conn.execute("SELECT value FROM _meta WHERE key = 'fts_rowid'").fetchone()
        mark = int(row[0]) if row else 0
        last = conn.execute("SELECT coalesce(max(rowid), 0) FROM articles").fetchone()[0]
        indexed = conn.execute("SELECT count(*) FROM articles_fts_docsize").fetchone()[0]
        expected = conn.execute("SELECT count(*) FROM articles WHERE rowid <= ?", (mark,)).fetchone()[0]
        if indexed != expected or mark > last or (run_finished and mark != last):
            problems.append(f"search index: {indexed} documents, articles up to rowid {mark} of {last}: {expected}")
        checks = {
            "stories whose article_count is wrong": "SELECT id FROM stories s WHERE article_count != "
            "(SELECT count(*) FROM articles a WHERE a.story_id = s.id)",
            "stories without articles": "SELECT id FROM stories s WHERE NOT EXISTS "
            "(SELECT 1 FROM articles a WHERE a.story_id = s.id)",
            "stories whose canonical article is not theirs": "SELECT id FROM stories s WHERE canonical_article_id IS NULL "
            "OR canonical_article_id NOT IN (SELECT id FROM articles a WHERE a.story_id = s.id)",
            "articles without a signature": "SELECT id FROM articles WHERE id NOT IN (SELECT article_id FROM _signatures)",
            "signatures without an article": "SELECT article_id FROM _signatures WHERE article_id NOT IN (SELECT id FROM articles)",
            "stories without matching state": "SELECT id FROM stories WHERE id NOT IN (SELECT story_id FROM _story_state)",
            "articles stored twice": "SELECT external_id FROM articles GROUP BY external_id, content_hash HAVING count(*) > 1",
        }
        for label, sql in checks.items():
            rows = conn.execute(sql).fetchall()
            if rows:
                problems.append(f"{label}: {rows[:5]}")
    finally:
        conn.close()
    return problems
