"""`newsdedup browse` in headless Chromium: open a story, run a full-text search, take the README's screenshots."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.browse import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by `make system-deps`
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 1500, "height": 900}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"newsdedup browse exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"newsdedup browse did not answer on {url} within {timeout_s:.0f} s")


@pytest.fixture
def served(story_db: Path, tmp_path: Path):
    """`newsdedup browse` on a copy of the test database, on a free port; yields (base URL, db path)."""
    db = tmp_path / "stories.db"
    shutil.copy(story_db, db)
    port = free_port()
    command = [str(Path(sys.executable).parent / "newsdedup"), "browse", "--db", str(db), "--port", str(port), "--no-open"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/-/versions.json", process)
        yield base, db
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def screenshot_down_to(page, element, path: Path) -> None:
    """The page from the top to just below `element`: the heading, descriptions, facets and results."""
    box = element.bounding_box()
    page.screenshot(path=str(path), full_page=True,
                    clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": box["y"] + box["height"] + 16})


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed: run 'make system-deps' as root")
def test_browser_opens_a_story_and_searches(served):
    from playwright.sync_api import expect, sync_playwright

    base, db = served
    before = digest(db)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{base}/stories")
            # The private matching tables are hidden from the database page.
            expect(page.locator("h3 a", has_text="_signatures")).to_have_count(0)
            expect(page.get_by_text("Each article remains under its publisher's copyright").first).to_be_visible()

            page.get_by_role("link", name="the stories").click()
            expect(page.locator("h1")).to_contain_text("Stories")
            expect(page.locator("table.rows-and-columns tbody tr")).to_have_count(3)
            page.locator('a[title="open story 2"]').click()

            expect(page).to_have_url(f"{base}/stories/story_articles?story_id=2&_sort_desc=similarity")
            rows = page.locator("table.rows-and-columns tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.last).to_contain_text("Riverside Gazette")
            expect(rows.last).to_contain_text(re.compile(r"\b0\.\d{2,}"))  # a similarity below 1
            table = page.locator("table.rows-and-columns")
            expect(table).to_contain_text("Valley Daily")
            expect(page.locator(".facet-info").first).to_be_visible()  # facets by outlet and date
            screenshot_down_to(page, table, DOCS / "browse-story.png")

            page.goto(f"{base}/stories")
            page.get_by_role("link", name="Search the articles").click()
            page.locator("#_search").fill("bike lanes")
            page.locator("#_search").press("Enter")
            expect(page.locator("h3").first).to_contain_text('3 rows where search matches "bike lanes"')
            results = page.locator("table.rows-and-columns")
            for outlet in ("Harbor Wire", "Riverside Gazette", "Valley Daily"):
                expect(results).to_contain_text(outlet)
            expect(results).not_to_contain_text("Library to open on Sundays")
            screenshot_down_to(page, results, DOCS / "browse-search.png")
        finally:
            browser.close()
    # Read-only: the database file is byte for byte the same, and nothing went into a write-ahead
    # log (reading with mode=ro, SQLite may leave an empty -wal and the -shm index beside it).
    assert digest(db) == before
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    for name in ("browse-story.png", "browse-search.png"):
        assert (DOCS / name).stat().st_size > 10_000
