"""The `newsdedup` command: ingest, list and show stories, search, evaluate, inspect rejects."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import signal
import sqlite3
import sys
import textwrap
import time
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Sequence, TextIO

from .errors import DamagedDatabaseError, PipelineError, StoreError, UsageError, WorkerError
from .report import plural
from .settings import load_settings

if TYPE_CHECKING:  # the store (sqlite-utils) is imported only by the commands that open one
    from .store import Store

EXIT_CODES = """exit codes:
  0  success
  1  internal error (a bug: please report it with the traceback from NEWSDEDUP_DEBUG=1)
  2  usage error (bad arguments, unknown story id)
  3  configuration error (unknown key, wrong type, missing file)
  4  database error (cannot open, not a story database, other schema)
  5  the Prefect server could not start, or the one PREFECT_API_URL names does not answer
  6  a worker process died (killed, or out of memory); what was committed is stored
  7  nothing could be read from the run's web sources (no feed or page answered; see 'newsdedup rejects')
  8  'newsdedup check' found the database damaged or inconsistent
  130  interrupted (Ctrl-C); what was committed is stored
  143  stopped by SIGTERM (--engine local); what was committed is stored"""

COMMANDS = {
    "ingest": (
        "Ingest articles from files, directories, page URLs, feeds and sitemaps into the story database.",
        """examples:
  newsdedup ingest seeds/
  newsdedup ingest articles.jsonl pages/ --db data/stories.db
  newsdedup ingest big.jsonl.gz --engine local     # no Prefect, fastest for one-off loads
  newsdedup ingest --retry-rejects                 # replay rejected inputs after fixing them
  newsdedup ingest https://example.org/feed.xml    # a feed: its pages are fetched and stored
  jq -c '.items[]' dump.json | newsdedup ingest -  # JSON Lines (plain or gzipped) from standard input
  newsdedup ingest https://example.org/sitemap.xml.gz --kind sitemap
  newsdedup ingest saved-feed.rss sitemap.xml      # feed and sitemap files; their links are fetched
  newsdedup ingest pages/ --runner dask --dask-address tcp://10.0.0.5:8786

inputs: .txt (first line title, or a 'date YYYY-MM-DD' marker), .html/.htm/.html.gz
(trafilatura), .jsonl/.jsonl.gz (one article per line; 'text' required; 'id', 'title',
'url', 'source', 'published' optional). Directories are searched recursively.
Web: http(s) URLs of pages, RSS/Atom/RDF/JSON feeds and sitemaps (gzipped too), and feed or
sitemap files (.xml .rss .atom .rdf .json, .gz). Fetching is polite and bounded (robots.txt,
per-host delay, timeouts, size caps; see [fetch] in config/default.toml); URLs already stored
are not fetched again, and a feed that has not changed costs one conditional request.""",
    ),
    "stories": (
        "List stories: id, size, canonical title, outlets, dates.",
        """examples:
  newsdedup stories
  newsdedup stories --limit 20 --min-size 2
  newsdedup stories --since 24h --sort updated   # what changed in the last day, latest first
  newsdedup stories --json | jq .""",
    ),
    "show": (
        "Show one story: its canonical article and its variants with their similarity.",
        """examples:
  newsdedup show 1
  newsdedup show 1 --text      # print the canonical article's text too
  newsdedup show https://example.org/news/flood.html   # the story an article is in""",
    ),
    "search": (
        "Full-text search over article titles and texts (SQLite FTS5 syntax).",
        """examples:
  newsdedup search sessions
  newsdedup search '"attorney general" AND alabama' --limit 5
  newsdedup search '"COVID-19" vaccine'     # a word with a hyphen goes in double quotes""",
    ),
    "rejects": (
        "List inputs that could not be stored, with the stage and the reason.",
        """examples:
  newsdedup rejects                # the 20 most recent
  newsdedup rejects --limit 0      # every one
  newsdedup rejects --json""",
    ),
    "runs": (
        "List ingest runs: when, how long, what they stored, and whether they finished.",
        """examples:
  newsdedup runs                   # the 20 most recent, latest first
  newsdedup runs --since 24h       # every run of the last day
  newsdedup runs --json | jq 'select(.status != "finished")'

status: finished; running (storing batches: it holds the database's run lock); reading (alive,
before its first batch is stored: reading its inputs, or waiting for the running one); or
unfinished: it was killed, crashed or interrupted. An unfinished run's stored batches are
counted, and running the same inputs again adds only what is missing.""",
    ),
    "check": (
        "Check that the story database is whole: SQLite's checks and the stories' own invariants.",
        """examples:
  newsdedup check                      # after a crash, a full disk, a copy or a restore
  newsdedup check --db snapshot.db --quick
  newsdedup check --json || alert      # exit 8 when something is wrong

Checks SQLite's integrity (--quick: its faster quick_check), that rows point at rows that
exist, that each story's count and canonical article match its articles, that every article
has its matching signature and is stored once, the matching state later runs compare new
articles with (story states, near-duplicate index, story buckets), and the search index.
It only reads (FTS5's
check of the search index takes the write lock for its duration, between a running ingest's
batches). Notes, such as articles a killed run left for the next run to index, are not
problems.""",
    ),
    "archive": (
        "Move stories that stopped growing into an archive database, to keep the live one small.",
        """examples:
  newsdedup archive --before 90d --to data/archive.db             # stories with nothing new for 90 days
  newsdedup archive --before 2026-01-01 --to data/2025.db --dry-run
  newsdedup archive --before 30d --by published --to data/old.db  # by their newest article's date

Each story goes whole, with its articles, matching state and search entries, into the archive:
a story database of its own that stories, show, search, export, check and browse open with
--db. What stays behind is what re-runs need: an input read again that was archived counts as
unchanged, not new. Archived stories are no longer matched: an article about one of them later
starts a new story. The story of the newest article always stays. Safe to stop: running the same
archive again finishes the move, and nothing is ever in neither file.""",
    ),
    "merge": (
        "Merge stories an editor knows are one event (the merge sticks; later articles meet the merged story).",
        """examples:
  newsdedup merge 12 48               # into the larger of the two
  newsdedup merge 12 48 97 --into 48  # into story 48
  newsdedup search '"Jeff Sessions"'  # find the stories first

Recorded in story_merges like the merges runs make, so 'newsdedup show 12' of an absorbed id
says where it went. The merged story's canonical article, title, size, dates, similarities and
matching state are worked out from all its articles.""",
    ),
    "split": (
        "Move articles that tell another event out of their story into a story of their own (kept apart).",
        """examples:
  newsdedup split 3f2a9c0d1e4b5a67                  # one article out of its story
  newsdedup split URL1 URL2 --db data/stories.db     # two articles of the same story, together
  newsdedup show 12                                  # find the article ids first

The articles named (all of one story) move with their near-duplicates into a new story; both
stories are worked out again (canonical article, title, size, dates, similarities, matching
state). Recorded in story_splits; later runs never merge the two stories again, and later
articles of either event find their own. 'newsdedup merge' of the two undoes it.""",
    ),
    "remove": (
        "Take articles out of the story database for good (a takedown, a retraction), and keep them out.",
        """examples:
  newsdedup remove https://example.org/news/flood.html --reason "legal request 2026-114" --dry-run
  newsdedup remove 3f2a9c0d1e4b5a67 --reason "retracted by the outlet"
  newsdedup remove URL1 URL2 --reason "wire copy stored by mistake" --with-copies   # their reprints too

Name articles by id, URL or input id: the URL given to ingest, the file's path as ingested
(or any path to the same file), or a JSON Lines record's id; 'newsdedup show STORY' lists a
story's. A name stored several times (an input read again with other content) removes each.

Each article goes with its title, text, signatures and search entry, from the archive too if it
was archived. Its story is worked out again from the articles it keeps (canonical article,
title, size, dates, the matching state later articles meet); a story left with none goes. Its
near-duplicates stay, the earliest becoming the original of the others, unless --with-copies
(then a reprint named stands for its original and every copy).

What is kept is a row in removed_articles (ids, URL, content hash, reason, when; no title or
text): a later input of the same article (its URL, or its file or record read again) goes to
rejects with the reason, and a crawl does not fetch its URL again; removed --with-copies, its
text is refused under any URL. If any name matches no article, nothing is removed. Run
artifacts in Prefect keep the titles they showed (docs/operations.md).""",
    ),
    "browse": (
        "Browse the story database in Datasette (read-only, on 127.0.0.1).",
        """examples:
  newsdedup browse
  newsdedup browse --db data/stories.db --port 8002 --no-open
  newsdedup browse --db snapshot.db --immutable    # a copy nothing writes to: faster

Stories, each story's articles, near-duplicate pairs and articles per outlet per day, with
facets by outlet and date and full-text search over titles and texts. See docs/querying.md.""",
    ),
    "export": (
        "Export stories with their articles (JSON Lines or CSV), or the stored articles for re-ingest.",
        """examples:
  newsdedup export --format jsonl --output stories.jsonl
  newsdedup export --format csv --no-text > articles.csv
  newsdedup export --format jsonl --min-size 2 | jq .title
  newsdedup export --since 2026-11-23T06:00Z -o changed.jsonl   # stories created or changed since then
  newsdedup export --format articles -o all.jsonl               # the articles, re-ingestible: rebuild
  NEWSDEDUP_MATCHING__STORY_SIMILARITY=0.09 newsdedup ingest all.jsonl --db rebuilt.db   # with new settings

A story merged into another is gone from later exports; the table story_merges says where it went.
With --format articles, --since picks the articles stored since WHEN (and --min-size those of
stories at least that big): each line is an input to 'newsdedup ingest', so a database can be
rebuilt under new matching settings, or moved, without the original files.""",
    ),
    "eval": (
        "Score story clustering against a labelled corpus (JSON Lines with a 'story' field).",
        """examples:
  newsdedup eval tests/data/giveme5w1h.jsonl
  newsdedup eval corpus.jsonl --batches 4 --seed 7     # as 4 shuffled incremental runs
  newsdedup eval corpus.jsonl --json""",
    ),
    "server": (
        "Run a local Prefect server (UI and API) with its own database under .prefect/.",
        """examples:
  newsdedup server                   # UI at http://127.0.0.1:4200, Ctrl-C stops it
  newsdedup server --port 4300 --home /tmp/prefect-home

then, in another terminal: export PREFECT_API_URL=http://127.0.0.1:4200/api""",
    ),
    "serve": (
        "Serve one scheduled deployment of the ingest flow per enabled source in config/sources.toml.",
        """examples:
  newsdedup serve                    # with PREFECT_API_URL=http://127.0.0.1:4200/api exported
  newsdedup serve --sources my-sources.toml --db data/stories.db

Runs execute on this machine, in subprocesses of this command: on each source's cron or
interval schedule, and on demand from the UI ('Run' on the deployment) or with
'prefect deployment run newsdedup-ingest/NAME'. An [archive] table in the sources file adds
newsdedup-archive/archive, which moves stories that stopped growing into an archive database
on its own schedule (see 'newsdedup archive --help'). Ctrl-C stops serving.""",
    ),
}


def _parser() -> argparse.ArgumentParser:
    # The one list of commands, each with an example (argparse's own list of them is left out:
    # --help listed every command twice).
    epilog = "commands:\n" + "\n".join(
        f"  {name:<8} {summary}\n           e.g. {re.sub(r' {2,}#', '   #', examples.splitlines()[1].strip())}"
        for name, (summary, examples) in COMMANDS.items()
    )
    parser = argparse.ArgumentParser(
        prog="newsdedup",
        description="Deduplicating news ingestion: articles in, stories out, in SQLite.",
        epilog=epilog + "\n\n" + EXIT_CODES + "\n\nRun 'newsdedup COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="newsdedup 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="one of the commands below")

    def command(name: str) -> argparse.ArgumentParser:
        summary, examples = COMMANDS[name]
        p = sub.add_parser(
            name, description=summary, epilog=examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return p

    def since_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--since", type=_since_argument, default=None, metavar="WHEN",
            help="only stories created or changed since WHEN: a UTC date or time (2026-11-23, "
            "2026-11-23T08:00Z) or a span back from now (30m, 24h, 7d, 2w)",
        )

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=None, help="story database (default: store.db in config, data/stories.db)")
        p.add_argument("--config", default=None, help="a TOML file overriding config/default.toml")

    p = command("ingest")
    p.add_argument(
        "paths", nargs="*", metavar="PATH",
        help="files, directories, page/feed/sitemap URLs, or feed and sitemap files to ingest; "
        "'-' reads JSON Lines from standard input",
    )
    db_option(p)
    p.add_argument(
        "--retry-rejects", action="store_true",
        help="read every input in the rejects table again (after fixing it): stored ones leave "
        "the table, still-bad ones stay with their new reason (runs in-process)",
    )
    p.add_argument(
        "--engine", choices=("prefect", "local"), default="prefect",
        help="prefect: run as a Prefect flow (default; embedded mode when no server is configured); "
        "local: plain in-process loop",
    )
    p.add_argument(
        "--runner", choices=("threads", "processes", "dask"), default=None,
        help="where the prefect engine prepares batches (default: runner.kind in config, threads); "
        "assignment and storage always stay in this process",
    )
    p.add_argument("--dask-address", default=None, metavar="tcp://HOST:PORT",
                   help="the Dask scheduler for --runner dask (default: start a local cluster)")
    p.add_argument("--workers", type=_at_least(0), default=None,
                   help="prepare processes: for the local engine (default 1), and for the threads and processes "
                   "runners and a local Dask cluster (default: runner.workers in config, 0 = one per core)")
    p.add_argument("--quiet", action="store_true",
                   help="print only the summary (and warnings); a flow run's full log stays in the Prefect UI")
    p.add_argument(
        "--kind", choices=("feed", "sitemap", "page"), default=None,
        help="what the URLs and .xml files are (default: told by each response or file)",
    )

    p = command("stories")
    db_option(p)
    p.add_argument("--limit", type=_at_least(0, " (0 shows all)"), default=50,
                   help="at most this many stories (default 50; 0 for all)")
    p.add_argument("--min-size", type=_at_least(1), default=1, help="only stories with at least this many articles")
    since_option(p)
    p.add_argument("--sort", choices=("size", "updated"), default="size",
                   help="size: largest first (default); updated: last changed first")
    p.add_argument("--json", action="store_true", help="JSON Lines instead of a table")

    p = command("show")
    p.add_argument("story", metavar="STORY",
                   help="a story id, or an article's id, URL or input id (its story is shown)")
    db_option(p)
    p.add_argument("--text", action="store_true", help="print the canonical article's text")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")

    p = command("search")
    p.add_argument("text", metavar="TEXT")
    db_option(p)
    p.add_argument("--limit", type=_at_least(0, " (0 shows all)"), default=20,
                   help="at most this many articles, best matches first (default 20; 0 for all)")
    p.add_argument("--json", action="store_true", help="JSON Lines instead of a table")

    p = command("rejects")
    db_option(p)
    p.add_argument("--limit", type=_at_least(0, " (0 shows all)"), default=20,
                   help="at most this many rejects, the most recent first (default 20; 0 for all)")
    p.add_argument("--json", action="store_true", help="JSON Lines instead of a table")

    p = command("runs")
    db_option(p)
    p.add_argument("--limit", type=_at_least(0, " (0 shows all)"), default=20,
                   help="at most this many runs, the latest first (default 20; 0 for all)")
    p.add_argument(
        "--since", type=_since_argument, default=None, metavar="WHEN",
        help="only runs started since WHEN: a UTC date or time (2026-11-23, 2026-11-23T08:00Z) "
        "or a span back from now (30m, 24h, 7d, 2w)",
    )
    p.add_argument("--json", action="store_true", help="JSON Lines instead of a table")

    p = command("check")
    db_option(p)
    p.add_argument("--quick", action="store_true",
                   help="SQLite's quick_check instead of its full integrity_check (no index-to-table comparison)")
    p.add_argument("--json", action="store_true", help="one JSON object: counts, problems, notes")

    p = command("archive")
    db_option(p)
    p.add_argument("--before", type=_since_argument, required=True, metavar="WHEN",
                   help="archive stories that last grew before WHEN: a UTC date or time (2026-01-01) or a span "
                   "back from now (90d, 12w)")
    p.add_argument("--to", required=True, metavar="ARCHIVE.db",
                   help="the archive database (made if missing; later archives add to it)")
    p.add_argument("--by", choices=("ingested", "published"), default="ingested",
                   help="a story's age: when it last grew (default), or its newest article's publication date "
                   "(for a backfill ingested at once; undated stories count by when they last grew)")
    p.add_argument("--dry-run", action="store_true", help="only say how many stories and articles would move")
    p.add_argument("--json", action="store_true", help="one JSON object: what moved")

    p = command("merge")
    p.add_argument("stories", nargs="+", type=_at_least(1), metavar="STORY",
                   help="story ids: two or more (or one, with --into naming the other)")
    db_option(p)
    p.add_argument("--into", type=_at_least(1), default=None, metavar="STORY",
                   help="the story that stays (default: the largest; of equals, the lowest id)")
    p.add_argument("--json", action="store_true", help="one JSON object: what was merged")

    p = command("split")
    p.add_argument("articles", nargs="+", metavar="ARTICLE", help="an article's id, URL or input id (all of one story)")
    db_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object: what moved")

    p = command("remove")
    p.add_argument("articles", nargs="+", metavar="ARTICLE", help="an article's id, URL or input id")
    db_option(p)
    p.add_argument("--reason", required=True, help="why (recorded with each article, and shown when it comes back)")
    p.add_argument("--with-copies", action="store_true",
                   help="remove the articles' near-duplicates (reprints) too; by default they stay")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--json", action="store_true", help="one JSON object: what was removed")

    p = command("browse")
    db_option(p)
    p.add_argument("--port", type=_at_least(0, most=65535), default=8001, help="port on 127.0.0.1 (default 8001; 0 picks a free one)")
    p.add_argument("--no-open", action="store_true", help="do not open a web browser")
    p.add_argument("--immutable", action="store_true",
                   help="for a database nothing writes while it is served (a copy, a snapshot): faster, "
                        "row counts cached; an ingest into it meanwhile would show errors and stale pages")
    # The default since immutable stopped being one; accepted so that older scripts still run.
    p.add_argument("--live", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", default=None, help="where the articles came from, shown on every page")
    p.add_argument("--source-url", default=None, help="a link for --source")
    p.add_argument("--license", default=None, help="the articles' licence, shown on every page")
    p.add_argument("--license-url", default=None, help="a link for --license")
    p.add_argument("--print-metadata", action="store_true",
                   help="print the Datasette metadata as JSON and exit (for 'datasette -m')")

    p = command("export")
    db_option(p)
    p.add_argument("--format", choices=("jsonl", "csv", "articles"), default=None,
                   help="jsonl (one story a line) or csv (one article a row), by default from the --output "
                   "file's extension (.csv or .jsonl; else jsonl); or articles: one article a line in "
                   "ingest's JSON Lines format, in the order stored, to rebuild a database from")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="write here instead of standard output (its directory must exist; a name ending "
                   "in .gz is written gzipped: stories.jsonl.gz)")
    p.add_argument("--min-size", type=_at_least(1), default=1, help="only stories with at least this many articles")
    p.add_argument("--no-text", action="store_true", help="leave out the article texts")
    since_option(p)

    p = command("eval")
    p.add_argument("corpus", metavar="CORPUS.jsonl",
                   help="a JSON Lines file (.jsonl, or gzipped .jsonl.gz): one article a line with its gold 'story'")
    p.add_argument("--config", default=None, help="a TOML file overriding config/default.toml")
    p.add_argument("--batches", type=_at_least(1), default=1, help="feed the corpus as this many shuffled runs")
    p.add_argument("--seed", type=_at_least(0), default=0, help="shuffle seed for --batches")
    p.add_argument("--worst", type=_at_least(0), default=5, help="how many worst merges and splits to list")
    p.add_argument("--json", action="store_true", help="machine-readable scores")
    p = command("server")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_at_least(0, most=65535), default=4200, help="port (default 4200)")
    p.add_argument("--home", default=None, help="PREFECT_HOME for the server's database (default: .prefect in the project)")

    p = command("serve")
    db_option(p)
    p.add_argument("--sources", default=None, help="sources file (default config/sources.toml)")
    p.add_argument("--limit", type=_at_least(1), default=None,
                   help="at most this many flow runs at once (default 2: runs into one database wait for each other)")
    return parser


_SPAN = re.compile(r"(\d+)\s*([mhdw])")
_SPAN_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> str:
    """A `--since` value as the stored UTC time format ("2026-11-23T08:00:00Z").

    Takes a date (midnight UTC), a date and time (UTC unless it gives its own offset), or a span
    back from `now`: "30m", "24h", "7d", "2w". Raises ValueError for anything else."""
    text = value.strip()
    span = _SPAN.fullmatch(text.lower())
    if span:
        moment = (now or datetime.now(timezone.utc)) - timedelta(**{_SPAN_UNITS[span[2]]: int(span[1])})
    else:
        moment = datetime.fromisoformat(text)  # 3.11 reads "2026-11-23", "...T08:00", "...Z", "+02:00"
        moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parsed_since(value: str) -> str:
    try:
        return parse_since(value)
    except OverflowError:  # "99999999d": further back than a date can go
        raise ValueError(value) from None


def _since_argument(value: str) -> str:
    try:
        return _parsed_since(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read {value!r}: give a UTC date or time (2026-11-23, 2026-11-23T08:00Z) "
            "or a span back from now (30m, 24h, 7d, 2w)"
        ) from None


# SQLite's integers are 64-bit: a larger number given on the command line cannot even be asked
# about (a QA pass got a traceback from --limit 99999999999999999999999).
_LARGEST = 2**63 - 1


def _at_least(least: int, hint: str = "", most: int = _LARGEST) -> Callable[[str], int]:
    """An argparse type for a whole number from `least` to `most`; `hint` says what the edge value means."""
    def whole_number(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = least - 1
        if number > most:
            raise argparse.ArgumentTypeError(f"{value!r} is too large: at most {most:,}")
        if number < least:
            upper = f"from {least} to {most:,}" if most != _LARGEST else f"of {least} or more"
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number {upper}{hint}")
        return number

    return whole_number


def _cell(value: object, width: int) -> str:
    """`value` on one line, cut to `width` characters (at its start when `width` is negative)."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    if len(text) <= abs(width):
        return text
    return "…" + text[len(text) - (-width - 1):] if width < 0 else text[: width - 1] + "…"


def _table(rows: Sequence[dict], columns: Sequence[tuple[str, str, int]]) -> str:
    """A plain text table; columns are (key, header, max width). A negative width cuts a long
    value at its start instead of its end: for paths and input refs, whose end (the file name,
    a JSON Lines line number) is what tells them apart."""
    cell = _cell
    widths = [
        max([len(header)] + [len(cell(row.get(key), width)) for row in rows])
        for key, header, width in columns
    ]
    lines = ["  ".join(header.ljust(w) for (_, header, _), w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(cell(row.get(key), width).ljust(w) for (key, _, width), w in zip(columns, widths)))
    return "\n".join(line.rstrip() for line in lines)


def _db(args: argparse.Namespace) -> str:
    """The story database's path: --db, else store.db of the settings.

    The settings are loaded even when --db is given, so that a mistake in --config or in a
    NEWSDEDUP_* variable stops every command (exit 3), not only the ones that use them."""
    settings = load_settings(args.config)
    return args.db or settings.store.db


def _open(args: argparse.Namespace, must_exist: bool = True):
    """The story database for a command that only reads it: opened read-only, so that it also
    works on a snapshot or a read-only mount (an older database is migrated first)."""
    from .store import open_store

    path = _db(args)
    if must_exist and not os.path.exists(path):
        raise UsageError(f"no story database at {path}: run 'newsdedup ingest PATH --db {path}' first")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        # SQLite takes an empty file for an empty database, and opening it made the schema: a
        # copy or restore that failed then passed 'newsdedup check' as sound (a QA pass).
        raise DamagedDatabaseError(
            f"{path} is an empty file (0 bytes), not a story database: a copy or restore that failed? "
            f"Give the right file, or 'newsdedup ingest PATH --db {path}' to start a new story database there"
        )
    return open_store(path, read_only=True)


def _print_shown(shown: int, total: int, things: str) -> None:
    """Say on stderr that a table stopped at --limit, e.g. "50 of 79 stories shown; --limit 0 shows all"."""
    if total > shown:
        print(f"{shown:,} of {total:,} {things} shown; --limit 0 shows all", file=sys.stderr)


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.engine != "local" and not args.retry_rejects:
        return _ingest(args)
    # SIGTERM (a scheduler stopping the job) ends a run in this process as Ctrl-C does: the
    # batch being written is rolled back, and the process says so instead of vanishing. (The
    # Prefect engine has its own handling.) Restored after, for callers that go on.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _ingest(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ingest(args: argparse.Namespace) -> int:
    from . import report as reports

    settings = load_settings(args.config)
    db = args.db or settings.store.db
    if (args.engine == "local" or args.retry_rejects) and (args.runner is not None or args.dask_address is not None):
        # (a QA pass: both were silently ignored here)
        raise UsageError("--runner and --dask-address choose where a flow run's tasks run; --engine local runs no flow "
                         "(its --workers sets its processes)")
    if args.retry_rejects:
        return _retry_rejects(args, settings, db)
    if not args.paths:
        raise UsageError("give at least one PATH to ingest, or --retry-rejects")
    from .sources import STDIN, missing_locations

    if STDIN in args.paths:
        if args.paths.count(STDIN) > 1:
            raise UsageError("'-' (standard input) can be read only once a run")
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(
                "'-' reads JSON Lines from standard input, which is a terminal here: pipe them in, "
                "e.g. zcat articles.jsonl.gz | newsdedup ingest -"
            )
    missing = missing_locations(args.paths)
    if missing and len(missing) == len(args.paths):
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    if args.engine == "local":
        from .ingest import ingest
        from .progress import RunProgress, expected_inputs

        clock = RunProgress(0 if args.quiet else expected_inputs(args.paths, settings.ingest))
        # On a terminal the line is rewritten in place; in a log file each batch gets its own line.
        live = sys.stderr.isatty()

        def progress(run) -> None:
            if not args.quiet:
                line = clock.line(run)
                print(f"\r\x1b[K  {line}" if live else f"  {line}", end="" if live else "\n", file=sys.stderr, flush=True)

        # One process unless asked: worker processes hold more batches in memory at once.
        workers = args.workers if args.workers is not None else 1
        run = ingest(args.paths, settings, db, on_batch=progress, kind=args.kind, workers=workers)
        if run.batches and run.inputs != clock.expected:
            # The last line said "N of about M" from the estimate: end on what was read (a QA
            # pass saw a run end on "15 of about 16 inputs (93%)").
            clock.expected = 0
            progress(run)
        if live and not args.quiet and run.batches:
            print(file=sys.stderr)
        lines = reports.summary_lines(run, elapsed_s=clock.elapsed_s())
    else:
        # A database that cannot be opened or written, or that was built under other matching
        # settings, fails here in a second, with one line, rather than after Prefect's start
        # and inside a flow run's traceback.
        from .fingerprint import index_layout
        from .runlock import check_lock_file
        from .store import open_store

        check_lock_file(db)
        store = open_store(db)
        try:
            with store.transaction():
                store.check_can_ingest(index_layout(settings.matching))
        finally:
            store.close()
        if args.quiet:
            # Set before Prefect is imported, so that the processes it starts inherit it too.
            os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
        from flows.ingest import quiet_console, with_runner
        from flows.server import require_configured_api, start_embedded_server

        if args.quiet:
            quiet_console()
        runner = settings.runner.model_copy(
            update={
                key: value
                for key, value in (("kind", args.runner), ("dask_address", args.dask_address), ("workers", args.workers))
                if value is not None
            }
        )
        if args.dask_address and runner.kind != "dask":  # (before Prefect's start: a QA pass waited for it)
            raise UsageError("--dask-address needs --runner dask")
        require_configured_api(otherwise="; or unset it, and the run starts a server of its own")
        # The command's time with Prefect's start counts from here, the embedded server's start
        # included (a QA pass saw "1.9s with Prefect's start" for a 10 s command).
        started = time.monotonic()
        start_embedded_server()
        counts = with_runner(runner)(
            paths=list(args.paths), db=db, config=args.config, kind=args.kind, workers=args.workers
        )
        lines = reports.flow_summary_lines(counts, time.monotonic() - started)
    code = _print_summary(args, f"newsdedup ingest {' '.join(args.paths)} -> {db}", lines)
    if args.engine == "local":  # (the flow ends such a run itself, Failed)
        from .ingest import fail_if_nothing_read

        fail_if_nothing_read(run, args.paths, args.kind, db)
    return code


def _print_summary(args: argparse.Namespace, heading: str, lines: Sequence[str]) -> int:
    from . import report as reports

    store = _open(args)
    try:
        totals = store.counts()
    finally:
        store.close()
    print(heading)
    for line in lines:
        print("  " + line)
    print("  " + reports.database_line(totals))
    return 0


def _retry_rejects(args: argparse.Namespace, settings, db: str) -> int:
    from . import report as reports
    from .retry import retry_rejects, stdin_rejects

    if args.paths:
        raise UsageError("--retry-rejects replays the inputs recorded in the rejects table; give no PATH")
    _open(args).close()  # a clear error when there is no database yet
    started = time.monotonic()
    piped = stdin_rejects(db)
    run = retry_rejects(settings, db)
    lines = [
        # (no paths were given: a QA pass read "no files under the paths given" here)
        "nothing to retry: no rejects that can be read again" if line.startswith("nothing to read:") else line
        for line in reports.summary_lines(run, elapsed_s=time.monotonic() - started)
    ]
    if piped:
        lines.append(
            f"not retried      {piped:,}  (from standard input, which cannot be read again: pipe the fixed "
            "records in again, newsdedup ingest -)"
        )
    return _print_summary(args, f"newsdedup ingest --retry-rejects -> {db}", lines)


def _printed_without_table(rows: Sequence[dict], as_json: bool, nothing: str) -> bool:
    """Print the rows as JSON Lines (--json), or `nothing` when there are none; True when that
    was all there was to print, False when the rows still want a table."""
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return True
    if not rows:
        print(nothing)
        return True
    return False


def cmd_stories(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        rows = store.stories(args.limit or None, args.min_size, args.since, args.sort)
        # Counted only when the limit was reached, and only for people: --json stays the rows alone.
        total = store.story_count(args.min_size, args.since) if len(rows) == args.limit and not args.json else len(rows)
    finally:
        store.close()
    nothing = f"no stories changed since {args.since}" if args.since else "no stories yet: run 'newsdedup ingest PATH' first"
    if _printed_without_table(rows, args.json, nothing):
        return 0
    for row in rows:
        first, last = (row["first_published"] or "")[:10], (row["last_published"] or "")[:10]
        row["dates"] = first if first == last else f"{first} .. {last}"
    columns = [("story_id", "id", 6), ("article_count", "size", 4), ("title", "canonical title", 70),
               ("outlets", "outlets", 40), ("dates", "dates", 24)]
    if args.since or args.sort == "updated":
        columns.append(("updated_at", "changed (UTC)", 20))
    print(_table(rows, columns))
    _print_shown(len(rows), total, "stories")
    return 0


def _story_named(store: Store, given: str) -> int:
    """The story id `show` was given, or that of the article it names (id, URL or input id)."""
    if given.isdigit():
        if int(given) > _LARGEST:
            raise UsageError(f"{given!r} is too large for a story id: at most {_LARGEST:,}")
        if int(given) < 1:
            raise UsageError(f"no story {given}: story ids are whole numbers from 1")
        return int(given)
    found = store.story_of_article(given)
    if found is None:
        from .remove import removal_of

        removal = removal_of(store.conn, given)
        if removal is not None:
            raise UsageError(f"article {removal[0]} was removed on {removal[1][:10]} ({removal[2]})")
        raise UsageError(
            f"no story or article {given!r} in {store.path}: give a story id (see: newsdedup stories), "
            "or an article's id, URL or input id"
        )
    story_id, archive = found
    if archive is not None:
        raise UsageError(f"that article was archived with story {story_id} to {archive}: "
                         f"newsdedup show {story_id} --db {archive}")
    return story_id


def cmd_show(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        args.story_id = _story_named(store, args.story)
        story = store.story(args.story_id)
        if story is None:
            into = store.merged_into(args.story_id)
            if into is not None:
                raise UsageError(f"story {args.story_id} was merged into story {into}: newsdedup show {into}")
            archive = store.archived_to(args.story_id)
            if archive is not None:
                raise UsageError(
                    f"story {args.story_id} was archived to {archive}: newsdedup show {args.story_id} --db {archive}"
                )
            from .remove import story_removal

            removal = story_removal(store.conn, args.story_id)
            if removal is not None:
                raise UsageError(
                    f"story {args.story_id} was removed with its last article on {removal[0][:10]} ({removal[1]})"
                )
            raise UsageError(f"no story {args.story_id} in {store.path} (see: newsdedup stories)")
        members = store.story_members(args.story_id)
        canonical = store.article(story["canonical_article_id"])
        titles = {m["article_id"]: _shown_title(store, m["article_id"], m["title"]) for m in members}
    finally:
        store.close()
    if args.json:
        print(json.dumps({"story": story, "articles": members}, ensure_ascii=False, indent=2))
        return 0
    print(f"story {story['story_id']}: {story['title']}")
    unknown = sum(1 for m in members if not m["source"])
    # (a QA pass read "6 articles from Harbor Wire" of a story where 5 named no outlet)
    outlets = story["outlets"] or "unknown outlets"
    if story["outlets"] and unknown:
        outlets += f" ({unknown} of them from no named outlet)"
    print(f"  {plural(story['article_count'], 'article')} from {outlets}; "
          f"published {story['first_published'] or '?'} .. {story['last_published'] or '?'}")
    print(f"  canonical: {canonical['id']}  {canonical['url'] or canonical['external_id']}")
    print()
    for m in members:
        m["role"] = "canonical" if m["is_canonical"] else ("near-duplicate" if m["duplicate_of"] else "variant")
        m["title"] = titles[m["article_id"]]
        m["where"] = m["url"] or m["external_id"]
    print(_table(members, [("article_id", "article", 16), ("role", "role", 14), ("similarity", "similarity", 10),
                           ("source", "source", 24), ("published", "published", 19), ("language", "lang", 4),
                           ("title", "title", 60),
                           ("where", "url or input", 60)]))
    if args.text:
        print()
        print(textwrap.fill(canonical["text"], 100, replace_whitespace=False))
    return 0


def _shown_title(store: Store, article_id: str, title: str | None) -> str:
    """An article's title for a table; an untitled one as "(untitled)" and its first sentence."""
    from .store import headline_from

    if title:
        return title
    article = store.article(article_id)
    return "(untitled) " + (headline_from(article["text"], 60) if article else "")


# FTS5 reads a hyphen in a bare word as an operator ("foo-bar": foo, NOT the column bar).
_BARE_WORD = re.compile(r'[^\s"()]+')
_HYPHEN = re.compile(r"\w-\w")
_QUOTED = re.compile(r'("[^"]*")')


def _quoted_if_hyphenated(word: re.Match) -> str:
    return f'"{word[0]}"' if _HYPHEN.search(word[0]) else word[0]


def search_hint(text: str) -> str:
    """What to try after FTS5 refused the query `text`: its hyphenated words in double quotes."""
    parts = _QUOTED.split(text)
    # Odd parts are already quoted phrases; only bare words need quotes.
    fixed = "".join(
        part if index % 2 else _BARE_WORD.sub(_quoted_if_hyphenated, part) for index, part in enumerate(parts)
    )
    if fixed != text:
        return f"wrap words with hyphens in double quotes: newsdedup search {shlex.quote(fixed)}"
    if "-" in text:
        return "wrap words with hyphens in double quotes, e.g. '\"COVID-19\"'"
    # (no hyphen: that advice would only mislead; a QA pass saw it for '"' and 'AND')
    return "words that FTS5 reads as operators (AND, OR, NOT, NEAR) or signs go in double quotes"


def cmd_search(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        try:
            rows = store.search(args.text, args.limit or None)
            total = store.search_count(args.text) if len(rows) == args.limit and not args.json else len(rows)
        except sqlite3.OperationalError as exc:
            raise UsageError(
                f"cannot search for {args.text!r}: {exc}; {search_hint(args.text)} "
                "(FTS5 query syntax: https://sqlite.org/fts5.html)"
            ) from None
        if not args.json:
            for row in rows:
                row["title"] = _shown_title(store, row["article_id"], row["title"])
        awaiting = store.awaiting_index()
    finally:
        store.close()
    if awaiting:
        print(f"note: the {plural(awaiting, 'most recently stored article')} cannot be found yet: an ingest "
              "that is running indexes them with its next batch, and one that was stopped leaves them "
              "to the next ingest", file=sys.stderr)
    if _printed_without_table(rows, args.json, f"no articles match {args.text!r}"):
        return 0
    print(_table(rows, [("story_id", "story", 6), ("article_id", "article", 16), ("source", "source", 24),
                        ("title", "title", 50), ("snippet", "match", 70)]))
    _print_shown(len(rows), total, "matching articles")
    return 0


def cmd_rejects(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        rows = list(store.db.query(
            "SELECT ref, stage, reason, detail, input, at, run_id FROM rejects ORDER BY id DESC LIMIT ?",
            [args.limit or -1],  # SQLite reads a negative LIMIT as none: --limit 0 lists every reject
        ))
        total = store.counts()["rejects"] if len(rows) == args.limit and not args.json else len(rows)
    finally:
        store.close()
    if _printed_without_table(rows, args.json, "no rejects"):
        return 0
    # (headed "ref", the column's name: "input" is another column, the file's absolute path)
    print(_table(rows, [("ref", "ref", -40), ("stage", "stage", 8), ("reason", "reason", 100), ("detail", "detail", 40)]))
    _print_shown(len(rows), total, "rejects")
    return 0


def _seconds_between(started: str, finished: str | None) -> float | None:
    if not finished:
        return None
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def _finished_since(args: argparse.Namespace, run_ids: list[str]) -> dict[str, str | None]:
    store = _open(args)
    try:
        return store.finished_at(run_ids)
    finally:
        store.close()


def cmd_runs(args: argparse.Namespace) -> int:
    from .progress import readable_duration
    from .runlock import alive_runs, running_run
    from .store import now_iso

    store = _open(args)
    try:
        rows = store.runs(args.limit or None, args.since)
        total = store.run_count(args.since) if len(rows) == args.limit and not args.json else len(rows)
    finally:
        store.close()
    running = running_run(_db(args))
    open_ids = [row["run_id"] for row in rows if not row["finished_at"]]
    living = alive_runs(_db(args), open_ids)
    # A run that looks gone may have finished since its row was read (its mark goes after its
    # last write): read those rows again.
    gone = [run_id for run_id in open_ids if run_id not in living]
    finished = _finished_since(args, gone) if gone else {}
    for row in rows:
        if not row["finished_at"] and row["run_id"] not in living:
            row["finished_at"] = finished.get(row["run_id"])
        row["seconds"] = _seconds_between(row["started_at"], row["finished_at"])
        if row["finished_at"]:
            row["status"] = "finished"
        elif row["run_id"] == running:
            row["status"] = "running"
        else:
            row["status"] = "reading" if row["run_id"] in living else "unfinished"
    nothing = f"no runs started since {args.since}" if args.since else "no runs yet: run 'newsdedup ingest PATH' first"
    if _printed_without_table(rows, args.json, nothing):
        return 0
    for row in rows:
        row["started"] = row["started_at"].replace("T", " ").removesuffix("Z")
        if row["seconds"] is not None:
            row["took"] = readable_duration(row["seconds"])
        elif row["status"] in ("running", "reading"):
            # (a QA pass: a live run's 'took' was blank) How long it has been going so far.
            row["took"] = readable_duration(_seconds_between(row["started_at"], now_iso())) + " so far"
        else:
            row["took"] = ""
        row["stories"] = f"{row['new_stories']:,} / {row['grown_stories']:,} / {row['merged_stories']:,}"
        for key in ("inputs", "new_articles", "near_duplicates", "unchanged", "rejects"):
            row[key] = f"{row[key]:,}"
    print(_table(rows, [
        ("run_id", "run", 36), ("started", "started (UTC)", 19), ("took", "took", 16), ("status", "status", 10),
        ("inputs", "inputs", 9), ("new_articles", "new", 9), ("near_duplicates", "near-dup", 9),
        ("unchanged", "unchanged", 9), ("rejects", "rejects", 9), ("stories", "stories new / grown / merged", 30),
    ]))
    _print_shown(len(rows), total, "runs")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import CheckReport, check_database
    from .store import read_only_connection, rebuild_commands

    path = _db(args)
    started = time.monotonic()
    try:
        _open(args).close()  # a story database of this version (an older one is migrated first), or the error
    except DamagedDatabaseError as exc:
        # A story database too damaged to open is what check is for: a finding, exit 8 (and
        # JSON with --json), not a failure to run (a QA pass truncated one: exit 4, no report).
        report = CheckReport(None, None, (f"the database cannot be opened: {exc}",), ())
    else:
        if os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            conn = sqlite3.connect(path, timeout=load_settings(args.config).store.busy_timeout_s, isolation_level=None)
        else:
            conn = read_only_connection(path)[0]
        try:
            report = check_database(conn, quick=args.quick)
        finally:
            conn.close()
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps({
            "database": str(path), "sound": report.sound, "articles": report.articles, "stories": report.stories,
            "archived": report.archived, "removed": report.removed,
            "problems": list(report.problems), "notes": list(report.notes), "seconds": round(seconds, 2),
        }))
    else:
        print(f"newsdedup check {path}")
        for problem in report.problems:
            print(f"  problem  {problem}")
        for note in report.notes:
            print(f"  note     {note}")
        verdict = "sound" if report.sound else plural(len(report.problems), "problem")
        counted = (
            f"{plural(report.articles, 'article')} in {plural(report.stories, 'story')}"
            if report.articles is not None and report.stories is not None else "articles and stories not counted"
        )
        # (with them, every article the database ever stored)
        elsewhere = [f"{count:,} {what}" for count, what in ((report.archived, "archived"), (report.removed, "removed")) if count]
        if elsewhere:
            counted += "; " + ", ".join(elsewhere)
        print(f"  {counted}: {verdict} ({seconds:.1f} s)")
    if report.sound:
        return 0
    rebuild = (
        f"or rebuild it from its articles: {rebuild_commands(path)}" if report.articles is not None
        else "its articles cannot be read out of it as it is"
    )
    print(
        f"the story database {path} is damaged or inconsistent. Keep a copy of it as it is; restore it from a "
        f"backup, {rebuild}",
        file=sys.stderr,
    )
    return 8


def cmd_browse(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import browse
    from .store import columns_read_only, has_unmerged_writes, read_only_connection

    path = Path(_db(args))
    meta = browse.metadata(
        path, columns_read_only(path),
        source=args.source or browse.DEFAULT_SOURCE, source_url=args.source_url,
        license=args.license or browse.DEFAULT_LICENSE,
        license_url=args.license_url,
    )
    if args.print_metadata:
        print(json.dumps(meta, indent=2, ensure_ascii=False))
        return 0
    immutable = args.immutable and not args.live
    if immutable and has_unmerged_writes(path):
        immutable = False
        print("newsdedup browse: the database has unmerged writes (an ingest may be running); "
              "opening it read-only instead of immutable", file=sys.stderr)
    elif not immutable:
        probe, immutable = read_only_connection(path)
        probe.close()
        if immutable:
            print(f"newsdedup browse: cannot open {path} read-only and live from here (its directory is "
                  "not writable for this user); opening it immutable: what an ingest writes meanwhile "
                  "is not shown", file=sys.stderr)
    options = browse.BrowseOptions(
        path, args.port or browse.free_port(), open_browser=not args.no_open, immutable=immutable
    )
    mode = "immutable, read-only" if immutable else "read-only, live"
    browse.serve(options, meta, on_start=lambda url: print(
        f"newsdedup browse: serving {path} ({mode}) at {url}  (Ctrl-C to stop)", flush=True))
    return 0


def _output_file(path: str) -> TextIO:
    """`path` opened for writing the export, or a UsageError saying what is wrong with it."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        problem = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise UsageError(
            f"cannot write {path}: the directory {directory} {problem} (create it, or choose another --output)"
        )
    try:
        if path.lower().endswith(".gz"):
            # As the name says: ingest reads a .jsonl.gz back only if it is gzip (a QA pass got
            # plain JSON under a .gz name, which ingest then rejected).
            return gzip.open(path, "wt", encoding="utf-8", newline="")
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc} (choose another --output)") from None


def cmd_export(args: argparse.Namespace) -> int:
    from .export import format_for, write_articles, write_stories

    fmt = args.format or format_for(args.output)
    if fmt == "articles" and args.no_text:
        raise UsageError("--format articles always carries the texts (ingest needs them); leave out --no-text")
    store = _open(args)
    try:
        out = _output_file(args.output) if args.output else sys.stdout
        try:
            if fmt == "articles":
                counts = write_articles(store.articles_in_stored_order(args.since, args.min_size), out)
            else:
                stories = (
                    (story, articles) for story, articles in store.stories_with_articles(not args.no_text, args.since)
                    if story["article_count"] >= args.min_size
                )
                counts = write_stories(stories, out, fmt, with_text=not args.no_text)
        finally:
            if args.output:
                out.close()
    finally:
        store.close()
    print(f"exported {plural(counts.stories, 'story')}, {plural(counts.articles, 'article')}"
          + (f" to {args.output} ({fmt})" if args.output else ""), file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from . import evaluate

    settings = load_settings(args.config)
    result = evaluate.evaluate_corpus(args.corpus, settings, batches=args.batches, seed=args.seed, worst=args.worst)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(evaluate.render(result))
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.server import DEFAULT_HOME, run_server

    return run_server(args.host, args.port, Path(args.home) if args.home else DEFAULT_HOME)


def cmd_archive(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .archive import archive_stories

    path = _db(args)
    _open(args).close()  # a story database (an older one is migrated first), or the error
    report = archive_stories(
        path, args.to, args.before, by=args.by, dry_run=args.dry_run,
        busy_timeout_s=load_settings(args.config).store.busy_timeout_s,
    )
    if args.json:
        print(json.dumps({**asdict(report), "seconds": round(report.seconds, 2)}))
        return 0
    moved = f"{plural(report.stories, 'story')} ({plural(report.articles, 'article')})"
    by = "that last grew" if report.by == "ingested" else "whose newest article was published"
    if report.dry_run:
        print(f"would archive {moved} {by} before {report.before} from {path} to {args.to}")
    else:
        print(f"archived {moved} {by} before {report.before} from {path} to {args.to} ({report.seconds:.1f} s)")
    if report.spared_newest:
        print("  (the story of the newest article stays, whatever its age)")
    if report.dry_run:
        return 0
    store = _open(args)
    try:
        counts = store.counts()
    finally:
        store.close()
    print(f"  database now {plural(counts['articles'], 'article')}, {plural(counts['stories'], 'story')}")
    return 0


def _some(ids: Sequence[int], shown: int = 20) -> str:
    """Ids for a line of text: the first `shown`, then how many more (--json lists them all)."""
    more = f" and {len(ids) - shown:,} more (--json lists them all)" if len(ids) > shown else ""
    return ", ".join(map(str, ids[:shown])) + more


def cmd_merge(args: argparse.Namespace) -> int:
    from .merge import merge_stories

    path = _db(args)
    _open(args).close()  # a story database (an older one is migrated first), or the error
    report = merge_stories(path, args.stories, into=args.into, busy_timeout_s=load_settings(args.config).store.busy_timeout_s)
    if args.json:
        print(json.dumps({"database": report.database, "into": report.into, "absorbed": list(report.absorbed),
                          "articles": report.articles, "title": report.title}))
        return 0
    print(f"merged {plural(len(report.absorbed), 'story')} ({', '.join(map(str, report.absorbed))}) into story "
          f"{report.into}: now {plural(report.articles, 'article')}, \"{_cell(report.title, 80)}\"")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from .split import split_articles

    path = _db(args)
    _open(args).close()  # a story database (an older one is migrated first), or the error
    settings = load_settings(args.config)
    report = split_articles(path, args.articles, settings.matching, busy_timeout_s=settings.store.busy_timeout_s)
    if args.json:
        print(json.dumps({"database": report.database, "story_id": report.story_id, "split_from": report.split_from,
                          "moved": list(report.moved), "title": report.title, "left": report.left}))
        return 0
    print(f"moved {plural(len(report.moved), 'article')} out of story {report.split_from} into a new story "
          f"{report.story_id}: \"{_cell(report.title, 80)}\"")
    print(f"  story {report.split_from} keeps {plural(report.left, 'article')}; the two are kept apart from now on "
          f"(newsdedup merge {report.split_from} {report.story_id} undoes it)")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from .remove import as_rows, remove_articles

    path = _db(args)
    _open(args).close()  # a story database (an older one is migrated first), or the error
    report = remove_articles(
        path, args.articles, args.reason, with_copies=args.with_copies, dry_run=args.dry_run,
        busy_timeout_s=load_settings(args.config).store.busy_timeout_s,
    )
    if args.json:
        print(json.dumps({
            "database": report.database, "reason": report.reason, "dry_run": report.dry_run,
            "removed": as_rows(report), "already_removed": [
                {"ref": ref, "removed_at": at, "reason": why} for ref, at, why in report.already_removed
            ],
            "stories_changed": list(report.stories_changed), "stories_gone": list(report.stories_gone),
            "copies_kept": report.copies_kept, "seconds": round(report.seconds, 2),
        }))
        return 0
    verb = "would remove" if report.dry_run else "removed"
    print(f"{verb} {plural(len(report.removed), 'article')} from {path} ({report.reason})")
    for article in report.removed:
        where = "" if article.database == str(path) else f", from the archive {article.database}"
        copy = f", a copy of {article.copy_of}" if article.copy_of else ""
        label = article.title or article.url or "(untitled)"
        story = f"story {article.story_id}" if article.story_id else "its story"
        print(f"  {article.article_id}  {story}{where}{copy}: {_cell(label, 70)}")
    for ref, at, why in report.already_removed:
        print(f"  {ref}: removed already, on {at[:10]} ({why})")
    if report.stories_gone:
        print(f"  {plural(len(report.stories_gone), 'story')} left with no article {'would go' if report.dry_run else 'went'}: "
              + _some(report.stories_gone))
    if report.stories_changed:
        several = len(report.stories_changed) > 1
        print(f"  {plural(len(report.stories_changed), 'story')} {'would be' if report.dry_run else 'were' if several else 'was'} "
              f"worked out again from the articles {'they keep' if several else 'it keeps'}: "
              + _some(report.stories_changed))
    if report.copies_kept:
        print(f"  {plural(report.copies_kept, 'near-duplicate')} of them {'would stay' if report.dry_run else 'stayed'} "
              "(--with-copies removes them too)")
    if report.archive_of and report.removed and not report.dry_run:
        print("  note: this is an archive; the live database it was archived from still lists these articles as "
              "archived: run the same command on it (--db LIVE.db) to forget them there too")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import serve_sources

    from .settings import load_archive, load_sources

    serve_sources(load_sources(args.sources), _db(args), args.config, args.limit, archive=load_archive(args.sources))
    return 0


HANDLERS = {
    "ingest": cmd_ingest, "stories": cmd_stories, "show": cmd_show, "search": cmd_search,
    "rejects": cmd_rejects, "runs": cmd_runs, "check": cmd_check, "eval": cmd_eval,
    "browse": cmd_browse, "export": cmd_export, "archive": cmd_archive, "merge": cmd_merge, "split": cmd_split, "remove": cmd_remove,
    "server": cmd_server, "serve": cmd_serve,
}


def _prepare_environment() -> None:
    # Prefect's telemetry fails offline and leaves 'database is locked' lines; pipeline logs
    # should reach the flow run's logs in the UI.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
    # The embedded server takes 10-30 s to start on a busy 2-core machine; Prefect waits 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


# What a command stopped by Ctrl-C or SIGTERM left, and what to do next.
_AFTER_A_STOP = {
    "ingest": "; the batches committed before it are stored, run the same command again to go on",
    "archive": "; run the same archive again (the same --to): it finishes the move, nothing is lost",
    "remove": "; each database changes in one transaction: run the same command again to finish",
    "merge": "; nothing was merged, or all of it: 'newsdedup show' says which",
    "split": "; nothing was moved, or all of it: 'newsdedup show' says which",
}


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt: no `except Exception` stops it)."""


def _terminated(signum, frame) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    _prepare_environment()
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return HANDLERS[args.command](args)
    except PipelineError as exc:
        if os.environ.get("NEWSDEDUP_DEBUG"):
            raise
        print(f"newsdedup: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except sqlite3.Error as exc:
        # A database that goes bad mid-run (disk full, locked past busy_timeout_s, corrupted
        # by another program) is the user's to fix, not a bug: one line, the database exit code.
        if os.environ.get("NEWSDEDUP_DEBUG"):
            raise
        hint = " (another process held it longer than store.busy_timeout_s)" if "locked" in str(exc) else ""
        print(f"newsdedup: error: database error: {exc}{hint}", file=sys.stderr)
        return StoreError.exit_code
    except KeyboardInterrupt:
        # What a person wants to know next (a QA pass: SIGTERM's message said it, Ctrl-C's did not).
        print("newsdedup: interrupted" + _AFTER_A_STOP.get(args.command, ""), file=sys.stderr)
        _stop_worker_processes()
        return 130
    except Terminated:
        print("newsdedup: terminated (SIGTERM)" + _AFTER_A_STOP.get(args.command, ""), file=sys.stderr)
        _stop_worker_processes()
        return 143
    except BrokenProcessPool:
        # (Raised by either engine's process pool; the flow run ends Failed with it too.)
        if os.environ.get("NEWSDEDUP_DEBUG"):
            raise
        error = WorkerError(
            "a worker process preparing batches died (killed, or out of memory?); the batches committed "
            "before it are stored: run the same command again to go on (fewer --workers, or a smaller "
            "ingest.batch_size, if memory is short)"
        )
        print(f"newsdedup: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        return 0


def _stop_worker_processes(grace_s: float = 5.0) -> None:
    """End worker processes an interrupted run left behind. A process pool whose manager the
    interruption broke never shuts its workers down, and Python's exit waits for every
    non-daemon child: the command hung after saying it was interrupted."""
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()


if __name__ == "__main__":
    sys.exit(main())
