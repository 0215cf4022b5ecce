"""The ingest flow: read inputs in batches, prepare them in parallel tasks, commit them in order."""

from __future__ import annotations

from collections import deque

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from pipeline import ingest, report
from pipeline.models import PreparedBatch, RawDocument, Rejected
from pipeline.settings import Settings, load_settings
from pipeline.store import SavedBatch, open_store

# Batches prepared ahead of the writer: enough to keep the workers busy, few enough that a
# 100,000-article input never sits in memory whole.
_PREPARE_AHEAD = 4


@task(name="prepare-batch", cache_policy=NO_CACHE)
def prepare_task(items: list[RawDocument | Rejected], settings: Settings) -> PreparedBatch:
    return ingest.prepare_batch(items, settings)


# Storing is I/O: a lock held too long by another writer is worth a retry; the transaction
# rolled back, and already-stored articles are skipped, so a retry never duplicates.
@task(name="assign-and-store-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def commit_task(batch: PreparedBatch, db: str, settings: Settings, run_id: str) -> SavedBatch:
    return ingest.commit_batch_to(batch, db, settings, run_id)


@task(name="publish-summary", cache_policy=NO_CACHE)
def summary_task(run: ingest.RunReport, db: str) -> str:
    totals, stories, rejects = ingest.run_overview(run, db)
    markdown = report.summary_markdown(run, totals, stories, rejects)
    create_markdown_artifact(markdown=markdown, key="ingest-summary", description="newsdedup run summary")
    if stories:
        create_table_artifact(
            table=[
                {k: row.get(k) for k in ("story_id", "title", "article_count", "outlets", "canonical_url")}
                for row in stories[:200]
            ],
            key="new-and-grown-stories",
            description="Stories created or grown by this run",
        )
    return markdown


@flow(name="newsdedup-ingest", log_prints=False)
def ingest_flow(paths: list[str], db: str = "data/stories.db", config: str | None = None) -> dict[str, int]:
    """Ingest files and directories into the story database at `db`."""
    logger = get_run_logger()
    settings = load_settings(config)
    run = ingest.RunReport(str(flow_run.id or ingest.new_run_id())[:12])
    ingest.start_run(run, db, settings)
    pending: deque = deque()
    for chunk in ingest.batches(paths, settings):
        pending.append(prepare_task.submit(chunk, settings))
        if len(pending) >= _PREPARE_AHEAD:
            run.add(commit_task(pending.popleft().result(), db, settings, run.run_id))
            logger.info("%s inputs so far, %s new articles", run.inputs, run.new_articles)
    while pending:
        run.add(commit_task(pending.popleft().result(), db, settings, run.run_id))
    ingest.finish_run(run, db, settings)
    summary_task(run, db)
    for line in report.summary_lines(run):
        logger.info(line)
    return run.counts()
