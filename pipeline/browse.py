"""Datasette on the story database: the metadata that explains it, and a read-only local server."""

from __future__ import annotations

import logging
import socket
import threading
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from datasette.utils import tilde_encode
from markupsafe import escape

from .errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8001  # Datasette's own default, so its documentation's URLs still apply
HOST = "127.0.0.1"  # the database is the user's own: never expose it beyond this machine

DEFAULT_SOURCE = "News articles ingested with 'newsdedup ingest' (each run is listed in the runs table)"
DEFAULT_LICENSE = "Each article remains under its publisher's copyright"

_ARTICLE = {
    "article_id": "The article's stable id (from its canonical URL, else its content hash)",
    "title": "Headline as published (empty when the input had none)",
    "source": "The outlet that published it (JSON Lines 'source', HTML site name)",
    "published": "Publication date or time, ISO 8601",
    "url": "Canonical URL, when known",
    "external_id": "The input's own id, or its path (plus :N for line N of a JSON Lines file)",
    "similarity": "Similarity to the story's canonical article (1.0 for the canonical article and its exact copies)",
    "duplicate_of": "For a near-duplicate (a reprint or lightly edited copy): the article it copies",
    "story_id": "The story (one event) this article belongs to",
}

_STORY = {
    "story_id": "The story's id",
    "title": "The canonical article's headline (or its first sentence when untitled)",
    "article_count": "How many articles tell this story",
    "outlets": "The distinct outlets that ran it, comma-separated",
    "first_published": "Earliest publication date among its articles",
    "last_published": "Latest publication date among its articles",
    "canonical_article_id": "The article chosen to represent the story (the most complete early original report)",
    "canonical_url": "The canonical article's URL",
    "updated_at": "When the story last changed (UTC)",
}

_TABLES: dict[str, dict] = {
    "story_overview": {
        "title": "Stories",
        "description": "One row per story: canonical title, size, outlets and dates. Biggest first.",
        "columns": _STORY,
        "facets": ["article_count", {"date": "first_published"}],
        "sort_desc": "article_count",
    },
    "story_articles": {
        "title": "Articles by story",
        "description": "Each story's articles with their similarity to its canonical article. "
        "Filter by story_id to read one story.",
        "columns": {**_ARTICLE, "is_canonical": "1 for the story's canonical article, else 0"},
        "facets": ["source", {"date": "published"}, "is_canonical"],
        "sort_desc": "similarity",
    },
    "near_duplicate_pairs": {
        "title": "Near-duplicate pairs",
        "description": "Reprints and lightly edited copies, each next to the article it copies.",
        "columns": {
            **_ARTICLE,
            "article_id": "The copy",
            "original_id": "The article it copies",
            "original_title": "The original's headline",
            "original_source": "The original's outlet",
            "original_published": "The original's publication date",
            "original_url": "The original's URL",
            "exact_copy": "1 when the texts are identical after normalization, 0 for an edited copy",
        },
        "facets": ["source", "original_source", "exact_copy"],
    },
    "outlet_days": {
        "title": "Articles per outlet per day",
        "description": "How many articles, stories and near-duplicates each outlet published each day.",
        "columns": {
            "outlet": "The article's source, or '(no source)'",
            "day": "Publication day (YYYY-MM-DD); empty for undated articles",
            "articles": "Articles that outlet published that day",
            "stories": "Distinct stories among them",
            "near_duplicates": "How many of them are copies of another article",
        },
        "facets": ["outlet"],
    },
    "articles": {
        "description": "Every stored article with its full text. Search titles and texts with the box above "
        "(add _searchmode=raw to the URL for FTS5 syntax such as \"attorney general\" AND alabama).",
        "label_column": "title",
        "fts_table": "articles_fts",
        "fts_pk": "rowid",
        "columns": {
            **_ARTICLE,
            "id": _ARTICLE["article_id"],
            "text": "The article's text as extracted (the display text, not the normalized matching text)",
            "content_hash": "Hash of the normalized text: equal hashes mean identical content",
            "ingested_at": "When this article was stored (UTC)",
            "run_id": "The ingest run that stored it (see runs)",
            "extra": "Other fields of the input record, as JSON",
            "language": "The language its terms were weighed in, told from its text (wordfreq's codes: en, de, ru, ...); "
            "empty for articles stored before newsdedup told languages (weighed as English)",
        },
        "facets": ["source", "language", {"date": "published"}],
        "sort_desc": "published",
    },
    "stories": {
        "description": "One row per story. Open a story to see its articles (links below its row), "
        "or use the 'Articles by story' view.",
        "label_column": "title",
        "columns": {**_STORY, "id": _STORY["story_id"], "created_at": "When the story was first seen (UTC)"},
        "facets": [{"date": "first_published"}],
        "sort_desc": "article_count",
    },
    "rejects": {
        "description": "Inputs that could not be stored, with the stage and the reason, so they can be replayed.",
        "columns": {
            "id": "Row id",
            "ref": "The input (same form as articles.external_id)",
            "stage": "The stage that refused it (read, extract, ...)",
            "reason": "Why, in plain words",
            "detail": "The technical cause, when there is one",
            "input": "The file or URL given to 'newsdedup ingest'",
            "run_id": "The ingest run (see runs)",
            "at": "When (UTC)",
        },
        "facets": ["stage", "reason"],
    },
    "story_splits": {
        "description": "Stories an editor split out of another ('newsdedup split'): matching keeps the two apart.",
        "columns": {
            "story_id": "The story made of the articles moved out",
            "split_from": "The story they were moved out of",
            "articles": "How many articles moved (near-duplicates of the named ones included)",
            "at": "When (UTC)",
        },
        "sort_desc": "at",
    },
    "removed_articles": {
        "description": "Articles taken out with 'newsdedup remove' (no title or text kept): an input with the same "
        "article (or, removed with its copies, the same text) is refused into rejects with the reason.",
        "columns": {
            "article_id": "The removed article's id",
            "external_id": "Its input id (URL, file or record id)",
            "url": "Its canonical URL, if it had one: not fetched again",
            "content_hash": "Hash of its normalized text: the same text without a URL, or under any URL when "
            "removed with its copies, is refused too",
            "with_copies": "1: removed with its near-duplicates ('--with-copies'), its text kept out under any URL",
            "story_id": "The story it was in when removed",
            "reason": "Why it was removed, as given to 'newsdedup remove --reason'",
            "removed_at": "When (UTC)",
        },
        "sort_desc": "removed_at",
    },
    "runs": {
        "description": "One row per ingest run with its counts: inputs = new articles + unchanged + rejects.",
        "columns": {
            "run_id": "The run's id (the Prefect flow run id, or a local one)",
            "started_at": "When it started (UTC)",
            "finished_at": "When it finished (UTC); empty if it stopped early",
            "inputs": "Inputs read",
            "new_articles": "Articles stored",
            "unchanged": "Inputs already in the database (re-ingests)",
            "near_duplicates": "New articles that copy another",
            "new_stories": "Stories started",
            "grown_stories": "Existing stories that gained articles",
            "merged_stories": "Stories merged into another",
            "rejects": "Inputs that could not be stored (see rejects)",
        },
        "sort_desc": "started_at",
    },
}

_QUERIES = {
    "stories_matching": {
        "title": "Stories matching a search",
        "description": "Full-text search over article titles and texts, one row per story (FTS5 syntax).",
        "sql": (
            "select s.story_id, s.title, s.article_count, s.outlets, s.first_published, "
            "count(*) as matching_articles\n"
            "from articles_fts\n"
            "join articles a on a.rowid = articles_fts.rowid\n"
            "join story_overview s on s.story_id = a.story_id\n"
            "where articles_fts match :search\n"
            "group by s.story_id\n"
            "order by min(articles_fts.rank)\n"
            "limit 100"
        ),
    },
}


def _register_plugin() -> None:
    from datasette.plugins import pm

    from . import datasette_plugin

    if not pm.is_registered(datasette_plugin):
        pm.register(datasette_plugin, name="newsdedup")


# The article columns worth reading in search results (id is always shown): the full text and
# bookkeeping columns make a results page too wide to scan.
_SEARCH_COLUMNS = "&".join(f"_col={c}" for c in ("story_id", "title", "source", "published", "text"))

_START_HTML = (
    '<p>Start with <a href="/{db}/story_overview">the stories</a>, biggest first, and click a story id to '
    "read its articles, canonical first, with their similarity. "
    '<a href="/{db}/articles?{search}">Search the articles</a> by words in their titles and texts. '
    'Also: <a href="/{db}/near_duplicate_pairs">near-duplicate pairs</a> (reprints and edited copies) and '
    '<a href="/{db}/outlet_days">articles per outlet per day</a>.</p>'
)


def database_name(db_path: str | Path) -> str:
    """The name Datasette gives a database file: its stem (stories.db -> stories)."""
    return Path(db_path).stem


def metadata(
    db_path: str | Path,
    layout: dict[str, list[str]],
    source: str = DEFAULT_SOURCE,
    source_url: str | None = None,
    license: str = DEFAULT_LICENSE,
    license_url: str | None = None,
) -> dict:
    """Datasette metadata for a story database (`layout`: each table and view with its columns).

    Descriptions, facets, label columns and full-text search for the public tables and views;
    the private tables (names starting with '_') hidden.
    """
    tables: dict[str, dict] = {}
    for name, columns in layout.items():
        if name.startswith("_"):
            tables[name] = {"hidden": True}
        elif name in _TABLES:
            config = dict(_TABLES[name])
            # Only the columns this database has (an older or newer schema must not show stale
            # ones), in the table's own order, which is how Datasette lists them.
            described = config.get("columns", {})
            config["columns"] = {c: described[c] for c in columns if c in described}
            tables[name] = config
    top: dict = {
        "title": "newsdedup stories",
        "description": "News articles grouped into stories (one event each), with each story's canonical "
        "article, its variants from other outlets, and near-duplicate reprints.",
        "source": source,
        "license": license,
    }
    if source_url:
        top["source_url"] = source_url
    if license_url:
        top["license_url"] = license_url
    name = database_name(db_path)
    top["databases"] = {
        name: {
            "description_html": _START_HTML.format(db=escape(tilde_encode(name)), search=escape(_SEARCH_COLUMNS)),
            "tables": tables,
            "queries": _QUERIES,
        }
    }
    return top


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


@dataclass(frozen=True)
class BrowseOptions:
    """How to serve the database."""

    db_path: Path
    port: int = DEFAULT_PORT
    open_browser: bool = True
    # Immutable: the caller promises nothing writes the database while it is served (a copy, a
    # snapshot, read-only media). Otherwise it is opened read-only (mode=ro) and sees new rows.
    immutable: bool = False


def datasette_instance(db_path: Path, meta: dict, immutable: bool = False):
    """A started Datasette app object serving one story database read-only, with newsdedup's plugin."""
    import asyncio

    from datasette.app import Datasette

    path = str(db_path)
    # Before the app is made: Datasette applies the plugin's ASGI wrapper when it builds it.
    _register_plugin()
    # Immutable is the fastest way (no -shm file, counts cached), but SQLite then trusts the file
    # never to change: an ingest that writes it later gives "database disk image is malformed"
    # errors and stale pages until the server restarts. So it is only ever asked for; the
    # default, mode=ro, reads what each committed batch adds and still cannot write.
    datasette = Datasette(
        files=[] if immutable else [path],
        immutables=[path] if immutable else [],
        metadata=meta,
        # Article texts are long: a short excerpt per cell keeps result tables readable.
        settings={"truncate_cells_html": 160, "default_page_size": 50},
    )
    asyncio.run(datasette.invoke_startup())
    return datasette


def url_for(options: BrowseOptions) -> str:
    """Where the database's page will be."""
    return f"http://{HOST}:{options.port}/{tilde_encode(database_name(options.db_path))}"


def serve(options: BrowseOptions, meta: dict, on_start: Callable[[str], None] | None = None) -> None:
    """Run Datasette on the database until interrupted; `on_start` gets the URL just before it listens.

    Raises:
        UsageError: the port is taken.
    """
    import uvicorn

    if _port_in_use(options.port):
        raise UsageError(f"port {options.port} on {HOST} is in use; choose another with --port")
    datasette = datasette_instance(options.db_path, meta, options.immutable)
    url = url_for(options)
    if options.open_browser:
        threading.Thread(target=_open_when_ready, args=(options.port, url), daemon=True).start()
    if on_start:
        on_start(url)
    uvicorn.run(datasette.app(), host=HOST, port=options.port, log_level="warning", lifespan="on")


def _open_when_ready(port: int, url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _port_in_use(port):
            webbrowser.open(url)
            return
        time.sleep(0.2)
    log.warning("the server did not start within %.0f s; not opening a browser", timeout_s)
