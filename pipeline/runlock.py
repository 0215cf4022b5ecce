"""One ingest run per story database at a time: an advisory file lock next to the database.

SQLite already serializes writers batch by batch (BEGIN IMMEDIATE), so overlapping runs could
not corrupt the file; the run-level lock makes a second run wait for the first one as a whole,
so a slow scheduled run and the next one due never interleave their batches, and a person
reading the logs sees why a run is idle. `flock` locks belong to the open file, so they also
separate two runs in one process (threads) and vanish when a crashed process's file closes:
no stale lock to clean up by hand.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Collection, Iterator

from .errors import StoreError

log = logging.getLogger(__name__)

# How often a waiting run retries the lock, and how often it says it is still waiting.
_POLL_SECONDS = 0.5
_REMIND_SECONDS = 60.0

WAITING_MESSAGE = "another run (an ingest, archive, merge, split or remove) holds the database; waiting"


def _beside(db_path: str | Path, suffix: str) -> Path:
    # Beside the database file itself, symbolic links resolved: a link to the database and the
    # database's own path share one lock and one set of marks.
    db_path = Path(os.path.realpath(db_path))
    return db_path.with_name(db_path.name + suffix)


def lock_path_for(db_path: str | Path) -> Path:
    """The lock file that guards the story database at `db_path`: beside the file itself, so
    that a symbolic link to the database and the database's own path share one lock."""
    return _beside(db_path, ".lock")


def _holder_record(handle) -> dict | None:
    """What the run holding the lock wrote into the lock file (run_id, pid, since); None if unreadable."""
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except ValueError:
        return None


def _holder(handle) -> str:
    who = _holder_record(handle)
    if who is None:
        return "unknown run"
    return f"run {who.get('run_id', '?')} (pid {who.get('pid', '?')}, since {who.get('since', '?')})"


def _open_lock_file(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise StoreError(
            f"cannot write the run lock {path} ({exc.strerror or exc}): an ingest needs to write in the "
            "database's directory"
        ) from None


def check_lock_file(db_path: str | Path) -> None:
    """Raise the error `exclusive_run` would raise if the lock file cannot be made (without
    taking the lock): for a one-line answer before a flow run starts.

    Raises:
        StoreError: the lock file cannot be made.
    """
    _open_lock_file(lock_path_for(db_path)).close()


def _taken(handle, operation: int) -> bool:
    """Take `operation` (LOCK_SH or LOCK_EX) on `handle` if no other holder stops it at once."""
    try:
        fcntl.flock(handle, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def running_run(db_path: str | Path) -> str | None:
    """The id of the ingest run holding the database's run lock now, or None when no run does.

    Only asks: a shared lock is tried and let go at once, and no lock file is made."""
    try:
        handle = open(lock_path_for(db_path), encoding="utf-8")
    except OSError:
        return None
    with handle:
        if not _taken(handle, fcntl.LOCK_SH):
            return (_holder_record(handle) or {}).get("run_id") or "?"
    return None


@contextmanager
def exclusive_run(db_path: str | Path, run_id: str, timeout_s: float | None = None) -> Iterator[float]:
    """Hold the database's run lock for the block; yields the seconds spent waiting for it.

    Raises:
        TimeoutError: `timeout_s` passed before the other run finished.
        StoreError: the lock file cannot be made (a read-only directory, say).
    """
    path = lock_path_for(db_path)
    handle = _open_lock_file(path)
    started = time.monotonic()
    try:
        reminded = 0.0
        while not _taken(handle, fcntl.LOCK_EX):
            waited = time.monotonic() - started
            if reminded == 0.0:
                log.warning("%s: %s holds %s", WAITING_MESSAGE, _holder(handle), db_path)
                reminded = waited or 1e-9
            elif waited - reminded >= _REMIND_SECONDS:
                log.warning("still waiting after %.0fs: %s holds %s", waited, _holder(handle), db_path)
                reminded = waited
            if timeout_s is not None and waited >= timeout_s:
                raise TimeoutError(f"{_holder(handle)} held {db_path} for more than {timeout_s:.0f}s")
            time.sleep(_POLL_SECONDS)
        waited = time.monotonic() - started
        if reminded:
            log.info("the other run finished after %.1fs; going on", waited)
        log.info("run %s has the story database %s to itself", run_id, db_path)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"run_id": run_id, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        handle.flush()
        try:
            yield waited
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def _alive_path(db_path: str | Path, run_id: str) -> Path:
    return _beside(db_path, ".runs") / f"{run_id}.alive"


def _held_by_someone(path: Path) -> bool:
    """Whether a living process holds `path`'s lock (False when it is gone or free)."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError:
        return False
    with handle:  # (closing it lets go of a lock taken here)
        return not _taken(handle, fcntl.LOCK_SH)


@contextmanager
def alive(db_path: str | Path, run_id: str) -> Iterator[None]:
    """Mark the run as alive for the block: `<database>.runs/<run_id>.alive`, locked while it runs.

    The run lock is only taken at a run's first commit, so before that (reading a slow feed,
    waiting for another run) only this mark tells a living run from one that was killed: the
    lock on it vanishes with the process, however it ends. Enter it before the run is recorded
    in `runs`, so that a run listed there is marked already if it is alive.

    A status aid only: when the mark cannot be made (a read-only directory), the run goes on
    unmarked and reads as unfinished until it ends; its run lock will say what is wrong.
    """
    path = _alive_path(db_path, run_id)
    handle = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # (as opening the database would)
        _sweep(path.parent)
        # Locked under a temporary name, then renamed: a mark is never seen unlocked while its
        # run lives, so a sweep by another run cannot take it for a dead run's and remove it.
        partial = path.with_name(f".{run_id}.{os.getpid()}.partial")
        handle = open(partial, "w", encoding="utf-8")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(json.dumps({"run_id": run_id, "pid": os.getpid()}))
        handle.flush()
        os.replace(partial, path)
    except OSError as exc:
        log.debug("run %s is not marked alive: %s", run_id, exc)
        if handle is not None:
            handle.close()
            handle = None
    try:
        yield
    finally:
        if handle is not None:
            try:
                path.unlink(missing_ok=True)
            finally:
                handle.close()


# A partial mark younger than this may belong to a run between making and locking it.
_PARTIAL_GRACE_S = 60.0


def _sweep(directory: Path) -> None:
    """Remove the marks runs left when they were killed (no process holds their lock)."""
    partials = [
        partial for partial in directory.glob(".*.partial")
        if time.time() - _modified(partial) > _PARTIAL_GRACE_S
    ]
    for mark in [*directory.glob("*.alive"), *partials]:
        try:
            handle = open(mark, encoding="utf-8")
        except OSError:
            continue
        with handle:
            if _taken(handle, fcntl.LOCK_EX):
                mark.unlink(missing_ok=True)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()  # gone meanwhile: nothing to sweep


def alive_runs(db_path: str | Path, run_ids: Collection[str]) -> set[str]:
    """Which of `run_ids` are alive now (marked by `alive`). Only asks: nothing is written."""
    return {run_id for run_id in run_ids if _held_by_someone(_alive_path(db_path, run_id))}


class LockAtFirstCommit:
    """The run lock as every ingest run takes it (the flow's and the library's): when its first
    batch is ready to commit, not before reading, and held until the run ends (`close`).

    Reading first: a run whose feed times out (94 s with the default retries) would otherwise
    hold every other source's run back meanwhile, as a QA pass saw; and a run with nothing to
    commit (a feed not modified, no new links) never takes it.
    """

    def __init__(self, db_path: str | Path, run_id: str) -> None:
        self.db_path = db_path
        self.run_id = run_id
        self.waited: float | None = None  # seconds waited for another run; None until taken
        self._held = ExitStack()

    def take(self) -> float:
        """Take the lock unless this run holds it already; the seconds this call waited."""
        if self.waited is not None:
            return 0.0
        self.waited = self._held.enter_context(exclusive_run(self.db_path, self.run_id))
        return self.waited

    def close(self) -> None:
        self._held.close()

    def __enter__(self) -> LockAtFirstCommit:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
