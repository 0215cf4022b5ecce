"""The input estimate behind the progress artifact, and the progress line of a run."""

from __future__ import annotations

import gzip

from pipeline.progress import expected_inputs, fraction_done, progress_line


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


def test_a_plain_file_longer_than_the_counting_limit_is_estimated_from_its_size(tmp_path, settings):
    # Records of uneven length, so the estimate is a scaled count, not an exact one.
    lines = [f'{{"text": "{"word " * (10 + n % 50)}"}}' for n in range(20_000)]
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(tmp_path / "big.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    small = settings.ingest.model_copy(update={"max_decompressed_bytes": 100_000})
    estimate = expected_inputs([str(tmp_path / "big.jsonl")], small)
    assert abs(estimate - 20_000) < 20_000 * 0.05, estimate
    # The reader stops a gzip file at the limit too: the estimate counts only what it will read.
    assert expected_inputs([str(tmp_path / "big.jsonl.gz")], small) < 10_000
    assert expected_inputs([str(tmp_path / "big.jsonl")], settings.ingest) == 20_000


def test_fraction_done_stays_below_100_until_the_run_ends():
    assert fraction_done(0, 10) == 0.0
    assert fraction_done(5, 10) == 50.0
    assert fraction_done(30, 10) == 99.0
    assert fraction_done(3, 0) == 0.0


def test_progress_line_says_how_far_how_fast_and_how_long_is_left():
    line = progress_line(3_000, 20_000, 2_950, 12, 4.0)
    assert line == "3,000 of about 20,000 inputs (15%), 2,950 new articles, 12 rejects; 750 inputs/s, about 23 s left"
    assert progress_line(1_000, 100_000, 1_000, 0, 2.0).endswith("500 inputs/s, about 3 min 18 s left")
    assert progress_line(1_000, 10_000_000, 1_000, 0, 1.0).endswith("about 2 h 46 min left")
    assert progress_line(999, 1_000, 999, 0, 1.0).endswith("999 inputs/s, under 1 s left")


def test_progress_line_without_a_usable_estimate_gives_counts_and_rate_only():
    # A feed expanded into more pages than estimated, the last batch, and a run's first instant.
    assert progress_line(30, 10, 25, 5, 3.0) == "30 inputs, 25 new articles, 5 rejects; 10 inputs/s"
    assert progress_line(10, 10, 10, 0, 2.0) == "10 inputs, 10 new articles, 0 rejects; 5.0 inputs/s"
    assert progress_line(5, 10, 5, 0, 0.0) == "5 of about 10 inputs (50%), 5 new articles, 0 rejects; 0 inputs/s"


def test_progress_of_one_reads_in_the_singular():
    assert progress_line(1, 1, 1, 1, 1.0) == "1 input, 1 new article, 1 reject; 1.0 inputs/s"


def test_a_local_run_whose_estimate_was_off_ends_on_what_it_read(tmp_path, capsys):
    """(QA pass: a run ended on "15 of about 16 inputs (93%)".) Blank lines count in the
    estimate, not as inputs: the last progress line gives the inputs read."""
    import json

    from pipeline.cli import main

    path = tmp_path / "blank-lines.jsonl"
    path.write_text("".join(json.dumps({"id": str(n), "text": "word " * 30}) + "\n\n\n" for n in range(3)))
    assert main(["ingest", str(path), "--db", str(tmp_path / "s.db"), "--engine", "local"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert "of about 9 inputs" in lines[0]
    assert lines[-1].startswith("  3 inputs, 3 new articles, 0 rejects;"), lines
