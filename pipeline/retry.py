"""Replaying rejected inputs: after a fix (to the file, or to newsdedup), read them again."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import ingest, sources, web
from .models import RawDocument, Rejected
from .settings import IngestSettings, Settings
from .store import open_store

_LINE_REF = re.compile(r"^(.*):(\d+)$")


def retry_documents(keys: Sequence[tuple[str, str]], settings: IngestSettings) -> Iterator[RawDocument | Rejected]:
    """The rejected inputs `keys` ((ref, input) pairs) read again from their files, under their
    original refs so that a stored article gets the external_id a first-time success would have.

    An input whose file is gone stays a reject, with that as its reason.
    """
    wanted: dict[str, set[str]] = {}
    for ref, origin in keys:
        wanted.setdefault(origin, set()).add(ref)
    for origin in sorted(wanted):
        refs = wanted[origin]
        if origin == sources.STDIN_ORIGIN:
            for ref in sorted(refs):
                yield Rejected(ref, sources.STAGE, "cannot retry: it came from standard input; pipe the fixed "
                               "records in again (newsdedup ingest -)", "", origin)
            continue
        path = Path(origin) if origin else None
        if path is None or not path.is_file():
            for ref in sorted(refs):
                yield Rejected(ref, sources.STAGE, "cannot retry: the input file no longer exists", "", origin)
            continue
        if sources.kind_of(path) != "jsonl":
            for ref in sorted(refs):
                yield from sources.file_documents(path, ref, settings)
            continue
        # One pass per file. A JSON Lines file's name ends in .jsonl(.gz), so a ref ending in
        # ":N" is always line N of it. Reading resumes at the first rejected line, not only at
        # the rejected lines: a corrupt or over-long gzip stream stopped the first read there,
        # and the lines after it were never read. Lines already stored count as unchanged.
        firsts: dict[str, int] = {}
        for ref in refs:
            file_ref, line = _file_ref(ref)
            firsts[file_ref] = min(firsts.get(file_ref, line), line)
        for file_ref in sorted(firsts):
            for item in sources.file_documents(path, file_ref, settings):
                if _file_ref(item.ref)[1] >= firsts[file_ref]:
                    yield item


def _file_ref(ref: str) -> tuple[str, int]:
    """(the file's ref, the line number) of a JSON Lines ref; line 0 for the whole file."""
    match = _LINE_REF.match(ref)
    return (match.group(1), int(match.group(2))) if match else (ref, 0)


def retry_rejects(
    settings: Settings, db_path: str | Path, on_batch: Callable[[ingest.RunReport], None] | None = None
) -> ingest.RunReport:
    """Replay every recorded reject but those from standard input (`stdin_rejects` counts them):
    those now stored leave `rejects`, those still bad stay with this run's reason. Rejects that
    no longer name an input (a JSON Lines line that is now blank, a whole-file reject of a file
    whose lines are now read one by one) leave too.
    """
    store = open_store(db_path, settings.store.busy_timeout_s)
    try:
        # A pipe cannot be read again: its rejects stay as they are, stage and reason (a QA pass
        # found them replaced by "cannot retry", the real reason lost).
        keys = [key for key in store.reject_keys() if key[1] != sources.STDIN_ORIGIN]
    finally:
        store.close()
    # Rejects whose input is a URL (pages, feeds, sitemaps) are fetched again, even when known.
    urls = sorted({origin for _, origin in keys if web.is_url(origin)})
    crawl = web.CrawlState(db_path, settings.store.busy_timeout_s, refetch=frozenset(urls))
    documents = itertools.chain(
        retry_documents([key for key in keys if not web.is_url(key[1])], settings.ingest),
        web.documents(urls, None, settings, crawl),
    )
    report = ingest.ingest(
        [], settings, db_path, run_id=ingest.new_run_id(), on_batch=on_batch, documents=documents,
    )
    store = open_store(db_path, settings.store.busy_timeout_s)
    try:
        with store.transaction():
            still_rejected = store.reject_keys_of_run(report.run_id)
            store.forget_rejects([key for key in keys if key not in still_rejected])
    finally:
        store.close()
    return report


def stdin_rejects(db_path: str | Path) -> int:
    """How many recorded rejects came from standard input, which `retry_rejects` leaves alone."""
    store = open_store(db_path, read_only=True)
    try:
        return sum(1 for _, origin in store.reject_keys() if origin == sources.STDIN_ORIGIN)
    finally:
        store.close()
