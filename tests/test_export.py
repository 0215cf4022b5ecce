"""newsdedup export: stories with their articles as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.export import csv_columns, format_for, write_stories
from pipeline.store import open_store


def export(story_db: Path, *args: str) -> str:
    out = story_db.parent / "export.out"
    assert cli.main(["export", "--db", str(story_db), "--output", str(out), *args]) == 0
    return out.read_text(encoding="utf-8")


def test_jsonl_has_one_story_per_line_with_its_articles_nested(story_db: Path):
    stories = [json.loads(line) for line in export(story_db, "--format", "jsonl").splitlines()]
    assert [s["story_id"] for s in stories] == [1, 2, 3]
    assert [s["article_count"] for s in stories] == [6, 3, 1]
    for story in stories:
        assert len(story["articles"]) == story["article_count"]
        assert story["articles"][0]["role"] == "canonical"
        assert story["articles"][0]["article_id"] == story["canonical_article_id"]
        assert all(a["text"] for a in story["articles"])
    bikes = stories[1]
    assert bikes["outlets"] == "Harbor Wire, Riverside Gazette, Valley Daily"
    reprint = next(a for a in bikes["articles"] if a["source"] == "Valley Daily")
    assert reprint["role"] == "near-duplicate"
    assert reprint["duplicate_of"] == bikes["canonical_article_id"]
    gazette = next(a for a in bikes["articles"] if a["source"] == "Riverside Gazette")
    assert gazette["role"] == "variant" and 0 < gazette["similarity"] < 1
    sessions = next(a for a in stories[0]["articles"] if a["source"] == "Harbor Wire")
    assert sessions["extra"] == {"section": "politics"}


def test_every_article_is_exported_once(story_db: Path):
    stories = [json.loads(line) for line in export(story_db, "--format", "jsonl", "--no-text").splitlines()]
    exported = sorted(a["article_id"] for s in stories for a in s["articles"])
    with sqlite3.connect(story_db) as conn:
        stored = sorted(r[0] for r in conn.execute("SELECT id FROM articles"))
    assert exported == stored
    assert all("text" not in a for s in stories for a in s["articles"])


def test_each_article_says_when_and_by_which_run_it_was_stored(story_db: Path):
    """(QA pass: an export could not tell what arrived since the last one by article.)"""
    stories = [json.loads(line) for line in export(story_db, "--format", "jsonl", "--no-text").splitlines()]
    exported = {a["article_id"]: (a["ingested_at"], a["run_id"]) for s in stories for a in s["articles"]}
    with sqlite3.connect(story_db) as conn:
        stored = {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, ingested_at, run_id FROM articles")}
    assert exported == stored
    assert all(when for when, _ in exported.values())
    rows = list(csv.DictReader(io.StringIO(export(story_db, "--format", "csv", "--no-text"))))
    assert {r["article_id"]: r["ingested_at"] for r in rows} == {key: when for key, (when, _) in stored.items()}


def test_csv_has_one_row_per_article_with_its_story(story_db: Path):
    rows = list(csv.DictReader(io.StringIO(export(story_db, "--format", "csv"))))
    assert len(rows) == 10
    assert list(rows[0]) == csv_columns(with_text=True)
    assert {r["story_id"] for r in rows} == {"1", "2", "3"}
    library = [r for r in rows if r["story_id"] == "3"]
    assert library[0]["story_title"] == "Library to open on Sundays again" and library[0]["role"] == "canonical"
    assert "\n" in library[0]["text"]  # multi-line texts survive CSV quoting
    assert json.loads(next(r for r in rows if r["extra"])["extra"]) == {"section": "politics"}


def test_min_size_and_no_text(story_db: Path):
    rows = list(csv.DictReader(io.StringIO(export(story_db, "--format", "csv", "--min-size", "2", "--no-text"))))
    assert len(rows) == 9 and {r["story_id"] for r in rows} == {"1", "2"}
    assert "text" not in rows[0]


def test_export_to_standard_output(story_db: Path, capsys):
    assert cli.main(["export", "--db", str(story_db), "--format", "jsonl", "--no-text"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    assert "exported 3 stories, 10 articles" in captured.err


def test_stories_with_articles_streams(story_db: Path):
    store = open_store(story_db)
    try:
        stream = store.stories_with_articles(with_text=False)
        story, articles = next(stream)  # a generator: the first story comes before the rest are read
        assert story["story_id"] == 1 and len(articles) == 6
        assert [s["story_id"] for s, _ in stream] == [2, 3]
    finally:
        store.close()


@pytest.mark.parametrize("fmt, expected", [("jsonl", ""), ("csv", ",".join(csv_columns(False)) + "\n")])
def test_an_empty_database_exports_nothing_but_a_header(fmt: str, expected: str):
    out = io.StringIO()
    counts = write_stories(iter(()), out, fmt, with_text=False)
    assert (counts.stories, counts.articles) == (0, 0)
    assert out.getvalue() == expected


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="jsonl, csv"):
        write_stories(iter(()), io.StringIO(), "xml")


@pytest.mark.parametrize("output, fmt", [
    ("a2.csv", "csv"), ("out/A2.CSV", "csv"), ("s.jsonl", "jsonl"), ("s.ndjson", "jsonl"),
    ("stories.txt", "jsonl"), ("noext", "jsonl"), (None, "jsonl"),
])
def test_the_format_follows_the_output_files_extension(output, fmt):
    assert format_for(output) == fmt


def test_export_to_a_csv_file_without_format_writes_csv(story_db: Path, capsys):
    out = story_db.parent / "a2.csv"
    assert cli.main(["export", "--db", str(story_db), "--output", str(out), "--no-text"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 10 and list(rows[0]) == csv_columns(with_text=False)
    assert "to " + str(out) + " (csv)" in capsys.readouterr().err
    # An explicit --format is the user's choice, whatever the name says.
    assert cli.main(["export", "--db", str(story_db), "--output", str(out), "--format", "jsonl", "--no-text"]) == 0
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["story_id"] == 1
