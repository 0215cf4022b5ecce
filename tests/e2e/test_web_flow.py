"""The ingest flow and the `newsdedup ingest URL` command on a feed served from 127.0.0.1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import HttpStatusError, TransientFetchError
from tests.localweb import LocalWeb, Route, eval_page
from tests.localweb import db_rows as table

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEST_CONFIG = str(ROOT / "config" / "test.toml")


def feed_of(links: list[str]) -> bytes:
    items = "".join(f"<item><title>Item {n}</title><link>{link}</link></item>" for n, link in enumerate(links))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title>{items}</channel></rss>'.encode()


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_flow_fetches_in_retried_tasks_and_a_second_run_fetches_only_what_failed(prefect_harness, db_path):
    from flows.ingest import ingest_flow

    # Prefect's task-run log as any handler of it gets the records (the console's stream, and
    # whether records reach the root logger, depend on what ran before in the session).
    kept = _Kept()
    logging.getLogger("prefect.task_runs").addHandler(kept)

    with LocalWeb() as web:
        pages = [web.add(f"/news/{n}.html", eval_page(20 + n)) for n in range(3)]
        web.add("/news/down.html", "down", status=503)
        feed_body = feed_of(pages + [web.url("/news/down.html")])
        calls = []

        def flaky_feed(handler) -> None:
            # The first answer is a 503: the listing task's retry must get the feed.
            calls.append(1)
            if len(calls) == 1:
                handler._send(Route(b"busy", status=503, content_type="text/plain"))
            else:
                handler._send(Route(feed_body, content_type="application/rss+xml", etag='"v1"'))

        web.routes["/feed.xml"] = flaky_feed
        feed = web.url("/feed.xml")

        missing_feed = web.url("/no-such-feed.xml")

        first = ingest_flow(paths=[feed, missing_feed], db=str(db_path), config=TEST_CONFIG)
        assert first["new_articles"] == 3 and first["rejects"] == 2 and first["pages_fetched"] == 4
        assert len(calls) == 2
        assert len(web.hits("/news/down.html")) == 4  # 1 + fetch.retries, by Prefect task retries
        assert len(web.hits("/no-such-feed.xml")) == 1  # a 404 is not retried
        reasons = {row["ref"]: row for row in table(db_path, "SELECT * FROM rejects")}
        down = reasons[web.url("/news/down.html")]
        assert down["reason"] == "server answered HTTP 503 Service Unavailable (gave up after 4 attempts)"
        assert down["input"] == web.url("/news/down.html")  # what --retry-rejects fetches again
        assert reasons[missing_feed]["reason"] == "server answered HTTP 404 Not Found"
        # Each failed fetch is a warning line, with no traceback (a QA pass counted 3 in one run).
        fetches = [r for r in kept.records if "FetchError" in r.getMessage()]
        logging.getLogger("prefect.task_runs").removeHandler(kept)
        assert any(r.levelno == logging.WARNING and "Retries are exhausted" in r.getMessage() for r in fetches), fetches
        assert not [r for r in fetches if r.exc_info or r.levelno >= logging.ERROR], fetches

        # The link that failed for now kept the feed's validators from being saved: the feed is
        # read in full again, the stored pages are skipped, and only that link is tried again.
        second = ingest_flow(paths=[feed], db=str(db_path), config=TEST_CONFIG)
        assert (second["pages_fetched"], second["known_urls_skipped"], second["new_articles"]) == (1, 3, 0)
        assert second["listings_not_modified"] == 0
        assert "if-none-match" not in web.hits("/feed.xml")[-1].headers
        assert all(len(web.hits(f"/news/{n}.html")) == 1 for n in range(3))
        assert len(web.hits("/news/down.html")) == 8
    assert table(db_path, "SELECT count(*) AS n FROM articles")[0]["n"] == 3


def test_cli_ingests_a_feed_url_and_says_when_a_second_run_fetched_nothing_new(tmp_path):
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), NEWSDEDUP_CONFIG=TEST_CONFIG)
    db = tmp_path / "stories.db"
    with LocalWeb() as web:
        pages = [web.add(f"/a/{n}.html", eval_page(30 + n)) for n in range(3)]
        feed = web.add("/feed.xml", feed_of(pages), content_type="application/rss+xml",
                       last_modified="Tue, 19 Nov 2019 10:00:00 GMT")
        command = [sys.executable, "-m", "pipeline.cli", "ingest", feed, "--db", str(db)]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert first.returncode == 0, first.stderr[-2000:]
        assert "new articles     3" in first.stdout
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert second.returncode == 0, second.stderr[-2000:]
        assert "fetched nothing new: 1 source not modified since the last run" in second.stdout
        assert "new articles     0" in second.stdout
        assert web.hits("/feed.xml")[-1].headers["if-modified-since"] == "Tue, 19 Nov 2019 10:00:00 GMT"
    stories = table(db, "SELECT count(*) AS n FROM stories")[0]["n"]
    assert table(db, "SELECT count(*) AS n FROM articles")[0]["n"] == 3 and stories >= 1


def _raised(error: Exception):
    try:
        raise error
    except Exception:
        return sys.exc_info()


@pytest.mark.parametrize("error, expected", [
    (TransientFetchError("http://127.0.0.1/a", "server answered HTTP 500"), True),
    (HttpStatusError("server answered HTTP 404 Not Found"), True),
    (ValueError("a bug"), False),
])
def test_a_failed_fetch_task_logs_one_warning_and_a_bug_keeps_its_traceback(error, expected):
    """What a source does to a fetch is one warning line; anything else keeps Prefect's ERROR and traceback."""
    from flows.ingest import _ExpectedFailures

    failed = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "Task run failed", None, _raised(error))
    assert _ExpectedFailures().filter(failed)
    assert (failed.levelno, failed.exc_info is None) == ((logging.WARNING, True) if expected else (logging.ERROR, False))
    final = logging.LogRecord(
        "prefect.task_runs", logging.ERROR, __file__, 1,
        f"Finished in state Failed('Task run encountered an exception {type(error).__name__}: {error}')", None, None,
    )
    assert _ExpectedFailures().filter(final)
    assert final.levelno == (logging.INFO if expected else logging.ERROR)


def test_a_flow_run_failing_for_a_reason_of_ours_logs_it_without_a_traceback():
    from flows.ingest import _ExpectedFailures
    from pipeline.errors import UsageError

    failed = logging.LogRecord(
        "prefect.flow_runs", logging.ERROR, __file__, 1, "Encountered exception during execution", None,
        _raised(UsageError("no such file or directory: /srv/feeds (nothing to ingest)")),
    )
    assert _ExpectedFailures(tasks=False).filter(failed)
    assert (failed.levelno, failed.exc_info) == (logging.ERROR, None)
    bug = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "Encountered exception", None,
                            _raised(KeyError("x")))
    assert _ExpectedFailures(tasks=False).filter(bug) and bug.exc_info is not None
