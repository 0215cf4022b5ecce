"""Stories with their articles written out as JSON Lines or CSV, streamed story by story; or the
articles alone in ingest's own JSON Lines format, so that a database can be rebuilt from them."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import PurePath
from typing import Iterable, TextIO

from .extract import RECORD_FIELDS

FORMATS = ("jsonl", "csv", "articles")
# What an output file's name says it holds; anything else (and standard output) gets jsonl.
FORMAT_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
DEFAULT_FORMAT = "jsonl"

STORY_COLUMNS = (
    "story_id", "title", "article_count", "outlets", "first_published", "last_published",
    "canonical_article_id", "canonical_url",
)
ARTICLE_COLUMNS = (
    "article_id", "role", "similarity", "duplicate_of", "title", "source", "published", "language",
    "url", "external_id", "content_hash", "ingested_at", "run_id", "extra", "text",
)

StoryRows = Iterable[tuple[dict, list[dict]]]


@dataclass(frozen=True)
class ExportCounts:
    """How much an export wrote."""

    stories: int
    articles: int


def role(article: dict) -> str:
    """How an article stands in its story: canonical, near-duplicate (a copy) or variant (own write-up)."""
    if article["is_canonical"]:
        return "canonical"
    return "near-duplicate" if article["duplicate_of"] else "variant"


def csv_columns(with_text: bool) -> list[str]:
    """The CSV header: the story's columns (story_*), then the article's."""
    story = [key if key.startswith("story_") else f"story_{key}" for key in STORY_COLUMNS]
    return story + [key for key in ARTICLE_COLUMNS if with_text or key != "text"]


def _article_record(article: dict, with_text: bool) -> dict:
    record = {key: article.get(key) for key in ARTICLE_COLUMNS if with_text or key != "text"}
    record["role"] = role(article)
    return record


def write_jsonl(stories: StoryRows, out: TextIO, with_text: bool = True) -> ExportCounts:
    """One JSON object per line: the story's fields with its articles nested under "articles"."""
    story_count = article_count = 0
    for story, articles in stories:
        members = []
        for article in articles:
            record = _article_record(article, with_text)
            # Stored as JSON text; nested as an object here so consumers need not parse twice.
            record["extra"] = json.loads(record["extra"]) if record["extra"] else None
            members.append(record)
        line = {key: story[key] for key in STORY_COLUMNS}
        line["articles"] = members
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        story_count += 1
        article_count += len(members)
    return ExportCounts(story_count, article_count)


def write_csv(stories: StoryRows, out: TextIO, with_text: bool = True) -> ExportCounts:
    """One row per article, its story's fields repeated in the story_* columns."""
    columns = csv_columns(with_text)
    article_keys = columns[len(STORY_COLUMNS):]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    story_count = article_count = 0
    for story, articles in stories:
        story_values = [story[key] for key in STORY_COLUMNS]
        for article in articles:
            record = _article_record(article, with_text)
            writer.writerow(story_values + [record[key] for key in article_keys])
            article_count += 1
        story_count += 1
    return ExportCounts(story_count, article_count)


def ingest_record(article: dict) -> dict:
    """One stored article as the JSON Lines record it re-ingests from (`id` is its external id).

    The text is the stored text, already extracted: an HTML page comes back as its article."""
    record = {
        "id": article["external_id"], "title": article["title"], "url": article["url"],
        "source": article["source"], "published": article["published"], "text": article["text"],
    }
    record = {key: value for key, value in record.items() if value is not None}
    extra = json.loads(article["extra"]) if article["extra"] else {}
    # An ingested record's other fields were kept in extra (where ingest puts every field but
    # RECORD_FIELDS), so they go back at the top level; none can shadow a field above.
    record.update((key, value) for key, value in extra.items() if key not in RECORD_FIELDS)
    return record


def write_articles(articles: Iterable[dict], out: TextIO) -> ExportCounts:
    """One article a line, in the order they were stored, in the format `newsdedup ingest` reads."""
    stories: set[int] = set()
    count = 0
    for article in articles:
        out.write(json.dumps(ingest_record(article), ensure_ascii=False) + "\n")
        stories.add(article["story_id"])
        count += 1
    return ExportCounts(len(stories), count)


def format_for(output: str | None) -> str:
    """The export format an output file's extension names (".csv" -> "csv"), else "jsonl"."""
    if not output:
        return DEFAULT_FORMAT
    path = PurePath(output[:-3] if output.lower().endswith(".gz") else output)  # stories.csv.gz: csv, gzipped
    return FORMAT_BY_SUFFIX.get(path.suffix.lower(), DEFAULT_FORMAT)


def write_stories(stories: StoryRows, out: TextIO, fmt: str, with_text: bool = True) -> ExportCounts:
    """Write stories in `fmt` ("jsonl" or "csv") to `out`; returns what was written."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown story export format {fmt!r}; choose jsonl or csv (articles: write_articles)")
    writer = write_jsonl if fmt == "jsonl" else write_csv
    return writer(stories, out, with_text)
