"""The run lock: one ingest run per database; the second waits, says so, and goes on."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from pipeline.runlock import WAITING_MESSAGE, exclusive_run, lock_path_for


def test_lock_file_sits_next_to_the_database(tmp_path):
    assert lock_path_for(tmp_path / "stories.db") == tmp_path / "stories.db.lock"


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
