"""The input estimate behind the progress artifact."""

from __future__ import annotations

import gzip

from pipeline.progress import expected_inputs, fraction_done


def test_expected_inputs_counts_files_and_json_lines(tmp_path, settings):
    (tmp_path / "a.txt").write_text("title\n\nbody\n")
    (tmp_path / "b.html").write_text("<html></html>")
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n{"text": "y"}\n{"text": "z"}')  # no final newline
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as handle:
        handle.write('{"text": "x"}\n' * 4)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "e.txt").write_text("skipped, as the reader skips it")
    assert expected_inputs([str(tmp_path)], settings.ingest) == 1 + 1 + 3 + 4
    assert expected_inputs([str(tmp_path / "c.jsonl"), "https://example.org/feed"], settings.ingest) == 4


def test_fraction_done_stays_below_100_until_the_run_ends():
    assert fraction_done(0, 10) == 0.0
    assert fraction_done(5, 10) == 50.0
    assert fraction_done(30, 10) == 99.0
    assert fraction_done(3, 0) == 0.0
