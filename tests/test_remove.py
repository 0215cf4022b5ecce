"""`newsdedup remove`: a removed article leaves every table people or matching read, its stories
are worked out again, and it stays out of later runs."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pipeline.archive import archive_stories
from pipeline.cli import main
from tests.conftest import assert_similarities_current
from tests.conftest import assert_sound as _sound
from tests.conftest import db_rows as _rows
from pipeline.errors import UsageError
from pipeline.ingest import ingest
from pipeline.remove import remove_articles
from pipeline.store import open_store

CORPUS = Path(__file__).parent / "data" / "giveme5w1h.jsonl"


def _records(count: int) -> list[dict]:
    with CORPUS.open(encoding="utf-8") as lines:
        return [json.loads(line) for _, line in zip(range(count), lines)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """60 labelled articles, plus two reprints of the first under other outlets' URLs."""
    records = _records(60)
    first = records[0]
    reprints = [
        {**first, "id": f"reprint-{n}", "url": f"https://reprints{n}.example/a.html", "source": f"reprints{n}.example"}
        for n in (1, 2)
    ]
    path = tmp_path_factory.mktemp("remove-corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records + reprints), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, settings, corpus) -> Path:
    path = tmp_path_factory.mktemp("remove") / "live.db"
    ingest([str(corpus)], settings, path)
    return path


@pytest.fixture
def live(built, tmp_path) -> Path:
    copy = tmp_path / "live.db"
    shutil.copyfile(built, copy)
    return copy


def _story_with_copies(path: Path) -> tuple[str, list[str], int]:
    """(original, its copies, story) of the reprinted article."""
    rows = _rows(path, "SELECT duplicate_of, id, story_id FROM articles WHERE duplicate_of IS NOT NULL ORDER BY rowid")
    original = rows[0][0]
    return original, [r[1] for r in rows if r[0] == original], rows[0][2]


def _largest_story(path: Path) -> tuple[int, str, int]:
    return _rows(path, "SELECT id, canonical_article_id, article_count FROM stories ORDER BY article_count DESC, id LIMIT 1")[0]


def test_a_removed_article_leaves_every_table_and_its_story_is_worked_out_again(live):
    story, canonical, count = _largest_story(live)
    assert count >= 3
    title, text = _rows(live, "SELECT title, text FROM articles WHERE id = ?", (canonical,))[0]
    report = remove_articles(live, [canonical], "legal request 7")
    assert [a.article_id for a in report.removed] == [canonical]
    assert report.stories_changed == (story,) and report.stories_gone == ()
    _sound(live)
    for table, column in (("articles", "id"), ("_signatures", "article_id"), ("_lsh", "article_id")):
        assert not _rows(live, f"SELECT 1 FROM {table} WHERE {column} = ?", (canonical,)), table
    # The story reads as its remaining articles: another canonical article, one fewer member,
    # a matching state summed from the members it keeps.
    new_canonical, new_count, new_title = _rows(
        live, "SELECT canonical_article_id, article_count, title FROM stories WHERE id = ?", (story,)
    )[0]
    assert new_count == count - 1 and new_canonical != canonical
    assert new_title == _rows(live, "SELECT title FROM articles WHERE id = ?", (new_canonical,))[0][0]
    assert _rows(live, "SELECT members FROM _story_state WHERE story_id = ?", (story,))[0][0] == count - 1
    # Search no longer finds its text; the record kept has no title or text.
    store = open_store(live, read_only=True)
    try:
        phrase = '"' + " ".join(text.split()[:8]).replace('"', "") + '"'
        assert canonical not in {hit["article_id"] for hit in store.search(phrase)}
    finally:
        store.close()
    kept = _rows(live, "SELECT * FROM removed_articles")
    assert len(kept) == 1 and kept[0][0] == canonical and "legal request 7" in kept[0]
    assert not any(title in str(value) or text[:40] in str(value) for value in kept[0] if value)


def test_the_same_input_or_text_ingested_again_goes_to_rejects_with_the_reason(live, corpus, settings, tmp_path):
    target = _rows(live, "SELECT id, external_id FROM articles WHERE duplicate_of IS NULL ORDER BY rowid LIMIT 1 OFFSET 5")[0]
    earlier = _rows(live, "SELECT count(*) FROM rejects")[0][0]  # (records too short to be articles)
    remove_articles(live, [target[1]], "retracted by the outlet")
    before = _rows(live, "SELECT count(*) FROM articles")[0][0]
    for _ in range(2):  # twice: a re-run records the reject once, never stores the article
        report = ingest([str(corpus)], settings, live)
        assert report.new_articles == 0 and report.rejects == earlier + 1
        assert report.inputs == report.new_articles + report.unchanged + report.rejects
    rejects = _rows(live, "SELECT ref, stage, reason FROM rejects WHERE stage = 'store'")
    assert len(rejects) == 1 and "retracted by the outlet" in rejects[0][2]
    assert _rows(live, "SELECT count(*) FROM rejects")[0][0] == earlier + 1
    # The same text without a URL (the record read again under another name) is refused too;
    # under another outlet's URL it is a reprint, its own publication, and is stored.
    record = next(r for r in map(json.loads, corpus.read_text().splitlines()) if r["id"] == target[1])
    renamed = {key: value for key, value in record.items() if key not in ("id", "url")}
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(renamed) + "\n")
    assert ingest([str(other)], settings, live).rejects == 1
    assert _rows(live, "SELECT count(*) FROM rejects WHERE stage = 'store'")[0][0] == 2
    reprint = tmp_path / "reprint.jsonl"
    reprint.write_text(json.dumps({**record, "id": "elsewhere-1", "url": "https://elsewhere.example/x"}) + "\n")
    assert ingest([str(reprint)], settings, live).new_articles == 1
    assert _rows(live, "SELECT count(*) FROM articles")[0][0] == before + 1
    _sound(live)


def test_removed_with_its_copies_the_text_stays_out_under_any_url(live, settings, tmp_path):
    original, copies, _ = _story_with_copies(live)
    text, title = _rows(live, "SELECT text, title FROM articles WHERE id = ?", (original,))[0]
    remove_articles(live, [original], "defamatory", with_copies=True)
    reprint = tmp_path / "reprint.jsonl"
    reprint.write_text(json.dumps({"id": "r9", "url": "https://third.example/r9", "title": title, "text": text}) + "\n")
    report = ingest([str(reprint)], settings, live)
    assert report.new_articles == 0 and report.rejects == 1
    assert "defamatory" in _rows(live, "SELECT reason FROM rejects WHERE stage = 'store'")[0][0]


def test_copies_stay_with_a_new_original_or_go_with_it(live, tmp_path):
    original, copies, story = _story_with_copies(live)
    assert len(copies) == 2
    other = tmp_path / "other.db"
    shutil.copyfile(live, other)
    report = remove_articles(live, [original], "takedown")
    assert report.copies_kept == 2
    first, second = copies
    assert _rows(live, "SELECT id, duplicate_of FROM articles WHERE id IN (?, ?) ORDER BY id", (first, second)) == sorted(
        [(first, None), (second, first)]
    )
    _sound(live)
    report = remove_articles(other, [original], "takedown", with_copies=True)
    assert {a.article_id for a in report.removed} == {original, *copies}
    assert {a.copy_of for a in report.removed if a.article_id in copies} == {original}
    assert not _rows(other, "SELECT 1 FROM articles WHERE id IN (?, ?, ?)", (original, *copies))
    _sound(other)


def test_a_story_left_with_no_article_goes_and_its_id_is_never_given_again(live, settings, tmp_path):
    last = _rows(live, "SELECT max(id) FROM stories")[0][0]
    members = [r[0] for r in _rows(live, "SELECT id FROM articles WHERE story_id = ?", (last,))]
    report = remove_articles(live, members, "stored by mistake")
    assert report.stories_gone == (last,)
    assert not _rows(live, "SELECT 1 FROM stories WHERE id = ?", (last,))
    assert not _rows(live, "SELECT 1 FROM _story_state WHERE story_id = ?", (last,))
    _sound(live)  # (check: no story bucket names a story that is gone)
    fresh = tmp_path / "new.jsonl"
    fresh.write_text(json.dumps({"id": "n1", "title": "Volcano erupts", "text": "A volcano erupted " * 40}) + "\n")
    ingest([str(fresh)], settings, live)
    assert _rows(live, "SELECT story_id FROM articles WHERE external_id = 'n1'")[0][0] > last
    _sound(live)


def test_removing_the_newest_article_keeps_the_search_index_whole_for_the_next_run(live, settings, tmp_path):
    newest = _rows(live, "SELECT id FROM articles ORDER BY rowid DESC LIMIT 1")[0][0]
    remove_articles(live, [newest], "takedown")
    fresh = tmp_path / "new.jsonl"
    fresh.write_text(json.dumps({"id": "n2", "title": "Bridge opens", "text": "The new bridge opened to traffic " * 30}) + "\n")
    ingest([str(fresh)], settings, live)
    _sound(live)  # the next article takes the removed one's rowid: it must be indexed
    store = open_store(live, read_only=True)
    try:
        assert store.search("bridge traffic")
    finally:
        store.close()


def test_a_name_that_matches_nothing_removes_nothing(live):
    before = _rows(live, "SELECT id FROM articles ORDER BY id")
    some = before[0][0]
    with pytest.raises(UsageError, match="no article 'not-an-article'.*nothing was removed"):
        remove_articles(live, [some, "not-an-article"], "takedown")
    with pytest.raises(UsageError, match="reason"):
        remove_articles(live, [some], "   ")
    assert _rows(live, "SELECT id FROM articles ORDER BY id") == before


def test_a_dry_run_only_says(live):
    story, canonical, count = _largest_story(live)
    before = live.read_bytes()
    report = remove_articles(live, [canonical], "takedown", dry_run=True)
    assert report.dry_run and [a.article_id for a in report.removed] == [canonical]
    assert report.stories_changed == (story,)
    assert live.read_bytes() == before


def test_an_archived_article_is_removed_from_its_archive_and_forgotten_here(live, settings, corpus, tmp_path):
    archive = tmp_path / "archive.db"
    archive_stories(live, archive, "2100-01-01")
    target, story = _rows(archive, "SELECT id, story_id FROM articles ORDER BY rowid LIMIT 1")[0]
    report = remove_articles(live, [target], "legal request")
    assert [(a.article_id, a.database) for a in report.removed] == [(target, str(archive))]
    assert not _rows(archive, "SELECT 1 FROM articles WHERE id = ?", (target,))
    assert not _rows(live, "SELECT 1 FROM _archived WHERE article_id = ?", (target,))
    assert _rows(live, "SELECT reason FROM removed_articles WHERE article_id = ?", (target,)) == [("legal request",)]
    _sound(live)
    _sound(archive)
    # The next run refuses it instead of counting it as archived (unchanged).
    ingest([str(corpus)], settings, live)
    refused = _rows(live, "SELECT ref, reason FROM rejects WHERE stage = 'store'")
    assert len(refused) == 1 and "legal request" in refused[0][1]
    # Archiving more into the same archive keeps its counts whole.
    archive_stories(live, archive, "2100-01-01")
    _sound(archive)


def test_a_crawl_does_not_fetch_a_removed_url_again(live):
    url, article_id = _rows(live, "SELECT url, id FROM articles WHERE url IS NOT NULL LIMIT 1")[0]
    remove_articles(live, [url], "takedown")
    store = open_store(live)
    try:
        assert store.known_urls([url, "https://never.example/x"]) == {url}
    finally:
        store.close()


def test_the_command(live, capsys):
    story, canonical, _ = _largest_story(live)
    assert main(["remove", canonical, "--reason", "legal request", "--db", str(live), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"would remove 1 article from {live} (legal request)") and canonical in out
    assert main(["remove", canonical, "--reason", "legal request", "--db", str(live), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [a["article_id"] for a in shown["removed"]] == [canonical] and shown["stories_changed"] == [story]
    assert main(["remove", canonical, "--reason", "again", "--db", str(live)]) == 0
    assert "removed already" in capsys.readouterr().out
    assert main(["show", canonical, "--db", str(live)]) == 2
    assert "was removed on" in capsys.readouterr().err
    assert main(["remove", "nothing-here", "--reason", "x", "--db", str(live)]) == 2


@hsettings(max_examples=12)
@given(st.data())
def test_any_removal_leaves_a_sound_database_and_loses_nothing_else(built, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("removal") / "live.db"
    shutil.copyfile(built, path)
    ids = [r[0] for r in _rows(path, "SELECT id FROM articles ORDER BY id")]
    chosen = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=8, unique=True))
    with_copies = data.draw(st.booleans())
    report = remove_articles(path, chosen, "property", with_copies=with_copies)
    removed = {a.article_id for a in report.removed}
    assert set(chosen) <= removed
    left = {r[0] for r in _rows(path, "SELECT id FROM articles")}
    assert left | removed == set(ids) and not left & removed
    assert {r[0] for r in _rows(path, "SELECT article_id FROM removed_articles")} == removed
    _sound(path)
    assert_similarities_current(path)


def test_an_archive_that_is_not_where_it_was_written_is_refused_and_nothing_removed(live, tmp_path):
    archive = tmp_path / "archive.db"
    archive_stories(live, archive, "2100-01-01")
    target = _rows(archive, "SELECT id FROM articles ORDER BY rowid LIMIT 1")[0][0]
    archive.rename(tmp_path / "moved.db")
    before = live.read_bytes()
    for dry_run in (True, False):
        with pytest.raises(UsageError, match="which is not there.*put the archive back.*nothing was removed"):
            remove_articles(live, [target], "takedown", dry_run=dry_run)
    assert live.read_bytes() == before
    assert _rows(tmp_path / "moved.db", "SELECT count(*) FROM articles WHERE id = ?", (target,)) == [(1,)]


def test_a_name_stored_in_several_versions_removes_each(tmp_path, settings, seeds_dir):
    db = tmp_path / "versions.db"
    story = seeds_dir / "000_fcabe1ee31422c0a.txt"
    ingest([str(seeds_dir)], settings, db)
    story.write_text(story.read_text(encoding="utf-8").replace("Trump", "The president"), encoding="utf-8")
    ingest([str(seeds_dir)], settings, db)  # the edited file is stored again, beside the first version
    versions = _rows(db, "SELECT id FROM articles WHERE external_id = ?", (story.name,))
    assert len(versions) == 2
    # Named by another path to the same file than the one it was ingested by.
    report = remove_articles(db, [str(story)], "takedown")
    assert {a.article_id for a in report.removed} == {v[0] for v in versions}
    assert not _rows(db, "SELECT 1 FROM articles WHERE external_id = ?", (story.name,))
    _sound(db)


def test_with_copies_a_reprint_named_takes_its_original_and_every_copy(live):
    original, copies, _ = _story_with_copies(live)
    report = remove_articles(live, [copies[-1]], "wire text withdrawn", with_copies=True)
    assert {a.article_id for a in report.removed} == {original, *copies}
    _sound(live)


def test_removed_articles_leave_the_article_count_and_a_rebuild_with_the_removals_is_sound(live, settings, tmp_path):
    documents = int(_rows(live, "SELECT value FROM _meta WHERE key = 'documents'")[0][0])
    chosen = [r[0] for r in _rows(live, "SELECT id FROM articles ORDER BY rowid LIMIT 3")]
    remove_articles(live, chosen, "takedown")
    assert int(_rows(live, "SELECT value FROM _meta WHERE key = 'documents'")[0][0]) == documents - 3
    # docs/operations.md: export the articles, ingest them into a new database, carry the removals over.
    exported = tmp_path / "all.jsonl"
    assert main(["export", "--format", "articles", "--db", str(live), "-o", str(exported)]) == 0
    rebuilt = tmp_path / "rebuilt.db"
    ingest([str(exported)], settings, rebuilt)
    source, target = sqlite3.connect(live), sqlite3.connect(rebuilt)
    try:
        for statement in (s for s in source.iterdump() if "removed_articles" in s):
            target.execute(statement)
        target.commit()
    finally:
        source.close()
        target.close()
    _sound(rebuilt)
    assert _rows(rebuilt, "SELECT count(*) FROM removed_articles") == [(3,)]


def test_show_and_merge_say_a_story_went_with_its_last_article(live, capsys):
    story = _rows(live, "SELECT id FROM stories WHERE article_count = 1 ORDER BY id LIMIT 1")[0][0]
    other = _rows(live, "SELECT id FROM stories WHERE id != ? ORDER BY id LIMIT 1", (story,))[0][0]
    member = _rows(live, "SELECT id FROM articles WHERE story_id = ?", (story,))[0][0]
    remove_articles(live, [member], "legal request 3")
    assert main(["show", str(story), "--db", str(live)]) == 2
    assert "was removed with its last article" in capsys.readouterr().err
    assert main(["merge", str(story), str(other), "--db", str(live)]) == 2
    assert "legal request 3" in capsys.readouterr().err
    assert main(["check", "--db", str(live)]) == 0
    assert "; 1 removed: sound" in capsys.readouterr().out
