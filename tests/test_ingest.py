"""A run end to end in the library: every input stored or rejected, re-runs add nothing."""

import json

from hypothesis import given, settings as hsettings, strategies as st

from pipeline.ingest import ingest, prepare_batch
from pipeline.models import RawDocument
from pipeline.store import open_store
from tests.synthetic import consistency_problems

BODY = " ".join(f"Sentence {i} of a perfectly ordinary report on the harbour bridge repairs." for i in range(10))


def table(db, sql):
    store = open_store(db)
    try:
        return list(store.db.query(sql))
    finally:
        store.close()


def test_seeds_twice_still_five_articles_in_one_story(seeds_dir, db_path, settings):
    first = ingest([str(seeds_dir)], settings, db_path)
    second = ingest([str(seeds_dir)], settings, db_path)
    assert (first.inputs, first.new_articles, first.unchanged) == (5, 5, 0)
    assert (second.inputs, second.new_articles, second.unchanged) == (5, 0, 5)
    assert table(db_path, "SELECT count(*) AS n FROM articles")[0]["n"] == 5
    assert table(db_path, "SELECT count(*) AS n FROM stories")[0]["n"] == 1


def test_bad_inputs_become_rejects_with_plain_reasons_and_the_run_goes_on(seeds_dir, db_path, settings):
    bad = seeds_dir / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (bad / "short.txt").write_text("A headline\n\nToo short to be an article.")
    (bad / "nav.html").write_text("<html><body><nav><a href='/'>Home</a></nav><script>x()</script></body></html>")
    (bad / "lines.jsonl").write_text(
        "{broken json\n" + json.dumps({"id": "no-text", "title": "t"}) + "\n" + json.dumps({"id": "ok", "text": BODY}) + "\n"
    )
    report = ingest([str(seeds_dir)], settings, db_path)
    assert report.inputs == 5 + 7
    assert report.new_articles == 6 and report.rejects == 6
    assert report.balanced
    reasons = {r["ref"]: (r["stage"], r["reason"]) for r in table(db_path, "SELECT * FROM rejects")}
    assert reasons["bad/empty.txt"] == ("read", "empty file")
    assert reasons["bad/binary.txt"][1] == "binary data, not text"
    assert reasons["bad/short.txt"][0] == "extract" and "too short" in reasons["bad/short.txt"][1]
    assert reasons["bad/nav.html"][0] == "extract" and "article" in reasons["bad/nav.html"][1]
    assert reasons["bad/lines.jsonl:1"] == ("read", "line is not valid JSON")
    assert reasons["bad/lines.jsonl:2"] == ("extract", "record has no 'text' field")


def test_rejects_are_not_duplicated_by_a_rerun(seeds_dir, db_path, settings):
    (seeds_dir / "empty.txt").write_bytes(b"")
    ingest([str(seeds_dir)], settings, db_path)
    again = ingest([str(seeds_dir)], settings, db_path)
    assert again.rejects == 1 and again.balanced
    assert table(db_path, "SELECT count(*) AS n FROM rejects")[0]["n"] == 1


def test_identical_content_under_another_id_is_a_near_duplicate(tmp_path, db_path, settings):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "one", "text": BODY}) + "\n" + json.dumps({"id": "two", "text": BODY}) + "\n")
    report = ingest([str(path)], settings, db_path)
    assert report.new_articles == 2 and report.near_duplicates == 1
    rows = {r["external_id"]: r for r in table(db_path, "SELECT * FROM articles")}
    assert rows["two"]["duplicate_of"] == rows["one"]["id"]
    assert rows["one"]["story_id"] == rows["two"]["story_id"]


def test_a_file_reached_by_another_path_is_the_same_article(seeds_dir, db_path, settings, monkeypatch):
    """Through its directory, then by a relative and an absolute path of its own, then within
    one run twice: one article."""
    nested = seeds_dir / "wire" / "2020-04-02"
    nested.mkdir(parents=True)
    (nested / "report.txt").write_text("Harbour bridge repairs\n\n" + BODY)
    first = ingest([str(seeds_dir)], settings, db_path)
    assert first.new_articles == 6
    monkeypatch.chdir(seeds_dir.parent)
    one_file = [name for name in sorted(p.name for p in seeds_dir.iterdir()) if name.endswith(".txt")][0]
    spellings = [
        [f"{seeds_dir.name}/{one_file}"],
        [str(seeds_dir / one_file)],
        [str(nested / "report.txt")],
        [f"./{seeds_dir.name}/wire/2020-04-02/report.txt", str(nested.parent)],
    ]
    for paths in spellings:
        again = ingest(paths, settings, db_path)
        assert (again.new_articles, again.unchanged) == (0, again.inputs), paths
    assert table(db_path, "SELECT count(*) AS n FROM articles")[0]["n"] == 6


def test_a_reject_reached_by_another_path_is_one_reject_and_leaves_once_fixed(tmp_path, db_path, settings, monkeypatch):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "feed.jsonl"
    path.write_text(json.dumps({"text": BODY}) + "\n{broken\n")
    (tmp_path / "in" / "empty.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    for paths in (["in"], [str(path), str(tmp_path / "in" / "empty.txt")], ["./in/feed.jsonl", "in/empty.txt"]):
        report = ingest(paths, settings, db_path)
        assert report.rejects == 2 and report.balanced, paths
        assert table(db_path, "SELECT count(*) AS n FROM rejects")[0]["n"] == 2, paths
    path.write_text(json.dumps({"text": BODY}) + "\n" + json.dumps({"text": BODY.replace("harbour", "river")}) + "\n")
    (tmp_path / "in" / "empty.txt").write_text("Harbour bridge repairs\n\n" + BODY)
    fixed = ingest([str(tmp_path / "in")], settings, db_path)
    assert fixed.rejects == 0 and fixed.new_articles == 2
    assert table(db_path, "SELECT count(*) AS n FROM rejects")[0]["n"] == 0


def test_the_same_file_twice_in_one_run_is_stored_once(tmp_path, db_path, settings):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "report.txt"
    path.write_text("Harbour bridge repairs\n\n" + BODY)
    report = ingest([str(tmp_path / "in"), str(path)], settings, db_path)
    assert (report.inputs, report.new_articles, report.unchanged) == (2, 1, 1)


def test_a_file_with_the_same_name_and_new_content_is_a_new_article(tmp_path, db_path, settings):
    for folder, words in (("a", BODY), ("b", BODY.replace("harbour", "river"))):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "report.txt").write_text("Bridge repairs\n\n" + words)
    ingest([str(tmp_path / "a")], settings, db_path)
    second = ingest([str(tmp_path / "b" / "report.txt")], settings, db_path)
    assert second.new_articles == 1


def test_json_lines_without_ids_are_recognised_by_file_name_and_line(tmp_path, db_path, settings):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "feed.jsonl"
    path.write_text(json.dumps({"text": BODY}) + "\n" + json.dumps({"text": BODY.replace("bridge", "tunnel")}) + "\n")
    assert ingest([str(tmp_path / "in")], settings, db_path).new_articles == 2
    again = ingest([str(path)], settings, db_path)
    assert (again.new_articles, again.unchanged) == (0, 2)


def test_a_re_exported_json_lines_file_stores_only_its_new_records(tmp_path, db_path, settings):
    """Regression (QA pass): records without ids were known by their line number, so a line
    added at the top of a re-exported file stored every record below it again, as copies."""
    texts = [BODY, BODY.replace("bridge", "tunnel"), BODY.replace("harbour", "river")]
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps({"text": t, "source": "Wire"}) + "\n" for t in texts))
    assert ingest([str(path)], settings, db_path).new_articles == 3
    newest = json.dumps({"text": BODY.replace("harbour", "airport"), "source": "Wire"}) + "\n"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(newest + lines[2] + lines[0] + lines[1])  # one new line on top, the rest reordered
    again = ingest([str(path)], settings, db_path)
    assert (again.new_articles, again.unchanged) == (1, 3)
    assert table(db_path, "SELECT count(*) AS n FROM articles")[0]["n"] == 4


def test_the_same_text_from_two_outlets_in_one_export_is_two_articles(tmp_path, db_path, settings):
    """A wire story and its reprint, without ids: known by their file, yet each outlet's record
    is kept (the reprint as a near-duplicate of the original)."""
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps({"text": BODY, "source": "Wire"}) + "\n" + json.dumps({"text": BODY, "source": "Daily"}) + "\n")
    report = ingest([str(path)], settings, db_path)
    assert (report.new_articles, report.near_duplicates) == (2, 1)
    again = ingest([str(path)], settings, db_path)
    assert (again.new_articles, again.unchanged) == (0, 2)


def test_records_with_ids_of_their_own_keep_their_identity(tmp_path, db_path, settings):
    """An id the record carries is its identity: the same text under a new id is a new article
    (a near-duplicate), whichever file it came in."""
    for folder, record_id in (("a", "one"), ("b", "two")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "feed.jsonl").write_text(json.dumps({"id": record_id, "text": BODY}) + "\n")
    ingest([str(tmp_path / "a")], settings, db_path)
    second = ingest([str(tmp_path / "b" / "feed.jsonl")], settings, db_path)
    assert (second.new_articles, second.near_duplicates) == (1, 1)


def test_runs_are_recorded(seeds_dir, db_path, settings):
    report = ingest([str(seeds_dir)], settings, db_path)
    [run] = table(db_path, "SELECT * FROM runs")
    assert run["run_id"] == report.run_id and run["finished_at"] and run["new_articles"] == 5


record = st.fixed_dictionaries(
    {"text": st.one_of(st.text(max_size=300), st.just(BODY), st.integers(), st.none())},
    optional={"id": st.one_of(st.text(max_size=5), st.integers()), "title": st.one_of(st.text(max_size=20), st.lists(st.integers())),
              "published": st.one_of(st.text(max_size=25), st.just("2020-01-01"))},
)


@given(st.lists(record, max_size=8))
@hsettings(max_examples=40, deadline=None)
def test_no_stage_loses_a_record(records):
    from pipeline.settings import Settings

    raws = [RawDocument(ref=f"r:{i}", kind="record", fields=r) for i, r in enumerate(records)]
    batch = prepare_batch(raws, Settings())
    assert len(batch.prepared) + len(batch.rejected) == len(raws) == batch.inputs


def _search_count(store, query: str) -> int:
    return store.conn.execute("SELECT count(*) FROM articles_fts WHERE articles_fts MATCH ?", (query,)).fetchone()[0]


def _batch(settings, name: str, body: str):
    text = f"{name.title()} report\n" + (body + " ") * 4
    return prepare_batch([RawDocument(f"{name}.txt", "text", text.encode(), source_path=f"/in/{name}.txt")], settings)


def test_a_batch_is_indexed_for_search_while_the_next_one_is_assigned(db_path, settings):
    from pipeline.ingest import commit_batch

    store = open_store(db_path)
    try:
        commit_batch(_batch(settings, "museum", "The museum reopened its frescoed east wing after a restoration."), store, settings, "r")
        assert _search_count(store, "frescoed") == 0  # stored, not yet searchable
        commit_batch(_batch(settings, "bridge", "Engineers closed the river bridge after finding corroded girders."), store, settings, "r")
        assert _search_count(store, "frescoed") == 1 and _search_count(store, "girders") == 0
        with store.transaction():
            assert store.index_new_articles() == 1
        assert _search_count(store, "girders") == 1
        with store.transaction():
            assert store.index_new_articles() == 0
    finally:
        store.close()
    assert consistency_problems(db_path) == []


def test_a_run_ends_with_every_article_searchable(tmp_path, db_path, settings):
    for name, body in (("museum", "The museum reopened its frescoed east wing."), ("bridge", "Corroded girders closed the bridge.")):
        (tmp_path / f"{name}.txt").write_text(f"{name} report\n" + (body + " ") * 6)
    ingest([str(tmp_path / "museum.txt"), str(tmp_path / "bridge.txt")], settings, db_path)
    store = open_store(db_path)
    try:
        assert _search_count(store, "frescoed") == 1 and _search_count(store, "girders") == 1
    finally:
        store.close()


def test_a_failure_while_indexing_rolls_the_batch_back(db_path, settings, monkeypatch):
    import sqlite3

    import pytest

    from pipeline.ingest import commit_batch
    from pipeline.store import Store

    store = open_store(db_path)
    try:
        commit_batch(_batch(settings, "museum", "The museum reopened its frescoed east wing after a restoration."), store, settings, "r")

        def broken(self) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(Store, "index_new_articles", broken)
        with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
            commit_batch(_batch(settings, "bridge", "Engineers closed the river bridge after finding corroded girders."), store, settings, "r")
        assert store.conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 1
        assert not store.conn.in_transaction
    finally:
        store.close()


def test_the_batch_log_line_reads_in_the_singular(tmp_path, db_path, settings, caplog):
    import logging

    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "a", "title": "Bridge repairs", "text": BODY}) + "\n")
    with caplog.at_level(logging.INFO, logger="pipeline.ingest"):
        ingest([str(one)], settings, db_path)
    assert "batch of 1 input: 1 new article (0 near-duplicates), 0 unchanged, 0 rejects; 1 new story, 0 grown, 0 merged" in caplog.messages


def test_a_library_run_waits_whole_for_the_run_holding_the_database(seeds_dir, db_path, settings):
    """`ingest()` takes the run lock at its first commit, as a flow run does: while another run
    holds the database it stores nothing, says why, and then stores everything."""
    import logging
    import threading
    import time

    from pipeline.runlock import WAITING_MESSAGE, exclusive_run

    said: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    recorder = Recorder(logging.INFO)
    lock_logger = logging.getLogger("pipeline.runlock")
    lock_logger.addHandler(recorder)
    lock_logger.setLevel(logging.INFO)
    results = []
    try:
        with exclusive_run(db_path, "the-other-run"):
            run = threading.Thread(target=lambda: results.append(ingest([str(seeds_dir)], settings, db_path)))
            run.start()
            deadline = time.monotonic() + 60
            while not any(WAITING_MESSAGE in message for message in said) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any("the-other-run" in message for message in said), said
            time.sleep(0.3)
            assert table(db_path, "SELECT count(*) AS n FROM articles")[0]["n"] == 0
            assert table(db_path, "SELECT finished_at FROM runs") == [{"finished_at": None}]
        run.join(60)
    finally:
        lock_logger.removeHandler(recorder)
    assert not run.is_alive()
    assert results[0].new_articles == 5 and results[0].seconds["waiting for another run"] >= 0.3
    assert table(db_path, "SELECT count(*) AS n FROM articles")[0]["n"] == 5


def test_a_library_run_without_the_run_lock_does_not_wait(seeds_dir, db_path, settings):
    from pipeline.runlock import exclusive_run

    with exclusive_run(db_path, "the-other-run"):
        report = ingest([str(seeds_dir)], settings, db_path, run_lock=False)
    assert report.new_articles == 5 and "waiting for another run" not in report.seconds


def test_an_input_stored_under_looser_settings_stays_unchanged_not_rejected(tmp_path, db_path, settings):
    """(QA pass: after a run with a smaller ingest.min_words stored a short record, every later
    run rejected it again: stored and in rejects at once, and counted as a reject.)"""
    from pipeline.retry import retry_rejects

    short = "The council voted to close the old library on Friday after a long debate. " * 2  # 28 words
    records = tmp_path / "news.jsonl"
    records.write_text(json.dumps({"id": "brief", "title": "Library closes", "text": short}) + "\n"
                       + json.dumps({"url": "https://example.org/b", "text": short.replace("library", "pool")}) + "\n")
    strict = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"min_words": 40})})
    loose = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"min_words": 10})})
    first = ingest([str(records)], strict, db_path)
    assert (first.new_articles, first.rejects) == (0, 2)
    stored = retry_rejects(loose, db_path)
    assert (stored.new_articles, stored.rejects) == (2, 0)
    for again in (ingest([str(records)], strict, db_path), retry_rejects(strict, db_path)):
        assert (again.inputs, again.unchanged, again.rejects, again.new_articles) in {(2, 2, 0, 0), (0, 0, 0, 0)}
    store = open_store(db_path)
    try:
        assert store.db.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
        assert store.db.execute("SELECT count(*) FROM articles").fetchone()[0] == 2
    finally:
        store.close()
    # A new input as short is still refused.
    records.write_text(json.dumps({"id": "other", "text": short.replace("council", "board")}) + "\n")
    assert ingest([str(records)], strict, db_path).rejects == 1
