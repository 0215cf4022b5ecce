"""Shared fixtures: settings, the seed articles, a temporary story database, Prefect's harness."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings as hypothesis_settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data"

# Property tests check what holds, not how fast: Hypothesis's default 200 ms deadline per example
# and its too-slow health check can fail on a busy CI machine for no fault of the code (27 of
# the 34 property tests ran under that deadline). Set before the test modules' @settings, which
# inherit from it.
hypothesis_settings.register_profile(
    "newsdedup", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("newsdedup")

# Prefect must never phone home from tests, and must keep its state out of the user's home.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
# Library calls outside any flow (most tests) log too; they have no run to send those lines to.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def db_rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows `sql` reads from the SQLite file at `path` (a connection of its own, closed after)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def assert_sound(path: Path) -> None:
    """`newsdedup check` finds the story database at `path` whole."""
    import sqlite3

    from pipeline.check import check_database

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        report = check_database(conn)
    finally:
        conn.close()
    assert report.sound, (path.name, report.problems)


def assert_similarities_current(path: Path) -> None:
    """Every article's similarity is its cosine with its own story's canonical article (1.0 for
    that article and its copies), as the stored term vectors give it."""
    from pipeline.fingerprint import cosine
    from pipeline.store import unpack_article_vector

    vectors = {a: unpack_article_vector(t) for a, t in db_rows(path, "SELECT article_id, terms FROM _signatures")}
    for article_id, duplicate_of, similarity, canonical in db_rows(
        path, "SELECT a.id, a.duplicate_of, a.similarity, s.canonical_article_id FROM articles a "
        "JOIN stories s ON s.id = a.story_id"
    ):
        if canonical in (article_id, duplicate_of):
            expected = 1.0
        else:
            expected = round(cosine(vectors[article_id], vectors[canonical]), 4)
        assert similarity == expected, (article_id, similarity, expected)


@pytest.fixture(scope="session")
def settings():
    from pipeline.settings import load_settings

    return load_settings(ROOT / "config" / "test.toml", environ={})


@pytest.fixture
def seeds_dir(tmp_path: Path) -> Path:
    """A private copy of seeds/, so a test may add or break files."""
    target = tmp_path / "seeds"
    shutil.copytree(SEEDS, target)
    return target


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "stories.db"


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """Prefect's test harness: a temporary database and an in-process API, once per session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def story_db(tmp_path_factory, settings) -> Path:
    """data/stories.db built from seeds/ plus tests/data/outlets.jsonl (outlets, dates, a reprint, a reject).

    Shared by the query, export and browse tests, which only read it; commands that use the
    default database path run with the returned file's grandparent as working directory.
    """
    from pipeline.ingest import ingest

    path = tmp_path_factory.mktemp("story-db") / "data" / "stories.db"
    ingest([str(SEEDS), str(DATA / "outlets.jsonl")], settings, path)
    return path


@pytest.fixture(scope="session")
def labelled_db(tmp_path_factory, settings) -> Path:
    """tests/data/giveme5w1h.jsonl (383 labelled articles, 2013-2018) ingested once: for tests
    that change a story database, each on a copy of its own."""
    from pipeline.ingest import ingest

    path = tmp_path_factory.mktemp("labelled") / "stories.db"
    ingest([str(DATA / "giveme5w1h.jsonl")], settings, path)
    return path
