"""newsdedup export: stories with their articles as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pipeline import cli
from pipeline.export import csv_columns, format_for, write_stories
from pipeline.extract import RECORD_FIELDS
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
    with pytest.raises(ValueError, match="choose jsonl or csv"):
        write_stories(iter(()), io.StringIO(), "xml")


@pytest.mark.parametrize("output, fmt", [
    ("a2.csv", "csv"), ("out/A2.CSV", "csv"), ("s.jsonl", "jsonl"), ("s.ndjson", "jsonl"),
    ("stories.txt", "jsonl"), ("noext", "jsonl"), (None, "jsonl"), ("s.csv.gz", "csv"), ("s.jsonl.gz", "jsonl"),
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


# --format articles: the stored articles as inputs to `newsdedup ingest` (rebuild a database).

_ARTICLE_COLUMNS = "id, external_id, url, title, source, published, content_hash, duplicate_of, language, extra"


def _articles(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {_ARTICLE_COLUMNS} FROM articles ORDER BY id").fetchall()


def _partition(db: Path) -> list[list[str]]:
    with sqlite3.connect(db) as conn:
        stories: dict[int, list[str]] = {}
        for article_id, story_id in conn.execute("SELECT id, story_id FROM articles ORDER BY id"):
            stories.setdefault(story_id, []).append(article_id)
    return sorted(stories.values())


@pytest.fixture(scope="module")
def mixed_db(tmp_path_factory, settings) -> Path:
    """Text files, HTML pages and JSON Lines records (one with an extra field, one rejected), in one batch."""
    from pipeline.ingest import ingest

    root = tmp_path_factory.mktemp("mixed")
    pages = root / "pages"
    pages.mkdir()
    for page in sorted((Path(__file__).parent / "data" / "html" / "html").glob("*.html.gz"))[:12]:
        (pages / page.name).write_bytes(page.read_bytes())
    path = root / "stories.db"
    report = ingest([str(Path(__file__).parent.parent / "seeds"), str(pages),
                     str(Path(__file__).parent / "data" / "outlets.jsonl")], settings, path)
    assert report.batches == 1 and report.rejects >= 1  # one batch: a rebuild meets the same batch
    return path


def test_articles_format_rebuilds_the_same_articles_and_stories(mixed_db: Path, settings, tmp_path: Path):
    from pipeline.ingest import ingest

    dump = tmp_path / "all.jsonl"
    assert cli.main(["export", "--db", str(mixed_db), "--format", "articles", "-o", str(dump)]) == 0
    records = [json.loads(line) for line in dump.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(_articles(mixed_db))
    # HTML pages come back as their extracted article: the export holds text, not markup.
    assert all("<html" not in r["text"].lower() for r in records)

    rebuilt = tmp_path / "rebuilt.db"
    report = ingest([str(dump)], settings, rebuilt)
    assert report.rejects == 0 and report.new_articles == len(records)
    # Same ids (from URL, or input id and content), same metadata and extra fields, same stories.
    assert _articles(rebuilt) == _articles(mixed_db)
    assert _partition(rebuilt) == _partition(mixed_db)
    assert len(_partition(mixed_db)) < len(records)  # some articles do share a story


def test_the_export_re_ingested_into_its_own_database_adds_nothing(mixed_db: Path, settings, tmp_path: Path):
    from pipeline.ingest import ingest

    copy = tmp_path / "copy.db"
    with sqlite3.connect(mixed_db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    dump = tmp_path / "all.jsonl"
    assert cli.main(["export", "--db", str(copy), "--format", "articles", "-o", str(dump)]) == 0
    before = _articles(copy)
    report = ingest([str(dump)], settings, copy)
    assert report.new_articles == 0 and report.unchanged == len(before)
    assert _articles(copy) == before


def test_a_rebuild_takes_the_new_settings(mixed_db: Path, settings, tmp_path: Path):
    """The point of a rebuild: stricter story matching splits what looser matching joined."""
    from pipeline.ingest import ingest

    dump = tmp_path / "all.jsonl"
    assert cli.main(["export", "--db", str(mixed_db), "--format", "articles", "-o", str(dump)]) == 0
    strict = settings.model_copy(update={"matching": settings.matching.model_copy(
        update={"story_similarity": 0.95, "merge_similarity": 0.95})})
    rebuilt = tmp_path / "strict.db"
    ingest([str(dump)], strict, rebuilt)
    assert _articles(rebuilt) == _articles(mixed_db)
    assert len(_partition(rebuilt)) > len(_partition(mixed_db))


def test_articles_format_is_in_stored_order_and_filters(story_db: Path):
    with sqlite3.connect(story_db) as conn:
        stored = [row[0] for row in conn.execute("SELECT external_id FROM articles ORDER BY rowid")]
        big = {row[0] for row in conn.execute(
            "SELECT external_id FROM articles WHERE story_id IN (SELECT id FROM stories WHERE article_count >= 3)"
        )}
    every = [json.loads(line)["id"] for line in export(story_db, "--format", "articles").splitlines()]
    assert every == stored
    at_least_3 = [json.loads(line)["id"] for line in export(story_db, "--format", "articles", "--min-size", "3").splitlines()]
    assert set(at_least_3) == big and len(big) < len(stored)
    assert export(story_db, "--format", "articles", "--since", "2999-01-01") == ""
    records = [json.loads(line) for line in export(story_db, "--format", "articles").splitlines()]
    sessions = next(r for r in records if r["id"] == "harbor-2020-0403-sessions")
    assert sessions["section"] == "politics"  # an extra field goes back where ingest found it
    assert set(sessions) == {"id", "title", "url", "source", "published", "text", "section"}


def test_articles_format_refuses_no_text(story_db: Path, capsys):
    code = cli.main(["export", "--db", str(story_db), "--format", "articles", "--no-text"])
    assert code == 2
    assert "leave out --no-text" in capsys.readouterr().err


_WORDS = st.sampled_from(
    "council vote budget river bridge minister strike court ruling storm harbor election mayor "
    "police fire school hospital Zürich café naïve Ångström São Paulo 2024 3.2 million".split()
)
_NOISE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)


@st.composite
def _records(draw) -> list[dict]:
    records = []
    for number in range(draw(st.integers(1, 4))):
        words = draw(st.lists(_WORDS, min_size=30, max_size=80))
        text = " ".join(words) + draw(_NOISE) + "\n\n" + " ".join(reversed(words))
        record: dict = {"text": text}
        if draw(st.booleans()):
            record["id"] = f"rec-{number}-{draw(st.integers(0, 99))}"
        if draw(st.booleans()):
            record["title"] = draw(st.text(min_size=1, max_size=40))
        if draw(st.booleans()):
            record["url"] = f"https://news.example/{number}/{draw(st.integers(0, 999))}"
        if draw(st.booleans()):
            record["source"] = draw(st.sampled_from(["Harbor Wire", "Valley Daily", "Gazette | News"]))
        if draw(st.booleans()):
            record["published"] = draw(st.sampled_from(["2024-01-02", "2024-01-02T10:30:00Z", "tomorrowish"]))
        extra = draw(st.dictionaries(
            st.text(min_size=1, max_size=8).filter(lambda key: key not in RECORD_FIELDS),
            st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3)),
            max_size=2,
        ))
        record.update(extra)
        records.append(record)
    return records


@given(_records())
@hsettings(max_examples=40, deadline=None)
def test_whatever_was_stored_comes_back_the_same_article_from_an_articles_export(records):
    """Round trip: ingest, export --format articles, ingest into a new database: the same rows."""
    import tempfile

    from pipeline.export import write_articles
    from pipeline.ingest import ingest
    from pipeline.settings import load_settings

    settings = load_settings(Path(__file__).parent.parent / "config" / "test.toml", environ={})
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        first = Path(tmp) / "first.db"
        ingest([str(source)], settings, first)
        assert _articles(first)  # texts of 60+ words are always articles
        dump = Path(tmp) / "all.jsonl"
        store = open_store(first)
        try:
            with dump.open("w", encoding="utf-8") as out:
                write_articles(store.articles_in_stored_order(), out)
        finally:
            store.close()
        second = Path(tmp) / "second.db"
        report = ingest([str(dump)], settings, second)
        assert report.rejects == 0
        assert _articles(second) == _articles(first)


def test_an_output_named_gz_is_gzipped_and_reads_back(story_db: Path, tmp_path: Path, settings):
    """(QA pass: -o stories.jsonl.gz wrote plain JSON that ingest then refused as "not gzip".)"""
    import gzip

    from pipeline.ingest import ingest

    out = tmp_path / "all.jsonl.gz"
    assert cli.main(["export", "--db", str(story_db), "--format", "articles", "--output", str(out)]) == 0
    with gzip.open(out, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert len(lines) == _articles_count(story_db)
    rebuilt = ingest([str(out)], settings, tmp_path / "rebuilt.db")
    assert rebuilt.new_articles == len(lines) and rebuilt.rejects == 0


def _articles_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM articles").fetchone()[0]
