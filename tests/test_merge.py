"""`newsdedup merge`: stories an editor joins hold every article, stay sound, and later
articles of either meet the merged story."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.archive import archive_stories
from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.ingest import ingest
from pipeline.merge import merge_stories
from tests.conftest import assert_similarities_current, assert_sound, db_rows

@pytest.fixture
def live(labelled_db, tmp_path) -> Path:
    return Path(shutil.copyfile(labelled_db, tmp_path / "live.db"))


def _two_stories(path: Path) -> tuple[int, int]:
    """A large and a smaller story of different events."""
    rows = db_rows(path, "SELECT id FROM stories WHERE article_count >= 3 ORDER BY article_count DESC, id LIMIT 2")
    return rows[0][0], rows[1][0]


def test_merged_stories_hold_every_article_and_stay_sound(live):
    large, small = _two_stories(live)
    members = {r[0] for r in db_rows(live, "SELECT id FROM articles WHERE story_id IN (?, ?)", (large, small))}
    report = merge_stories(live, [small, large])
    assert report.into == large and report.absorbed == (small,)  # the larger stays
    assert {r[0] for r in db_rows(live, "SELECT id FROM articles WHERE story_id = ?", (large,))} == members
    assert db_rows(live, "SELECT article_count FROM stories WHERE id = ?", (large,)) == [(len(members),)]
    assert db_rows(live, "SELECT members FROM _story_state WHERE story_id = ?", (large,)) == [(len(members),)]
    assert not db_rows(live, "SELECT 1 FROM stories WHERE id = ?", (small,))
    assert db_rows(live, "SELECT into_story_id, run_id FROM story_merges WHERE absorbed_story_id = ?", (small,)) == [(large, None)]
    assert_sound(live)
    assert_similarities_current(live)


def test_the_id_of_a_story_merged_away_is_never_given_again(live, settings, tmp_path):
    """Merging away the newest story let the next new story take its id, which story_merges
    still named (a QA pass: 'show 35' showed an unrelated story)."""
    import sqlite3

    with sqlite3.connect(live) as conn:  # as in a database whose runs merged nothing yet
        conn.execute("DELETE FROM _meta WHERE key = 'last_story_id'")
    newest = db_rows(live, "SELECT max(id) FROM stories")[0][0]
    oldest = db_rows(live, "SELECT min(id) FROM stories")[0][0]
    merge_stories(live, [newest, oldest], into=oldest)
    later = tmp_path / "later.jsonl"
    later.write_text(json.dumps({"id": "n1", "title": "Volcano erupts", "text": "A volcano erupted near the town " * 30}) + "\n")
    ingest([str(later)], settings, live)
    assert db_rows(live, "SELECT story_id FROM articles WHERE external_id = 'n1'")[0][0] > newest
    assert_sound(live)


def test_into_chooses_the_story_that_stays(live):
    large, small = _two_stories(live)
    report = merge_stories(live, [large, small], into=small)
    assert report.into == small and report.absorbed == (large,)
    assert_sound(live)


def test_a_later_article_of_the_absorbed_story_joins_the_merged_one(live, settings, tmp_path):
    large, small = _two_stories(live)
    title, text = db_rows(
        live, "SELECT title, text FROM articles WHERE story_id = ? ORDER BY rowid DESC LIMIT 1", (small,)
    )[0]
    merge_stories(live, [large, small])
    # The absorbed story's report again from another outlet, a few words changed: its buckets
    # name the absorbed story, and the lookup follows the merge.
    words = text.split()
    words[10:12] = ["reportedly", "today"]
    later = tmp_path / "later.jsonl"
    later.write_text(json.dumps({"id": "later-1", "title": title, "text": " ".join(words), "source": "other.example"}) + "\n")
    ingest([str(later)], settings, live)
    assert db_rows(live, "SELECT story_id FROM articles WHERE external_id = 'later-1'") == [(large,)]
    assert_sound(live)


def test_what_cannot_be_merged_says_why_and_merges_nothing(live, tmp_path):
    large, small = _two_stories(live)
    before = live.read_bytes()
    with pytest.raises(UsageError, match="at least two"):
        merge_stories(live, [large])
    with pytest.raises(UsageError, match=f"story {large} was named twice"):
        merge_stories(live, [large, large])
    with pytest.raises(UsageError, match=f"story {large} was named twice"):
        merge_stories(live, [large], into=large)
    with pytest.raises(UsageError, match="no story 999999"):
        merge_stories(live, [large, 999999])
    assert live.read_bytes() == before
    merge_stories(live, [large, small])
    with pytest.raises(UsageError, match=f"merged into story {large} already"):
        merge_stories(live, [small, 1 if large != 1 else 2])
    archive = tmp_path / "archive.db"
    archive_stories(live, archive, "2100-01-01")
    archived = db_rows(archive, "SELECT id FROM stories ORDER BY id LIMIT 2")
    with pytest.raises(UsageError, match="is an archive"):
        merge_stories(archive, [row[0] for row in archived])
    with pytest.raises(UsageError, match="was archived to"):
        merge_stories(live, [row[0] for row in archived])


def test_the_command(live, capsys):
    large, small = _two_stories(live)
    assert main(["merge", str(small), str(large), "--db", str(live)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"merged 1 story ({small}) into story {large}: now ")
    assert main(["show", str(small), "--db", str(live)]) == 2
    assert f"merged into story {large}" in capsys.readouterr().err
    assert main(["merge", str(large), "--db", str(live)]) == 2
