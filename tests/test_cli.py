"""The newsdedup command: help with examples, readable tables, one-line errors with exit codes."""

import json
import re
import sqlite3
import subprocess
import sys

from pipeline.cli import COMMANDS, main


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_top_level_help_lists_every_command_with_an_example():
    result = run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout
    assert result.stdout.count("e.g. newsdedup") >= len(COMMANDS)


def test_local_ingest_then_stories_show_and_search(seeds_dir, db_path, capsys):
    assert main(["ingest", str(seeds_dir), "--db", str(db_path), "--engine", "local", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "inputs           5" in out and "5 articles, 1 story, 0 rejects" in out

    assert main(["stories", "--db", str(db_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "size", "canonical"] and table[2].split()[:2] == ["1", "5"]

    assert main(["show", "1", "--db", str(db_path)]) == 0
    shown = capsys.readouterr().out
    assert shown.count("canonical") >= 2 and shown.count("variant") == 4

    assert main(["search", "tuberville", "--db", str(db_path), "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hits and all(hit["story_id"] == 1 for hit in hits)


def test_errors_are_one_line_with_documented_exit_codes(tmp_path):
    missing_db = run("stories", "--db", str(tmp_path / "none.db"))
    assert missing_db.returncode == 2
    assert missing_db.stderr.count("\n") == 1 and "Traceback" not in missing_db.stderr

    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not sqlite at all" * 100)
    unreadable = run("stories", "--db", str(not_a_db))
    assert unreadable.returncode == 4 and "Traceback" not in unreadable.stderr

    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[matching]\nthreshold = 3\n")
    config_error = run("stories", "--config", str(bad_config))
    assert config_error.returncode == 3 and "matching.threshold" in config_error.stderr


def test_since_reads_dates_times_and_spans_back_from_now():
    from datetime import datetime, timezone

    import pytest

    from pipeline.cli import parse_since

    now = datetime(2026, 11, 24, 9, 30, 15, tzinfo=timezone.utc)
    assert parse_since("2026-11-23", now) == "2026-11-23T00:00:00Z"
    assert parse_since("2026-11-23T08:00Z", now) == "2026-11-23T08:00:00Z"
    assert parse_since("2026-11-23T08:00", now) == "2026-11-23T08:00:00Z"  # no offset: UTC
    assert parse_since("2026-11-23T10:00+02:00", now) == "2026-11-23T08:00:00Z"
    assert parse_since("30m", now) == "2026-11-24T09:00:15Z"
    assert parse_since(" 24h ", now) == "2026-11-23T09:30:15Z"
    assert parse_since("7D", now) == "2026-11-17T09:30:15Z"
    assert parse_since("2w", now) == "2026-11-10T09:30:15Z"
    for bad in ("yesterday", "24", "h", "2026-13-01", ""):
        with pytest.raises(ValueError):
            parse_since(bad, now)


def test_stories_and_export_since_keep_only_what_changed(tmp_path, story_db, capsys):
    import shutil
    import sqlite3

    db = tmp_path / "stories.db"
    shutil.copyfile(story_db, db)
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM stories ORDER BY id")]
        assert len(ids) >= 3
        conn.execute("UPDATE stories SET updated_at = '2026-01-01T00:00:00Z'")
        conn.execute("UPDATE stories SET updated_at = '2026-03-01T12:00:00Z' WHERE id = ?", (ids[0],))
        conn.execute("UPDATE stories SET updated_at = '2026-02-01T00:00:00Z' WHERE id = ?", (ids[-1],))

    assert main(["stories", "--db", str(db), "--since", "2026-02-01", "--json"]) == 0
    changed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {row["story_id"] for row in changed} == {ids[0], ids[-1]}

    assert main(["stories", "--db", str(db), "--sort", "updated", "--limit", "2", "--json"]) == 0
    latest = [json.loads(line)["story_id"] for line in capsys.readouterr().out.splitlines()]
    assert latest == [ids[0], ids[-1]]

    assert main(["stories", "--db", str(db), "--since", "2026-03-01T12:00:01Z"]) == 0
    assert "no stories changed since 2026-03-01T12:00:01Z" in capsys.readouterr().out

    out = tmp_path / "changed.jsonl"
    assert main(["export", "--db", str(db), "--since", "2026-02-01T00:00Z", "-o", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [story["story_id"] for story in exported] == sorted([ids[0], ids[-1]])
    with sqlite3.connect(db) as conn:
        for story in exported:
            stored = {row[0] for row in conn.execute("SELECT id FROM articles WHERE story_id = ?", (story["story_id"],))}
            assert {article["article_id"] for article in story["articles"]} == stored

    bad = run("stories", "--db", str(db), "--since", "yesterday")
    assert bad.returncode == 2 and "24h" in bad.stderr


def test_negative_counts_are_refused_by_the_parser(capsys):
    import pytest

    for args, option, least in (
        (["ingest", "no-such-dir", "--workers", "-1"], "--workers", 0),
        (["stories", "--limit", "-1"], "--limit", 0),
        (["search", "x", "--limit", "-5"], "--limit", 0),
        (["rejects", "--limit", "-1"], "--limit", 0),
        (["eval", "corpus.jsonl", "--batches", "0"], "--batches", 1),
        (["serve", "--limit", "0"], "--limit", 1),
        (["stories", "--limit", "lots"], "--limit", 0),
    ):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 2, args
        assert f"argument {option}: {args[-1]!r} is not a whole number of {least} or more" in capsys.readouterr().err


def test_a_table_cut_at_its_limit_says_how_many_there_are(tmp_path, story_db, capsys):
    import shutil
    import sqlite3

    db = tmp_path / "stories.db"
    shutil.copyfile(story_db, db)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO rejects (ref, stage, reason, input, at) VALUES (?, 'read', 'empty file', ?, '2026-01-01T00:00:00Z')",
            [(f"empty-{n}.txt", f"/in/empty-{n}.txt") for n in range(30)],
        )
        rejects = conn.execute("SELECT count(*) FROM rejects").fetchone()[0]

    assert main(["stories", "--db", str(db), "--limit", "2"]) == 0
    shown = capsys.readouterr()
    assert len(shown.out.splitlines()) == 4 and shown.err == "2 of 3 stories shown; --limit 0 shows all\n"
    assert main(["stories", "--db", str(db), "--limit", "0"]) == 0
    shown = capsys.readouterr()
    assert len(shown.out.splitlines()) == 5 and shown.err == ""
    assert main(["stories", "--db", str(db), "--limit", "2", "--json"]) == 0
    shown = capsys.readouterr()
    assert len(shown.out.splitlines()) == 2 and shown.err == ""

    assert main(["rejects", "--db", str(db)]) == 0  # a default limit: hundreds of rejects are not one screen
    shown = capsys.readouterr()
    assert len(shown.out.splitlines()) == 2 + 20 and shown.err == f"20 of {rejects} rejects shown; --limit 0 shows all\n"
    assert main(["rejects", "--db", str(db), "--limit", "0", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(listed) == rejects
    # Each with the run that rejected it, as the table has (a QA pass missed it).
    assert set(listed[0]) == {"ref", "stage", "reason", "detail", "input", "at", "run_id"}

    assert main(["search", "the", "--db", str(db), "--limit", "1"]) == 0
    shown = capsys.readouterr()
    assert len(shown.out.splitlines()) == 3 and re.fullmatch(r"1 of \d+ matching articles shown; --limit 0 shows all\n", shown.err)
    assert main(["search", "the", "--db", str(db), "--limit", "0", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == int(shown.err.split()[2])


def test_every_limit_option_says_what_it_limits():
    for command in ("stories", "search", "rejects"):
        help_text = " ".join(run(command, "--help").stdout.split())
        assert re.search(r"--limit LIMIT at most this many \w+.*\(default \d+; 0 for all\)", help_text), command


def test_search_and_show_print_an_untitled_article_alike(tmp_path, capsys):
    corpus = tmp_path / "untitled.jsonl"
    text = ("Mysterious lights were seen over the harbour on Tuesday night, residents said. The coast guard "
            "looked into the reports and found nothing unusual in the area, officials confirmed later that evening.")
    corpus.write_text(json.dumps({"id": "u1", "text": text}) + "\n")
    db = tmp_path / "stories.db"
    assert main(["ingest", str(corpus), "--db", str(db), "--engine", "local", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["show", "1", "--db", str(db)]) == 0
    shown = capsys.readouterr().out.splitlines()[-1]
    assert main(["search", "harbour", "--db", str(db)]) == 0
    found = capsys.readouterr().out.splitlines()[-1]
    assert "(untitled) Mysterious lights" in shown and "(untitled) Mysterious lights" in found
    assert main(["search", "harbour", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] is None  # data stays data


def test_search_says_when_the_latest_articles_await_the_index(seeds_dir, db_path, capsys):
    """(QA pass: after a run was killed, its last committed batch was stored but silently
    missing from search until the next ingest.) A batch is indexed while the next one is
    assigned, or when the run finishes; a run stopped in between leaves its last batch out."""
    from pipeline.ingest import batches, commit_batch, prepare_batch
    from pipeline.settings import Settings
    from pipeline.store import open_store

    settings = Settings()
    store = open_store(db_path)
    try:  # what a killed run leaves: a committed batch, no end of run
        for raw in batches([str(seeds_dir)], settings):
            commit_batch(prepare_batch(raw, settings), store, settings, "killed-run")
    finally:
        store.close()
    assert main(["search", "sessions", "--db", str(db_path)]) == 0
    captured = capsys.readouterr()
    assert "no articles match" in captured.out
    assert "the 5 most recently stored articles cannot be found yet" in captured.err
    assert main(["ingest", str(seeds_dir), "--db", str(db_path), "--engine", "local", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", "sessions", "--db", str(db_path)]) == 0
    captured = capsys.readouterr()
    assert "Sessions" in captured.out and "cannot be found yet" not in captured.err


def test_runs_lists_each_run_latest_first_with_its_counts_and_status(seeds_dir, db_path, capsys):
    """An operator's question after a night of scheduled runs: did they all finish, what did they add?"""
    import sqlite3

    from pipeline.runlock import exclusive_run

    assert main(["ingest", str(seeds_dir), "--db", str(db_path), "--engine", "local", "--quiet"]) == 0
    (seeds_dir / "broken.txt").write_bytes(b"")
    assert main(["ingest", str(seeds_dir), "--db", str(db_path), "--engine", "local", "--quiet"]) == 0
    capsys.readouterr()
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute("SELECT run_id, inputs, new_articles, unchanged, rejects FROM runs ORDER BY rowid").fetchall()
        # A run that died after its start was recorded, and one that is under way now.
        conn.execute("INSERT INTO runs (run_id, started_at) VALUES ('deadbeef0001', '2099-01-01T00:00:00Z')")
        conn.execute("INSERT INTO runs (run_id, started_at) VALUES ('alive0000001', '2099-01-02T00:00:00Z')")
    with exclusive_run(db_path, "alive0000001"):
        assert main(["runs", "--db", str(db_path), "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["run_id"] for r in rows] == ["alive0000001", "deadbeef0001", stored[1][0], stored[0][0]]
    assert [r["status"] for r in rows] == ["running", "unfinished", "finished", "finished"]
    first, second = rows[3], rows[2]
    assert (first["inputs"], first["new_articles"], first["unchanged"], first["rejects"]) == stored[0][1:] == (5, 5, 0, 0)
    assert (second["inputs"], second["new_articles"], second["unchanged"], second["rejects"]) == stored[1][1:] == (6, 0, 5, 1)
    assert first["seconds"] >= 0 and rows[0]["seconds"] is None

    # Without the lock holder, that run reads as unfinished too; the table has one row a run.
    assert main(["runs", "--db", str(db_path), "--limit", "3"]) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split()[:4] == ["run", "started", "(UTC)", "took"]
    assert [line.split()[0] for line in table[2:]] == ["alive0000001", "deadbeef0001", stored[1][0]]
    assert "unfinished" in table[2] and "finished" in table[4]
    assert "3 of 4 runs shown" in captured.err

    assert main(["runs", "--db", str(db_path), "--since", "2099-01-02"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == ["alive0000001"]


def test_runs_took_reads_like_a_person_would_say_it():
    from pipeline.progress import readable_duration

    assert [readable_duration(s) for s in (0.4, 42, 185, 7800)] == ["0 s", "42 s", "3 min 05 s", "2 h 10 min"]


def _piped(*args, data: bytes, tmp_path):
    import os

    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"))
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], input=data, capture_output=True,
                          timeout=300, env=env)


def test_ingest_reads_json_lines_piped_to_standard_input(tmp_path):
    """`... | newsdedup ingest -`: stored like a file's lines, recognised when piped in again."""
    import gzip
    import sqlite3
    from pathlib import Path

    records = (Path(__file__).parent / "data" / "outlets.jsonl").read_bytes()
    db = tmp_path / "stories.db"
    first = _piped("ingest", "-", "--db", str(db), "--engine", "local", "--quiet", data=gzip.compress(records), tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
        rejects = conn.execute("SELECT ref, input FROM rejects").fetchall()
    assert stored == len(records.splitlines()) - len(rejects) and rejects == [("stdin.jsonl:6", "(standard input)")]
    # The default engine (a Prefect flow) reads the pipe the same way; nothing is new the second time.
    again = _piped("ingest", "-", "--db", str(db), "--quiet", data=records, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert re.search(rb"unchanged\s+%d\b" % stored, again.stdout), again.stdout
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT ref, stage, reason FROM rejects").fetchall()
    retried = _piped("ingest", "--retry-rejects", "--db", str(db), data=b"", tmp_path=tmp_path)
    assert retried.returncode == 0
    assert re.search(rb"not retried\s+1\s+\(from standard input", retried.stdout), retried.stdout
    assert b"nothing to retry" in retried.stdout and b"paths given" not in retried.stdout, retried.stdout
    with sqlite3.connect(db) as conn:  # the reject keeps its stage and reason (a QA pass saw them replaced)
        assert conn.execute("SELECT ref, stage, reason FROM rejects").fetchall() == before


def test_ingest_dash_refuses_a_terminal_and_a_second_dash(tmp_path):
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", "ingest", "-", "--db", str(tmp_path / "s.db")],
                                stdin=follower, capture_output=True, text=True, timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 2 and "standard input, which is a terminal here" in result.stderr
    twice = _piped("ingest", "-", "-", "--db", str(tmp_path / "s.db"), data=b"{}", tmp_path=tmp_path)
    assert twice.returncode == 2 and b"only once" in twice.stderr
    assert not (tmp_path / "s.db").exists()


def test_runs_tells_a_run_still_reading_from_a_killed_one(tmp_path, capsys):
    """Before its first batch is stored a run holds no run lock: a run waiting on a slow pipe
    read as 'unfinished', like a dead one. Now it reads as 'reading' until it is killed."""
    import os
    import signal
    import time
    from pathlib import Path

    db = tmp_path / "stories.db"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"))
    command = [sys.executable, "-m", "pipeline.cli", "ingest", "-", "--db", str(db), "--engine", "local", "--quiet"]

    def statuses() -> list[str]:
        assert main(["runs", "--db", str(db), "--json"]) == 0
        return [json.loads(line)["status"] for line in capsys.readouterr().out.splitlines()]

    def recorded() -> bool:
        """Whether the run has written its row (the schema may still be on its way)."""
        import sqlite3

        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
        except sqlite3.Error:
            return False

    reading = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while not recorded() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert statuses() == ["reading"]
        assert main(["runs", "--db", str(db)]) == 0
        assert " so far " in capsys.readouterr().out  # how long the live run has been going
        os.kill(reading.pid, signal.SIGKILL)
    finally:
        reading.wait(30)
    assert statuses() == ["unfinished"]

    records = (Path(__file__).parent / "data" / "outlets.jsonl").read_bytes()
    finished = subprocess.run(command, input=records, capture_output=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert statuses() == ["finished", "unfinished"]
    assert list((tmp_path / "stories.db.runs").iterdir()) == []  # the killed run's mark is gone too


def test_records_trickling_in_on_a_pipe_are_stored_as_they_come(tmp_path):
    """(QA pass: 150 records piped in, then a pause: nothing was stored until 1,000 had come or
    the pipe closed, so a run killed meanwhile lost them all.)"""
    import os
    import sqlite3
    import time
    from pathlib import Path

    db = tmp_path / "stories.db"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"), NEWSDEDUP_INGEST__IDLE_FLUSH_S="0.5")
    lines = (Path(__file__).parent / "data" / "giveme5w1h.jsonl").read_bytes().splitlines(keepends=True)
    command = [sys.executable, "-m", "pipeline.cli", "ingest", "-", "--db", str(db), "--engine", "local", "--quiet"]
    piping = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def stored() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM articles").fetchone()[0] + conn.execute(
                    "SELECT count(*) FROM rejects").fetchone()[0]
        except sqlite3.Error:
            return 0

    try:
        piping.stdin.write(b"".join(lines[:30]))
        piping.stdin.flush()
        deadline = time.monotonic() + 60
        while stored() < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stored() == 30 and piping.poll() is None  # stored while the pipe is still open
        piping.stdin.write(b"".join(lines[30:]))
        piping.stdin.close()
        assert piping.wait(120) == 0, piping.stderr.read()
    finally:
        if piping.poll() is None:
            piping.kill()
    assert stored() == len(lines)


def test_show_finds_the_story_of_an_article_by_its_id_url_or_input_id(tmp_path, capsys):
    """(Docs walk-through QA: a newsroom asks "which story is this URL in?"; show took story ids only.)"""
    records = tmp_path / "in.jsonl"
    text = "The harbour flooded after the storm surge and the quay collapsed overnight, officials said. " * 4
    records.write_text(json.dumps({"id": "wire-7", "url": "https://example.org/news/flood?utm_source=x",
                                   "title": "Harbour floods", "text": text}) + "\n")
    db = tmp_path / "s.db"
    assert main(["ingest", str(records), "--db", str(db), "--engine", "local", "--quiet"]) == 0
    capsys.readouterr()
    for given in ("wire-7", "https://example.org/news/flood", "https://example.org/news/flood?utm_source=y"):
        assert main(["show", given, "--db", str(db)]) == 0
        assert capsys.readouterr().out.startswith("story 1: Harbour floods"), given
    with sqlite3.connect(db) as conn:
        article_id = conn.execute("SELECT id FROM articles").fetchone()[0]
    assert main(["show", article_id, "--db", str(db)]) == 0
    assert main(["show", "no-such-article", "--db", str(db)]) == 2
    assert "an article's id, URL or input id" in capsys.readouterr().err
