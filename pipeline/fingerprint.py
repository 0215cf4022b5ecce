"""Fingerprints: content hash, word-shingle MinHash, salient-term MinHash and weighted term vector.

MinHash signatures are computed with numpy in bulk but are exactly datasketch's `affine32`
scheme (MurmurHash3 finalizer, then `a * h + b mod 2^32`), so they can be loaded into
`datasketch.MinHash(hashvalues=..., scheme="affine32", seed=...)` and compared there; a test
checks that both agree.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import operator
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Mapping

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from .language import DEFAULT as DEFAULT_LANGUAGE
from .language import detect as detect_language
from .models import Article, Fingerprint, ScoredTerms, pack_terms
from .normalize import title_without_site, unified, words
from .settings import MatchingSettings

# A word's background weight is how rare it is in general use in the article's language (English
# unless pipeline/language.py tells another): wordfreq's Zipf scale runs
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


@functools.lru_cache(maxsize=None)
def _frequencies(language: str = DEFAULT_LANGUAGE) -> dict[str, float]:
    """wordfreq's word frequencies for `language`, loaded when its first article comes.

    wordfreq's own dict, not a copy: a copy of log values doubled the memory (Russian's 713,000
    words: 173 MB a process with the copy, 116 MB without; German 104 and 57 MB; English 33 MB).
    Words are looked up once each (`_term_weight` and the vocabulary remember them).
    """
    import wordfreq  # imported here: only fingerprinting needs it

    table = wordfreq.get_frequency_dict(language, wordlist="best")
    # The list the dict was built from is cached too, and never needed again.
    wordfreq.get_frequency_list.cache_clear()
    return table


def background_weight(term: str, language: str = DEFAULT_LANGUAGE) -> float:
    """How distinctive `term` is in general use in `language` (0 for "the", about 6 for a rare surname)."""
    if any(c.isdigit() for c in term):
        # Numbers and codes ("2017", "us1850", "3-month") are either dates, prices or debris;
        # they rarely name an event on their own.
        return _NUMBER_WEIGHT
    frequency = _frequencies(language).get(term)
    if frequency is None:
        return _UNKNOWN_WEIGHT
    return max(0.0, _ZIPF_TOP - (math.log10(frequency) + 9.0))


@functools.lru_cache(maxsize=200_000)
def _term_weight(term: str, language: str = DEFAULT_LANGUAGE) -> float:
    return background_weight(term, language)


@functools.lru_cache(maxsize=400_000)
def term_of(word: str, language: str = DEFAULT_LANGUAGE) -> str | None:
    """The matching term for a word token, or None for words too common (in `language`) or short to count."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.strip("'.-")
    if len(word) < _MIN_TERM_CHARS:
        return None
    if _ZIPF_TOP - _term_weight(word, language) >= _STOP_ZIPF:
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


def _hashes(tokens: Iterable[str]) -> np.ndarray:
    """[hash32(token) for token in tokens] as an array, with the loop in C (encode's default is UTF-8)."""
    return np.array(list(map(xxhash.xxh32_intdigest, map(str.encode, tokens))), dtype=_UINT32)


def minhash_values(token_hashes: np.ndarray, perms: Permutations) -> np.ndarray:
    """The MinHash hash values of a set of 32-bit token hashes (datasketch affine32 semantics)."""
    if token_hashes.size == 0:
        return np.full(perms.num_perm, _MAX_HASH, dtype=_UINT32)
    with np.errstate(over="ignore"):
        # Repeated hashes need no np.unique: they cannot change a minimum.
        values = _fmix32(token_hashes.astype(_UINT32, copy=False))[:, None] * perms.a
        values += perms.b
        return values.min(axis=0)


def shingle_hashes(tokens: list[str], size: int) -> np.ndarray:
    """32-bit hashes of the word `size`-grams of `tokens` (all tokens when shorter than `size`)."""
    if not tokens:
        return np.empty(0, dtype=_UINT32)
    if len(tokens) < size:
        return np.array([hash32(" ".join(tokens))], dtype=_UINT32)
    grams = zip(*(tokens[offset:] for offset in range(size)))
    return _hashes(map(" ".join, grams))


def shingles(tokens: list[str], size: int) -> frozenset[str]:
    """The set of word `size`-grams, used to verify near-duplicate candidates exactly."""
    if len(tokens) < size:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(map(" ".join, zip(*(tokens[offset:] for offset in range(size)))))


def jaccard(left: frozenset[str], right: frozenset[str]) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


class _Terms:
    """One generation of the vocabulary: every word seen mapped to its term's integer id (-1: not
    a term), and each term's text and background weight by id."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.word_ids: dict[str, int] = {}
        self.term_ids: dict[str, int] = {}
        self.texts: list[str] = []
        self.weights = np.empty(4096, dtype=np.float64)  # grown by replacing, never shrunk

    def add(self, word: str) -> None:
        term = term_of(word, self.language)
        term_id = -1 if term is None else self.term_ids.get(term)
        if term_id is None:
            term_id = len(self.texts)
            if term_id >= self.weights.size:
                self.weights = np.concatenate([self.weights, np.empty_like(self.weights)])
            self.weights[term_id] = _term_weight(term, self.language)
            self.texts.append(term)
            self.term_ids[term] = term_id
        # Published last: a reader that finds the word's id finds its text and weight too.
        self.word_ids[word] = term_id


class _Vocabulary:
    """Words to term ids, so that an article's terms are counted and scored with C-level loops
    and numpy instead of a Python loop per word.

    Batches may be prepared on threads: look-ups take no lock, additions take one and publish a
    word only once its term is complete, and a full vocabulary is replaced by a new generation
    rather than cleared, so ids a caller holds stay valid in the generation it got them from.
    """

    _UNSEEN = -2
    _MAX_WORDS = 400_000

    def __init__(self, language: str) -> None:
        self.language = language
        self.current = _Terms(language)
        self._lock = threading.Lock()

    def ids(self, tokens: list[str]) -> tuple[_Terms, list[int]]:
        terms = self.current
        ids = list(map(terms.word_ids.get, tokens, itertools.repeat(self._UNSEEN)))
        if self._UNSEEN not in ids:
            return terms, ids
        with self._lock:
            terms = self.current
            if len(terms.word_ids) + len(tokens) > self._MAX_WORDS:
                terms = self.current = _Terms(self.language)
            for word in tokens:
                if word not in terms.word_ids:
                    terms.add(word)
        return terms, list(map(terms.word_ids.__getitem__, tokens))


# One vocabulary per language: a word's term and weight depend on it ("die" is common in
# German, a verb in English).
_VOCABULARIES: dict[str, _Vocabulary] = {DEFAULT_LANGUAGE: _Vocabulary(DEFAULT_LANGUAGE)}
_VOCABULARIES_LOCK = threading.Lock()


def _vocabulary(language: str) -> _Vocabulary:
    found = _VOCABULARIES.get(language)
    if found is None:
        with _VOCABULARIES_LOCK:
            found = _VOCABULARIES.setdefault(language, _Vocabulary(language))
    return found


def _picked(items: list, indexes: list[int]) -> tuple:
    """(items[i] for i in indexes) as a tuple, with the loop in C."""
    if len(indexes) == 1:
        return (items[indexes[0]],)
    return operator.itemgetter(*indexes)(items) if indexes else ()


def _round4(values: np.ndarray) -> list[float]:
    """[round(value, 4) for value in values], the same floats, without a Python call per value.

    round() gives the double nearest to the value rounded to 4 decimals; rint(v * 1e4) / 1e4
    gives the same (the division is correctly rounded) whenever rint picks the right integer,
    which it can only miss when v * 1e4 lies within its rounding error of a half-integer:
    those few values go through round() itself.
    """
    scaled = values * 1e4
    nearest = np.rint(scaled)
    rounded = (nearest / 1e4).tolist()
    for index in np.flatnonzero(np.abs(np.abs(scaled - nearest) - 0.5) < 1e-6).tolist():
        rounded[index] = round(float(values[index]), 4)
    return rounded


# 1 + log(n) for small whole n, from math.log (np.log may differ from it in the last bit).
_ONE_PLUS_LOG = np.array([0.0] + [1.0 + math.log(count) for count in range(1, 1024)])


def _one_plus_log(counts: list[int]) -> np.ndarray:
    if max(counts) < _ONE_PLUS_LOG.size:
        return _ONE_PLUS_LOG[counts]
    # (0 is a term only the title has: its score is set from the boosted count)
    return 1.0 + np.array([math.log(count) if count else 0.0 for count in counts], dtype=np.float64)


def term_scores(
    title: str | None, norm_text: str, settings: MatchingSettings, tokens: list[str] | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> dict[str, float]:
    """An article's terms scored against general use in `language`, best first, at most `settings.scored_terms`.

    score = (1 + log tf) * background weight, where tf counts title words
    `title_boost` times. Corpus statistics are applied later (`weighted_vector`), by the
    single writer that knows them.
    """
    body = tokens if tokens is not None else words(norm_text)
    title_words = words(unified(title).casefold()) if title else []
    vocabulary, ids = _vocabulary(language).ids(body + title_words if title_words else body)
    counts = Counter(ids[: len(body)] if title_words else ids)
    counts.pop(-1, None)
    found = list(counts)
    tf = list(counts.values())  # whole numbers, exact in any order of summing
    boosted: dict[int, float] = {}  # position -> tf with the title words added
    if title_words:
        position = dict(zip(found, range(len(found))))
        for term_id in ids[len(body) :]:
            if term_id < 0:
                continue
            at = position.get(term_id)
            if at is None:
                at = position[term_id] = len(found)
                found.append(term_id)
                tf.append(0)
            # one word at a time, as the plain sum adds them
            boosted[at] = boosted.get(at, tf[at]) + settings.title_boost
    if not found:
        return {}
    texts = _picked(vocabulary.texts, found)
    scores = _one_plus_log(tf)
    for at, count in boosted.items():
        scores[at] = 1.0 + math.log(count)
    scores *= vocabulary.weights[found]
    # Best score first, ties by term: ordered by term, then stably by score.
    by_text = np.array(sorted(range(len(texts)), key=texts.__getitem__))
    best = by_text[np.argsort(-scores[by_text], kind="stable")[: settings.scored_terms]]
    return dict(zip(_picked(texts, best.tolist()), _round4(scores[best])))


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
    scores: ScoredTerms | Mapping[str, float] | Iterable[tuple[str, float]],
    frequencies: Mapping[str, int],
    documents: int,
    settings: MatchingSettings,
    idf: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The unit-length vector used to verify stories: background scores times corpus IDF, top terms only.

    `idf` (from `idf_table`) saves recomputing the logarithms article by article; it must cover
    every scored term.
    """
    if isinstance(scores, ScoredTerms):
        terms, values = scores.texts(), scores.scores()
    else:
        pairs = list(scores.items() if isinstance(scores, Mapping) else scores)
        terms, values = [term for term, _ in pairs], [value for _, value in pairs]
    if not terms:
        return {}
    if idf is None:
        prior = settings.idf_prior_documents
        idf = {term: inverse_document_frequency(frequencies.get(term, 0), documents, prior) for term in terms}
    # Negated weights sort heaviest first with ties by term, as plain tuples (no key function);
    # the loops are maps, in C: the writer runs this for every article. (-(s * i) is -s * i exactly.)
    negated = map(operator.neg, map(operator.mul, values, map(idf.__getitem__, terms)))
    ranked = sorted(zip(negated, terms))[: settings.vector_terms]
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
    language = detect_language(tokens) if settings.language == "auto" else settings.language
    title = title_without_site(article.title, article.source)
    scores = term_scores(title, article.norm_text, settings, tokens, language)
    salient = tuple(itertools.islice(scores, settings.salient_terms))
    story_values = minhash_values(_hashes(salient), perms)
    dup_values = minhash_values(shingle_hashes(tokens, settings.shingle_size), perms)
    story_packed = story_values.astype("<u4").tobytes()
    dup_packed = dup_values.astype("<u4").tobytes()
    return Fingerprint(
        article_id=article.article_id,
        content_hash=article.content_hash,
        scheme=perms.scheme,
        num_perm=perms.num_perm,
        seed=perms.seed,
        story_hashvalues=story_packed,
        dup_hashvalues=dup_packed,
        terms=ScoredTerms(*pack_terms(scores, scores.values())),
        salient_terms=salient,
        day=day_number(article.published),
        # Band keys depend on the signature alone: hashing them here, where batches run in
        # parallel, takes them off the single writer.
        story_keys=tuple(band_keys(story_packed, *story_bands(settings))),
        dup_keys=tuple(band_keys(dup_packed, *dup_bands(settings))),
        language=language,
    )


@functools.lru_cache(maxsize=16)
def lsh_bands(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    """(bands, rows) chosen by datasketch's optimiser for this threshold and FP/FN weighting."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def story_bands(settings: MatchingSettings) -> tuple[int, int]:
    """(bands, rows) of the story-level LSH index."""
    return lsh_bands(settings.story_lsh_threshold, settings.num_perm, tuple(settings.story_lsh_weights))


def dup_bands(settings: MatchingSettings) -> tuple[int, int]:
    """(bands, rows) of the near-duplicate LSH index (false positives and negatives weighed alike)."""
    return lsh_bands(settings.dup_lsh_threshold, settings.num_perm, (0.5, 0.5))


# What each entry of `index_layout` is made from, in the settings' own names (for messages).
LAYOUT_SETTINGS = {
    "scheme": "matching.scheme",
    "num_perm": "matching.num_perm",
    "seed": "matching.seed",
    "shingle_size": "matching.shingle_size",
    "dup_rows": "rows per near-duplicate LSH band, from matching.dup_lsh_threshold and num_perm",
    "story_rows": "rows per story LSH band, from matching.story_lsh_threshold, story_lsh_weights and num_perm",
}


def index_layout(settings: MatchingSettings) -> dict[str, object]:
    """What stored signatures and LSH keys are made with. Two articles fingerprinted under
    different layouts never meet as candidates, so one database holds one layout.

    The number of bands is not part of it: band i is the same slice of the signature under any
    number of bands (`band_keys`), so a threshold that changes only how many bands there are
    still finds stored articles through the bands both have."""
    return {
        "scheme": settings.scheme,
        "num_perm": settings.num_perm,
        "seed": settings.seed,
        "shingle_size": settings.shingle_size,
        "dup_rows": dup_bands(settings)[1],
        "story_rows": story_bands(settings)[1],
    }


def band_keys(packed: bytes, bands: int, rows: int) -> list[int]:
    """The LSH bucket keys of a signature: one signed 64-bit key per band (band number mixed in)."""
    # Stored signatures are already little-endian uint32 bytes: hash slices of them directly.
    width = rows * 4
    digest = xxhash.xxh64_intdigest
    keys = [digest(packed[band * width : (band + 1) * width], seed=band) for band in range(bands)]
    return [key - (1 << 64) if key >= (1 << 63) else key for key in keys]


def hashvalues(packed: bytes) -> np.ndarray:
    """Stored signature bytes (little-endian uint32) back to an array."""
    return np.frombuffer(packed, dtype="<u4").astype(_UINT32)


def as_minhash(packed: bytes, seed: int, scheme: str = "affine32") -> MinHash:
    """A datasketch MinHash holding stored hash values (for comparisons outside the pipeline)."""
    return MinHash(hashvalues=hashvalues(packed), seed=seed, scheme=scheme)
