"""The Prefect UI in headless Chromium: the flow run's page lists its artifacts, and they render."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import api

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# No GPU, sandbox or Google services in a container; nothing but 127.0.0.1 is reachable in CI.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
# `make screenshots` sets this to refresh the pictures in docs/ that the README shows; a plain
# test run leaves the checkout untouched and keeps its screenshots in the test's tmp directory.
UPDATE_SCREENSHOTS = os.environ.get("NEWSDEDUP_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run 'make system-deps' as root (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _shot(page, path: Path, docs_name: str) -> None:
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks blank"
    if UPDATE_SCREENSHOTS:
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / docs_name)


def test_browser_shows_the_run_and_its_artifacts(browser, prefect_server, completed_run, tmp_path):
    run, _ = completed_run
    ui = prefect_server.removesuffix("/api")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)

    # The runs list shows the completed run.
    page.goto(f"{ui}/runs")
    page.get_by_text(run["name"]).first.wait_for()
    page.get_by_text("Completed").first.wait_for()
    page.wait_for_load_state("networkidle")
    _shot(page, tmp_path / "runs.png", "prefect-runs.png")

    # The flow run's page: its Artifacts tab lists the summary, the table and the progress.
    page.goto(f"{ui}/runs/flow-run/{run['id']}")
    page.get_by_text(run["name"]).first.wait_for()
    page.get_by_text("Artifacts", exact=True).first.click()
    for key in ("ingest-summary", "new-and-grown-stories", "ingest-progress"):
        page.get_by_text(key, exact=True).first.wait_for()
    page.wait_for_load_state("networkidle")
    _shot(page, tmp_path / "run-artifacts.png", "prefect-run-artifacts.png")

    # The summary artifact renders as markdown: headings, tables and the unicode bar charts.
    page.get_by_text("ingest-summary", exact=True).first.click()
    page.get_by_role("heading", name="Story sizes").wait_for()
    page.get_by_role("heading", name="Time per stage").wait_for()
    chart = page.locator("pre", has_text="│").first
    chart.wait_for()
    assert "█" in chart.inner_text()
    page.set_viewport_size({"width": 1400, "height": 2000})
    page.wait_for_load_state("networkidle")
    _shot(page, tmp_path / "artifact.png", "prefect-artifact.png")

    # The table artifact renders its rows (story titles) as a table.
    table = next(
        row for row in api(prefect_server, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
        if row["key"] == "new-and-grown-stories"
    )
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{ui}/artifacts/artifact/{table['id']}")
    page.locator("table").first.wait_for()
    assert page.locator("table tr").count() > 2
