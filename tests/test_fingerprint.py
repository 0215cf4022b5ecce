"""Signatures: datasketch-compatible MinHash, stable hashes, sensible term weights."""

import dataclasses

import numpy as np
from datasketch import MinHash
from hypothesis import given, settings as hsettings, strategies as st

from pipeline import fingerprint as fp
from pipeline.extract import build_article
from pipeline.settings import IngestSettings, MatchingSettings

MATCHING = MatchingSettings()
tokens = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=60)


@given(tokens)
@hsettings(max_examples=60, deadline=None)
def test_vectorised_minhash_equals_datasketch(words):
    hashes = np.array([fp.hash32(w) for w in words], dtype=np.uint32)
    ours = fp.minhash_values(hashes, fp.permutations(128, 1))
    theirs = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=lambda value: value)
    theirs.update_batch([int(h) for h in hashes])
    assert np.array_equal(ours, theirs.hashvalues)


@given(tokens, st.randoms())
@hsettings(max_examples=60, deadline=None)
def test_order_of_shingles_does_not_change_a_signature(words, rng):
    hashes = [fp.hash32(w) for w in words]
    shuffled = list(hashes)
    rng.shuffle(shuffled)
    perms = fp.permutations(64, 7)
    assert np.array_equal(
        fp.minhash_values(np.array(hashes, dtype=np.uint32), perms),
        fp.minhash_values(np.array(shuffled, dtype=np.uint32), perms),
    )


@given(st.text(min_size=1))
@hsettings(max_examples=60)
def test_identical_texts_have_jaccard_one(text):
    tokens_ = text.split() or [text]
    shingle_set = fp.shingles(tokens_, 3)
    assert fp.jaccard(shingle_set, fp.shingles(list(tokens_), 3)) == 1.0


def _article(text, title=None, external_id="x"):
    return build_article(external_id=external_id, text=text, title=title, settings=IngestSettings(min_words=5))


def test_stored_signatures_load_into_datasketch_and_compare():
    text = " ".join(f"word{i} token{i % 7}" for i in range(80))
    first = fp.fingerprint(_article(text, external_id="a"), MATCHING)
    second = fp.fingerprint(_article(text + " extra words at the end", external_id="b"), MATCHING)
    left = fp.as_minhash(first.dup_hashvalues, seed=first.seed, scheme=first.scheme)
    right = fp.as_minhash(second.dup_hashvalues, seed=second.seed, scheme=second.scheme)
    assert left.jaccard(left) == 1.0
    assert 0.7 < left.jaccard(right) < 1.0
    assert first.scheme == "affine32" and first.num_perm == 128


def test_rare_words_weigh_more_than_common_ones():
    assert fp.background_weight("tuberville") > fp.background_weight("alabama") > fp.background_weight("said")
    assert fp.term_of("the") is None and fp.term_of("said") is None
    assert fp.term_of("trump's") == "trump"


def test_weighted_vector_is_unit_length_and_prefers_rarer_terms():
    scores = {"tuberville": 6.0, "sessions": 4.0, "senate": 3.0}
    vector = fp.weighted_vector(scores, {"senate": 90, "sessions": 2}, 100, MATCHING)
    assert abs(sum(w * w for w in vector.values()) - 1.0) < 1e-9
    assert vector["tuberville"] > vector["sessions"] > vector["senate"]


def test_fingerprints_carry_the_band_keys_of_their_own_signatures():
    article = build_article(external_id="a", text="The council voted on the harbour budget " * 20, settings=IngestSettings())
    made = fp.fingerprint(article, MATCHING)
    assert list(made.story_keys) == fp.band_keys(made.story_hashvalues, *fp.story_bands(MATCHING))
    assert list(made.dup_keys) == fp.band_keys(made.dup_hashvalues, *fp.dup_bands(MATCHING))
    assert len(made.story_keys) == fp.story_bands(MATCHING)[0] and len(set(made.dup_keys)) > 1


@given(
    st.dictionaries(st.sampled_from([f"t{i}" for i in range(40)]), st.sampled_from([0.5, 1.0, 2.25, 3.0]), min_size=1),
    st.dictionaries(st.sampled_from([f"t{i}" for i in range(40)]), st.integers(0, 30)),
    st.integers(10, 30),
)
def test_weighted_vector_equals_the_plain_definition(scores, frequencies, vector_terms):
    """Heaviest first, ties by term, top `vector_terms`, unit length: the loops in C change nothing."""
    import math

    settings = MatchingSettings(vector_terms=vector_terms)
    documents = 40
    weights = {
        term: score * fp.inverse_document_frequency(frequencies.get(term, 0), documents, settings.idf_prior_documents)
        for term, score in scores.items()
    }
    ranked = sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:vector_terms]
    norm = math.sqrt(sum(w * w for _, w in ranked)) or 1.0
    expected = {term: w / norm for term, w in ranked}
    got = fp.weighted_vector(scores, frequencies, documents, settings)
    assert got == expected and list(got) == list(expected)


def test_shared_words_of_a_tiny_corpus_keep_their_weight():
    # Five articles that all say "tuberville": the IDF prior keeps the word from vanishing.
    vector = fp.weighted_vector({"tuberville": 6.0, "weather": 2.0}, {"tuberville": 5, "weather": 1}, 5, MATCHING)
    assert vector["tuberville"] > vector["weather"]


def test_day_number_reads_dates_and_datetimes():
    assert fp.day_number("1970-01-02") == 1
    assert fp.day_number("2020-04-02T10:00:00") == fp.day_number("2020-04-02")
    assert fp.day_number(None) is None and fp.day_number("soon") is None


# The fast paths of term_scores (a vocabulary of term ids, numpy scoring and rounding) must
# give exactly what the plain definition gives: same terms, same order, same floats.
def _plain_term_scores(title, norm_text, settings):
    import math
    from collections import Counter

    from pipeline.normalize import unified, words

    counts = {}
    for word, number in Counter(words(norm_text)).items():
        term = fp.term_of(word)
        if term is not None:
            counts[term] = counts.get(term, 0.0) + number
    for word in words(unified(title or "").casefold()):
        term = fp.term_of(word)
        if term is not None:
            counts[term] = counts.get(term, 0.0) + settings.title_boost
    scored = {term: (1.0 + math.log(n)) * fp._term_weight(term) for term, n in counts.items()}
    top = sorted(scored.items(), key=lambda item: (-item[1], item[0]))[: settings.scored_terms]
    return [(term, round(score, 4)) for term, score in top]


_VOCABULARY_WORDS = (
    "sessions tuberville alabama senate runoff trump's trump u.s the said vote 2017 3-month "
    "moore jones election ballot campaign governor 'quoted' x ab ab's zz qq-zz"
).split()


@given(
    st.lists(st.sampled_from(_VOCABULARY_WORDS) | st.text(min_size=1, max_size=8), max_size=120),
    st.none() | st.lists(st.sampled_from(_VOCABULARY_WORDS), max_size=8).map(" ".join),
    st.sampled_from([1.0, 1.3, 2.5, 8.0]),
    st.sampled_from([10, 12, 200]),
)
@hsettings(max_examples=300, deadline=None)
def test_term_scores_equal_the_plain_definition(body, title, boost, scored_terms):
    from pipeline.normalize import matching_text

    settings = MatchingSettings(title_boost=boost, scored_terms=scored_terms)
    norm = matching_text(" ".join(body))
    assert list(fp.term_scores(title, norm, settings).items()) == _plain_term_scores(title, norm, settings)


@given(
    st.floats(min_value=0, max_value=1e6)
    | st.integers(0, 10**9).map(lambda k: k / 2**15)
    | st.integers(0, 10**9).map(lambda k: float(f"{k // 10**4}.{k % 10**4:04d}5"))
)
@hsettings(max_examples=2000)
def test_vectorised_rounding_equals_round(value):
    # k / 2**15 gives exact ties at the fourth decimal (0.03125); decimal literals ending in 5
    # give values just off a tie whose product with 1e4 rounds onto it (2.00015 * 1e4)
    assert fp._round4(np.array([value, value + 1e-12]))[0] == round(value, 4)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
@hsettings(max_examples=300)
def test_ascii_words_equal_the_unicode_pattern(text):
    from pipeline import normalize

    assert normalize.words(text) == normalize._WORD.findall(text)


def test_term_scores_of_a_word_repeated_beyond_the_log_table_equal_the_plain_definition():
    from pipeline.normalize import matching_text

    norm = matching_text("tuberville " * 1500 + "alabama senate " * 3)
    for title in (None, "Tuberville wins Alabama runoff", "Runoff"):
        assert list(fp.term_scores(title, norm, MATCHING).items()) == _plain_term_scores(title, norm, MATCHING)


def test_term_scores_on_threads_equal_term_scores_one_at_a_time(monkeypatch):
    """Batches may be prepared on threads: the shared vocabulary must not mix up terms, also
    when it fills up and is replaced while other threads use it."""
    import json
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from pipeline.normalize import matching_text

    records = [json.loads(line) for line in (Path(__file__).parent / "data" / "giveme5w1h.jsonl").read_text().splitlines()[:120]]
    inputs = [(record.get("title"), matching_text(record["text"])) for record in records]
    expected = [_plain_term_scores(title, norm, MATCHING) for title, norm in inputs]

    monkeypatch.setattr(fp, "_VOCABULARIES", {"en": fp._Vocabulary("en")})
    monkeypatch.setattr(fp._Vocabulary, "_MAX_WORDS", 3_000)  # forces new generations mid-run
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda item: list(fp.term_scores(item[0], item[1], MATCHING).items()), inputs * 3))
    finally:
        sys.setswitchinterval(interval)
    assert got == expected * 3


@given(st.lists(st.text(min_size=1, max_size=6), max_size=30), st.integers(min_value=1, max_value=6))
@hsettings(max_examples=200)
def test_shingles_are_the_joined_word_grams(tokens, size):
    if len(tokens) < size:
        expected = {" ".join(tokens)} if tokens else set()
    else:
        expected = {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}
    assert fp.shingles(tokens, size) == expected


def test_the_site_name_in_a_title_is_not_a_term(settings):
    from pipeline.extract import from_text
    from pipeline.models import RawDocument

    body = ("Firefighters contained the warehouse blaze on the east bank by Tuesday evening, the "
            "county said, after crews from four towns worked through the night. ") * 2
    raw = RawDocument("fire.txt", "text", f"Warehouse blaze contained | Riverside Gazette\n{body}".encode())
    article = from_text(raw, settings.ingest)
    with_site = fp.fingerprint(dataclasses.replace(article, source="Riverside Gazette"), settings.matching)
    without = fp.fingerprint(dataclasses.replace(article, source=None), settings.matching)
    assert "gazette" not in dict(with_site.terms) and "riverside" not in dict(with_site.terms)
    assert "gazette" in dict(without.terms)  # (the same title, its site unknown)
    assert "warehouse" in dict(with_site.terms)
