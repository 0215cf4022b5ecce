"""Clustering scores: B-cubed and ARI on cases whose answers are known; reading a labelled corpus."""

import pytest
from hypothesis import given, strategies as st

from pipeline.errors import UsageError
from pipeline.evaluate import adjusted_rand_index, bcubed, read_corpus

labels = st.lists(st.integers(0, 5), min_size=2, max_size=40)


def as_map(values):
    return {str(i): v for i, v in enumerate(values)}


@given(labels)
def test_identical_clusterings_score_one(values):
    clustering = as_map(values)
    assert bcubed(clustering, clustering) == (1.0, 1.0, 1.0)
    assert adjusted_rand_index(clustering, clustering) == 1.0


def test_everything_in_one_cluster_has_full_recall_and_low_precision():
    gold = as_map([0, 0, 1, 1])
    precision, recall, f1 = bcubed(as_map([9, 9, 9, 9]), gold)
    assert recall == 1.0 and precision == 0.5 and abs(f1 - 2 / 3) < 1e-9


def test_all_singletons_have_full_precision():
    gold = as_map([0, 0, 0, 1])
    precision, recall, _ = bcubed(as_map([0, 1, 2, 3]), gold)
    assert precision == 1.0
    assert abs(recall - (1 / 3 * 3 + 1) / 4) < 1e-9


def test_ari_of_a_known_case():
    # sklearn.metrics.adjusted_rand_score([0,0,1,1],[0,0,1,2]) == 0.5714285714285715
    assert abs(adjusted_rand_index(as_map([0, 0, 1, 2]), as_map([0, 0, 1, 1])) - 0.5714285714285715) < 1e-12


@given(labels, labels)
def test_ari_is_symmetric(left, right):
    size = min(len(left), len(right))
    a, b = as_map(left[:size]), as_map(right[:size])
    assert abs(adjusted_rand_index(a, b) - adjusted_rand_index(b, a)) < 1e-9


def _corpus(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


RECORDS = ['{"id": "a", "text": "one", "story": 1}', '{"text": "two", "story": 1}', '{"id": 3, "text": "three", "story": 2}']


def test_a_gzipped_corpus_reads_as_the_plain_one(tmp_path):
    import gzip

    plain = _corpus(tmp_path / "c.jsonl", RECORDS)
    packed = tmp_path / "c.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_corpus(packed) == read_corpus(plain)
    assert [r["id"] for r in read_corpus(packed)] == ["a", "line-2", "3"]


def test_a_broken_line_is_reported_by_its_line_in_the_file(tmp_path):
    corpus = _corpus(tmp_path / "c.jsonl", RECORDS + ['{"text": "four", "story": 2,}'])
    with pytest.raises(UsageError, match=r"c\.jsonl:4 is not JSON: .*\(column 29\)"):
        read_corpus(corpus)
    with pytest.raises(UsageError, match=r"s\.jsonl:2 is not a JSON object"):
        read_corpus(_corpus(tmp_path / "s.jsonl", [RECORDS[0], '"a story"']))


@pytest.mark.parametrize("lines", [[], ["", "   "]])
def test_a_corpus_without_records_is_refused(tmp_path, lines):
    with pytest.raises(UsageError, match="holds no records"):
        read_corpus(_corpus(tmp_path / "empty.jsonl", lines))


def test_a_directory_or_a_file_that_is_not_gzip_or_utf8_is_refused(tmp_path):
    with pytest.raises(UsageError, match="is a directory: give one JSON Lines file"):
        read_corpus(tmp_path)
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text(RECORDS[0])
    with pytest.raises(UsageError, match="not readable gzip data"):
        read_corpus(fake)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"text": "café", "story": 1}\n'.encode("latin-1"))
    with pytest.raises(UsageError, match="not UTF-8 text"):
        read_corpus(latin)


def test_the_rendered_scores_read_in_the_singular():
    from pipeline.evaluate import render

    result = {"corpus": "c.jsonl", "articles": 1, "gold_stories": 1, "batches": 1, "bcubed_precision": 1.0,
              "bcubed_recall": 1.0, "bcubed_f1": 1.0, "adjusted_rand_index": 1.0, "predicted_stories": 1,
              "seconds": 0.1, "worst_merges": [], "worst_splits": []}
    assert render(result).splitlines()[0] == "corpus      c.jsonl (1 article, 1 gold story, 1 run)"
    assert render({**result, "articles": 2, "gold_stories": 2, "batches": 4}).splitlines()[0].endswith("(2 articles, 2 gold stories, 4 runs)")


def test_the_evaluation_says_how_many_records_ingest_rejected(tmp_path, settings):
    """(QA pass: with a larger ingest.min_words, recall fell and nothing said the records were
    rejected, not misclustered.)"""
    import json

    from pipeline.evaluate import evaluate_corpus, render

    long, short = "The harbour flooded after the storm surge overnight. " * 6, "A short note. " * 3
    corpus = tmp_path / "gold.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "story": 1, "text": long}, {"id": "b", "story": 1, "text": short},
        {"id": "c", "story": 2, "text": short.replace("note", "memo")},
    ]))
    result = evaluate_corpus(corpus, settings)
    assert result["rejected"] == 2
    assert "rejected    2 articles not stored by ingest" in render(result)
