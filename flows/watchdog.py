"""Stop a server process when the process that started it dies, however it dies.

    python watchdog.py PARENT_PID TARGET_PID [--group]

Prefect's embedded server is a child process that Prefect stops from an `atexit` hook, and a
`newsdedup server` is stopped by our own signal handlers. A SIGKILL, the OOM killer or a crash
runs neither: the server lived on as an orphan, holding its port, its memory and its SQLite
database (seen four times in one session of benchmark runs). This watchdog is a separate,
tiny process (standard library only, run with `python -I -S`, so it starts in milliseconds and
imports nothing of the project) that waits for either process to end:

- TARGET ends first (the normal case: the parent stopped it): the watchdog just exits;
- PARENT ends first: it sends TARGET (with --group: TARGET's whole process group, for a server
  that runs its own children) SIGTERM, then SIGKILL after a grace period.

On Linux it sleeps in `select` on pidfds, which also make a reused process id harmless; where
pidfds are missing (macOS) it polls twice a second.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

GRACE_S = 10.0
POLL_S = 0.5


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _signal(target: int, group: bool, signum: int) -> None:
    try:
        if group:
            os.killpg(target, signum)
        else:
            os.kill(target, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for_parent_or_target(parent: int, target: int) -> bool:
    """Block until one of the two ends; True when the parent ended first."""
    if hasattr(os, "pidfd_open"):
        try:
            target_fd = os.pidfd_open(target)
        except ProcessLookupError:
            return False
        try:
            parent_fd = os.pidfd_open(parent)
        except ProcessLookupError:
            return True
        # The parent may have died, and its id been reused, before pidfd_open: our own parent
        # id says whether it is still the process that started us.
        if os.getppid() != parent:
            return True
        ready, _, _ = select.select([parent_fd, target_fd], [], [])
        return target_fd not in ready
    while True:
        if not _alive(target):
            return False
        if os.getppid() != parent:
            return True
        time.sleep(POLL_S)


def _ended(target: int, group: bool) -> bool:
    if not group:
        return not _alive(target)
    try:
        os.killpg(target, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _stop(target: int, group: bool) -> None:
    """SIGTERM, then SIGKILL to whatever is left after the grace period."""
    _signal(target, group, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if _ended(target, group):
            return
        time.sleep(0.1)
    _signal(target, group, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[2:] not in ([], ["--group"]):
        print(__doc__, file=sys.stderr)
        return 2
    parent, target, group = int(argv[0]), int(argv[1]), argv[2:] == ["--group"]
    if _wait_for_parent_or_target(parent, target):
        _stop(target, group)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
