"""datasketch compatibility: the vectorised MinHash path gives datasketch's own signatures."""

from __future__ import annotations

import numpy as np
import xxhash
from datasketch import MinHash
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from pipeline.extract import build_article
from pipeline.fingerprint import (
    as_minhash,
    fingerprint,
    hash32,
    minhash_values,
    permutations,
    shingle_hashes,
)
from pipeline.normalize import words


def _xxh32(data: bytes) -> int:
    return xxhash.xxh32_intdigest(data)


def _datasketch(tokens: list[str], num_perm: int, seed: int) -> np.ndarray:
    """datasketch computing the signature itself: affine32, the same 32-bit token hash, update_batch."""
    minhash = MinHash(num_perm=num_perm, seed=seed, scheme="affine32", hashfunc=_xxh32)
    minhash.update_batch([token.encode("utf-8") for token in tokens])
    return np.asarray(minhash.hashvalues, dtype=np.uint64)


def _shingle_strings(tokens: list[str], size: int) -> list[str]:
    if len(tokens) < size:
        return [" ".join(tokens)]
    return [" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    tokens=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=300),
    num_perm=st.sampled_from([16, 64, 128, 256]),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_vectorised_signature_equals_datasketch(tokens, num_perm, seed):
    hashes = np.array([hash32(token) for token in tokens], dtype=np.uint32)
    ours = minhash_values(hashes, permutations(num_perm, seed))
    assert ours.astype(np.uint64).tolist() == _datasketch(tokens, num_perm, seed).tolist()


def test_article_signatures_equal_datasketch_on_both_levels(settings):
    text = (
        "Attorney General Jeff Sessions told senators on Tuesday that he never discussed the campaign "
        "with Russian officials. Sessions, a former senator from Alabama, said the claims were false. "
        "Democrats on the committee pressed him on his meetings with the Russian ambassador. "
        "The hearing lasted more than two hours and touched on the firing of the FBI director."
    )
    article = build_article(external_id="a1", text=text, title="Sessions testifies", settings=settings.ingest)
    matching = settings.matching
    fp = fingerprint(article, matching)

    shingles = _shingle_strings(words(article.norm_text), matching.shingle_size)
    expected_dup = _datasketch(shingles, matching.num_perm, matching.seed)
    assert as_minhash(fp.dup_hashvalues, matching.seed).hashvalues.tolist() == expected_dup.tolist()
    expected_story = _datasketch(list(fp.salient_terms), matching.num_perm, matching.seed)
    assert as_minhash(fp.story_hashvalues, matching.seed).hashvalues.tolist() == expected_story.tolist()

    # and the signatures compare inside datasketch as any MinHash would
    theirs = MinHash(num_perm=matching.num_perm, seed=matching.seed, scheme="affine32", hashfunc=_xxh32)
    theirs.update_batch([s.encode("utf-8") for s in shingles])
    assert as_minhash(fp.dup_hashvalues, matching.seed).jaccard(theirs) == 1.0


def test_shingle_hashes_are_the_hashes_of_the_shingle_strings():
    tokens = "the quick brown fox jumps over the lazy dog".split()
    for size in (1, 3, 5, 12):
        expected = [hash32(s) for s in _shingle_strings(tokens, size)]
        assert shingle_hashes(tokens, size).tolist() == expected
    assert shingle_hashes([], 3).size == 0


@hypothesis_settings(max_examples=100, deadline=None)
@given(
    tokens=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs")), min_size=1, max_size=8), max_size=40),
    size=st.integers(min_value=1, max_value=5),
)
def test_shingle_signature_equals_datasketch_updated_with_the_shingle_strings(tokens, size):
    # shingle_hashes hashes in bulk; datasketch, given the plain hash function and the shingle
    # strings themselves, must arrive at the same signature
    perms = permutations(64, 3)
    hashes = shingle_hashes(tokens, size)
    strings = _shingle_strings(tokens, size) if tokens else []
    assert hashes.tolist() == [hash32(s) for s in strings]
    if strings:
        assert minhash_values(hashes, perms).astype(np.uint64).tolist() == _datasketch(strings, 64, 3).tolist()
