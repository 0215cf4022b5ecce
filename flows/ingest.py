"""The ingest flow: read inputs in batches, prepare them in parallel tasks, commit them in order."""

from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from pipeline import ingest, progress, report, sources, web
from pipeline.errors import BadInputError, PipelineError, TransientFetchError, UsageError
from pipeline.models import FeedEntry, Fetched, PreparedBatch, RawDocument, Rejected
from pipeline.runlock import LockAtFirstCommit, alive
from pipeline.settings import RunnerSettings, Settings, load_settings
from pipeline.store import SavedBatch, Store, open_store

from .caching import (
    KEPT_BATCH_CACHE, PREPARE_CACHE, PREPARE_CACHE_EXPIRATION, PreparedBatchSerializer, kept_batches_directory,
    prune_expired_results,
)
from .server import embedded_server_url, guard_embedded_server

# PREFECT_LOGGING_EXTRA_LOGGERS=pipeline gives the library's logger Prefect's handlers but not a
# level, so it would inherit the root's WARNING and its INFO lines would never reach the UI.
if logging.getLogger("pipeline").level == logging.NOTSET:
    logging.getLogger("pipeline").setLevel(logging.INFO)


# What sources do to a run that the run turns into rejects: errors of ours, none of them a bug.
_EXPECTED = (PipelineError, BadInputError, TransientFetchError)


class _ExpectedFailures(logging.Filter):
    """A fetch that fails the way sources fail (a 500, a timeout, a 404) is a reject with its
    reason, not a bug: Prefect's line saying the task failed, and why, stays, at WARNING, but
    without the traceback it attaches to every task failure (a QA pass counted 3 tracebacks in
    one run over a feed with a few bad pages, and 10 in two minutes of `newsdedup serve`).

    With `tasks=False`, for the flow's own logger: a run that fails for a reason of ours (a
    source's directory missing, nothing read from its feed) stays an ERROR, with its one-line
    reason and no traceback."""

    def __init__(self, tasks: bool = True) -> None:
        super().__init__()
        self.tasks = tasks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if record.exc_info:
            if isinstance(record.exc_info[1], _EXPECTED):
                record.exc_info = record.exc_text = None
                if self.tasks:
                    record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif self.tasks:
            # The task's final state, logged apart: "Finished in state Failed('Task run
            # encountered an exception TransientFetchError: ...')": the line above said it.
            message = record.getMessage()
            if message.startswith("Finished in state Failed(") and any(
                f"exception {name}:" in message for name in _expected_names()
            ):
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


@functools.lru_cache(maxsize=1)
def _expected_names() -> frozenset[str]:
    found, todo = set(), list(_EXPECTED)
    while todo:
        kind = todo.pop()
        found.add(kind.__name__)
        todo.extend(kind.__subclasses__())
    return frozenset(found)


# Prefect's task-run logger (an adapter over this one); installed wherever this module is
# imported, worker processes included, since the fetch tasks may run there.
logging.getLogger("prefect.task_runs").addFilter(_ExpectedFailures())
logging.getLogger("prefect.flow_runs").addFilter(_ExpectedFailures(tasks=False))


def quiet_console() -> None:
    """Show only warnings and errors on this process's console from now on (`--quiet`).

    Prefect logs every batch to the console and, through a second handler, to the flow run on
    the server; only the console's handler is raised, so the UI keeps the run's full log. The
    CLI also sets PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL before Prefect is imported, which covers
    processes Prefect starts; this covers a caller that had imported Prefect already.
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    for handler in {h for logger in loggers if isinstance(logger, logging.Logger) for h in logger.handlers}:
        if isinstance(handler, PrefectConsoleHandler) and handler.level < logging.WARNING:
            handler.setLevel(logging.WARNING)


# Batches prepared ahead of the writer: enough to keep the workers busy, few enough that a
# 100,000-article input never sits in memory whole.
_PREPARE_AHEAD = 4


# Batches smaller than this are prepared in the task's own thread: starting worker processes
# (about 2 s) would cost more than it saves.
_LOCAL_WORKERS_MIN_BATCH = 200


class _LocalWorkers:
    """Worker processes for the CPU work of prepare tasks that run in the flow's own threads.

    Prefect's default task runner runs tasks in threads of the flow's process, where extraction
    and fingerprinting (Python code) would share one interpreter lock with the writer: a flow ran
    at about half the library pipeline's speed. The thread now hands the batch to one of these
    processes and waits; Prefect still sees, caches and retries the task as before. Started
    on the first batch worth it; "forkserver", because forking a process that runs Prefect's
    threads can copy a lock another thread holds.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pid = os.getpid()
        self._pool: ingest.WorkerPool | None = None
        self._lock = threading.Lock()

    def prepare(self, items: list[RawDocument | Rejected], settings: Settings) -> PreparedBatch:
        if len(items) < _LOCAL_WORKERS_MIN_BATCH:
            return ingest.prepare_batch(items, settings)
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["pipeline.ingest"])
                self._pool = ingest.WorkerPool(self.workers, mp_context=context)
        return self._pool.take(self._pool.submit(items, settings))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close(cancel_futures=True)


# Set while a flow run whose prepare tasks run in its own threads is going (see _LocalWorkers).
_local_workers: _LocalWorkers | None = None


# Preparing is pure CPU work: no retries (it would fail the same way again), but cached by the
# content of its inputs so unchanged pages are not extracted twice (flows/caching.py).
# (Not also kept in memory: the flow takes each batch once, and Prefect's in-memory copy of a
# persisted result would keep every batch of the run alive.)
@task(
    name="prepare-batch", cache_policy=PREPARE_CACHE, cache_expiration=PREPARE_CACHE_EXPIRATION,
    result_serializer=PreparedBatchSerializer(), cache_result_in_memory=False,
)
def prepare_task(items: list[RawDocument | Rejected], settings: Settings) -> PreparedBatch:
    local = _local_workers
    # (The pid check: a process or Dask worker that inherited the variable must not use it.)
    if local is not None and local.pid == os.getpid():
        return local.prepare(items, settings)
    return ingest.prepare_batch(items, settings)


# Only batches holding an HTML page are cached. Extracting a page (trafilatura) costs tens of
# milliseconds; preparing a JSON Lines record or a text file again costs about one, less than
# caching it: a 20,000-record flow run took 35 s with its batches written to the cache, 31 s
# without, and left 340 MB of result files that a re-run would hardly need (its articles are
# already stored and are skipped by id).
_prepare_uncached = prepare_task.with_options(cache_policy=NO_CACHE, persist_result=False)


# Under Prefect's process pool a prepared batch (megabytes) came back through the pool's pipe,
# and a worker killed in the middle of that write left half a message there that the pool
# waited on for ever: the run hung instead of stopping (1 kill in several). Batches now come
# back through files, as from the local workers; the pipe carries only a path. Uncached ones
# through the run's handover directory (the file is taken and removed); cached ones, those
# with an HTML page, through a file kept beside Prefect's results, whose path is what Prefect
# caches, so a later run with the same pages reads the file instead of extracting them again.
@task(name="prepare-batch", cache_policy=NO_CACHE, persist_result=False)
def prepare_to_file_task(items: list[RawDocument | Rejected], settings: Settings, directory: str) -> str:
    return ingest.prepare_into_file(items, settings, directory)


@task(
    name="prepare-batch", cache_policy=KEPT_BATCH_CACHE, cache_expiration=PREPARE_CACHE_EXPIRATION,
    cache_result_in_memory=False,
)
def prepare_to_kept_file_task(items: list[RawDocument | Rejected], settings: Settings, directory: str) -> str:
    return ingest.prepare_into_file(items, settings, directory)


def _prepare_for(chunk: list[RawDocument | Rejected]):
    """The prepare task for `chunk`: cached when it holds an HTML page, else not."""
    if any(isinstance(item, RawDocument) and item.kind == "html" for item in chunk):
        return prepare_task
    return _prepare_uncached


# Storing is I/O: the run lock keeps other ingest runs out, but any other writer (a maintenance
# command, a second machine's run on a shared disk) can still hold SQLite's lock past the busy
# timeout. The transaction rolled back and stored articles are skipped, so a retry never duplicates.
@task(name="assign-and-store-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def commit_task(batch: PreparedBatch, db: str, settings: Settings, run_id: str) -> SavedBatch:
    stores = _run_stores.get(db)
    if stores is None or stores.pid != os.getpid():
        return ingest.commit_batch_to(batch, db, settings, run_id)
    try:
        return ingest.commit_batch(batch, stores.store(), settings, run_id)
    except BaseException:
        # The batch rolled back. Its retry opens the database afresh rather than trust this
        # connection (a disk error, say, may have left it unusable).
        stores.close()
        raise


class _RunStore:
    """The story database, open for all of one run's commit tasks.

    Opening it for every batch (a schema check, a second connection, and a cold 64 MB page
    cache) measured ~70 ms a batch: 5% of the writer. Commit tasks run one at a time in the
    flow's thread, so one store serves them all; it is closed when the run ends, and reopened
    after a failed batch.
    """

    def __init__(self, db: str, busy_timeout_s: float) -> None:
        self.db, self.busy_timeout_s, self.pid = db, busy_timeout_s, os.getpid()
        self._store: Store | None = None

    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.db, self.busy_timeout_s)
        return self._store

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()


# The open store of each database a run in this process is committing to (see _RunStore).
_run_stores: dict[str, _RunStore] = {}


@contextmanager
def _store_for_run(db: str, settings: Settings) -> Iterator[None]:
    stores = _run_stores[db] = _RunStore(db, settings.store.busy_timeout_s)
    try:
        yield
    finally:
        _run_stores.pop(db, None)
        stores.close()


def _transient(task, task_run, state) -> bool:
    """Retry a fetch only when it failed in a way that may pass (timeouts, 5xx, refused connections)."""
    try:
        state.result()
    except TransientFetchError:
        return True
    except Exception:
        return False
    return False


# Network stages: their own tasks, retried with backoff (retries and delay from settings.fetch).
@task(name="fetch-listing", cache_policy=NO_CACHE, retry_condition_fn=_transient)
def fetch_listing_task(url: str, etag: str | None, last_modified: str | None, settings: Settings) -> Fetched:
    return web.get_listing(url, etag, last_modified, settings)


@task(name="fetch-page", cache_policy=NO_CACHE, retry_condition_fn=_transient)
def fetch_page_task(entry: FeedEntry, settings: Settings) -> RawDocument | Rejected:
    return web.fetch_page(entry, settings)


def _web_batches(locations: list[str], kind: str | None, settings: Settings, crawl: web.CrawlState):
    retry = {"retries": settings.fetch.retries, "retry_delay_seconds": exponential_backoff(settings.fetch.retry_delay_s)}
    listing_task = fetch_listing_task.with_options(**retry)
    page_task = fetch_page_task.with_options(**retry)

    def get(url: str, etag: str | None, modified: str | None) -> Fetched:
        return listing_task(url, etag, modified, settings)

    for chunk in web.batched(web.expand(locations, kind, settings, crawl, get), settings.ingest.batch_size):
        yield web.fetch_chunk(
            chunk,
            submit=lambda entry: page_task.submit(entry, settings),
            result_of=lambda future: future.result(raise_on_failure=False),
            state=crawl,
            attempts=settings.fetch.retries + 1,
            in_flight=settings.fetch.max_in_flight,
        )


@task(name="summarize-run", cache_policy=NO_CACHE)
def summary_task(run: ingest.RunReport, db: str) -> tuple[str, list[dict]]:
    totals, stories, rejects = ingest.run_overview(run, db)
    markdown = report.summary_markdown(run, totals, stories, rejects, ingest.run_similarities(run, db))
    return markdown, report.story_table(stories)


def publish_summary(markdown: str, table: list[dict]) -> None:
    """The run's artifacts, made in the flow itself so the UI lists them on the flow run."""
    create_markdown_artifact(markdown=markdown, key="ingest-summary", description="newsdedup run summary")
    if table:
        create_table_artifact(table=table, key="new-and-grown-stories", description="Stories created or grown by this run")


@contextmanager
def _timed(run: ingest.RunReport, stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        run.time(stage, time.perf_counter() - started)


@flow(name="newsdedup-ingest", log_prints=False)
def ingest_flow(
    paths: list[str],
    db: str = "data/stories.db",
    config: str | None = None,
    kind: str | None = None,
    workers: int | None = None,
) -> dict[str, float]:
    """Ingest files, directories, page/feed/sitemap URLs and feed/sitemap files into the database at `db`.

    Returns the run's counts (`RunReport.counts`) and `seconds`, the flow's own time.

    `kind` ("feed", "sitemap" or "page") says what the URLs are; by default each response tells.
    `workers`: processes for the prepare tasks' CPU work under the threads runner (by default
    `runner.workers` of the settings; 0 = one per core).
    """
    missing = sources.missing_locations(paths)
    if paths and len(missing) == len(paths):
        raise UsageError(f"no such file or directory: {', '.join(missing)} (nothing to ingest)")
    logger = get_run_logger()
    # By now the run has talked to the API: if that meant starting Prefect's embedded server,
    # it is running, and must not outlive this process if the process is killed.
    guard_embedded_server()
    settings = load_settings(config)
    if workers is not None:
        settings = settings.model_copy(update={"runner": settings.runner.model_copy(update={"workers": workers})})
    # The whole flow run id: Prefect's are UUIDv7, time first, and a deployment's scheduled runs
    # are created within one millisecond, so a 12-character prefix was the same for all of them
    # (a QA pass saw 143 runs under 17 ids: `runs` rows replaced, rejects never cleared).
    run = ingest.RunReport(str(flow_run.id) if flow_run.id else ingest.new_run_id())
    with (
        # Marked alive before the run is recorded, for `newsdedup runs` (runlock.alive says why).
        alive(db, run.run_id),
        # The run lock: taken when a first batch is ready to commit (LockAtFirstCommit says why).
        LockAtFirstCommit(db, run.run_id) as lock, _workers_share_the_server(),
        _workers_for_threads(settings.runner), _handover_for_processes() as handover, _store_for_run(db, settings),
    ):
        return _ingest_locked(paths, db, settings, kind, run, logger, lock.take, handover)


def _task_runner():
    """This flow run's task runner (None outside a flow run)."""
    return getattr(FlowRunContext.get(), "task_runner", None)


def _prepares_in_threads() -> bool:
    """Whether this flow run's prepare tasks run in its own process's threads (the default
    runner), rather than in processes or on Dask."""
    return isinstance(_task_runner(), ThreadPoolTaskRunner)


@contextmanager
def _workers_share_the_server() -> Iterator[None]:
    """Point the workers of a process or Dask task runner at this process's embedded server.

    With no PREFECT_API_URL, Prefect runs the API in a server of this process's own, and tells
    the workers of its process pool and of prefect-dask only the settings that were set: each
    worker started an embedded server of its own (about 7 s of both cores at its first task),
    and a worker killed mid-run left its server running with nobody to stop it. Measured: 3
    Prefect servers for one run on 2 workers, both runners, and 2 left after a worker's kill.
    Setting the URL for the run puts it in the context both runners send with each task. Not
    for a cluster given by address, even on 127.0.0.1 (an SSH tunnel's end looks the same): this
    server listens on this machine's loopback only, and workers elsewhere could not reach it.
    """
    url = embedded_server_url()
    given_cluster = bool(getattr(_task_runner(), "address", None))
    if url is None or _prepares_in_threads() or PREFECT_API_URL.value() or given_cluster:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


@contextmanager
def _handover_for_processes() -> Iterator[str | None]:
    """A directory for the process pool's workers to hand prepared batches back through, when
    this flow run's prepare tasks run in Prefect's process pool (None otherwise)."""
    if not isinstance(_task_runner(), ProcessPoolTaskRunner):
        yield None
        return
    with ingest.handover_directory() as directory:
        yield directory


@contextmanager
def _workers_for_threads(runner: RunnerSettings) -> Iterator[None]:
    """Local worker processes for this run's prepare tasks, when they run in its threads."""
    global _local_workers
    if _local_workers is not None or not _prepares_in_threads():
        yield
        return
    _local_workers = _LocalWorkers(runner.workers or (os.cpu_count() or 1))
    try:
        yield
    finally:
        workers, _local_workers = _local_workers, None
        workers.close()


def _ingest_locked(
    paths: list[str], db: str, settings: Settings, kind: str | None, run: ingest.RunReport, logger,
    hold_the_database: Callable[[], object], handover: str | None = None,
) -> dict[str, float]:
    clock = progress.RunProgress(progress.expected_inputs(paths, settings.ingest))
    progress_id = create_progress_artifact(
        progress=0.0, key="ingest-progress", description=f"inputs stored, of about {clock.expected:,}"
    )
    ingest.start_run(run, db, settings)
    local, remote = web.split_locations(paths, kind)
    crawl = web.CrawlState(db, settings.store.busy_timeout_s)
    chunks = ingest.batches(local, settings)
    if remote:
        chunks = itertools.chain(chunks, _web_batches(remote, kind, settings, crawl))

    def commit(future, chunk: list[RawDocument | Rejected] | None, directory: str | None) -> None:
        # Time the writer spends waiting for a prepared batch is the extraction's share of the
        # run: preparing runs in parallel with committing the previous batch.
        with _timed(run, "extract+fingerprint"):
            try:
                batch = future.result()
                if isinstance(batch, str):  # handed back through a file (prepare_to_file_task and kept)
                    batch = _batch_in_file(batch, chunk, settings, logger)
            except ingest.HandoverError as exc:
                raise ingest.handover_failed(directory or "", exc) from None
        _let_go_of_result(future)
        hold_the_database()
        with _timed(run, "assign+store"):
            # quote(): the prepared batch is passed as it is. Prefect otherwise walks every object
            # inside a task's parameters looking for futures, twice; a prepared batch holds about
            # 500,000, and that walk measured 12 ms an article, three times the pipeline's own
            # cost. (Only here: a quoted value does not survive pickling in Prefect 3.8, so
            # prepare tasks, which Dask and process runners pickle, get their raw batch as is;
            # raw documents are ~30 times fewer objects.)
            run.add(commit_task(quote(batch), db, settings, run.run_id))
        update_progress_artifact(progress_id, progress.fraction_done(run.inputs, clock.expected))
        logger.info("%s", clock.line(run))

    # quote() the raw batch too when prepare tasks run in this process's threads: Prefect would
    # otherwise walk its ~20,000 objects twice per task (about 0.2 s a batch of 1,000 records,
    # under the interpreter lock the writer needs). Not for Dask or process runners, which pickle
    # a task's parameters: a quoted value does not survive that in Prefect 3.8.
    in_threads = _prepares_in_threads()
    pending: deque = deque()
    # "read" includes fetching: web batches are fetched as the loop asks for them.
    for chunk in ingest.timed_iter(chunks, run, "read"):
        prepare = _prepare_for(chunk)
        if handover is not None and prepare is _prepare_uncached:
            pending.append((prepare_to_file_task.submit(chunk, settings, handover), None, handover))
        elif handover is not None:
            # The raw batch goes with the future (it also says the file is a kept one), for the
            # rare kept file gone before it is read.
            kept = str(kept_batches_directory())
            pending.append((prepare_to_kept_file_task.submit(chunk, settings, kept), chunk, kept))
        else:
            pending.append((prepare.submit(quote(chunk) if in_threads else chunk, settings), None, None))
        if len(pending) >= _PREPARE_AHEAD:
            commit(*pending.popleft())
    while pending:
        commit(*pending.popleft())
    if remote:
        crawl.save_listings(run.run_id)
        run.add_crawl(crawl)
    ingest.finish_run(run, db, settings)
    removed, freed = prune_expired_results()
    if removed:
        logger.info("removed %d expired cached batches (%.0f MB)", removed, freed / 1e6)
    publish_summary(*summary_task(run, db))
    update_progress_artifact(progress_id, 100.0)
    # One time for the log and the result, so the log's rate is the one the command prints.
    seconds = round(clock.elapsed_s(), 3)
    for line in report.summary_lines(run, elapsed_s=seconds):
        logger.info(line)
    # Failed, not Completed, when nothing could be read: whoever watches the runs (or alerts on
    # their states) sees the source is down. Everything above is recorded first.
    ingest.fail_if_nothing_read(run, paths, kind, db)
    return {**run.counts(), "seconds": seconds}


def _batch_in_file(
    path: str, kept_chunk: list[RawDocument | Rejected] | None, settings: Settings, logger
) -> PreparedBatch:
    """The prepared batch a process-pool worker left in `path`: taken (and removed) from the
    run's handover directory, or, when the raw batch `kept_chunk` came with it, read from a
    kept cache file, which stays. A kept file that is gone (pruned or removed by hand while its
    cache record lived) is prepared again here from `kept_chunk`."""
    if kept_chunk is None:
        return ingest.take_handed_over(path)
    try:
        return ingest.read_kept(path)
    except OSError:
        logger.info("cached batch file %s is gone; preparing its %d inputs again", path, len(kept_chunk))
        return ingest.prepare_batch(kept_chunk, settings)


def _let_go_of_result(future) -> None:
    """Drop Prefect's reference to a prepare task's result once the flow has it.

    A Prefect future and the concurrent future it wraps refer to each other (a done callback),
    so the finished state, and the prepared batch in it (about 40 MB for 1,000 records), would
    live until a full garbage collection; during batches those are rare (`ingest.fewer_collections`),
    and a 100,000-record flow run grew to 1.9 GB. With the state's data emptied, the batch is
    freed when its commit is done, and only the small cycle waits for the collector.
    """
    state = future.state
    if state is not None and state.data is not None:
        state.data = None


def task_runner_for(runner: RunnerSettings):
    """The Prefect task runner the settings ask for (prepare tasks run there; commits never do)."""
    workers = runner.workers or (os.cpu_count() or 1)
    if runner.kind == "processes":
        # Workers that end with the run and leave a Ctrl-C to it, as the local engine's do.
        return ProcessPoolTaskRunner(max_workers=workers, initializer=ingest.exit_with, initargs=(os.getpid(),))
    if runner.kind == "dask":
        from prefect_dask import DaskTaskRunner  # imported here: distributed takes a second to import

        if runner.dask_address:
            return DaskTaskRunner(address=runner.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    return ThreadPoolTaskRunner()


def with_runner(runner: RunnerSettings | str, dask_address: str = ""):
    """`ingest_flow` set to prepare its batches on the given runner ("threads", "processes", "dask")."""
    if isinstance(runner, str):
        runner = RunnerSettings(kind=runner, dask_address=dask_address)
    return ingest_flow.with_options(task_runner=task_runner_for(runner))

