"""Looking at processes from tests that kill runs and check what is left: through /proc (Linux)."""

from __future__ import annotations

import time
from pathlib import Path


def _stat(pid: int) -> list[bytes]:
    # The fields after the command name, which is in parentheses and may hold spaces.
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()


def running(pid: int) -> bool:
    """True while `pid` runs; a zombie (dead, waiting to be reaped by whoever adopted it) has ended."""
    try:
        return _stat(pid)[0] != b"Z"
    except FileNotFoundError:
        return False


def wait_until_ended(pids: list[int], timeout_s: float) -> list[int]:
    """Wait up to `timeout_s` for every process in `pids` to end; those still running."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [pid for pid in pids if running(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def children(pid: int) -> dict[int, str]:
    """The running child processes of `pid`, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = _stat(int(entry.name))
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != b"Z":
            found[int(entry.name)] = command
    return found


def descendants(pid: int, parents: dict[int, int] | None = None) -> dict[int, str]:
    """Every running process below `pid` (children, theirs, and so on), with its command line;
    with `parents`, also notes there each one's parent as found (the first time it is found)."""
    found: dict[int, str] = {}
    level = {pid: children(pid)}
    while level:
        below: dict[int, dict[int, str]] = {}
        for parent_pid, kids in level.items():
            for child, command in kids.items():
                found[child] = command
                if parents is not None:
                    parents.setdefault(child, parent_pid)
                below[child] = children(child)
        level = {child: kids for child, kids in below.items() if kids}
    return found
