"""The newsdedup command: help with examples, readable tables, one-line errors with exit codes."""

import json
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
    assert "inputs           5" in out and "5 articles, 1 stories" in out

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
