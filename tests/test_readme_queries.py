"""Every command in the README's Querying section and in docs/querying.md runs as printed."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUNNABLE = ("sqlite-utils ", "newsdedup export ")


def section(markdown: str, heading: str) -> str:
    """The text under a '## heading' up to the next second-level heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def shell_lines(markdown: str) -> list[str]:
    """The command lines of the ```bash blocks, without comments and blank lines."""
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, re.S | re.M):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


README_COMMANDS = shell_lines(section((ROOT / "README.md").read_text(encoding="utf-8"), "Querying"))
DOCS = (ROOT / "docs" / "querying.md").read_text(encoding="utf-8")
# The rebuild recipe's commands depend on each other: they run in order, in a test of their own.
REBUILD_COMMANDS = shell_lines(
    re.search(r"^### Rebuilding a database.*?(?=^##|\Z)", DOCS, re.S | re.M).group(0)
)
DOCS_COMMANDS = [line for line in shell_lines(DOCS) if line.startswith(RUNNABLE) and line not in REBUILD_COMMANDS]

# What each README query must show on the test database; one entry per kind of query the issue
# asks for, so dropping one from the README fails too.
README_EXPECTATIONS = {
    "from story_overview": ["Riverside council approves protected bike lanes", "Harbor Wire, Riverside Gazette, Valley Daily"],
    "from story_articles": ["Trump campaign tells Jeff Sessions to stop sucking up to Trump", "Harbor Wire"],
    "sqlite-utils search": ["Trump campaign tells Sessions to stop claiming to be a Trump ally"],
    "articles_fts match": ["[attorney general]"],
    "from outlet_days": ["Valley Daily", "Riverside Gazette", "2020-04-03", "(no source)"],
    "from near_duplicate_pairs": ["Valley Daily", "Harbor Wire"],
}


def run(command: str, workdir: Path) -> subprocess.CompletedProcess:
    """Run one documented command exactly as printed, with the virtualenv's tools first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(shlex.split(command), cwd=workdir, env=env, capture_output=True, text=True, timeout=120)


def check_output(command: str, result: subprocess.CompletedProcess, workdir: Path) -> None:
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    if command.startswith("newsdedup export"):
        words = shlex.split(command)
        output = workdir / words[words.index("--output") + 1]
        reported = re.search(r"exported (\d+) stor(?:y|ies), (\d+) articles?", result.stderr)
        stories, articles = int(reported.group(1)), int(reported.group(2))
        # The test database holds 3 stories of 6, 3 and 1 articles.
        assert (stories, articles) == ((2, 9) if "--min-size 2" in command else (3, 10))
        if "--format jsonl" in command:
            lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
            assert len(lines) == stories
            assert sum(len(s["articles"]) for s in lines) == sum(s["article_count"] for s in lines) == articles
        else:
            with output.open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
            assert len(rows) == articles and "story_title" in rows[0]
            assert ("text" in rows[0]) == ("--no-text" not in command)
        return
    lines = result.stdout.splitlines()
    if "--nl" in command:
        assert lines and all(json.loads(line) for line in lines)
    elif "--table" in command:
        # A header, its rule, and at least one row of values.
        assert len(lines) >= 3 and set(lines[1]) <= {"-", " "}, result.stdout
    else:
        assert result.stdout.strip()


@pytest.fixture(scope="module")
def workdir(story_db: Path) -> Path:
    # The commands say data/stories.db; the test database sits at <workdir>/data/stories.db.
    return story_db.parent.parent


def test_the_readme_documents_each_kind_of_query():
    assert README_COMMANDS, "no commands in the README's Querying section"
    for fragment in README_EXPECTATIONS:
        assert any(fragment in command for command in README_COMMANDS), f"the README has no query with {fragment!r}"
    for command in README_COMMANDS:
        assert command.startswith(RUNNABLE), f"not a command this test can run: {command}"


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_command(command: str, workdir: Path):
    result = run(command, workdir)
    check_output(command, result, workdir)
    for fragment, expected in README_EXPECTATIONS.items():
        if fragment in command:
            for text in expected:
                assert text.lower() in result.stdout.lower(), f"{command}\nmissing {text!r} in:\n{result.stdout}"


def test_readme_story_query_lists_the_canonical_article_first(workdir: Path):
    command = next(c for c in README_COMMANDS if "from story_articles" in c)
    rows = run(command.replace("--table", "--nl"), workdir).stdout.splitlines()
    articles = [json.loads(row) for row in rows]
    assert len(articles) == 6
    assert articles[0]["is_canonical"] == 1 and articles[0]["similarity"] == 1.0
    similarities = [a["similarity"] for a in articles[1:]]
    assert similarities == sorted(similarities, reverse=True)


@pytest.mark.parametrize("command", DOCS_COMMANDS)
def test_docs_command(command: str, workdir: Path):
    check_output(command, run(command, workdir), workdir)


def test_docs_commands_are_all_run():
    others = [line for line in shell_lines(DOCS) if not line.startswith(RUNNABLE) and line not in REBUILD_COMMANDS]
    # Only the server commands are left to the browser test.
    assert all(line.startswith("newsdedup browse") for line in others), others
    assert len(DOCS_COMMANDS) >= 8


def test_docs_rebuild_recipe_runs_in_order(story_db: Path, tmp_path: Path):
    """docs/querying.md's rebuild: export the articles, ingest them under other settings, list."""
    import shutil

    (tmp_path / "data").mkdir()
    shutil.copy(story_db, tmp_path / "data" / "stories.db")
    assert [c.split()[0] for c in REBUILD_COMMANDS][0] == "newsdedup"
    results = []
    for command in REBUILD_COMMANDS:
        words = shlex.split(command)
        # Leading NAME=value words are the environment, as a shell reads them.
        settings = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
        # The ingest runs the flow on Prefect's embedded server: its state stays in this test.
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "PREFECT_HOME": str(tmp_path / "prefect-home"), **settings}
        result = subprocess.run(words[len(settings):], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=180)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        results.append(result)
    assert "exported 3 stories, 10 articles" in results[0].stderr
    assert "database now     10 articles" in results[1].stdout + results[1].stderr
    assert "Riverside council approves protected bike lanes" in results[-1].stdout
