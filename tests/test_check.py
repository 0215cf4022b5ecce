"""`newsdedup check`: a sound database passes, and each kind of damage is named."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pipeline.check import check_database
from pipeline.cli import main
from pipeline.ingest import ingest
from pipeline.store import read_only_connection


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, settings):
    """The seeds ingested once; each test damages its own copy."""
    from tests.conftest import SEEDS

    path = tmp_path_factory.mktemp("check") / "stories.db"
    ingest([str(SEEDS)], settings, path)
    return path


@pytest.fixture
def db(seeded, tmp_path):
    copy = tmp_path / "stories.db"
    shutil.copyfile(seeded, copy)  # a finished run: nothing waits in the write-ahead log
    return copy


def _check(path, **options):
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return check_database(conn, **options)
    finally:
        conn.close()


def _damage(path, *statements):
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")  # as a careless script would
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


@pytest.mark.parametrize("quick", [False, True])
def test_a_database_a_run_finished_is_sound(db, quick):
    report = _check(db, quick=quick)
    assert report.sound and report.problems == () and report.notes == ()
    assert (report.articles, report.stories) == (5, 1)


DAMAGE = {
    "a story's count edited": (["UPDATE stories SET article_count = 9"], "article_count is wrong"),
    "a signature deleted": (["DELETE FROM _signatures WHERE rowid = 1"], "articles without a signature"),
    "an article copied": (
        ["INSERT INTO articles SELECT 'copy' || id, external_id, url, title, source, published, text, content_hash, "
         "story_id, duplicate_of, similarity, ingested_at, run_id, extra, language FROM articles LIMIT 1"],
        "articles stored twice",
    ),
    "a story deleted under its articles": (["DELETE FROM stories"], "foreign_key_check"),
    "the canonical article moved away": (
        ["UPDATE stories SET canonical_article_id = 'no-such-article'"], "canonical article is not theirs",
    ),
    "a story's matching state out of step": (
        ["UPDATE _story_state SET members = members + 1"], "matching state counts other members",
    ),
    "an article's near-duplicate entries lost": (
        ["DELETE FROM _lsh WHERE article_id = (SELECT id FROM articles LIMIT 1)"],
        "missing from the near-duplicate index",
    ),
    "near-duplicate entries left behind": (
        ["INSERT INTO _lsh (level, period, key, article_id) VALUES ('dup', 0, 1, 'no-such-article')"],
        "entries of articles that are gone",
    ),
    "a story bucket cut short": (
        ["UPDATE _story_buckets SET stories = substr(stories, 1, 3) WHERE key = (SELECT min(key) FROM _story_buckets)"],
        "not whole story ids",
    ),
    "a story bucket naming a story never stored": (
        ["UPDATE _story_buckets SET stories = CAST(stories || x'e7030000' AS BLOB) WHERE key = (SELECT min(key) FROM _story_buckets)"],
        "naming stories that never existed: 1, e.g. 999",
    ),
    "the article count behind term weights edited": (
        ["UPDATE _meta SET value = '6' WHERE key = 'documents'"], "_meta.documents",
    ),
    "a story id given again after it was merged away": (
        ["INSERT INTO story_merges (absorbed_story_id, into_story_id, run_id, at) "
         "SELECT id, id + 1000, NULL, 'x' FROM stories LIMIT 1"],
        "stories whose id was merged into another story",
    ),
    "the search index given a second entry": (
        ["INSERT INTO articles_fts (rowid, title, text) SELECT rowid, 'x', 'y' FROM articles LIMIT 1"],
        "search index",
    ),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_each_kind_of_damage_is_a_problem_that_names_itself(db, kind):
    statements, named = DAMAGE[kind]
    _damage(db, *statements)
    report = _check(db)
    assert not report.sound
    assert any(named in problem for problem in report.problems), report.problems
    if kind == "a story's count edited":
        # Only what is wrong (a QA pass also read "matching state counts other members", which was right).
        assert len(report.problems) == 1, report.problems


def test_articles_a_killed_run_left_unindexed_are_a_note_not_a_problem(db):
    # A run killed between committing its last batch and indexing it (docs/guarantees.md).
    _damage(
        db,
        "INSERT INTO articles_fts (articles_fts, rowid, title, text) "
        "SELECT 'delete', rowid, title, text FROM articles WHERE rowid > 3",
        "UPDATE _meta SET value = '3' WHERE key = 'fts_rowid'",
    )
    report = _check(db)
    assert report.sound, report.problems
    assert report.notes == ("2 of the latest articles are not in the search index yet: the next ingest run adds them",)


def test_a_read_only_connection_checks_all_but_the_search_index_structure(db):
    conn, _ = read_only_connection(db)
    try:
        report = check_database(conn)
    finally:
        conn.close()
    assert report.sound
    assert any("could only be read" in note for note in report.notes)


def test_the_cli_says_sound_or_names_the_problems_and_exits_8(db, capsys):
    assert main(["check", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"newsdedup check {db}") and "5 articles in 1 story: sound" in out

    _damage(db, "UPDATE stories SET canonical_article_id = 'gone'", "DELETE FROM _signatures WHERE rowid = 1")
    assert main(["check", "--db", str(db)]) == 8
    captured = capsys.readouterr()
    assert "2 problems" in captured.out and captured.out.count("  problem  ") == 2
    assert "--format articles" in captured.err  # what to do: the rebuild recipe

    assert main(["check", "--db", str(db), "--json", "--quick"]) == 8
    found = json.loads(capsys.readouterr().out)
    assert found["sound"] is False and len(found["problems"]) == 2 and found["articles"] == 5


def test_the_cli_refuses_what_is_not_a_story_database(tmp_path, capsys):
    assert main(["check", "--db", str(tmp_path / "none.db")]) == 2
    assert "no story database" in capsys.readouterr().err
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    assert main(["check", "--db", str(other)]) == 4


def test_an_empty_file_is_a_finding_and_stays_empty(tmp_path, capsys):
    """SQLite takes a 0-byte file for an empty database: check made the schema in it and called it
    sound (a QA pass), though an empty file is what a failed copy or restore leaves."""
    empty = tmp_path / "restored.db"
    empty.touch()
    assert main(["check", "--db", str(empty)]) == 8
    assert "empty file (0 bytes)" in capsys.readouterr().out
    assert main(["stories", "--db", str(empty)]) == 4
    assert empty.stat().st_size == 0


@hsettings(max_examples=25)
@given(table=st.sampled_from(["articles", "stories", "_signatures", "_story_state"]), pick=st.integers(0, 10_000))
def test_no_single_lost_row_of_a_story_table_goes_unnoticed(seeded, tmp_path_factory, table, pick):
    """What a crash, a bad restore or a hand edit could lose: one row of any table that the
    stories are made of. Each loss breaks an invariant the check names."""
    db = tmp_path_factory.mktemp("lost") / "stories.db"
    shutil.copyfile(seeded, db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rowids = [row[0] for row in conn.execute(f"SELECT rowid FROM {table} ORDER BY rowid")]
        conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowids[pick % len(rowids)],))
        report = check_database(conn)
    finally:
        conn.close()
    assert not report.sound, f"a row of {table} was lost and the check found nothing"


@pytest.mark.parametrize("damaged", ["articles", "stories", "articles_story_id", "_signatures"])
def test_pages_damaged_on_disk_are_problems_on_one_line_each_not_a_crash(db, capsys, damaged):
    """What a failing disk or a bad copy leaves: a page of garbage where a table's or an
    index's root was. Whatever SQLite can no longer read is a problem, and the rest still runs."""
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (damaged,)).fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(bytes(range(256)) * (page_size // 256))

    report = _check(db)
    assert not report.sound
    assert all("\n" not in problem for problem in report.problems), report.problems
    assert main(["check", "--db", str(db)]) == 8
    assert "damaged or inconsistent" in capsys.readouterr().err


def test_a_database_too_damaged_to_open_is_a_finding_with_a_report(db, capsys):
    """(QA pass: a truncated database made check exit 4 with nothing on stdout for --json.)"""
    size = db.stat().st_size
    with open(db, "r+b") as file:
        file.truncate(size // 2)
    assert main(["check", "--db", str(db), "--json"]) == 8
    captured = capsys.readouterr()
    found = json.loads(captured.out)
    assert found["sound"] is False and found["articles"] is None
    assert found["problems"] == [f"the database cannot be opened: cannot open the story database {db}: database disk image is malformed"]
    assert "restore it from a backup" in captured.err
