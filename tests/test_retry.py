"""Replaying rejects: `ingest --retry-rejects` stores what was fixed and keeps what is still bad."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from pipeline.ingest import ingest
from pipeline.retry import retry_rejects

from tests.synthetic import consistency_problems

ROOT = Path(__file__).resolve().parent.parent
BODY = (
    "The harbour authority said on Friday that the new ferry terminal would open in June after "
    "two years of delays, and that ticket prices would stay unchanged for residents of the islands. "
) * 3


def _rejects(db: Path) -> dict[str, tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return {ref: (reason, run_id) for ref, reason, run_id in conn.execute("SELECT ref, reason, run_id FROM rejects")}
    finally:
        conn.close()


def _external_ids(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return sorted(row[0] for row in conn.execute("SELECT external_id FROM articles"))
    finally:
        conn.close()


def _broken_inputs(root: Path) -> Path:
    inputs = root / "in"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "sub" / "empty.txt").write_bytes(b"")
    (inputs / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (inputs / "feed.jsonl").write_text(
        json.dumps({"id": "ok-1", "text": BODY}) + "\n{broken\n" + json.dumps({"id": "ok-3", "text": BODY + " three"}) + "\n"
    )
    return inputs


def test_retry_stores_fixed_inputs_and_keeps_the_still_bad(tmp_path, settings):
    inputs = _broken_inputs(tmp_path)
    db = tmp_path / "stories.db"
    first = ingest([str(inputs)], settings, db)
    assert first.rejects == 3 and set(_rejects(db)) == {"sub/empty.txt", "binary.txt", "feed.jsonl:2"}

    # Fix two of them; make the third bad in another way.
    (inputs / "sub" / "empty.txt").write_text("Ferry terminal opens\n" + BODY)
    lines = (inputs / "feed.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"text": BODY + " the fixed line"})
    (inputs / "feed.jsonl").write_text("\n".join(lines) + "\n")
    (inputs / "binary.txt").write_text("A headline\nToo short to be an article.")

    report = retry_rejects(settings, db)
    rejects = _rejects(db)
    assert report.balanced
    assert set(rejects) == {"binary.txt"}
    reason, run_id = rejects["binary.txt"]
    assert "too short" in reason and run_id == report.run_id  # the reason of this run, not the first
    # Stored under the refs a first-time success would have had: relative to the directory given.
    assert _external_ids(db) == ["feed.jsonl:2", "ok-1", "ok-3", "sub/empty.txt"]
    assert consistency_problems(db) == []

    # Nothing left to fix: a second retry changes nothing and adds nothing.
    again = retry_rejects(settings, db)
    assert again.new_articles == 0 and set(_rejects(db)) == {"binary.txt"}
    assert len(_external_ids(db)) == 4


def test_reingesting_a_fixed_input_clears_its_reject(tmp_path, settings):
    inputs = _broken_inputs(tmp_path)
    db = tmp_path / "stories.db"
    ingest([str(inputs)], settings, db)
    (inputs / "sub" / "empty.txt").write_text("Ferry terminal opens\n" + BODY)
    ingest([str(inputs)], settings, db)
    assert "sub/empty.txt" not in _rejects(db)
    assert "sub/empty.txt" in _external_ids(db)


def test_retry_of_an_input_that_is_gone_keeps_it_with_that_reason(tmp_path, settings):
    inputs = _broken_inputs(tmp_path)
    db = tmp_path / "stories.db"
    ingest([str(inputs)], settings, db)
    (inputs / "binary.txt").unlink()
    retry_rejects(settings, db)
    assert "no longer exists" in _rejects(db)["binary.txt"][0]


def test_retry_resumes_a_json_lines_file_where_damage_stopped_it(tmp_path, settings):
    """A truncated .jsonl.gz stops reading mid-file; after the file is replaced, retry reads the rest."""
    lines = "".join(json.dumps({"id": f"n{n}", "text": BODY + f" item {n}"}) + "\n" for n in range(40)).encode()
    path = tmp_path / "feed.jsonl.gz"
    path.write_bytes(gzip.compress(lines)[:-60])
    db = tmp_path / "stories.db"
    ingest([str(path)], settings, db)
    stored_before = len(_external_ids(db))
    assert 0 < stored_before < 40 and len(_rejects(db)) == 1

    path.write_bytes(gzip.compress(lines))
    report = retry_rejects(settings, db)
    assert _rejects(db) == {}
    assert _external_ids(db) == sorted(f"n{n}" for n in range(40))
    assert report.new_articles == 40 - stored_before and report.balanced


def test_retry_through_the_cli(tmp_path, settings):
    inputs = _broken_inputs(tmp_path)
    db = tmp_path / "stories.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "pipeline.cli", "ingest", "--db", str(db), "--engine", "local"]
    first = subprocess.run([*cli, str(inputs)], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    (inputs / "sub" / "empty.txt").write_text("Ferry terminal opens\n" + BODY)
    # From another working directory: inputs are recorded by absolute path.
    retry = subprocess.run([*cli, "--retry-rejects"], env=env, capture_output=True, text=True, timeout=300, cwd="/")
    assert retry.returncode == 0, retry.stderr
    assert "new articles     1" in retry.stdout and "rejects          2" in retry.stdout
    assert set(_rejects(db)) == {"binary.txt", "feed.jsonl:2"}
    both = subprocess.run([*cli, "--retry-rejects", str(inputs)], env=env, capture_output=True, text=True, timeout=300)
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "give no PATH" in both.stderr
