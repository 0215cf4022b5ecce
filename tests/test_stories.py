"""Story assignment: near-duplicates, same-story joins, look-alikes apart, canonical choice."""

import json
import random

from pipeline.ingest import ingest
from pipeline.store import open_store
from collections import Counter

from hypothesis import given, strategies as st

from pipeline.stories import Member, StoryState, _best_voted, canonical_member

SEED_FILES = ["000_fcabe1ee31422c0a.txt", "001_b6e53b65f60d6b35.txt", "002_9b09696b92a8c3a1.txt",
              "003_983031de6f07e060.txt", "004_b8829e27ab2bd9c2.txt"]


def rows(db, sql, params=()):
    store = open_store(db)
    try:
        return list(store.db.query(sql, params))
    finally:
        store.close()


def edited(text: str, fraction: float, rng: random.Random) -> str:
    """`text` with about `fraction` of its words replaced, as a light copy-edit would."""
    words = text.split()
    for index in rng.sample(range(len(words)), int(len(words) * fraction)):
        words[index] = rng.choice(["reportedly", "officials", "Tuesday", "meanwhile", "statement"])
    return " ".join(words)


def test_the_five_seeds_form_one_story(seeds_dir, db_path, settings):
    ingest([str(seeds_dir)], settings, db_path)
    stories = rows(db_path, "SELECT id, article_count FROM stories")
    assert [s["article_count"] for s in stories] == [5]
    assert rows(db_path, "SELECT count(*) AS n FROM articles WHERE duplicate_of IS NOT NULL")[0]["n"] == 0


def test_a_reprint_and_a_light_edit_are_near_duplicates_of_the_original(seeds_dir, db_path, settings):
    original = (seeds_dir / SEED_FILES[4]).read_text()
    title, body = original.split("\n", 1)
    rng = random.Random(3)
    records = [
        {"id": "wire-copy", "title": title, "text": body, "source": "reprint.example"},
        {"id": "light-edit", "title": title, "text": edited(body, 0.05, rng), "source": "edit.example"},
    ]
    extra = seeds_dir.parent / "copies.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in records))
    ingest([str(seeds_dir)], settings, db_path)
    ingest([str(extra)], settings, db_path)
    found = {r["external_id"]: r for r in rows(db_path, "SELECT external_id, duplicate_of, story_id, id FROM articles")}
    original_id = found[SEED_FILES[4]]["id"]
    assert found["wire-copy"]["duplicate_of"] == original_id
    assert found["light-edit"]["duplicate_of"] == original_id
    assert len({r["story_id"] for r in found.values()}) == 1
    assert rows(db_path, "SELECT article_count FROM stories")[0]["article_count"] == 7


def test_near_duplicates_are_looked_up_within_weeks_and_identical_copies_at_any_distance(seeds_dir, tmp_path, settings):
    """Stored near-duplicate buckets are partitioned by publication period (LSH_PERIOD_DAYS):
    a light edit published days after its original is found, one published a year later is
    not (it may still join the story); an identical copy is found by its content hash."""
    original = (seeds_dir / SEED_FILES[4]).read_text()
    title, body = original.split("\n", 1)
    light = edited(body, 0.05, random.Random(3))
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"id": "original", "title": title, "text": body, "published": "2024-03-01"}) + "\n")
    later = tmp_path / "later.jsonl"
    later.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                {"id": "edit-days-later", "title": title, "text": light, "published": "2024-03-04"},
                {"id": "edit-a-year-later", "title": title, "text": light + " Update.", "published": "2025-03-01"},
                {"id": "copy-a-year-later", "title": title, "text": body, "published": "2025-03-02"},
            )
        )
    )
    db = tmp_path / "stories.db"
    ingest([str(first)], settings, db)
    # One article per run, so each is matched against the stored ones, not within a batch.
    for line in later.read_text().splitlines():
        single = tmp_path / "single.jsonl"
        single.write_text(line + "\n")
        ingest([str(single)], settings, db)
    found = {r["external_id"]: r for r in rows(db, "SELECT external_id, duplicate_of, id FROM articles")}
    original_id = found["original"]["id"]
    assert found["edit-days-later"]["duplicate_of"] == original_id
    assert found["edit-a-year-later"]["duplicate_of"] is None
    assert found["copy-a-year-later"]["duplicate_of"] == original_id


def test_seeds_mixed_into_the_development_corpus_form_exactly_one_story_of_five(seeds_dir, db_path, settings):
    from pathlib import Path

    corpus = Path(__file__).parent / "data" / "giveme5w1h.jsonl"
    ingest([str(corpus), str(seeds_dir)], settings, db_path)
    seed_rows = rows(db_path, "SELECT story_id FROM articles WHERE external_id LIKE '00%.txt'")
    assert len(seed_rows) == 5
    [story_id] = {r["story_id"] for r in seed_rows}
    members = rows(db_path, "SELECT external_id FROM articles WHERE story_id = ?", (story_id,))
    assert sorted(m["external_id"] for m in members) == sorted(SEED_FILES)


def test_canonical_is_the_most_complete_early_original():
    members = [
        Member("late-long", day=10, published="x", duplicate_of=None, length=9000),
        Member("early-short", day=1, published="x", duplicate_of=None, length=1000),
        Member("early-long", day=2, published="x", duplicate_of=None, length=3000),
        Member("copy-of-early", day=1, published="x", duplicate_of="early-short", length=5000),
        Member("early-untitled", day=1, published="x", duplicate_of=None, length=4000, titled=False),
    ]
    assert canonical_member(members) == "early-long"


def test_undated_originals_count_as_early():
    members = [
        Member("dated", day=1, published="x", duplicate_of=None, length=1000),
        Member("undated", day=None, published=None, duplicate_of=None, length=2000),
    ]
    assert canonical_member(members) == "undated"


def test_a_merge_is_recorded_and_show_points_to_the_surviving_story(tmp_path, db_path, settings, capsys):
    """Two halves of one story ingested apart, then a bridging article: the stories merge, on record."""
    from pipeline.cli import main
    from pipeline.store import open_store
    from pipeline.stories import BatchOutcome

    store = open_store(db_path)
    try:
        with store.transaction():
            store.conn.execute("INSERT INTO stories (id, created_at, updated_at) VALUES (1, 'x', 'x'), (2, 'x', 'x')")
            outcome = BatchOutcome(merges=[(2, 1)])
            store.save_outcome([], outcome, "run-1")
        assert store.merged_into(2) == 1 and store.merged_into(1) is None
        assert [r["absorbed_story_id"] for r in store.db.query("SELECT * FROM story_merges")] == [2]
    finally:
        store.close()
    assert main(["show", "2", "--db", str(db_path)]) == 2
    assert "merged into story 1" in capsys.readouterr().err


_HARBOUR = " ".join(f"Paragraph {i} of the harbour bridge report with its many details." for i in range(8))


def _prepared(settings, external_id: str, text: str):
    """A fingerprinted article, as a worker would hand it to the writer."""
    from pipeline.extract import build_article
    from pipeline.fingerprint import fingerprint
    from pipeline.models import Prepared

    article = build_article(external_id=external_id, text=text, settings=settings.ingest)
    return Prepared(article, fingerprint(article, settings.matching))


class _EmptyIndex:
    """A StoryIndex with nothing stored; tests override what their case stores or records."""

    def lsh_matches(self, level, groups):
        return {}

    def story_buckets(self, keys):
        return {}

    def originals_by_content_hash(self, hashes):
        return {}

    def indexed_articles(self, ids, with_text):
        return {}

    def story_states(self, story_ids):
        return {}

    def document_frequencies(self, terms):
        return 0, {}

    def next_story_id(self):
        return 1

    def kept_apart(self, story_ids):
        return set()


class _StoredMatchIndex(_EmptyIndex):
    """An index holding one article, `stored_id` (story `story_id` of `members` articles), whose
    content hash is that of `item`: the batch's `item` is an identical copy of it."""

    def __init__(self, item, stored_id: str, story_id: int, duplicate_of: str | None, members: int) -> None:
        self.item, self.stored_id, self.story_id = item, stored_id, story_id
        self.duplicate_of, self.members = duplicate_of, members

    def originals_by_content_hash(self, hashes):
        return {self.item.article.content_hash: self.stored_id}

    def indexed_articles(self, ids, with_text):
        from pipeline.stories import IndexedArticle

        if self.stored_id not in set(ids):
            return {}
        signature = self.item.fingerprint.dup_hashvalues
        return {self.stored_id: IndexedArticle(self.stored_id, self.story_id, self.duplicate_of, signature)}

    def story_states(self, story_ids):
        from pipeline.stories import StoryState

        if self.story_id not in set(story_ids):
            return {}
        return {self.story_id: StoryState(self.story_id, {"harbour": 1.0}, self.members, None, None)}

    def next_story_id(self):
        return self.story_id + 1


def test_a_copy_of_a_stored_copy_joins_its_story_without_looking_up_the_original(settings):
    """The original behind a stored near-duplicate need not be among the batch's candidates."""
    from pipeline.stories import assign_batch

    item = _prepared(settings, "new-copy", _HARBOUR)

    # Only the stored copy ('b', a near-duplicate of 'a') is found; 'a' never is.
    index = _StoredMatchIndex(item, "b", story_id=7, duplicate_of="a", members=2)
    outcome = assign_batch([item], index, settings.matching)
    [assignment] = outcome.assignments
    assert assignment.story_id == 7 and assignment.duplicate_of == "a"
    assert not outcome.new_stories


@given(st.dictionaries(st.integers(0, 60), st.integers(1, 6)), st.integers(1, 12))
def test_best_voted_are_the_most_voted_with_ties_to_the_smallest(votes, count):
    expected = sorted(votes, key=lambda key: (-votes[key], key))[:count]
    assert _best_voted(Counter(votes), count) == expected


@given(st.dictionaries(st.integers(0, 40), st.integers(1, 30), min_size=1), st.integers(1, 12), st.sampled_from([0.2, 0.5, 1.0]))
def test_candidates_below_a_share_of_the_best_ones_votes_are_dropped(votes, count, share):
    ranked = sorted(votes, key=lambda key: (-votes[key], key))[:count]
    expected = [key for key in ranked if votes[key] >= share * votes[ranked[0]]]
    assert _best_voted(Counter(votes), count, share) == expected


@given(st.dictionaries(st.text(alphabet="abcde", min_size=1, max_size=3), st.sampled_from([0.5, 1.0, 1.5, 2.0])), st.integers(1, 12))
def test_a_trimmed_centroid_keeps_the_heaviest_terms_ties_to_the_smallest(weights, keep):
    import pipeline.stories as stories

    state = StoryState(1, dict(weights), 1, None, None)
    original = stories._CENTROID_TERMS
    stories._CENTROID_TERMS = keep
    try:
        state.trim()
    finally:
        stories._CENTROID_TERMS = original
    expected = dict(sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:keep])
    assert state.vector_sum == expected


def test_a_copy_neither_looks_for_candidate_stories_nor_is_proposed_as_one(settings):
    """A near-duplicate's story is its original's: its story-level keys are not looked up, and
    the batch's other articles do not vote for it (its original stands for it)."""
    from pipeline.stories import assign_batch

    other = " ".join(f"Section {i} on the orchard frost and the apple growers' losses." for i in range(8))
    items = [
        _prepared(settings, external_id, body)
        for external_id, body in [("original", _HARBOUR), ("copy", _HARBOUR + " Reprinted."), ("unrelated", other)]
    ]
    original, copy, unrelated = items
    looked_up: list = []

    class Index(_EmptyIndex):
        def story_buckets(self, keys):
            looked_up.extend(keys)
            return {}

        def story_states(self, story_ids):
            assert not set(story_ids), "nothing stored was proposed"
            return {}

    outcome = assign_batch(items, Index(), settings.matching)
    by_id = {a.article_id: a for a in outcome.assignments}
    assert by_id[copy.article.article_id].duplicate_of == original.article.article_id
    assert by_id[copy.article.article_id].story_id == by_id[original.article.article_id].story_id
    keys = {key for _, key in looked_up}
    only_the_copys = set(copy.fingerprint.story_keys) - set(original.fingerprint.story_keys) - set(unrelated.fingerprint.story_keys)
    assert only_the_copys, "the copy's edit gives it keys of its own"
    assert keys.isdisjoint(only_the_copys)
    assert set(original.fingerprint.story_keys) <= keys


def test_an_identical_copy_of_a_stored_article_probes_no_lsh_bucket(settings):
    """Matched by its content hash, an identical copy needs no near-duplicate candidates."""
    from pipeline.stories import assign_batch

    item = _prepared(settings, "reprint", _HARBOUR)
    probed: list = []

    class Index(_StoredMatchIndex):
        def lsh_matches(self, level, groups):
            probed.extend(key for _, keys in groups for key in keys)
            return {}

    outcome = assign_batch([item], Index(item, "stored", story_id=4, duplicate_of=None, members=1), settings.matching)
    [assignment] = outcome.assignments
    assert assignment.duplicate_of == "stored" and assignment.story_id == 4
    assert probed == []
    # Its keys are still stored: later copies may match it like any other article.
    assert {key for _, _, key, _ in outcome.band_rows} == set(item.fingerprint.dup_keys)


def test_after_merges_every_similarity_is_to_the_merged_storys_canonical_article(tmp_path, settings):
    """Batches of 5 make a run merge stored stories. Each article's similarity must be its cosine
    with its own story's canonical article: an absorbed story's canonical article kept 1.0, its
    similarity to itself, when the kept story's canonical article did not change (a QA pass)."""
    from pathlib import Path

    from tests.conftest import assert_similarities_current

    db = tmp_path / "stories.db"
    small = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"batch_size": 5})})
    ingest([str(Path(__file__).parent / "data" / "giveme5w1h.jsonl")], small, db)
    assert rows(db, "SELECT count(*) AS n FROM story_merges")[0]["n"] > 0
    assert_similarities_current(db)
