"""Fingerprints: content hash, word-shingle MinHash, salient-term MinHash and weighted term vector.

MinHash signatures are computed with numpy in bulk but are exactly datasketch's `affine32`
scheme (MurmurHash3 finalizer, then `a * h + b mod 2^32`), so they can be loaded into
`datasketch.MinHash(hashvalues=..., scheme="affine32", seed=...)` and compared there; a test
checks that both agree.
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Mapping

import numpy as np
import xxhash
from datasketch import MinHash

from .models import Article, Fingerprint
from .normalize import unified, words
from .settings import MatchingSettings

# A word's background weight is how rare it is in general English: wordfreq's Zipf scale runs
# from about 8 ("the") down to 1 (one in a billion words). 8 - zipf puts "the" near 0 and a
# surname near 6. Unknown words (zipf 0: names, misspellings, URL debris) are capped so that
# one stray token cannot outweigh a real shared name.
_ZIPF_TOP = 8.0
_UNKNOWN_WEIGHT = 6.5
_NUMBER_WEIGHT = 1.0
# Words this common (zipf >= 6: "said", "about", "would") say nothing about an event.
_STOP_ZIPF = 6.0
_MIN_TERM_CHARS = 2
_UINT32 = np.uint32
_MAX_HASH = np.uint32(0xFFFFFFFF)


@functools.lru_cache(maxsize=1)
def _zipf_table() -> dict[str, float]:
    import wordfreq  # imported here: loading its table takes ~0.3 s and only fingerprinting needs it

    table = wordfreq.get_frequency_dict("en", wordlist="best")
    return {word: math.log10(freq) + 9.0 for word, freq in table.items()}


def background_weight(term: str) -> float:
    """How distinctive `term` is in general English (0 for "the", about 6 for a rare surname)."""
    if any(c.isdigit() for c in term):
        # Numbers and codes ("2017", "us1850", "3-month") are either dates, prices or debris;
        # they rarely name an event on their own.
        return _NUMBER_WEIGHT
    zipf = _zipf_table().get(term)
    if zipf is None:
        return _UNKNOWN_WEIGHT
    return max(0.0, _ZIPF_TOP - zipf)


@functools.lru_cache(maxsize=200_000)
def _term_weight(term: str) -> float:
    return background_weight(term)


@functools.lru_cache(maxsize=400_000)
def term_of(word: str) -> str | None:
    """The matching term for a word token, or None for words too common or short to count."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.strip("'.-")
    if len(word) < _MIN_TERM_CHARS:
        return None
    if _ZIPF_TOP - _term_weight(word) >= _STOP_ZIPF:
        return None
    return word


def content_hash(norm_text: str) -> str:
    """A stable hash of the matching text: identical content has identical hashes."""
    return hashlib.blake2b(norm_text.encode("utf-8"), digest_size=16).hexdigest()


def day_number(published: str | None) -> int | None:
    """Days since 1970-01-01 of an ISO date or datetime, None when missing or unreadable."""
    if not published:
        return None
    try:
        return date.fromisoformat(published[:10]).toordinal() - date(1970, 1, 1).toordinal()
    except ValueError:
        return None


@dataclass(frozen=True)
class Permutations:
    """The affine permutations of datasketch's `affine32` scheme for (num_perm, seed)."""

    a: np.ndarray
    b: np.ndarray
    num_perm: int
    seed: int
    scheme: str = "affine32"


@functools.lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> Permutations:
    """datasketch's own permutation parameters, taken from a MinHash so they cannot drift."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return Permutations(a=a.astype(_UINT32), b=b.astype(_UINT32), num_perm=num_perm, seed=seed)


def _fmix32(values: np.ndarray) -> np.ndarray:
    # MurmurHash3's 32-bit finalizer, as datasketch applies it before permuting.
    values = values ^ (values >> _UINT32(16))
    values = values * _UINT32(0x85EBCA6B)
    values = values ^ (values >> _UINT32(13))
    values = values * _UINT32(0xC2B2AE35)
    return values ^ (values >> _UINT32(16))


def hash32(token: str) -> int:
    """The 32-bit hash of one token that signatures are built from (xxHash32, seed 0)."""
    return xxhash.xxh32_intdigest(token.encode("utf-8"))


def minhash_values(token_hashes: np.ndarray, perms: Permutations) -> np.ndarray:
    """The MinHash hash values of a set of 32-bit token hashes (datasketch affine32 semantics)."""
    if token_hashes.size == 0:
        return np.full(perms.num_perm, _MAX_HASH, dtype=_UINT32)
    with np.errstate(over="ignore"):
        mixed = _fmix32(np.unique(token_hashes.astype(_UINT32)))[:, None]
        return (mixed * perms.a + perms.b).min(axis=0)


def shingle_hashes(tokens: list[str], size: int) -> np.ndarray:
    """32-bit hashes of the word `size`-grams of `tokens` (all tokens when shorter than `size`)."""
    if not tokens:
        return np.empty(0, dtype=_UINT32)
    if len(tokens) < size:
        return np.array([hash32(" ".join(tokens))], dtype=_UINT32)
    digest = xxhash.xxh32_intdigest
    grams = zip(*(tokens[offset:] for offset in range(size)))
    return np.array([digest(" ".join(gram).encode("utf-8")) for gram in grams], dtype=_UINT32)


def shingles(tokens: list[str], size: int) -> frozenset[str]:
    """The set of word `size`-grams, used to verify near-duplicate candidates exactly."""
    if len(tokens) < size:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))


def jaccard(left: frozenset[str], right: frozenset[str]) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


def term_scores(
    title: str | None, norm_text: str, settings: MatchingSettings, tokens: list[str] | None = None
) -> dict[str, float]:
    """An article's terms scored against general English, best first, at most `settings.scored_terms`.

    score = (1 + log tf) * background weight, where tf counts title words
    `title_boost` times. Corpus statistics are applied later (`weighted_vector`), by the
    single writer that knows them.
    """
    counts: dict[str, float] = {}
    # Count words first, so each distinct word is mapped to its term once.
    for word, number in Counter(tokens if tokens is not None else words(norm_text)).items():
        term = term_of(word)
        if term is not None:
            counts[term] = counts.get(term, 0.0) + number
    for word in words(unified(title or "").casefold()):
        term = term_of(word)
        if term is not None:
            counts[term] = counts.get(term, 0.0) + settings.title_boost
    scored = {term: (1.0 + math.log(n)) * _term_weight(term) for term, n in counts.items()}
    top = sorted(scored.items(), key=lambda item: (-item[1], item[0]))[: settings.scored_terms]
    return {term: round(score, 4) for term, score in top}


def inverse_document_frequency(document_frequency: int, documents: int, prior_documents: float) -> float:
    """log((N + prior) / (df + 1)): flat while the corpus is small, sharper as it grows.

    The prior keeps five seed articles from cancelling out the very words they share
    (in a 5-article corpus, df = N would otherwise weigh ~0).
    """
    return math.log((documents + prior_documents) / (document_frequency + 1.0))


def idf_table(frequencies: Mapping[str, int], documents: int, settings: MatchingSettings) -> dict[str, float]:
    """The inverse document frequency of every term in `frequencies`, computed once per batch."""
    prior = settings.idf_prior_documents
    return {term: inverse_document_frequency(df, documents, prior) for term, df in frequencies.items()}


def weighted_vector(
    scores: Mapping[str, float] | Iterable[tuple[str, float]],
    frequencies: Mapping[str, int],
    documents: int,
    settings: MatchingSettings,
    idf: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The unit-length vector used to verify stories: background scores times corpus IDF, top terms only.

    `idf` (from `idf_table`) saves recomputing the logarithms article by article; it must cover
    every scored term.
    """
    pairs = scores.items() if isinstance(scores, Mapping) else scores
    if idf is None:
        prior = settings.idf_prior_documents
        idf = {term: inverse_document_frequency(frequencies.get(term, 0), documents, prior) for term, _ in pairs}
    # Negated weights sort heaviest first with ties by term, as plain tuples (no key function).
    ranked = sorted([(-score * idf[term], term) for term, score in pairs])[: settings.vector_terms]
    norm = math.sqrt(sum(weight * weight for weight, _ in ranked)) or 1.0
    return {term: -weight / norm for weight, term in ranked}


def sparse_dot(left: dict[str, float], right: dict[str, float]) -> float:
    """The dot product of two sparse vectors, summed in `left`'s order.

    The same value, bit for bit, as `sum(w * right.get(t, 0.0) for t, w in left.items())`
    (absent terms would only add 0.0), with the loops in C: story clustering calls this
    hundreds of times per article.
    """
    shared = list(filter(right.__contains__, left))
    return sum(map(operator.mul, map(left.__getitem__, shared), map(right.__getitem__, shared)))


def cosine(left: dict[str, float], right: dict[str, float]) -> float:
    """Cosine similarity of two sparse vectors (0.0 when either is empty)."""
    if len(left) > len(right):
        left, right = right, left
    dot = sparse_dot(left, right)
    if dot == 0.0:
        return 0.0
    norm_left = math.sqrt(sum(w * w for w in left.values()))
    norm_right = math.sqrt(sum(w * w for w in right.values()))
    return dot / (norm_left * norm_right)


def fingerprint(article: Article, settings: MatchingSettings) -> Fingerprint:
    """Everything matching needs of `article`: signatures for both levels and its term vector."""
    perms = permutations(settings.num_perm, settings.seed)
    tokens = words(article.norm_text)
    scores = term_scores(article.title, article.norm_text, settings, tokens)
    salient = tuple(list(scores)[: settings.salient_terms])
    story_values = minhash_values(
        np.fromiter((hash32(term) for term in salient), dtype=_UINT32, count=len(salient)), perms
    )
    dup_values = minhash_values(shingle_hashes(tokens, settings.shingle_size), perms)
    return Fingerprint(
        article_id=article.article_id,
        content_hash=article.content_hash,
        scheme=perms.scheme,
        num_perm=perms.num_perm,
        seed=perms.seed,
        story_hashvalues=story_values.astype("<u4").tobytes(),
        dup_hashvalues=dup_values.astype("<u4").tobytes(),
        terms=tuple(scores.items()),
        salient_terms=salient,
        day=day_number(article.published),
    )


def hashvalues(packed: bytes) -> np.ndarray:
    """Stored signature bytes (little-endian uint32) back to an array."""
    return np.frombuffer(packed, dtype="<u4").astype(_UINT32)


def as_minhash(packed: bytes, seed: int, scheme: str = "affine32") -> MinHash:
    """A datasketch MinHash holding stored hash values (for comparisons outside the pipeline)."""
    return MinHash(hashvalues=hashvalues(packed), seed=seed, scheme=scheme)
