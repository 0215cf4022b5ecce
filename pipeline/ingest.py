"""A run: read inputs in batches, prepare each batch (CPU-heavy, parallel-safe), commit each batch (one writer).

`prepare_batch` is pure and may run anywhere (threads, Dask workers); `commit_batch` is the
single ordered writer. `ingest` runs the two in a plain loop for library use, evaluation and
benchmarks; the Prefect flow in flows/ingest.py calls the same two functions as tasks.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import itertools
import logging
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from . import extract, sources, web
from .errors import BadInputError, SourceError, WorkerError
from .fingerprint import fingerprint, index_layout
from .models import Prepared, PreparedBatch, RawDocument, Rejected, file_identity
from .remove import STAGE as REMOVED_STAGE
from .remove import refusal_reason, removed_matching
from .remove import refused as refused_by
from .report import plural
from .runlock import LockAtFirstCommit, alive
from .settings import Settings
from .store import IndexReads, SavedBatch, Store, now_iso, open_store
from .stories import BatchOutcome, assign_batch

log = logging.getLogger(__name__)


def batches(
    paths: Sequence[str],
    settings: Settings,
    documents: Iterable[RawDocument | Rejected] | None = None,
    crawl: web.CrawlState | None = None,
    kind: str | None = None,
) -> Iterator[list[RawDocument | Rejected]]:
    """The inputs under `paths` (or `documents`, when given), read lazily and grouped in
    batches of `ingest.batch_size` inputs, or fewer when they hold over `ingest.max_batch_bytes`.

    URLs and feed or sitemap files among `paths` are fetched in-process (pipeline/web.py) when
    `crawl` is given; `kind` says what they are.
    """
    if documents is not None:
        stream: Iterator[RawDocument | Rejected] = iter(documents)
    else:
        local, remote = web.split_locations(paths, kind) if crawl is not None else (list(paths), [])
        stream = itertools.chain(
            sources.discover(local, settings.ingest), web.documents(remote, kind, settings, crawl) if remote else ()
        )
    paused: Iterator[RawDocument | Rejected | None] = stream
    if documents is None and sources.STDIN in paths:
        paused = _with_pauses(stream, settings.ingest.idle_flush_s)
    chunk: list[RawDocument | Rejected] = []
    size = 0
    for item in paused:
        if item is None:  # nothing came for a while: store what has
            if chunk:
                yield chunk
                chunk, size = [], 0
            continue
        chunk.append(item)
        size += _raw_size(item)
        if len(chunk) >= settings.ingest.batch_size or size >= settings.ingest.max_batch_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


_END = object()


def _with_pauses(items: Iterator, idle_s: float) -> Iterator:
    """`items`, read on a thread of their own, with None wherever none came for `idle_s` seconds.

    Only a pipe can keep a reader waiting with records in hand (`tail -f | newsdedup ingest -`):
    without the pauses, its records waited until a whole batch had come, and a run killed
    meanwhile lost them. The thread stays at most a batch ahead (a bounded queue).
    """
    import queue

    handed: queue.Queue = queue.Queue(maxsize=1000)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handed.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handed.put(_END)
        except BaseException as exc:  # noqa: BLE001 - raised again in the reading thread below
            handed.put(exc)

    # A daemon: a reader blocked on a pipe must not keep the process alive once the run ends.
    threading.Thread(target=read, name="newsdedup-stdin", daemon=True).start()
    try:
        while True:
            try:
                item = handed.get(timeout=idle_s)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _raw_size(item: RawDocument | Rejected) -> int:
    """Roughly how many bytes an input holds in memory until its batch is prepared."""
    if isinstance(item, Rejected):
        return 0
    return len(item.body) + sum(len(value) for value in item.fields.values() if isinstance(value, str))


def prepare(raw: RawDocument, settings: Settings) -> Prepared:
    """One raw document extracted, normalised and fingerprinted.

    Raises:
        BadInputError: the document is not an article (see extract.article_from).
    """
    article = extract.article_from(raw, settings.ingest)
    return Prepared(article, fingerprint(article, settings.matching))


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_saved = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run batch work with the cyclic garbage collector mostly out of the way.

    A batch allocates hundreds of thousands of small objects (terms, vectors, rows) that live
    until it ends; at CPython's default threshold the collector rescans them over and over,
    which measured 15% of the writer's time. Reference counting still frees everything, and
    batches make no reference cycles worth collecting early. Nesting and threads are counted,
    so the default comes back only when the last batch ends.
    """
    global _gc_depth, _gc_saved
    with _gc_lock:
        if _gc_depth == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(100_000, 50, 100)
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0:
                gc.set_threshold(*_gc_saved)


def prepare_batch(items: Sequence[RawDocument | Rejected], settings: Settings) -> PreparedBatch:
    """Extract and fingerprint a batch; bad inputs become Rejected, so nothing is lost."""
    with fewer_collections():
        return _prepare_batch(items, settings)


def _prepare_batch(items: Sequence[RawDocument | Rejected], settings: Settings) -> PreparedBatch:
    prepared: list[Prepared] = []
    refs: list[tuple[str, str]] = []
    rejected: list[Rejected] = []
    accepted: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        origin = item.source_path or item.url or ""
        try:
            prepared.append(prepare(item, settings))
        except BadInputError as exc:
            rejected.append(Rejected(item.ref, extract.STAGE, exc.reason, exc.detail, origin, exc.article_id))
            continue
        refs.append((item.ref, origin))
        accepted.extend(resolved_refs(item, origin))
    assert len(prepared) + len(rejected) == len(items), "a stage lost a record"
    return PreparedBatch(tuple(prepared), tuple(rejected), len(items), tuple(accepted), tuple(refs))


def resolved_refs(item: RawDocument, origin: str) -> list[tuple[str, str]]:
    """The reject keys an accepted input settles: its own, and for a JSON Lines record also its
    file's (a file once rejected whole, e.g. as empty, that now has articles in it)."""
    refs = [(item.ref, origin)]
    if item.kind == "record" and ":" in item.ref:
        refs.append((item.ref.rsplit(":", 1)[0], origin))
    return refs


def commit_batch(batch: PreparedBatch, store: Store, settings: Settings, run_id: str | None) -> SavedBatch:
    """Assign a prepared batch to stories and write it, all in one transaction.

    The transaction is taken before the first read, so two writers on one database queue up
    instead of both deciding from a stale view.
    """
    with fewer_collections(), store.transaction():
        store.check_can_ingest(index_layout(settings.matching))
        # Earlier batches are indexed for search meanwhile, on the write connection.
        with store.indexing_in_background() as reader:
            fresh, refused = _not_removed(_not_stored(batch.prepared, reader), batch, reader)
            outcome = assign_batch(fresh, reader, settings.matching)
            rejected, kept = _rejects_not_stored(batch.rejected, reader)
        rejected += refused
        store.save_outcome(fresh, outcome, run_id)
        store.save_url_aliases(_aliases(batch.prepared, fresh))
        store.save_rejects(rejected, run_id)
        settled = {(r.ref, r.input) for r in refused}
        store.forget_rejects([*(ref for ref in batch.accepted if ref not in settled), *((r.ref, r.input) for r in kept)])
        saved = _saved(batch, fresh, outcome, rejected)
        store.count_batch(run_id, saved)
    log.info(
        "batch of %s: %s (%s), %d unchanged, %s; %s, %d grown, %d merged",
        plural(saved.inputs, "input"), plural(saved.new_articles, "new article"),
        plural(saved.near_duplicates, "near-duplicate"), saved.unchanged, plural(saved.rejects, "reject"),
        plural(len(saved.new_stories), "new story"), len(saved.grown_stories), len(saved.merged_stories),
    )
    return saved


def _rejects_not_stored(rejected: Sequence[Rejected], reader: IndexReads) -> tuple[list[Rejected], list[Rejected]]:
    """The batch's rejects split into those to record, and those whose article an earlier run
    stored under looser settings (a larger `ingest.min_words` now): the input is stored, so it
    counts as unchanged, is not recorded as a reject as well, and an old reject of it goes.
    (A QA pass found such inputs both stored and rejected, and counted as rejects.)"""
    named = [r for r in rejected if r.article_id]
    stored = reader.existing_ids(r.article_id for r in named) if named else set()
    if not stored:
        return list(rejected), []
    kept = [r for r in named if r.article_id in stored]
    log.info(
        "%s stored by an earlier run would be refused now (%s): kept, counted as unchanged",
        plural(len(kept), "input"), kept[0].reason,
    )
    return [r for r in rejected if not (r.article_id and r.article_id in stored)], kept


def _not_removed(fresh: list[Prepared], batch: PreparedBatch, reader: IndexReads) -> tuple[list[Prepared], list[Rejected]]:
    """The new articles split into those to store, and rejects for those an editor removed
    (`newsdedup remove`; `remove.refused` says which)."""
    if not fresh:
        return fresh, []
    by_id, by_hash = removed_matching(
        reader.conn, [p.article.article_id for p in fresh], [p.article.content_hash for p in fresh]
    )
    if not by_id and not by_hash:
        return fresh, []
    refs = dict(zip(map(id, batch.prepared), batch.prepared_refs))
    kept: list[Prepared] = []
    refused: list[Rejected] = []
    for item in fresh:
        article = item.article
        found = refused_by(article.article_id, article.content_hash, article.url, by_id, by_hash)
        if found is None:
            kept.append(item)
            continue
        ref, origin = refs.get(id(item), (article.external_id, article.url or ""))
        refused.append(Rejected(ref, REMOVED_STAGE, refusal_reason(found.removed_at, found.reason), "", origin, article.article_id))
    return kept, refused


def _saved(batch: PreparedBatch, fresh: Sequence[Prepared], outcome: BatchOutcome, rejected: Sequence[Rejected]) -> SavedBatch:
    return SavedBatch(
        inputs=batch.inputs,
        new_articles=len(fresh),
        unchanged=batch.inputs - len(fresh) - len(rejected),
        near_duplicates=sum(1 for a in outcome.assignments if a.duplicate_of),
        rejects=len(rejected),
        new_stories=tuple(sorted(outcome.new_stories)),
        grown_stories=tuple(sorted(outcome.touched - outcome.new_stories)),
        merged_stories=tuple(outcome.merges),
    )


def _aliases(prepared: Sequence[Prepared], fresh: Sequence[Prepared]) -> list[tuple[str, str]]:
    """(link, article id) of the pages fetched from one link that hold an article stored under
    its canonical URL, another one: not stored now, and not worth fetching again."""
    stored_now = {id(p) for p in fresh}
    return [
        (p.article.external_id, p.article.article_id) for p in prepared
        if id(p) not in stored_now and p.article.url and p.article.external_id != p.article.url
        and p.article.external_id.startswith(("http://", "https://"))
    ]


def _not_stored(prepared: Sequence[Prepared], reader: IndexReads) -> list[Prepared]:
    """The batch's articles not stored yet, each once.

    Stored means the same article id (same URL, or same input id and content), or, for an
    input known only by its file, the same `file_identity` (file name, content, title, outlet
    and date): a file ingested once through its directory and again by a path of its own is
    one article, not two, and so is a record that a re-exported JSON Lines file moved to
    another line."""
    existing = reader.existing_ids(p.article.article_id for p in prepared)
    named = {p.article.content_hash for p in prepared if p.article.local_name and p.article.article_id not in existing}
    files = reader.stored_files(named) if named else set()
    fresh: list[Prepared] = []
    seen: set[str] = set()
    for item in prepared:
        article = item.article
        if article.article_id in existing or article.article_id in seen:
            continue
        if article.local_name:
            identity = file_identity(
                article.content_hash, article.local_name, article.title, article.source, article.published
            )
            if identity in files:
                continue
            files.add(identity)
        seen.add(article.article_id)
        fresh.append(item)
    return fresh


@dataclass
class RunReport:
    """Counts and timings of one run, accumulated batch by batch."""

    run_id: str
    started_at: str = field(default_factory=now_iso)
    inputs: int = 0
    new_articles: int = 0
    unchanged: int = 0
    near_duplicates: int = 0
    rejects: int = 0
    new_stories: set[int] = field(default_factory=set)
    grown_stories: set[int] = field(default_factory=set)
    merged: list[tuple[int, int]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    web_sources: bool = False
    pages_fetched: int = 0
    pages_failed: int = 0
    listings_fetched: int = 0
    known_urls: int = 0
    not_modified: list[str] = field(default_factory=list)

    def add(self, saved: SavedBatch) -> None:
        self.batches += 1
        self.inputs += saved.inputs
        self.new_articles += saved.new_articles
        self.unchanged += saved.unchanged
        self.near_duplicates += saved.near_duplicates
        self.rejects += saved.rejects
        self.new_stories.update(saved.new_stories)
        self.grown_stories.update(saved.grown_stories)
        for dropped, kept in saved.merged_stories:
            self.merged.append((dropped, kept))
            self.new_stories.discard(dropped)
            self.grown_stories.discard(dropped)
        self.grown_stories -= self.new_stories

    def add_crawl(self, crawl: web.CrawlState) -> None:
        """Count a run's web fetching; URLs skipped as already stored count as unchanged inputs."""
        self.web_sources = True
        self.pages_fetched += crawl.pages
        self.pages_failed += crawl.pages_failed
        self.listings_fetched += crawl.listings
        self.known_urls += crawl.known
        self.inputs += crawl.known
        self.unchanged += crawl.known
        self.not_modified.extend(crawl.not_modified)

    def time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def counts(self) -> dict[str, int]:
        return {
            "inputs": self.inputs,
            "new_articles": self.new_articles,
            "unchanged": self.unchanged,
            "near_duplicates": self.near_duplicates,
            "new_stories": len(self.new_stories),
            "grown_stories": len(self.grown_stories),
            "merged_stories": len(self.merged),
            "rejects": self.rejects,
            **(
                {"pages_fetched": self.pages_fetched, "pages_failed": self.pages_failed,
                 "listings_fetched": self.listings_fetched,
                 "known_urls_skipped": self.known_urls, "listings_not_modified": len(self.not_modified)}
                if self.web_sources else {}
            ),
        }

    @property
    def balanced(self) -> bool:
        """Every input is accounted for: inputs = new + unchanged + rejects."""
        return self.inputs == self.new_articles + self.unchanged + self.rejects


def new_run_id() -> str:
    """A run's id: a UUID, in the form flow runs' ids (Prefect's) have, so `runs` lists one kind."""
    return str(uuid.uuid4())


def commit_batch_to(batch: PreparedBatch, db_path: str | Path, settings: Settings, run_id: str | None) -> SavedBatch:
    """`commit_batch` on the database at `db_path`, opened and closed around it."""
    store = open_store(db_path, settings.store.busy_timeout_s)
    try:
        return commit_batch(batch, store, settings, run_id)
    finally:
        store.close()


def start_run(report: RunReport, db_path: str | Path, settings: Settings) -> None:
    """Record in the database that a run has started (it shows as unfinished if it dies)."""
    _record(report, db_path, settings, finished=False)


def finish_run(report: RunReport, db_path: str | Path, settings: Settings) -> None:
    """Record the run's final counts, with its last batch indexed for search."""
    _record(report, db_path, settings, finished=True)


def _record(report: RunReport, db_path: str | Path, settings: Settings, finished: bool) -> None:
    store = open_store(db_path, settings.store.busy_timeout_s)
    try:
        with store.transaction():
            if finished:
                store.index_new_articles()
            else:
                # Before anything is read: a run into an archive, or under incompatible settings, stops at once.
                store.check_can_ingest(index_layout(settings.matching))
            store.record_run(report.run_id, report.started_at, report.counts(), finished=finished)
    finally:
        store.close()


def run_overview(report: RunReport, db_path: str | Path) -> tuple[dict[str, int], list[dict], list[dict]]:
    """Database totals, the run's new and grown stories, and the run's rejects."""
    store = open_store(db_path)
    try:
        touched = sorted(report.new_stories | report.grown_stories)
        stories = [row for row in (store.story(story_id) for story_id in touched) if row]
        stories.sort(key=lambda row: (-row["article_count"], row["story_id"]))
        rejects = list(store.db.query("SELECT * FROM rejects WHERE run_id = ? ORDER BY id", [report.run_id]))
        return store.counts(), stories, rejects
    finally:
        store.close()


def nothing_read(report: RunReport, paths: Sequence[str], kind: str | None) -> bool:
    """Whether a run over web locations only read nothing at all: nothing was stored or found
    already stored, something was rejected, and no page answered, either because no feed or
    sitemap could be read (a 304 counts as read; an answer that is not a feed does not) or
    because every page fetch failed (unreachable, an HTTP error, refused). A page that answered
    with no article in it counts as read: its server is up. Such a run should not look like a
    success to whoever watches the runs: a source down for days, or a feed whose pages all
    moved, would otherwise show as a row of green runs."""
    local, remote = web.split_locations(paths, kind)
    return (
        bool(remote) and not local and report.pages_fetched == report.pages_failed
        and report.new_articles == 0 and report.unchanged == 0 and report.rejects > 0
    )


def nothing_read_error(report: RunReport, remote: Sequence[str], rejects: Sequence[dict]) -> SourceError:
    """The error that fails such a run, with the first rejects' reasons."""
    reasons = "; ".join(dict.fromkeys(f"{row['ref']}: {row['reason']}" for row in rejects[:3]))
    return SourceError(
        f"nothing could be read from {', '.join(remote)}" + (f" ({reasons})" if reasons else "")
        + "; see 'newsdedup rejects'"
    )


def fail_if_nothing_read(report: RunReport, paths: Sequence[str], kind: str | None, db_path: str | Path) -> None:
    """Raise the run's `SourceError` if it read nothing (`nothing_read`), once it is recorded:
    both engines end such a run this way (the flow's run then shows Failed).

    Raises:
        SourceError: with the first rejects' reasons.
    """
    if nothing_read(report, paths, kind):
        raise nothing_read_error(report, paths, run_overview(report, db_path)[2])


def run_similarities(report: RunReport, db_path: str | Path) -> list[float]:
    """Similarity to their story's canonical article of the run's new articles, canonicals left out."""
    store = open_store(db_path)
    try:
        rows = store.db.query(
            "SELECT a.similarity FROM articles a JOIN stories s ON s.id = a.story_id "
            "WHERE a.run_id = ? AND a.id != s.canonical_article_id AND a.similarity IS NOT NULL",
            [report.run_id],
        )
        return [row["similarity"] for row in rows]
    finally:
        store.close()


def ingest(
    paths: Sequence[str],
    settings: Settings,
    db_path: str | Path,
    run_id: str | None = None,
    on_batch: Callable[[RunReport], None] | None = None,
    documents: Iterable[RawDocument | Rejected] | None = None,
    kind: str | None = None,
    workers: int = 1,
    run_lock: bool = True,
) -> RunReport:
    """Ingest `paths` (files, directories, URLs, feeds, sitemaps; or already-read `documents`)
    into the story database at `db_path` without Prefect (library use).

    `kind` ("feed", "sitemap", "page") says what the URLs are; by default the response tells.
    With `workers` > 1, batches are prepared in that many processes while this process assigns
    and stores them in input order, so the result is the same as with one worker.

    Like a flow run, the run takes the database's run lock when its first batch is ready to
    commit and keeps it to the end (`runlock.LockAtFirstCommit`), so another run waits for it whole
    and `newsdedup runs` shows it as running (before that, as reading: `runlock.alive` marks a
    living run from its start). `run_lock=False` is for a caller that coordinates
    runs itself: its batches then interleave with other writers' (each is still one transaction).
    """
    report = RunReport(run_id or new_run_id())
    # Let go of in reverse: the store (its last checkpoint), the run lock, the liveness mark.
    with contextlib.ExitStack() as held:
        held.enter_context(alive(db_path, report.run_id))
        start_run(report, db_path, settings)
        lock = held.enter_context(LockAtFirstCommit(db_path, report.run_id))
        store = open_store(db_path, settings.store.busy_timeout_s)
        held.callback(store.close)
        crawl = web.CrawlState(db_path, settings.store.busy_timeout_s)
        chunks = timed_iter(batches(paths, settings, documents, crawl, kind), report, "read")
        for prepared in _prepared_batches(chunks, settings, report, workers):
            if run_lock and (waited := lock.take()) >= 0.1:
                # A stage of its own only when there was another run to wait for.
                report.time("waiting for another run", waited)
            started = time.perf_counter()
            report.add(commit_batch(prepared, store, settings, report.run_id))
            report.time("assign+store", time.perf_counter() - started)
            if on_batch:
                on_batch(report)
        crawl.save_listings(report.run_id)
        if documents is None and web.split_locations(paths, kind)[1]:
            report.add_crawl(crawl)
        # While the run's store is still open: closing it waits for the checkpoint of its last
        # batch, which meanwhile runs beside the indexing of that batch for search.
        finish_run(report, db_path, settings)
    return report


def timed_iter(items: Iterable, report: RunReport, stage: str) -> Iterator:
    """Yield from `items`, adding the time spent producing them to `report` under `stage`."""
    iterator = iter(items)
    while True:
        started = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            report.time(stage, time.perf_counter() - started)
            return
        report.time(stage, time.perf_counter() - started)
        yield item


def _prepared_batches(
    chunks: Iterable[list[RawDocument | Rejected]], settings: Settings, report: RunReport, workers: int
) -> Iterator[PreparedBatch]:
    """Prepared batches in input order: here, or in `workers` processes kept `workers` batches ahead.

    With workers, "prepare" is the time the writer waited for a prepared batch, not CPU time.
    """
    if workers <= 1:
        for chunk in chunks:
            started = time.perf_counter()
            prepared = prepare_batch(chunk, settings)
            report.time("prepare", time.perf_counter() - started)
            yield prepared
        return
    with WorkerPool(workers) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(chunk, settings))
            if len(pending) > workers:
                yield _waited(pool, pending.popleft(), report)
        while pending:
            yield _waited(pool, pending.popleft(), report)


class WorkerPool:
    """Processes that prepare batches and hand each back through a file (see `prepare_into_file`).

    Each worker exits when the process that started the pool is gone (`exit_with`).
    """

    def __init__(self, workers: int, mp_context=None) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self._handover = contextlib.ExitStack()
        self.directory = self._handover.enter_context(handover_directory())
        self._pool = ProcessPoolExecutor(
            workers, mp_context=mp_context, initializer=exit_with, initargs=(os.getpid(),)
        )

    def submit(self, chunk: list[RawDocument | Rejected], settings: Settings) -> Future:
        return self._pool.submit(prepare_into_file, chunk, settings, self.directory)

    def take(self, future: Future) -> PreparedBatch:
        """The prepared batch of a finished `submit` (raises what the task raised, or
        BrokenProcessPool when a worker died)."""
        try:
            return take_handed_over(future.result())
        except HandoverError as exc:
            raise handover_failed(self.directory, exc) from None

    def close(self, cancel_futures: bool = False) -> None:
        # The pool first: its workers may still be writing into the directory.
        self._pool.shutdown(cancel_futures=cancel_futures)
        self._handover.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def prepare_into_file(chunk: list[RawDocument | Rejected], settings: Settings, directory: str) -> str:
    """A worker's task: prepare `chunk`, leave it pickled in a new file in `directory`, return its path.

    Why a file and not the result itself: a process pool's workers send their results through
    one shared pipe, and a worker killed while writing a prepared batch (megabytes) leaves half
    a message in it, which the pool's reader then waits to complete for ever: the run hung
    instead of failing (1 run in 3 to 2 in 24 whose worker was killed, here). A path is a
    message of a few hundred bytes, which the pipe takes in one write that cannot be cut: it
    arrives whole or not at all, and the pool sees the dead worker and fails the run (exit 6).
    """
    if not os.path.isdir(directory):
        return RUN_ENDED
    prepared = prepare_batch(chunk, settings)
    path = None
    try:
        handle, path = tempfile.mkstemp(prefix="batch-", suffix=".pickle", dir=directory)
        with os.fdopen(handle, "wb") as out:
            pickle.dump(prepared, out, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as exc:  # the directory's file system full, say: no half-written file stays
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if not os.path.isdir(directory):
            return RUN_ENDED
        raise HandoverError(f"{exc.strerror or exc}") from None
    return path


# What a worker hands back instead of a path when the handover directory is gone: the run that
# made it has ended. An interrupted run removes it while its pool finishes the tasks in hand,
# which then failed one by one, each logged as an error, after the run had already stopped.
RUN_ENDED = ""


class HandoverError(Exception):
    """A worker could not write its prepared batch into the handover directory."""


def take_handed_over(path: str) -> PreparedBatch:
    """The prepared batch a worker wrote to `path` (`prepare_into_file`); the file is removed.

    Raises:
        HandoverError: the worker found the handover directory gone (removed by hand, or by a
            cleaner of /dev/shm, while the run went on).
    """
    if path == RUN_ENDED:
        raise HandoverError("the directory was removed while the run went on")
    try:
        return read_kept(path)
    finally:
        os.unlink(path)


def read_kept(path: str) -> PreparedBatch:
    """The prepared batch kept in `path` for a cache (`prepare_into_file`); the file stays.

    Raises:
        OSError: the file is gone (pruned, or removed by hand): prepare the batch again.
    """
    with open(path, "rb") as kept:
        return pickle.load(kept)


def handover_failed(directory: str, exc: BaseException) -> WorkerError:
    """The error that stops a run whose worker could not write a prepared batch (a full disk)."""
    return WorkerError(
        f"a worker could not hand a prepared batch back through {directory} ({exc}); the batches "
        "committed before it are stored: free some space there and run the same command again"
    )


@contextlib.contextmanager
def handover_directory() -> Iterator[str]:
    """A private directory for workers to hand prepared batches back through, for as long as the
    block runs (removed after; one left by a killed run is removed by the next)."""
    base = handover_base()
    _remove_orphaned_handovers(base)
    directory, lock = _own_handover_directory(base)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        os.close(lock)


_HANDOVER_PREFIX = "newsdedup-batches-"
_HANDOVER_LOCK = "owner.lock"
# /dev/shm with less free space than this is not used: a container's is often 64 MB, and up
# to `workers` + 1 batches wait there at a time, about 13 MB each at 1,000 articles a batch.
_HANDOVER_MIN_FREE = 1 << 30


def handover_base() -> str:
    """Where worker pools make their handover directories: memory (/dev/shm) where Linux offers
    enough of it, else the temporary directory."""
    shm = "/dev/shm"
    try:
        if os.access(shm, os.W_OK | os.X_OK):
            space = os.statvfs(shm)
            if space.f_bavail * space.f_frsize >= _HANDOVER_MIN_FREE:
                return shm
    except OSError:
        pass
    return tempfile.gettempdir()


def _own_handover_directory(base: str) -> tuple[str, int]:
    """A new handover directory in `base`, and the open lock file that marks it as this process's.

    The lock (flock) lasts as long as this process, however it ends, and is visible from every
    process that sees the directory, in whatever pid namespace (containers sharing /dev/shm): a
    process id in the name could not say whether its owner still runs. The directory is made
    and locked under a name the sweep ignores, then renamed, so the sweep never sees it unlocked.
    """
    making = tempfile.mkdtemp(prefix=f".making-{_HANDOVER_PREFIX}", dir=base)
    lock = os.open(os.path.join(making, _HANDOVER_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    final = os.path.join(base, f"{_HANDOVER_PREFIX}{os.getpid()}-{os.path.basename(making).rsplit('-', 1)[-1]}")
    os.rename(making, final)
    return final, lock


def _remove_orphaned_handovers(base: str) -> None:
    """Remove the handover directories of runs that ended without removing them (killed)."""
    try:
        names = [name for name in os.listdir(base) if name.startswith(_HANDOVER_PREFIX)]
    except OSError:
        return
    for name in names:
        directory = os.path.join(base, name)
        if not _handover_owned(directory):
            shutil.rmtree(directory, ignore_errors=True)


def _handover_owned(directory: str) -> bool:
    """Whether a running process holds `directory`'s lock (see _own_handover_directory)."""
    try:
        lock = os.open(os.path.join(directory, _HANDOVER_LOCK), os.O_RDWR)
    except FileNotFoundError:
        # Made by a version without the lock file: its owner's process id is in its name.
        pid = os.path.basename(directory)[len(_HANDOVER_PREFIX):].split("-", 1)[0]
        return not pid.isdigit() or _process_exists(int(pid))
    except OSError:  # not ours to judge (another user's, say)
        return True
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(lock)  # (releases the lock, if this took it)
    return False


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def exit_with(pid: int, every_s: float = 1.0) -> None:
    """A worker process's initializer: exit as soon as process `pid` (the run) is gone.

    A worker blocked on its task queue holds that queue's write end itself, so it never sees
    the end of a run that was killed (SIGKILL, OOM killer) and would wait for ever, holding its
    memory; a thread that checks the run's pid every `every_s` ends it instead.

    A forked worker also inherits the run's signal handlers; SIGTERM, which the pool sends its
    workers when it shuts down broken, should simply end it, not raise in it. A Ctrl-C in the
    terminal reaches every process of the group, workers included; it is the run's to act on
    (it stops its pool in order), so a worker ignores it: under Prefect's process pool, workers
    interrupted mid-task broke the pool's manager thread, and the run then waited for them at
    exit for ever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, under another user (a reused pid): keep waiting
                pass

    threading.Thread(target=watch, name="newsdedup-exit-with-run", daemon=True).start()


def _waited(pool: WorkerPool, future: Future, report: RunReport) -> PreparedBatch:
    started = time.perf_counter()
    result = pool.take(future)
    report.time("prepare", time.perf_counter() - started)
    return result
