"""Stories with their articles written out as JSON Lines or CSV, streamed story by story."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import PurePath
from typing import Iterable, TextIO

FORMATS = ("jsonl", "csv")
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


def format_for(output: str | None) -> str:
    """The export format an output file's extension names (".csv" -> "csv"), else "jsonl"."""
    if not output:
        return DEFAULT_FORMAT
    return FORMAT_BY_SUFFIX.get(PurePath(output).suffix.lower(), DEFAULT_FORMAT)


def write_stories(stories: StoryRows, out: TextIO, fmt: str, with_text: bool = True) -> ExportCounts:
    """Write stories in `fmt` ("jsonl" or "csv") to `out`; returns what was written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    writer = write_jsonl if fmt == "jsonl" else write_csv
    return writer(stories, out, with_text)
