"""The run lock: one ingest run per database; the second waits, says so, and goes on."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest

from pipeline.runlock import WAITING_MESSAGE, exclusive_run, lock_path_for


def test_lock_file_sits_next_to_the_database(tmp_path):
    assert lock_path_for(tmp_path / "stories.db") == tmp_path.resolve() / "stories.db.lock"


def test_a_symbolic_link_to_the_database_shares_its_lock(tmp_path):
    """(QA pass: a run through `link.db` and one through `real.db` both held 'the' lock.)"""
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "real.db"
    link = tmp_path / "link.db"
    link.symlink_to(real)
    assert lock_path_for(link) == lock_path_for(real)
    with exclusive_run(real, "through-the-file"):
        with pytest.raises(TimeoutError, match="through-the-file"):
            with exclusive_run(link, "through-the-link", timeout_s=0.2):
                pass


def test_a_lock_that_cannot_be_written_is_a_database_error(tmp_path):
    from pipeline.errors import StoreError

    (tmp_path / "not-a-directory").write_text("")
    with pytest.raises(StoreError, match="cannot write the run lock"):
        with exclusive_run(tmp_path / "not-a-directory" / "stories.db", "run"):
            pass


def test_second_run_waits_for_the_first_and_logs_why(tmp_path, caplog):
    db = tmp_path / "stories.db"
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with exclusive_run(db, "first"):
            holding.set()
            time.sleep(1.0)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(10)
    with caplog.at_level(logging.INFO, logger="pipeline.runlock"):
        with exclusive_run(db, "second") as waited:
            order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert waited >= 0.5
    warning = next(r for r in caplog.records if WAITING_MESSAGE in r.getMessage())
    assert warning.levelno == logging.WARNING and "run first" in warning.getMessage()
    # Since when, as a UTC date and time: a run held since yesterday must not read as today's.
    assert re.search(r"since \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\)", warning.getMessage()), warning.getMessage()


def test_timeout_names_the_holder(tmp_path):
    db = tmp_path / "stories.db"
    with exclusive_run(db, "slow-run"):
        with pytest.raises(TimeoutError, match="run slow-run"):
            with exclusive_run(db, "impatient", timeout_s=0.2):
                pass


def test_lock_is_released_after_the_block_and_after_an_error(tmp_path):
    db = tmp_path / "stories.db"
    with pytest.raises(RuntimeError):
        with exclusive_run(db, "failing"):
            raise RuntimeError("boom")
    with exclusive_run(db, "next", timeout_s=0.5) as waited:
        assert waited < 0.5
    assert lock_path_for(db).read_text() == "", "the holder's note is cleared on release"


def test_a_run_marked_alive_reads_as_alive_until_it_ends(tmp_path):
    from pipeline.runlock import alive, alive_runs

    db = tmp_path / "stories.db"
    assert alive_runs(db, ["one", "two"]) == set()  # nothing marked, nothing made
    assert not (tmp_path / "stories.db.runs").exists()
    with alive(db, "one"):
        assert alive_runs(db, ["one", "two"]) == {"one"}
        with alive(db, "two"):
            assert alive_runs(db, ["one", "two"]) == {"one", "two"}
        assert alive_runs(db, ["one", "two"]) == {"one"}
    assert alive_runs(db, ["one", "two"]) == set()
    assert list((tmp_path / "stories.db.runs").iterdir()) == []


def test_a_killed_runs_mark_reads_as_gone_and_the_next_run_removes_it(tmp_path):
    """kill -9 runs no cleanup: the mark stays as a file, but its lock went with the process."""
    import os
    import signal
    import subprocess
    import sys

    from pipeline.runlock import alive, alive_runs

    db = tmp_path / "stories.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from pipeline.runlock import alive\n"
            f"with alive({str(db)!r}, 'killed'):\n"
            "    print('marked', flush=True)\n"
            "    time.sleep(60)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "marked"
        assert alive_runs(db, ["killed"]) == {"killed"}
        os.kill(holder.pid, signal.SIGKILL)
    finally:
        holder.wait(10)
    marks = tmp_path / "stories.db.runs"
    assert [path.name for path in marks.iterdir()] == ["killed.alive"]
    assert alive_runs(db, ["killed"]) == set()
    with alive(db, "next"):
        assert [path.name for path in marks.iterdir()] == ["next.alive"]
        assert alive_runs(db, ["killed", "next"]) == {"next"}


def test_a_run_goes_on_unmarked_where_no_mark_can_be_made(tmp_path):
    from pipeline.runlock import alive, alive_runs

    (tmp_path / "stories.db.runs").write_text("a file where the directory would be")
    with alive(tmp_path / "stories.db", "unmarked"):
        assert alive_runs(tmp_path / "stories.db", ["unmarked"]) == set()


def test_a_partial_mark_is_swept_only_once_it_is_old(tmp_path):
    """A run killed between making its mark and naming it leaves a partial one; a partial one a
    run is making at this moment must stay (the grace period), an old unheld one goes."""
    import os
    import time

    from pipeline.runlock import alive

    marks = tmp_path / "stories.db.runs"
    marks.mkdir()
    fresh, old = marks / ".fresh.1.partial", marks / ".old.2.partial"
    fresh.write_text("{}")
    old.write_text("{}")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    with alive(tmp_path / "stories.db", "next"):
        assert sorted(path.name for path in marks.iterdir()) == [".fresh.1.partial", "next.alive"]
