"""`newsdedup split`: articles moved out of their story make a story of their own, both stay
sound, and matching never merges the two again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.ingest import ingest
from pipeline.merge import merge_stories
from pipeline.split import split_articles
from pipeline.stories import StoryState, assign_batch
from tests.conftest import assert_similarities_current, assert_sound, db_rows
from tests.test_stories import _HARBOUR, _EmptyIndex, _prepared


@pytest.fixture
def live(labelled_db, tmp_path) -> Path:
    return Path(shutil.copyfile(labelled_db, tmp_path / "live.db"))


def _big_story(path: Path) -> tuple[int, list[str]]:
    story = db_rows(path, "SELECT id FROM stories ORDER BY article_count DESC, id LIMIT 1")[0][0]
    members = [r[0] for r in db_rows(path, "SELECT id FROM articles WHERE story_id = ? ORDER BY rowid", (story,))]
    return story, members


def test_articles_moved_out_make_a_story_of_their_own_and_both_stay_sound(live, settings):
    story, members = _big_story(live)
    moved = members[-2:]
    report = split_articles(live, moved, settings.matching)
    assert report.split_from == story and set(report.moved) >= set(moved)
    assert {r[0] for r in db_rows(live, "SELECT id FROM articles WHERE story_id = ?", (report.story_id,))} == set(report.moved)
    assert db_rows(live, "SELECT article_count FROM stories WHERE id = ?", (story,)) == [(len(members) - len(report.moved),)]
    assert db_rows(live, "SELECT members FROM _story_state WHERE story_id = ?", (report.story_id,)) == [(len(report.moved),)]
    assert db_rows(live, "SELECT story_id, split_from FROM story_splits") == [(report.story_id, story)]
    assert_sound(live)  # (story buckets name only stories that exist)
    assert_similarities_current(live)


def test_a_copy_goes_with_its_original_and_a_later_copy_follows_it(live, settings, tmp_path):
    story, members = _big_story(live)
    moved = members[-1]
    report = split_articles(live, [moved], settings.matching)
    title, text = db_rows(live, "SELECT title, text FROM articles WHERE id = ?", (moved,))[0]
    later = tmp_path / "later.jsonl"
    later.write_text(json.dumps({"id": "reprint-1", "title": title, "text": text + " Reprinted.", "source": "x.example"}) + "\n")
    ingest([str(later)], settings, live)
    assert db_rows(live, "SELECT story_id FROM articles WHERE external_id = 'reprint-1'") == [(report.story_id,)]
    assert_sound(live)


def test_what_cannot_be_split_says_why_and_moves_nothing(live, settings):
    story, members = _big_story(live)
    other = db_rows(live, "SELECT id FROM articles WHERE story_id != ? LIMIT 1", (story,))[0][0]
    before = live.read_bytes()
    with pytest.raises(UsageError, match="in 2 stories"):
        split_articles(live, [members[0], other], settings.matching)
    with pytest.raises(UsageError, match=f"all {len(members)} articles of story {story}"):
        split_articles(live, members, settings.matching)
    with pytest.raises(UsageError, match="no article 'nothing-here'"):
        split_articles(live, ["nothing-here"], settings.matching)
    assert live.read_bytes() == before


def test_stories_split_out_of_the_same_story_one_at_a_time_are_kept_apart_too(live, settings):
    """Two look-alikes moved out of one story by two commands are two more events: the next run
    merged them (a QA pass, three times in three)."""
    from pipeline.store import open_store

    story, members = _big_story(live)
    first = split_articles(live, [members[-1]], settings.matching)
    second = split_articles(live, [members[-2]], settings.matching)
    store = open_store(live, read_only=True)
    try:
        assert store.kept_apart({story, first.story_id, second.story_id}) == {
            frozenset((story, first.story_id)), frozenset((story, second.story_id)),
            frozenset((first.story_id, second.story_id)),
        }
    finally:
        store.close()


def test_a_name_stored_in_two_stories_lists_the_articles_to_name_instead(tmp_path, settings, seeds_dir):
    db = tmp_path / "versions.db"
    story = seeds_dir / "000_fcabe1ee31422c0a.txt"
    ingest([str(seeds_dir)], settings, db)
    story.write_text("A volcano erupted near the town this morning, officials said. " * 20, encoding="utf-8")
    ingest([str(seeds_dir)], settings, db)  # another version of the same input, another story
    versions = db_rows(db, "SELECT id FROM articles WHERE external_id = ?", (story.name,))
    with pytest.raises(UsageError, match="in 2 stories") as refused:
        split_articles(db, [story.name], settings.matching)
    assert all(v[0] in str(refused.value) for v in versions)


def test_a_merge_of_the_two_undoes_the_split(live, settings):
    story, members = _big_story(live)
    report = split_articles(live, members[-1:], settings.matching)
    merge_stories(live, [story, report.story_id])
    assert db_rows(live, "SELECT count(*) FROM story_splits") == [(0,)]
    assert_sound(live)


def test_stories_kept_apart_are_not_merged_by_an_article_that_links_both(settings):
    """Two stored stories with the same centroid, and a new article just like it: it joins one,
    and the two merge, unless an editor split them apart."""
    item = _prepared(settings, "bridge", _HARBOUR)
    vector = assign_batch([item], _EmptyIndex(), settings.matching).vectors[item.article.article_id]

    class Index(_EmptyIndex):
        def __init__(self, apart):
            self.apart = apart

        def story_buckets(self, keys):
            return {key: [1, 2] for key in keys}

        def story_states(self, story_ids):
            return {s: StoryState(s, dict(vector), 1, None, None) for s in set(story_ids) & {1, 2}}

        def next_story_id(self):
            return 3

        def kept_apart(self, story_ids):
            return self.apart

    merged = assign_batch([item], Index(set()), settings.matching)
    assert merged.merges == [(2, 1)]
    apart = assign_batch([item], Index({frozenset((1, 2))}), settings.matching)
    assert apart.merges == [] and [a.story_id for a in apart.assignments] in ([1], [2])


def test_the_command(live, capsys):
    story, members = _big_story(live)
    assert main(["split", members[-1], "--db", str(live)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"moved 1 article out of story {story} into a new story ")
    assert main(["split", members[-1], "--db", str(live), "--json"]) == 2  # all of its new story
