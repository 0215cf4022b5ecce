"""Errors a user can act on: one readable line on stderr, no traceback, the documented exit code."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _newsdedup(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
    environment.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env=environment, capture_output=True, text=True,
        timeout=300, cwd=cwd,
    )


def _one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("newsdedup: error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture
def story_db(tmp_path: Path, seeds_dir: Path) -> Path:
    db = tmp_path / "stories.db"
    result = _newsdedup("ingest", str(seeds_dir), "--db", str(db), "--engine", "local", "--quiet")
    assert result.returncode == 0, result.stderr
    return db


def test_exit_codes_are_documented_in_help():
    help_text = _newsdedup("--help").stdout
    for code, meaning in ((0, "success"), (2, "usage error"), (3, "configuration error"), (4, "database error")):
        assert re.search(rf"^\s+{code}\s+{meaning}", help_text, re.MULTILINE), code


def test_missing_input_file(tmp_path):
    result = _newsdedup("ingest", str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "s.db"), "--engine", "local")
    _one_line_error(result, 2, "no such file or directory", "nope.jsonl")


def test_missing_database_for_a_read_command(tmp_path):
    result = _newsdedup("stories", "--db", str(tmp_path / "none.db"))
    _one_line_error(result, 2, "no story database at", "newsdedup ingest")


def test_database_that_is_not_a_database(tmp_path, seeds_dir):
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all\n" * 200)
    for args in (("stories",), ("ingest", str(seeds_dir), "--engine", "local")):
        _one_line_error(_newsdedup(*args, "--db", str(junk)), 4, str(junk), "not a database")


def test_database_path_that_is_a_directory(tmp_path, seeds_dir):
    for command in (["stories"], ["ingest", str(seeds_dir), "--engine", "local"]):
        _one_line_error(_newsdedup(*command, "--db", str(tmp_path)), 4, "is a directory, not a story database",
                        f"--db {tmp_path / 'stories.db'}")


def test_database_of_a_newer_schema(story_db):
    conn = sqlite3.connect(story_db)
    conn.execute("UPDATE _meta SET value = '7' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    _one_line_error(_newsdedup("stories", "--db", str(story_db)), 4, "schema version 7", "upgrade newsdedup")


def test_the_flow_engine_answers_a_bad_database_in_one_line_before_prefect_starts(tmp_path, story_db, seeds_dir):
    """(QA pass: a database in a directory it could not write gave exit 1 and 62 lines of
    traceback from inside the flow run; a newer schema, the right line and Prefect's traceback.)"""
    (tmp_path / "a-file").write_text("")
    result = _newsdedup("ingest", str(seeds_dir), "--db", str(tmp_path / "a-file" / "stories.db"))
    _one_line_error(result, 4, "cannot write the run lock", "database's directory")
    conn = sqlite3.connect(story_db)
    conn.execute("UPDATE _meta SET value = '7' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    _one_line_error(_newsdedup("ingest", str(seeds_dir), "--db", str(story_db)), 4, "schema version 7", "upgrade newsdedup")


def _without_root_powers(*args: str) -> tuple[str, ...]:
    """`args` run so that file permissions apply: as root (as CI runs), without the capabilities
    that let root write anything."""
    if os.geteuid() != 0:
        return args
    dropped = "-dac_override,-dac_read_search,-fowner"
    return ("setpriv", f"--bounding-set={dropped}", f"--inh-caps={dropped}", *args)


@pytest.mark.parametrize("command", [["ingest", "SEEDS", "--engine", "local"], ["ingest", "SEEDS"],
                                     ["archive", "--before", "0d", "--to", "ARCHIVE"]])
def test_a_read_only_database_is_refused_in_one_line_that_says_what_to_do(tmp_path, story_db, seeds_dir, command):
    """(QA pass: "attempt to write a readonly database" and nothing more; the flow engine said it
    after Prefect's start, and `archive` after writing the archive.)"""
    archive = tmp_path / "archive.db"
    args = [str(seeds_dir) if a == "SEEDS" else str(archive) if a == "ARCHIVE" else a for a in command]
    story_db.chmod(0o444)
    try:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
        environment["PYTHONPATH"] = str(ROOT)
        result = subprocess.run(
            _without_root_powers(sys.executable, "-m", "pipeline.cli", *args, "--db", str(story_db)),
            env=environment, capture_output=True, text=True, timeout=300,
        )
    finally:
        story_db.chmod(0o644)
    _one_line_error(result, 4, f"its file {story_db} is read-only", "chmod u+w")
    assert "Starting temporary server" not in result.stderr and not archive.exists()


@pytest.mark.parametrize("engine", ["flow", "local"])
def test_a_database_built_under_other_matching_settings_is_refused_in_one_line(story_db, seeds_dir, engine):
    """A changed num_perm would fingerprint new articles that never meet the stored ones."""
    args = ("ingest", str(seeds_dir), "--db", str(story_db)) + (("--engine", "local") if engine == "local" else ())
    result = _newsdedup(*args, env={"NEWSDEDUP_MATCHING__NUM_PERM": "64"})
    _one_line_error(result, 3, "num_perm 128 here, 64 now", "newsdedup export --db", "--format articles")


def test_database_locked_longer_than_the_busy_timeout(story_db, seeds_dir):
    holder = sqlite3.connect(story_db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = _newsdedup(
            "ingest", str(seeds_dir), "--db", str(story_db), "--engine", "local",
            env={"NEWSDEDUP_STORE__BUSY_TIMEOUT_S": "0.5"},
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _one_line_error(result, 4, "database is locked", "store.busy_timeout_s")


def test_unknown_configuration_key(tmp_path, seeds_dir):
    config = tmp_path / "bad.toml"
    config.write_text("[ingest]\nbatch_sise = 10\n")
    result = _newsdedup("ingest", str(seeds_dir), "--config", str(config), "--db", str(tmp_path / "s.db"))
    _one_line_error(result, 3, "ingest.batch_sise", "Extra inputs are not permitted", str(config))


def test_configuration_value_of_the_wrong_type_from_the_environment(tmp_path, seeds_dir):
    result = _newsdedup(
        "ingest", str(seeds_dir), "--db", str(tmp_path / "s.db"), env={"NEWSDEDUP_INGEST__BATCH_SIZE": "lots"}
    )
    _one_line_error(result, 3, "ingest.batch_size")


def test_configuration_file_missing_or_not_toml(tmp_path, seeds_dir):
    _one_line_error(
        _newsdedup("ingest", str(seeds_dir), "--config", str(tmp_path / "none.toml")), 3, "configuration file not found"
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("[ingest\nbatch_size = \n")
    _one_line_error(_newsdedup("ingest", str(seeds_dir), "--config", str(broken)), 3, "not valid TOML")


def test_unknown_story(story_db):
    _one_line_error(_newsdedup("show", "999", "--db", str(story_db)), 2, "no story 999")


def test_export_into_a_directory_that_does_not_exist(story_db, tmp_path):
    result = _newsdedup("export", "--db", str(story_db), "--output", str(tmp_path / "nonexistent" / "dir" / "x.jsonl"))
    _one_line_error(result, 2, "cannot write", f"{tmp_path / 'nonexistent' / 'dir'} does not exist")
    into_a_directory = _newsdedup("export", "--db", str(story_db), "--output", str(tmp_path))
    _one_line_error(into_a_directory, 2, f"cannot write {tmp_path}")


@pytest.mark.parametrize("corpus, phrase", [
    ("seeds", "is a directory"), ("empty.jsonl", "holds no records"), ("broken.jsonl", "broken.jsonl:2 is not JSON"),
])
def test_eval_of_a_corpus_it_cannot_score(tmp_path, corpus, phrase):
    (tmp_path / "seeds").mkdir()
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "story": 1}\n{"text": "b", "story": 1\n')
    _one_line_error(_newsdedup("eval", str(tmp_path / corpus)), 2, phrase)


@pytest.mark.parametrize("command", [("stories",), ("show", "1"), ("search", "sessions"), ("rejects",), ("export",)])
def test_read_commands_check_the_configuration_even_with_db(story_db, tmp_path, command):
    missing = _newsdedup(*command, "--db", str(story_db), "--config", str(tmp_path / "nope.toml"))
    _one_line_error(missing, 3, "configuration file not found")
    from_environment = _newsdedup(*command, "--db", str(story_db), env={"NEWSDEDUP_INGEST__BATCH_SIZE": "abc"})
    _one_line_error(from_environment, 3, "ingest.batch_size (set by NEWSDEDUP_INGEST__BATCH_SIZE)")


def test_search_with_a_hyphen_says_how_to_quote_it(story_db):
    result = _newsdedup("search", "bike-share OR sessions", "--db", str(story_db))
    _one_line_error(result, 2, "cannot search for", """wrap words with hyphens in double quotes: newsdedup search '"bike-share" OR sessions'""")
    assert _newsdedup("search", '"bike-share" OR sessions', "--db", str(story_db)).returncode == 0
    unbalanced = _newsdedup("search", "(sessions", "--db", str(story_db))
    _one_line_error(unbalanced, 2, "operators (AND, OR, NOT, NEAR) or signs go in double quotes")
    assert "hyphens" not in unbalanced.stderr
    hyphen_elsewhere = _newsdedup("search", '"bike-share" (', "--db", str(story_db))
    _one_line_error(hyphen_elsewhere, 2, """wrap words with hyphens in double quotes, e.g. '"COVID-19"'""")


def _usage_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    """argparse's own form: usage lines, then 'newsdedup COMMAND: error: ...'; exit 2, no traceback."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for phrase in phrases:
        assert phrase in last, last


@pytest.mark.parametrize("args, phrases", [
    (["rejects", "--limit", "99999999999999999999999"], ["too large"]),
    (["show", "99999999999999999999999"], ["too large"]),
    (["stories", "--min-size", "-5"], ["1 or more"]),
    (["stories", "--since", "99999999d"], ["cannot read '99999999d'"]),
    (["runs", "--since", "1000000000000h"], ["cannot read"]),
    (["browse", "--port", "99999"], ["at most 65,535"]),
    (["server", "--port", "-1"], ["from 0 to 65,535"]),
])
def test_numbers_out_of_range_are_usage_errors_not_tracebacks(story_db, args, phrases):
    """(QA pass: each of these ended in an OverflowError traceback.)"""
    _usage_error(_newsdedup(*args, *(["--db", str(story_db)] if args[0] not in ("server",) else [])), *phrases)


def test_a_configuration_path_that_is_a_directory_or_not_utf8(tmp_path, story_db):
    _one_line_error(_newsdedup("stories", "--db", str(story_db), "--config", str(tmp_path)), 3, "is a directory")
    (tmp_path / "latin1.toml").write_bytes('[store]\nbusy_timeout_s = 5.0 # d\xe9lai\n'.encode("latin-1"))
    _one_line_error(_newsdedup("stories", "--db", str(story_db), "--config", str(tmp_path / "latin1.toml")), 3,
                    "not UTF-8")


def test_a_prefect_api_that_does_not_answer_is_one_line_and_exit_5(tmp_path, seeds_dir):
    """(QA pass: 113 lines of traceback, exit 1, from a PREFECT_API_URL nothing listened on.)"""
    from flows.server import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    env = {"PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path / "home")}
    ingest = _newsdedup("ingest", str(seeds_dir), "--db", str(tmp_path / "s.db"), env=env)
    _one_line_error(ingest, 5, f"the Prefect API at {url}", "does not answer", "a server of its own")
    serve = _newsdedup("serve", "--db", str(tmp_path / "s.db"), env=env)
    _one_line_error(serve, 5, "does not answer")


def test_a_json_array_named_as_an_input_says_how_to_make_json_lines(tmp_path):
    (tmp_path / "articles.json").write_text('[{"text": "one"}, {"text": "two"}]')
    result = _newsdedup("ingest", str(tmp_path / "articles.json"), "--db", str(tmp_path / "s.db"), "--engine", "local",
                        "--quiet")
    _one_line_error(result, 7, "a JSON array, not a feed or sitemap", "jq -c")


def test_flow_runner_options_with_the_local_engine_are_refused_not_ignored(tmp_path, seeds_dir):
    result = _newsdedup("ingest", str(seeds_dir), "--db", str(tmp_path / "s.db"), "--engine", "local", "--runner", "dask")
    _one_line_error(result, 2, "--engine local runs no flow")


def test_an_empty_directory_says_there_was_nothing_to_read(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _newsdedup("ingest", str(tmp_path / "empty"), "--db", str(tmp_path / "s.db"), "--engine", "local")
    assert result.returncode == 0 and "nothing to read: no files under the paths given" in result.stdout
