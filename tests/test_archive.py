"""`newsdedup archive`: stories move whole, nothing is lost or stored twice, re-runs know what moved."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pipeline.archive import archive_stories, chosen_stories, database_id
from pipeline.check import check_database
from pipeline.cli import main
from tests.conftest import assert_sound as _sound
from tests.conftest import db_rows as _rows
from pipeline.errors import ConfigError, UsageError
from pipeline.ingest import ingest

CORPUS = Path(__file__).parent / "data" / "giveme5w1h.jsonl"


@pytest.fixture(scope="module")
def built(tmp_path_factory, settings) -> Path:
    """383 labelled articles from 2013-2018, and the seeds (undated .txt files) last."""
    from tests.conftest import SEEDS

    path = tmp_path_factory.mktemp("archive") / "live.db"
    ingest([str(CORPUS), str(SEEDS)], settings, path)
    return path


@pytest.fixture
def live(built, tmp_path) -> Path:
    copy = tmp_path / "live.db"
    shutil.copyfile(built, copy)
    return copy


def _content(path: Path) -> dict[str, set[tuple]]:
    """What people read: every article with its story and role, every story with its facts."""
    return {
        "articles": set(_rows(path, "SELECT id, story_id, duplicate_of, similarity, title, text FROM articles")),
        "stories": set(_rows(path, "SELECT id, canonical_article_id, title, article_count, first_published, "
                                   "last_published FROM stories")),
    }


def test_stories_move_whole_and_both_databases_stay_sound(live, tmp_path):
    before = _content(live)
    archive = tmp_path / "archive.db"
    report = archive_stories(live, archive, "2017-06-01", by="published")
    assert report.stories > 10 and report.articles >= report.stories and not report.spared_newest
    _sound(live)
    _sound(archive)
    kept, moved = _content(live), _content(archive)
    # Nothing lost, nothing in both, every row unchanged.
    for table in ("articles", "stories"):
        assert kept[table] | moved[table] == before[table]
        assert not kept[table] & moved[table]
    assert len(moved["stories"]) == report.stories and len(moved["articles"]) == report.articles
    # Whole stories: the archive's stories hold exactly the archive's articles, all published before the cut.
    assert {row[1] for row in moved["articles"]} == {row[0] for row in moved["stories"]}
    assert all(row[5] < "2017-06-01" for row in moved["stories"])
    # Search: each article is found where it now is.
    title = sorted(moved["articles"])[0][4]
    word = max((w for w in title.split() if w.isalpha()), key=len)
    assert main(["search", word, "--db", str(archive), "--json"]) == 0
    assert _rows(archive, "SELECT count(*) FROM articles_fts")[0][0] == len(moved["articles"])
    assert _rows(live, "SELECT count(*) FROM articles_fts")[0][0] == len(kept["articles"])


def test_inputs_read_again_after_an_archive_are_unchanged_not_new(live, tmp_path, settings, seeds_dir):
    stored = _rows(live, "SELECT count(*) FROM articles")[0][0]
    archive_stories(live, tmp_path / "archive.db", "2017-06-01", by="published")
    archived = _rows(live, "SELECT count(*) FROM _archived")[0][0]
    assert archived > 0
    report = ingest([str(CORPUS), str(seeds_dir)], settings, live)
    assert report.new_articles == 0 and report.unchanged == stored
    _sound(live)


def _jsonl(path: Path, *records: dict) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


FLOOD = "The harbour flooded after the storm surge and the quay collapsed overnight. " * 8
COUNT = "The election count ran late into the night as ballots arrived from the islands. " * 8
BRIDGE = "The old bridge reopened to traffic after two years of repairs to its rusted cables. " * 8
TIDES = "Astronomers measured the unusual tides along the northern coast for a month. " * 8


def test_an_archived_story_id_is_never_given_again(tmp_path, settings):
    """SQLite would give max(id) + 1: with the highest story archived, its id would come back,
    and the archive, story buckets and story_merges would then hold one id for two stories."""
    db = tmp_path / "live.db"
    ingest([_jsonl(tmp_path / "1.jsonl", {"id": "flood", "text": FLOOD})], settings, db)
    ingest([_jsonl(tmp_path / "2.jsonl", {"id": "count", "text": COUNT})], settings, db)
    ingest([_jsonl(tmp_path / "3.jsonl", {"id": "flood-copy", "text": FLOOD})], settings, db)  # the newest article
    stories = dict(_rows(db, "SELECT external_id, story_id FROM articles"))
    assert stories["flood-copy"] == stories["flood"] < stories["count"]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE articles SET ingested_at = '2000-01-01T00:00:00Z' WHERE external_id = 'count'")
    assert archive_stories(db, tmp_path / "archive.db", "2001-01-01").stories == 1
    ingest([_jsonl(tmp_path / "4.jsonl", {"id": "tides", "text": TIDES})], settings, db)
    tides = _rows(db, "SELECT story_id FROM articles WHERE external_id = 'tides'")[0][0]
    assert tides > stories["count"]
    _sound(db)


def test_the_story_of_the_newest_article_always_stays(live, tmp_path):
    report = archive_stories(live, tmp_path / "archive.db", "2999-01-01")
    assert report.spared_newest
    assert _rows(live, "SELECT count(*) FROM stories")[0][0] == 1
    newest = _rows(live, "SELECT story_id FROM articles ORDER BY rowid DESC LIMIT 1")
    assert _rows(live, "SELECT id FROM stories") == newest
    _sound(live)
    _sound(tmp_path / "archive.db")


def test_an_archive_stopped_between_its_two_steps_is_finished_by_running_it_again(live, tmp_path, monkeypatch):
    import pipeline.archive as archive_module

    before = _content(live)
    archive = tmp_path / "archive.db"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(archive_module, "_remove_archived", killed)
        with pytest.raises(KeyboardInterrupt):
            archive_stories(live, archive, "2017-06-01", by="published")
    # The archive holds its copies, the live database is as it was: nothing is in neither.
    assert _content(live) == before
    copied = _content(archive)
    assert copied["stories"] and copied["stories"] <= before["stories"]
    report = archive_stories(live, archive, "2017-06-01", by="published")
    assert _content(archive) == copied  # nothing copied twice
    assert len(copied["articles"]) == report.articles
    _sound(live)
    _sound(archive)
    assert _content(live)["articles"] | copied["articles"] == before["articles"]


def test_a_stopped_archive_must_be_finished_before_archiving_into_another_file(live, tmp_path, monkeypatch):
    """Its copies are withdrawn only by a run into the same file: a run into another one copied
    the same stories again (a QA pass: 8,872 articles in both archives, each file 'sound')."""
    import pipeline.archive as archive_module

    first, second = tmp_path / "first.db", tmp_path / "second.db"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(archive_module, "_remove_archived", killed)
        with pytest.raises(KeyboardInterrupt):
            archive_stories(live, first, "2017-06-01", by="published")
    for dry_run in (True, False):
        with pytest.raises(UsageError, match=f"an archive into {first} was stopped.*--to {first}"):
            archive_stories(live, second, "2017-06-01", by="published", dry_run=dry_run)
    assert not second.exists()
    archive_stories(live, first, "2017-06-01", by="published")  # finishes it
    report = archive_stories(live, second, "2018-06-01", by="published")  # then any file will do
    assert report.stories > 0
    both = {r[0] for r in _rows(first, "SELECT id FROM articles")} & {r[0] for r in _rows(second, "SELECT id FROM articles")}
    assert not both
    for path in (live, first, second):
        _sound(path)


def test_an_ingest_between_a_stopped_archive_and_its_rerun_loses_and_doubles_nothing(live, tmp_path, monkeypatch, settings):
    """(QA pass: an archive killed between its steps, then an hourly ingest growing some of the
    stories it had copied, then the documented re-run: 809 articles ended in both files, and the
    next archive broke the archive's story counts.) The live database is where a story is until
    the second step: the re-run withdraws the stopped run's copies and copies afresh."""
    import pipeline.archive as archive_module

    archive = tmp_path / "archive.db"
    with monkeypatch.context() as patch:
        patch.setattr(archive_module, "_remove_archived", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            archive_stories(live, archive, "2017-06-01", by="published")
    copied = _rows(archive, "SELECT id, story_id, text FROM articles GROUP BY story_id ORDER BY story_id LIMIT 6")
    # Light edits of some copied articles, published later: they join those stories in the
    # live database, which then last grew after the cut.
    edits = [
        {"id": f"edit-{n}", "title": "Update", "published": "2018-03-01",
         "text": text.replace(" the ", " this ", 3) + " An update followed later that week."}
        for n, (_, _, text) in enumerate(copied)
    ]
    grown = ingest([_jsonl(tmp_path / "edits.jsonl", *edits)], settings, live)
    grew = grown.grown_stories & {story_id for _, story_id, _ in copied}
    assert grown.new_articles == len(edits) and len(grew) >= 3
    everything = _content(live)
    archive_stories(live, archive, "2017-06-01", by="published")
    kept, moved = _content(live), _content(archive)
    assert not {row[0] for row in kept["articles"]} & {row[0] for row in moved["articles"]}
    assert kept["articles"] | moved["articles"] == everything["articles"]
    assert grew <= {row[0] for row in kept["stories"]}
    _sound(live)
    _sound(archive)
    # The next archive over them leaves both sound too.
    archive_stories(live, archive, "2019-01-01", by="published")
    _sound(live)
    _sound(archive)
    assert main(["search", "update", "--db", str(archive), "--json"]) == 0


def test_withdrawn_copies_take_the_ids_merged_into_them_out_of_the_buckets(live, tmp_path, monkeypatch):
    """A copied story carries into the archive's buckets the ids of stories merged into it; a
    withdrawal takes those out too (found reviewing the change: it took only the story's own)."""
    import pipeline.archive as archive_module
    from pipeline.store import pack_story_ids, unpack_story_ids

    archive = tmp_path / "archive.db"
    with monkeypatch.context() as patch:
        patch.setattr(archive_module, "_remove_archived", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            archive_stories(live, archive, "2017-06-01", by="published")
    story = _rows(archive, "SELECT min(id) FROM stories")[0][0]
    conn = sqlite3.connect(archive)
    conn.execute("INSERT INTO story_merges (absorbed_story_id, into_story_id, at) VALUES (999999, ?, '2017-01-01')", (story,))
    conn.execute("INSERT INTO _story_buckets (period, key, stories) VALUES (0, 4242, ?)", (pack_story_ids([999999]),))
    conn.commit()
    conn.close()
    # A re-run that chooses nothing: everything copied is withdrawn, merged ids included.
    archive_stories(live, archive, "2000-01-01", by="published")
    buckets = [unpack_story_ids(row[0]) for row in _rows(archive, "SELECT stories FROM _story_buckets")]
    assert not any(999999 in ids for ids in buckets)
    _sound(archive)


def test_archives_add_up_in_one_archive_database(live, tmp_path):
    archive = tmp_path / "archive.db"
    first = archive_stories(live, archive, "2017-01-01", by="published")
    second = archive_stories(live, archive, "2018-01-01", by="published")
    assert first.stories and second.stories
    assert _rows(archive, "SELECT count(*) FROM stories")[0][0] == first.stories + second.stories
    _sound(archive)
    _sound(live)


def test_refuses_to_archive_into_the_database_itself_or_one_built_otherwise(built, live, tmp_path, settings):
    with pytest.raises(UsageError, match="another file"):
        archive_stories(live, live, "2016-01-01")
    other = tmp_path / "other.db"
    changed = settings.model_copy(update={"matching": settings.matching.model_copy(update={"seed": 99})})
    ingest([_jsonl(tmp_path / "one.jsonl", {"id": "x", "text": FLOOD})], changed, other)
    # A story database of its own: its ids and the archived ones would collide.
    with pytest.raises(UsageError, match="a story database of its own"):
        archive_stories(live, other, "2016-01-01", by="published")
    # This database's archive, but built under other settings.
    conn = sqlite3.connect(live)
    own = database_id(conn)
    conn.commit()
    conn.close()
    conn = sqlite3.connect(other)
    conn.execute("INSERT INTO _meta (key, value) VALUES ('archive_of', ?)", (own,))
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match=r"holds stories fingerprinted under other matching settings than .*seed 99"):
        archive_stories(live, other, "2016-01-01", by="published")
    assert _content(live)["articles"] == _content(built)["articles"]  # nothing moved


def test_an_archive_target_must_be_this_databases_archive(live, tmp_path, settings):
    """(QA pass: two live databases archived into one file, or one archived into another live
    database, mixed unrelated stories under the same ids; exit 0, and `check` failed after.)"""
    first = tmp_path / "first-archive.db"
    archive_stories(live, first, "2017-01-01", by="published")
    # Another database's archive is refused, as are a directory and a file that is no database.
    other_live = tmp_path / "other.db"
    ingest([_jsonl(tmp_path / "one.jsonl", {"id": "x", "text": FLOOD, "published": "2010-01-01"},
                   {"id": "y", "text": COUNT, "published": "2024-01-01"})], settings, other_live)
    with pytest.raises(UsageError, match="the archive of another story database"):
        archive_stories(other_live, first, "2020-01-01", by="published")
    with pytest.raises(UsageError, match="names a directory"):
        archive_stories(live, tmp_path, "2018-01-01", by="published", dry_run=True)
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(UsageError, match="not a story database"):
        archive_stories(live, text, "2018-01-01", by="published", dry_run=True)
    # Its own archive keeps taking its stories.
    assert archive_stories(live, first, "2018-01-01", by="published").stories > 0
    _sound(first)


def test_an_archive_is_not_ingested_into(live, tmp_path, settings):
    archive = tmp_path / "archive.db"
    archive_stories(live, archive, "2017-06-01", by="published")
    before = _content(archive)
    with pytest.raises(UsageError, match="is an archive"):
        ingest([_jsonl(tmp_path / "new.jsonl", {"id": "n", "text": BRIDGE})], settings, archive)
    assert _content(archive) == before


def test_known_urls_and_show_remember_what_was_archived(tmp_path, settings, capsys):
    from pipeline.store import open_store

    db = tmp_path / "live.db"
    ingest([_jsonl(
        tmp_path / "in.jsonl",
        {"url": "https://old.example/a", "title": "Harbour flood", "published": "2020-01-01", "text": FLOOD},
        {"url": "https://new.example/b", "title": "Election count", "published": "2024-05-01", "text": COUNT},
    )], settings, db)
    old_story = _rows(db, "SELECT story_id FROM articles WHERE url = 'https://old.example/a'")[0][0]
    assert main(["archive", "--db", str(db), "--before", "2021-01-01", "--by", "published",
                 "--to", str(tmp_path / "a.db")]) == 0
    assert "archived 1 story (1 article)" in capsys.readouterr().out
    store = open_store(db)
    try:
        assert store.known_urls(["https://old.example/a", "https://elsewhere.example/c"]) == {"https://old.example/a"}
    finally:
        store.close()
    assert main(["show", str(old_story), "--db", str(db)]) == 2
    assert f"archived to {tmp_path / 'a.db'}" in capsys.readouterr().err
    assert main(["show", str(old_story), "--db", str(tmp_path / "a.db")]) == 0


def test_a_dry_run_moves_nothing_and_says_what_would_move(live, tmp_path, capsys):
    before = _content(live)
    assert main(["archive", "--db", str(live), "--before", "2017-06-01", "--by", "published",
                 "--to", str(tmp_path / "a.db"), "--dry-run", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["dry_run"] and said["stories"] > 0 and said["articles"] >= said["stories"]
    assert _content(live) == before and not (tmp_path / "a.db").exists()


def test_a_story_published_on_the_cut_day_is_not_before_it(tmp_path, settings):
    """A date without a time is the whole day: a story last published on the cut's day stays,
    the day before goes (the cut in the CLI's stored form, midnight UTC)."""
    db = tmp_path / "day.db"
    records = tmp_path / "day.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in [
        {"url": "https://a.example/1", "title": "Harbour flood", "published": "2020-12-31", "text": FLOOD},
        {"url": "https://b.example/2", "title": "Election count", "published": "2021-01-01", "text": COUNT},
        {"url": "https://c.example/3", "title": "Bridge reopens", "published": "2021-01-01T00:00:01Z",
         "text": BRIDGE},
    ]) + "\n")
    ingest([str(records)], settings, db)
    conn = sqlite3.connect(db)
    try:
        titles = {row[0]: row[1] for row in conn.execute("SELECT id, title FROM stories")}
        for cut, expected in [("2021-01-01T00:00:00Z", {"Harbour flood"}),
                              ("2021-01-01T00:00:01Z", {"Harbour flood"}),
                              ("2021-01-02T00:00:00Z", {"Harbour flood", "Election count"})]:
            chosen, _ = chosen_stories(conn, cut, by="published")
            assert {titles[story_id] for story_id in chosen} == expected, cut
    finally:
        conn.close()


@hsettings(max_examples=12)
@given(cut=st.dates(min_value=date(2016, 1, 1), max_value=date(2019, 1, 1)), by=st.sampled_from(["published", "ingested"]))
def test_any_cut_leaves_every_article_in_exactly_one_sound_database(built, tmp_path_factory, cut, by):
    folder = tmp_path_factory.mktemp("cut")
    live, archive = folder / "live.db", folder / "archive.db"
    shutil.copyfile(built, live)
    before = _content(built)
    archive_stories(live, archive, cut.isoformat(), by=by)
    _sound(live)
    kept = _content(live)
    moved = _content(archive) if archive.exists() else {"articles": set(), "stories": set()}
    if archive.exists():
        _sound(archive)
    assert kept["articles"] | moved["articles"] == before["articles"]
    assert not kept["articles"] & moved["articles"]


@pytest.mark.parametrize("damage, named", [
    ("UPDATE _meta SET value = '1' WHERE key = 'last_story_id'", "story ids given again"),
    ("INSERT INTO articles SELECT a.* FROM archive.articles a LIMIT 1", "both stored here and recorded as archived"),
])
def test_check_names_damage_to_what_an_archive_left_behind(live, tmp_path, damage, named):
    archive = tmp_path / "archive.db"
    archive_stories(live, archive, "2017-06-01", by="published")
    conn = sqlite3.connect(live, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("ATTACH DATABASE ? AS archive", (str(archive),))
        conn.execute(damage)
        conn.execute("DETACH DATABASE archive")
        report = check_database(conn)
    finally:
        conn.close()
    assert any(named in problem for problem in report.problems), report.problems
