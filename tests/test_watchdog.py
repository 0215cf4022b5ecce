"""flows/watchdog.py: a server started by a process stops when that process is SIGKILLed.

Each test starts a real parent process that starts a real child (standing in for a server)
and guards it with `stop_with_this_process`, then kills the parent the way the OOM killer
would. No Prefect here; tests/e2e/test_orphans.py does the same to `newsdedup ingest` and
Prefect's own embedded server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.processes import running, wait_until_ended

ROOT = Path(__file__).resolve().parent.parent

# The parent: starts a child (which, with --group, starts a grandchild in its process group),
# guards it, prints "child grandchild watchdog" pids and sleeps until killed.
_PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    sys.path.insert(0, {root!r})
    from flows import server
    group = {group!r}
    child_code = {child_code!r}
    child = subprocess.Popen([sys.executable, "-c", child_code], stdout=subprocess.PIPE, start_new_session=group)
    grandchild = child.stdout.readline().strip().decode() or "-"
    server.stop_with_this_process(child.pid, group=group)
    server.stop_with_this_process(child.pid, group=group)  # idempotent: still one watchdog
    print(child.pid, grandchild, server._watchdogs[child.pid].pid, len(server._watchdogs), flush=True)
    time.sleep(600)
    """
)
_SLEEPER = "import time; print(flush=True); time.sleep(600)"
_WITH_GRANDCHILD = (
    "import subprocess, sys, time; "
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "print(g.pid, flush=True); time.sleep(600)"
)


def _start_parent(child_code: str, group: bool) -> tuple[subprocess.Popen, list[str]]:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(root=str(ROOT), group=group, child_code=child_code)],
        stdout=subprocess.PIPE,
        text=True,
    )
    fields = parent.stdout.readline().split()
    assert len(fields) == 4, f"the parent did not start its child: {fields}"
    return parent, fields


def _kill(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(10)


def test_a_sigkilled_parents_child_is_stopped_and_the_watchdog_exits():
    parent, (child, _, watchdog, count) = _start_parent(_SLEEPER, group=False)
    try:
        assert count == "1"
        time.sleep(0.5)
        assert running(int(child)) and running(int(watchdog)), "the guarded child must run while its parent does"
        _kill(parent)
        assert wait_until_ended([int(child), int(watchdog)], 15) == []
    finally:
        for pid in (child, watchdog):
            if running(int(pid)):
                os.kill(int(pid), signal.SIGKILL)


def test_with_group_the_childs_own_children_are_stopped_too():
    parent, (child, grandchild, watchdog, _) = _start_parent(_WITH_GRANDCHILD, group=True)
    pids = [int(child), int(grandchild), int(watchdog)]
    try:
        time.sleep(0.5)
        assert all(map(running, pids))
        _kill(parent)
        assert wait_until_ended(pids, 15) == []
    finally:
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_watchdog_leaves_when_the_child_ends_first_and_the_parent_lives_on():
    parent, (child, _, watchdog, _) = _start_parent(_SLEEPER, group=False)
    try:
        os.kill(int(child), signal.SIGTERM)  # what the parent's own stop() does
        assert wait_until_ended([int(watchdog)], 10) == []
        assert parent.poll() is None
    finally:
        _kill(parent)
        if running(int(child)):
            os.kill(int(child), signal.SIGKILL)


def test_the_watchdog_refuses_bad_arguments():
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "flows" / "watchdog.py"), "1"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "PARENT_PID TARGET_PID" in result.stderr
