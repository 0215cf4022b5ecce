"""newsdedup browse: the Datasette metadata, the read-only opening, and Datasette itself (in process)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pipeline import browse, cli
from pipeline.errors import StoreError
from pipeline.store import columns_read_only, has_unmerged_writes, open_store

PUBLIC = {"articles", "stories", "rejects", "runs", "story_overview", "story_articles", "near_duplicate_pairs", "outlet_days"}


@pytest.fixture(scope="module")
def layout(story_db: Path) -> dict[str, list[str]]:
    return columns_read_only(story_db)


@pytest.fixture(scope="module")
def meta(story_db: Path, layout) -> dict:
    return browse.metadata(story_db, layout)


def tables_of(meta: dict) -> dict:
    return meta["databases"]["stories"]["tables"]


def test_reading_the_layout_writes_nothing(story_db: Path, layout):
    assert PUBLIC <= set(layout)
    assert "story_id" in layout["story_overview"]
    assert not Path(f"{story_db}-wal").exists() and not Path(f"{story_db}-shm").exists()


def test_the_layout_of_something_else_is_refused(tmp_path: Path):
    with pytest.raises(StoreError, match="no story database"):
        columns_read_only(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not a newsdedup story database"):
        columns_read_only(other)


def test_private_tables_are_hidden_and_public_ones_described(meta, layout):
    tables = tables_of(meta)
    private = {name for name in layout if name.startswith("_")}
    assert private and all(tables[name] == {"hidden": True} for name in private)
    for name in PUBLIC:
        config = tables[name]
        assert config.get("description") and not config.get("hidden"), name
        undescribed = [c for c in layout[name] if not config["columns"].get(c)]
        assert not undescribed, f"{name}: no description for {undescribed}"


def test_facets_labels_and_search_name_real_columns(meta, layout):
    tables = tables_of(meta)
    for name, config in tables.items():
        for facet in config.get("facets", []):
            column = facet if isinstance(facet, str) else next(iter(facet.values()))
            assert column in layout[name], f"{name}: facet on missing column {column}"
        for key in ("label_column", "sort_desc"):
            if key in config:
                assert config[key] in layout[name], f"{name}: {key} {config[key]} is not a column"
    assert tables["articles"]["fts_table"] in layout
    assert {"title", "text"} <= set(layout[tables["articles"]["fts_table"]])
    assert "source" in tables["articles"]["facets"] and {"date": "published"} in tables["articles"]["facets"]


def test_source_and_licence_are_named(story_db, layout):
    meta = browse.metadata(story_db, layout)
    assert meta["source"] == browse.DEFAULT_SOURCE and meta["license"] == browse.DEFAULT_LICENSE
    mine = browse.metadata(story_db, layout, source="My feeds", license="CC BY 4.0",
                           license_url="https://creativecommons.org/licenses/by/4.0/")
    assert (mine["source"], mine["license"], mine["license_url"]) == (
        "My feeds", "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/")


def test_print_metadata(story_db: Path, meta, capsys):
    assert cli.main(["browse", "--db", str(story_db), "--print-metadata"]) == 0
    assert json.loads(capsys.readouterr().out) == meta


def test_browse_without_a_database_says_how_to_make_one(tmp_path: Path, capsys):
    assert cli.main(["browse", "--db", str(tmp_path / "none.db"), "--no-open"]) == 4
    assert "newsdedup ingest" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_help_shows_an_example(command: str, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "examples:" in help_text and f"newsdedup {command}" in help_text


def test_unmerged_writes_are_detected(tmp_path: Path):
    path = tmp_path / "stories.db"
    store = open_store(path)
    try:
        with store.transaction():
            store.conn.execute("INSERT INTO _meta (key, value) VALUES ('probe', '1')")
        assert has_unmerged_writes(path)  # the writer is still open: its changes sit in the WAL
        # The schema of this new database is still only in the WAL, and is read all the same.
        assert "near_duplicate_pairs" in columns_read_only(path)
    finally:
        store.close()
    assert not has_unmerged_writes(path)


@pytest.fixture(scope="module")
def client(story_db: Path, meta):
    from datasette.utils.testing import TestClient

    datasette = browse.datasette_instance(story_db, meta)
    yield TestClient(datasette)
    for database in datasette.databases.values():
        database.close()


def test_datasette_serves_the_database_read_only_with_private_tables_hidden(client):
    database = client.ds.databases["stories"]
    assert database.is_mutable  # Datasette's word for "may change": opened mode=ro, not immutable
    tables = {t["name"]: t for t in client.get("/stories.json").json["tables"]}
    assert all(tables[name]["hidden"] for name in tables if name.startswith("_"))
    assert not any(tables[name]["hidden"] for name in ("articles", "stories", "rejects", "runs"))


def test_datasette_refuses_writes(client):
    response = client.get("/stories.json?sql=delete+from+articles")
    assert response.status == 400
    assert client.get("/stories/articles.json?_size=0").json["filtered_table_rows_count"] == 10


def test_requests_that_could_write_are_refused_at_the_door(client):
    """(QA pass: a POST to Datasette's write API ended in a 500 and a console traceback.)"""
    import json

    for path in ("/stories/articles/-/insert", "/stories/-/create"):
        response = client.post(path, body=json.dumps({"row": {"id": "x"}}), content_type="application/json")
        assert response.status == 405 and "read-only" in response.text
    assert client.get("/stories/articles.json?_size=0").json["filtered_table_rows_count"] == 10
    assert client.get("/stories/story_overview").status == 200  # reading is untouched


def test_a_story_id_in_a_view_opens_the_story(client):
    html = client.get("/stories/story_overview").text
    assert 'href="/stories/story_articles?story_id=2&amp;_sort_desc=similarity"' in html
    rows = client.get("/stories/story_articles.json?story_id=2&_sort_desc=similarity&_shape=array").json
    # The canonical article and its reprint both have similarity 1.0, so their order is open.
    assert {r["source"] for r in rows[:2]} == {"Harbor Wire", "Valley Daily"}
    assert rows[2]["source"] == "Riverside Gazette" and rows[2]["similarity"] < 1


def test_full_text_search_finds_articles(client):
    rows = client.get("/stories/articles.json?_search=bike+lanes&_shape=array").json
    assert {r["source"] for r in rows} == {"Harbor Wire", "Riverside Gazette", "Valley Daily"}
    stories = client.get("/stories/stories_matching.json?search=library&_shape=array").json
    assert [s["title"] for s in stories] == ["Library to open on Sundays again"]


def test_a_served_database_shows_what_an_ingest_adds_meanwhile(tmp_path: Path, story_db: Path, meta):
    """Regression: browse used to open a quiet database immutable, so an ingest that wrote it
    afterwards left the pages stale (the old counts) or failing ("database disk image is
    malformed") until the server restarted. Read-only (mode=ro) by default, it sees each commit."""
    from datasette.utils.testing import TestClient

    path = tmp_path / "stories.db"
    path.write_bytes(story_db.read_bytes())
    datasette = browse.datasette_instance(path, meta)
    try:
        client = TestClient(datasette)
        before = client.get("/stories/stories.json?_size=0").json["filtered_table_rows_count"]
        writer = open_store(path)
        try:
            for story_id in range(1000, 1200):
                with writer.transaction():
                    writer.conn.execute(
                        "INSERT INTO stories (id, title, created_at, updated_at) VALUES (?, 'added', '', '')",
                        (story_id,),
                    )
        finally:
            writer.close()  # checkpoints: the new pages are in the main file now
        response = client.get("/stories/stories.json?_size=0")
        assert response.status == 200
        assert response.json["filtered_table_rows_count"] == before + 200
        assert client.get("/stories/story_overview.json?_size=1").status == 200
    finally:
        for database in datasette.databases.values():
            database.close()


def test_immutable_is_there_for_copies_nothing_writes(story_db: Path, meta):
    datasette = browse.datasette_instance(story_db, meta, immutable=True)
    try:
        assert not datasette.databases["stories"].is_mutable
    finally:
        for database in datasette.databases.values():
            database.close()


def test_live_mode_reads_a_database_while_a_writer_holds_it_open(tmp_path: Path, story_db: Path, meta):
    from datasette.utils.testing import TestClient

    path = tmp_path / "stories.db"
    path.write_bytes(story_db.read_bytes())
    writer = open_store(path)
    try:
        with writer.transaction():
            writer.conn.execute("UPDATE stories SET title = 'Renamed while browsing' WHERE id = 3")
        assert has_unmerged_writes(path)
        assert "story_overview" in columns_read_only(path)
        datasette = browse.datasette_instance(path, meta)
        try:
            assert datasette.databases["stories"].is_mutable
            rows = TestClient(datasette).get("/stories/stories.json?id=3&_shape=array").json
            assert rows[0]["title"] == "Renamed while browsing"  # the change still in the WAL is seen
        finally:
            for database in datasette.databases.values():
                database.close()
    finally:
        writer.close()
