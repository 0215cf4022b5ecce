"""How far a run has got: a cheap estimate of how many inputs it will read, and the fraction done."""

from __future__ import annotations

import gzip
import time
import zlib
from pathlib import Path
from typing import Protocol, Sequence

from .report import input_rate, plural
from .settings import IngestSettings
from .sources import STDIN, entries_under, kind_of

_CHUNK_BYTES = 1 << 20


def _jsonl_records(path: Path, limit: int) -> int:
    """Lines in a JSON Lines file, counted in its first `limit` bytes (decompressed, for gzip).

    The reader stops a gzip file at that limit too. A plain file is read whole, however large,
    so the count in its first `limit` bytes is scaled up by the file's size (a 400 MB file
    counted in 100 MB was estimated at a quarter of its lines, and progress stopped at 25%).
    """
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    lines = read = 0
    last = b"\n"
    more = False
    try:
        with opener(path, "rb") as handle:
            while read < limit:
                chunk = handle.read(_CHUNK_BYTES)
                if not chunk:
                    break
                read += len(chunk)
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            more = not compressed and read >= limit and bool(handle.read(1))
    except (OSError, EOFError, zlib.error):
        pass  # the reader will reject the file; the estimate only has to be close
    if more:
        return round(lines * path.stat().st_size / read)
    return lines + (0 if last == b"\n" else 1)


def _file_inputs(path: Path, settings: IngestSettings) -> int:
    if kind_of(path) == "jsonl":
        return max(1, _jsonl_records(path, settings.max_decompressed_bytes))
    return 1


def expected_inputs(paths: Sequence[str], settings: IngestSettings) -> int:
    """About how many inputs a run over `paths` will read: one per file, one per JSON Lines line.

    A URL counts as one input: a feed or sitemap may expand into more, so progress based on
    this estimate is capped below 100% until the run ends.
    """
    total = 0
    for given in paths:
        if given == STDIN:
            continue  # a pipe cannot be counted ahead: progress then gives no total for it
        root = Path(given)
        if root.is_dir():
            # (what cannot be read as a file is one input: it becomes one reject)
            total += sum(
                _file_inputs(path, settings) if problem is None else 1 for path, problem in entries_under(root)
            )
        elif root.is_file():
            total += _file_inputs(root, settings)
        else:
            total += 1
    return total


def fraction_done(inputs_read: int, expected: int) -> float:
    """Progress in percent for Prefect's progress artifact, below 100 until the run says it is done."""
    if expected <= 0:
        return 0.0
    return round(min(99.0, 100.0 * inputs_read / expected), 1)


def readable_duration(seconds: float) -> str:
    """A rough, readable duration: "40 s", "3 min 10 s", "2 h 05 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(inputs: int, expected: int, new_articles: int, rejects: int, elapsed_s: float) -> str:
    """One line of a run's progress for the terminal and the flow run's logs, e.g.
    "3,000 of about 20,000 inputs (15%), 2,950 new articles, 12 rejects; 780 inputs/s, about 22 s left".

    The rate is the run's own so far (start-up included). Once the run has read more than
    `expected` (a feed or sitemap expands into pages), it says neither a total nor a time left.
    """
    rate = inputs / elapsed_s if elapsed_s > 0 else 0.0
    # (the run summary's own format: a decimal under 10 a second)
    shown = input_rate(inputs, elapsed_s) if elapsed_s > 0 else "0 inputs/s"
    counts = f"{plural(new_articles, 'new article')}, {plural(rejects, 'reject')}"
    if 0 < inputs < expected:
        done = f"{inputs:,} of about {expected:,} inputs ({100 * inputs // expected}%)"
        seconds_left = (expected - inputs) / rate if rate > 0 else None
        if seconds_left is None:
            left = ""
        elif seconds_left < 1:
            left = ", under 1 s left"
        else:
            left = f", about {readable_duration(seconds_left)} left"
    else:
        done, left = plural(inputs, "input"), ""
    return f"{done}, {counts}; {shown}{left}"


class _Counts(Protocol):
    inputs: int
    new_articles: int
    rejects: int


class RunProgress:
    """A run's progress as both engines report it: the inputs expected, and the time since it began."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.started = time.monotonic()

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def line(self, run: _Counts) -> str:
        """`progress_line` for a run's counts so far (a `RunReport`)."""
        return progress_line(run.inputs, self.expected, run.new_articles, run.rejects, self.elapsed_s())
