"""The records between stages: a fingerprint survives pickling exactly, in its packed form."""

from __future__ import annotations

import copy
import pickle

from hypothesis import given, strategies as st

from pipeline.models import Fingerprint, ScoredTerms

terms = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1f"), min_size=1, max_size=12)
keys = st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=40).map(tuple)


@given(
    scored=st.lists(st.tuples(terms, st.floats(allow_nan=False)), max_size=60).map(tuple),
    salient=st.lists(terms, max_size=30).map(tuple),
    day=st.none() | st.integers(min_value=-50_000, max_value=100_000),
    story_keys=keys,
    dup_keys=keys,
    language=st.sampled_from(["en", "de", "ko"]),
)
def test_a_fingerprint_pickles_and_copies_exactly(scored, salient, day, story_keys, dup_keys, language):
    original = Fingerprint(
        "a1", "c" * 32, "affine32", 128, 1, bytes(range(16)), bytes(16), ScoredTerms.of(scored), salient, day,
        story_keys, dup_keys, language,
    )
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(original, protocol=protocol))
        assert back == original
        # Bit for bit, signed zeros included (0.0 == -0.0 would hide a lost sign).
        assert [repr(score) for _, score in back.terms] == [repr(score) for _, score in original.terms]
        assert list(back.terms) == list(scored) and len(back.terms) == len(scored)
    assert copy.deepcopy(original) == original


def test_a_prepared_fingerprint_is_pickled_smaller_and_rebuilt_equal(settings, seeds_dir):
    from pipeline.extract import article_from
    from pipeline.fingerprint import fingerprint
    from pipeline.models import RawDocument

    seed = sorted(seeds_dir.iterdir())[0]
    fp = fingerprint(article_from(RawDocument(seed.name, "text", seed.read_bytes()), settings.ingest), settings.matching)
    assert len(fp.terms) > 100 and len(fp.story_keys) > 10
    packed = pickle.dumps(fp, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(packed) == fp
    # (what pickle writes by default: the instance's fields, object by object)
    assert len(packed) < len(pickle.dumps(vars(fp), protocol=pickle.HIGHEST_PROTOCOL))
