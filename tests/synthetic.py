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
    """What is wrong with a story database: `newsdedup check`'s problems (`pipeline.check`).

    After a finished run the search index also holds every article; a killed run may leave its
    last committed batch unindexed until the next run's first batch, which the check reports
    as a note, a problem here when `run_finished`."""
    import sqlite3

    from pipeline.check import check_database

    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    try:
        report = check_database(conn)
    finally:
        conn.close()
    problems = list(report.problems)
    if run_finished:
        problems += [note for note in report.notes if "not in the search index" in note]
    return problems
