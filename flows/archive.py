"""The archive flow: stories that stopped growing move into an archive database, on a schedule."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.archive import ArchiveReport, archive_stories
from pipeline.report import plural
from pipeline.settings import load_settings

from .server import guard_embedded_server


# No retries: a failed archive rolled back whatever it had not committed, and the next scheduled
# run finishes it (archive_stories says why that is safe).
@task(name="archive-stories", cache_policy=NO_CACHE)
def archive_task(db: str, to: str, before: str, by: str, busy_timeout_s: float) -> ArchiveReport:
    return archive_stories(db, to, before, by=by, busy_timeout_s=busy_timeout_s)


@flow(name="newsdedup-archive", log_prints=False)
def archive_flow(
    db: str, to: str, older_than_days: float, by: str = "ingested", config: str | None = None,
) -> dict:
    """Move the stories of `db` that have not grown for `older_than_days` (or, `by="published"`,
    whose newest article is that old) into the archive database `to`.

    Returns what moved (`ArchiveReport` as a dict); the run's summary artifact says it too.
    """
    guard_embedded_server()
    logger = get_run_logger()
    settings = load_settings(config)
    before = (datetime.now(timezone.utc) - timedelta(days=older_than_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = archive_task(db, to, before, by, settings.store.busy_timeout_s)
    moved = f"{plural(report.stories, 'story')} ({plural(report.articles, 'article')})"
    logger.info("archived %s older than %s from %s to %s", moved, before, db, to)
    create_markdown_artifact(
        key="archive-summary",
        description=f"archived {moved}",
        markdown=(
            f"### newsdedup archive\n\n"
            f"| | |\n|---|---|\n"
            f"| stories moved | {report.stories:,} |\n| articles moved | {report.articles:,} |\n"
            f"| chosen by | {'when they last grew' if by == 'ingested' else 'newest publication date'}, "
            f"before {before} |\n| from | `{db}` |\n| to | `{to}` |\n| seconds | {report.seconds:.1f} |\n"
        ),
    )
    return {**asdict(report), "seconds": round(report.seconds, 2)}
