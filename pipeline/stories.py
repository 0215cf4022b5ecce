"""Story assignment: LSH candidates, verification against whole stories, near-duplicates, canonical choice.

Three levels of sameness, strictest first:
1. the same article (same URL, or same input id with the same content): the store skips it;
2. a near-duplicate (a reprint or light edit): shingle-MinHash LSH candidates, verified by the
   exact Jaccard of their word-shingle sets; identical content is a near-duplicate too;
3. the same story: salient-term MinHash LSH candidates (tuned for recall), verified by the
   article's similarity to each candidate story as a whole, with a penalty for time distance.

The index of past articles is reached through the `StoryIndex` protocol (the SQLite store
implements it), so this module holds the logic and nothing about storage.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from itertools import chain
from typing import Iterable, Mapping, Protocol, Sequence

import numpy as np

from .fingerprint import (
    band_keys,
    dup_bands,
    hashvalues,
    idf_table,
    jaccard,
    shingles,
    sparse_dot,
    story_bands,
    weighted_vector,
)
from .models import Assignment, Prepared
from .normalize import matching_text, words
from .settings import MatchingSettings

log = logging.getLogger(__name__)

DUP_LEVEL = "dup"
# Stored near-duplicate LSH buckets are partitioned by publication period. A batch writes only
# into the partitions of its own days, so the pages it dirties follow the batch, not the
# database, and it looks keys up in the article's period and the ones either side: copies
# published within 14 to 28 days of it (reprints follow their original within days). Undated
# articles count as published the day they are ingested. Within a batch all pairs are compared.
# Story-level buckets are one partition (STORY_PERIOD): real stories run for months (a trial, a
# currency's slide), and their lookups and writes stay bounded by the bucket cap instead.
LSH_PERIOD_DAYS = 14
STORY_PERIOD = 0
# A story's centroid keeps this many terms; beyond it, the tail adds nothing to a cosine.
# Measured: 120 against 200 terms, B-cubed F1 0.939 and 0.939 at once on the development corpus,
# 0.9295 and 0.9301 as the mean of 4 shuffled runs (seeds 1-8), 0.937 and 0.936 on the 20,000
# benchmark corpus; every stored story read per batch costs 40% less to unpack and multiply.
_CENTROID_TERMS = 120
# Estimated Jaccard (from the MinHash) below which a near-duplicate candidate is not worth an
# exact check: 128 permutations estimate Jaccard to within about 0.09 at two standard errors.
_DUP_ESTIMATE_MARGIN = 0.1
# An estimate this far above `dup_jaccard` (0.15 above 0.5: 3.4 standard errors of a
# 128-permutation estimate, so a pair truly below 0.5 passes about once in 3,000) is taken as
# verified without building both shingle sets, which for a stored candidate means reading and
# re-normalising its text. Measured on the 100k benchmark's increment: of 206 exact checks with
# an estimate of 0.55 or more, one failed, at an estimate under 0.65; 0.15 rather than 0.25
# saved a third of the checks and left the 20k corpus's 7,348 near-duplicates unchanged.
_DUP_CERTAIN_MARGIN = 0.15


def _keys(stored: tuple[int, ...], packed: bytes, bands: tuple[int, int]) -> tuple[int, ...] | list[int]:
    """A signature's band keys: as fingerprinted, or hashed here for a fingerprint made without them."""
    return stored if len(stored) == bands[0] else band_keys(packed, *bands)


def estimated_jaccard(left: bytes, right: bytes) -> float:
    """The Jaccard similarity two MinHash signatures estimate."""
    return float(np.mean(hashvalues(left) == hashvalues(right)))


@dataclass
class StoryState:
    """A story's running state for matching: the sum of its members' unit term vectors and dates."""

    story_id: int
    vector_sum: dict[str, float]
    members: int
    first_day: int | None
    last_day: int | None

    def add(self, terms: dict[str, float], day: int | None) -> None:
        for term, weight in terms.items():
            self.vector_sum[term] = self.vector_sum.get(term, 0.0) + weight
        self.members += 1
        if day is not None:
            self.first_day = day if self.first_day is None else min(self.first_day, day)
            self.last_day = day if self.last_day is None else max(self.last_day, day)

    def trim(self) -> None:
        """Keep the heaviest terms only: the tail of a large story's sum moves no similarity."""
        if len(self.vector_sum) > _CENTROID_TERMS:
            self.vector_sum = {term: self.vector_sum[term] for term in _top_keys(self.vector_sum, _CENTROID_TERMS)}

    def absorb(self, other: "StoryState") -> None:
        for term, weight in other.vector_sum.items():
            self.vector_sum[term] = self.vector_sum.get(term, 0.0) + weight
        self.members += other.members
        for day in (other.first_day, other.last_day):
            if day is not None:
                self.first_day = day if self.first_day is None else min(self.first_day, day)
                self.last_day = day if self.last_day is None else max(self.last_day, day)


@dataclass(frozen=True)
class IndexedArticle:
    """What matching needs to know of an article already in the index."""

    article_id: str
    story_id: int
    duplicate_of: str | None
    dup_hashvalues: bytes
    text: str | None = None


class StoryIndex(Protocol):
    """Read access to the articles and stories already stored."""

    def lsh_matches(
        self, level: str, groups: Sequence[tuple[Sequence[int], Iterable[int]]]
    ) -> dict[tuple[int, int], list[str]]: ...

    def story_buckets(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], list[int]]: ...

    def originals_by_content_hash(self, hashes: Sequence[str]) -> dict[str, str]: ...

    def indexed_articles(self, article_ids: Iterable[str], with_text: bool) -> dict[str, IndexedArticle]: ...

    def story_states(self, story_ids: Iterable[int]) -> dict[int, StoryState]: ...

    def document_frequencies(self, terms: Iterable[str]) -> tuple[int, dict[str, int]]: ...

    def next_story_id(self) -> int: ...

    def kept_apart(self, story_ids: Iterable[int]) -> set[frozenset[int]]: ...


@dataclass
class BatchOutcome:
    """What assigning one batch decided: to be written by the store in one transaction."""

    assignments: list[Assignment] = field(default_factory=list)
    vectors: dict[str, dict[str, float]] = field(default_factory=dict)  # article id -> unit vector
    band_rows: list[tuple[str, int, int, str]] = field(default_factory=list)  # (level, period, key, article_id)
    story_buckets: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (period, key) -> story ids
    document_frequencies: dict[str, int] = field(default_factory=dict)  # this batch's df per term
    states: dict[int, StoryState] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (absorbed, into)
    touched: set[int] = field(default_factory=set)
    new_stories: set[int] = field(default_factory=set)


def time_gap_days(left: StoryState, right: StoryState, window: int) -> int:
    """Days between two date ranges beyond the tolerance window (0 when either is undated)."""
    if left.first_day is None or left.last_day is None or right.first_day is None or right.last_day is None:
        return 0
    gap = max(left.first_day - right.last_day, right.first_day - left.last_day, 0)
    return max(0, gap - window)


def lsh_period(day: int | None, today: int) -> int:
    """The LSH partition of an article published on `day` (days since 1970; undated: `today`)."""
    return (today if day is None else day) // LSH_PERIOD_DAYS


def today_number() -> int:
    """Today (UTC) in days since 1970-01-01."""
    return (datetime.now(timezone.utc).date() - date(1970, 1, 1)).days


def _top_keys(values: Mapping, count: int) -> list:
    """The keys of the `count` largest values, ties at the cut-off to the smallest keys: those
    above it in `values`' own order, then the tied ones in key order.

    The cut-off comes from a plain sort of the values; only the ties at it need the keys'
    order. (A heap or a sort with a (-value, key) key function cost about 5x more.)"""
    if len(values) <= count:
        return list(values)
    cutoff = sorted(values.values(), reverse=True)[count - 1]
    above = [key for key, value in values.items() if value > cutoff]
    tied = sorted(key for key, value in values.items() if value == cutoff)
    return above + tied[: count - len(above)]


def _best_voted(votes: Counter, count: int, share: float = 0.0) -> list:
    """The `count` entries with the most votes, ties to the smallest (the same order every run),
    less those with fewer than `share` of the first one's votes."""
    best = sorted(_top_keys(votes, count), key=lambda key: (-votes[key], key))
    if share and best:
        floor = votes[best[0]] * share
        best = [key for key in best if votes[key] >= floor]
    return best


def latest_stories(story_ids: Iterable[int], cap: int) -> list[int]:
    """A story-level bucket after adding `story_ids` in order: each story once, at the place of
    its latest addition, oldest first, the `cap` most recent kept. (The writer and the version 3
    migration both build buckets with this.)"""
    return list(dict.fromkeys(reversed(list(story_ids))))[:cap][::-1]


def _assignment_order(item: Prepared) -> int:
    # Earliest first (a stable sort keeps input order within a day), so a near-duplicate
    # points at the earliest copy; undated articles after dated ones.
    day = item.fingerprint.day
    return day if day is not None else 1 << 30


class _Clusters:
    """Union-find over clusters (stored stories and new articles), each with a StoryState."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}
        self.state: dict[object, StoryState] = {}
        self.stored: dict[object, set[int]] = {}  # stored story ids inside each cluster
        self.version: dict[object, int] = {}

    def add(self, key: object, state: StoryState, stored: set[int]) -> None:
        self.parent[key] = key
        self.state[key] = state
        self.stored[key] = stored
        self.version[key] = 0

    def find(self, key: object) -> object:
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, left: object, right: object) -> object:
        left, right = self.find(left), self.find(right)
        if left == right:
            return left
        keep, drop = (left, right) if self.state[left].members >= self.state[right].members else (right, left)
        self.parent[drop] = keep
        self.state[keep].absorb(self.state.pop(drop))
        self.stored[keep] |= self.stored.pop(drop)
        self.version[keep] += 1
        self.version.pop(drop)
        return keep


def assign_batch(
    batch: Sequence[Prepared], index: StoryIndex, settings: MatchingSettings, today: int | None = None
) -> BatchOutcome:
    """Assign each new article of a batch to a story, noting near-duplicates.

    Near-duplicates join the story of what they copy. Everything else is clustered by average
    linkage over LSH candidate pairs: new articles, and the stored stories they are candidates
    of, merge best pair first while the pair's average link is at least `story_similarity`.
    Two stored stories merge only through such a verified link at `merge_similarity`.
    `batch` must hold only articles not yet stored. The result is a plan; nothing is written.
    `today` (days since 1970) places undated articles in time; by default, today's date.
    """
    outcome = BatchOutcome()
    if not batch:
        return outcome
    story_shape, dup_shape = story_bands(settings), dup_bands(settings)
    ordered = sorted(batch, key=_assignment_order)
    ids = [p.article.article_id for p in ordered]

    # Corpus statistics, this batch included, turn each article's scores into its vector.
    batch_df = dict(Counter(chain.from_iterable(item.fingerprint.terms.texts() for item in ordered)))
    stored_documents, stored_df = index.document_frequencies(batch_df)
    documents = stored_documents + len(ordered)
    frequencies = {term: count + stored_df.get(term, 0) for term, count in batch_df.items()}
    idf = idf_table(frequencies, documents, settings)
    vectors = {
        p.article.article_id: weighted_vector(p.fingerprint.terms, frequencies, documents, settings, idf)
        for p in ordered
    }
    outcome.vectors = vectors
    outcome.document_frequencies = batch_df

    # Look everything up in the store once, for the whole batch.
    story_keys = {
        p.article.article_id: _keys(p.fingerprint.story_keys, p.fingerprint.story_hashvalues, story_shape) for p in ordered
    }
    dup_keys = {p.article.article_id: _keys(p.fingerprint.dup_keys, p.fingerprint.dup_hashvalues, dup_shape) for p in ordered}
    today = today_number() if today is None else today
    period = {p.article.article_id: lsh_period(p.fingerprint.day, today) for p in ordered}
    probes = {article_id: (own - 1, own, own + 1) for article_id, own in period.items()}
    stored_hashes = index.originals_by_content_hash(list({p.article.content_hash for p in ordered}))
    # Near-duplicate keys, grouped by the periods they are probed in (a batch spans few). An
    # identical copy (its content stored, or earlier in the batch) is matched by its content
    # hash and probes nothing: 15% of the 100k benchmark's increment, whose probes are ~65,000
    # index seeks into a large database.
    dup_groups: dict[tuple[int, ...], set[int]] = {}
    hashes = set(stored_hashes)
    for item in ordered:
        if item.article.content_hash in hashes:
            continue
        hashes.add(item.article.content_hash)
        article_id = item.article.article_id
        dup_groups.setdefault(probes[article_id], set()).update(dup_keys[article_id])
    stored_dup = index.lsh_matches(DUP_LEVEL, list(dup_groups.items()))
    stored_ids = {a for found in stored_dup.values() for a in found} | set(stored_hashes.values())
    known: dict[str, IndexedArticle] = dict(index.indexed_articles(stored_ids, with_text=False))
    batch_dup: dict[int, list[str]] = {}
    for article_id in ids:
        for key in dup_keys[article_id]:
            batch_dup.setdefault(key, []).append(article_id)
            outcome.band_rows.append((DUP_LEVEL, period[article_id], key, article_id))

    # Level 2: near-duplicates, in order, so a copy points at the earliest original.
    duplicate_of, copied = _near_duplicates(
        ordered, index, settings, known, stored_hashes, stored_dup, batch_dup, probes
    )

    # A copy's story is its original's, and its salient terms are its original's too: it neither
    # looks for candidate stories nor is proposed as one (its original is). Into a database that
    # holds the originals of many of a batch's copies (a third of the 100k benchmark's increment),
    # this leaves their story-level lookups and verification out.
    originals = [article_id for article_id in ids if article_id not in duplicate_of]
    # Story-level buckets hold story ids, most recent last, at most `story_bucket_cap` of them:
    # a bucket that very common terms land in says little about any one story, and the cap
    # keeps a lookup's cost flat as the database grows.
    # (Key order does not matter to a lookup: SQLite sorts an IN list itself.)
    stored_story = index.story_buckets(list({(STORY_PERIOD, k) for a in originals for k in story_keys[a]}))
    # Each article's candidate stories, by the number of LSH bands that propose them: the true
    # story shares many bands, a look-alike one or two, so the best few are all worth verifying.
    candidate_stories: dict[str, list[int]] = {}
    cap = settings.story_bucket_cap
    for article_id in originals:
        keys = story_keys[article_id]
        votes = Counter(chain.from_iterable(stored_story.get((STORY_PERIOD, key), ())[-cap:] for key in keys))
        candidate_stories[article_id] = _best_voted(votes, settings.story_candidates, settings.story_candidate_share)
    anchors = {known[match].story_id for match in copied.values() if match in known}
    states = index.story_states({s for found in candidate_stories.values() for s in found} | anchors)
    stored_sizes = {story_id: state.members for story_id, state in states.items()}
    # Stories an editor split apart (`newsdedup split`) never merge again.
    apart = index.kept_apart(states) if len(states) > 1 else set()
    batch_story: dict[int, list[str]] = {}
    for article_id in originals:
        for key in story_keys[article_id]:
            batch_story.setdefault(key, []).append(article_id)

    # Level 3: average-linkage clustering over candidate pairs.
    clusters = _Clusters()
    for story_id, state in states.items():
        clusters.add(("story", story_id), state, {story_id})
    for item in ordered:
        article_id = item.article.article_id
        day = item.fingerprint.day
        clusters.add(article_id, StoryState(0, dict(vectors[article_id]), 1, day, day), set())
    by_id = {p.article.article_id: p for p in ordered}
    for article_id, match in copied.items():
        # Join the story of the article actually matched (its original, further back, may not
        # have been looked up; both are in one story).
        anchor = match if match in by_id else ("story", known[match].story_id)
        clusters.union(article_id, anchor)

    neighbours: dict[object, set[object]] = {key: set() for key in clusters.parent}
    for article_id in originals:
        neighbours[article_id].update(("story", story_id) for story_id in candidate_stories[article_id])
        votes = Counter(chain.from_iterable(batch_story[key] for key in story_keys[article_id]))
        del votes[article_id]
        neighbours[article_id].update(_best_voted(votes, settings.story_candidates, settings.story_candidate_share))
    for key, linked in list(neighbours.items()):
        for other in linked:
            neighbours[other].add(key)
    roots: dict[object, set[object]] = {}
    for key, linked in neighbours.items():
        root = clusters.find(key)
        roots.setdefault(root, set()).update(clusters.find(other) for other in linked)
    for root, linked in roots.items():
        linked.discard(root)

    _agglomerate(clusters, roots, settings, apart)

    # Name the resulting stories: a cluster holding stored stories keeps the largest one's id.
    next_id = index.next_story_id()
    story_of_root: dict[object, int] = {}
    for article_id in ids:
        root = clusters.find(article_id)
        if root in story_of_root:
            continue
        stored = clusters.stored[root]
        if stored:
            keep = min(stored, key=lambda s: (-stored_sizes[s], s))
            for other in sorted(stored - {keep}):
                outcome.merges.append((other, keep))
                log.info("merged story %s into story %s", other, keep)
            story_of_root[root] = keep
        else:
            story_of_root[root] = next_id
            outcome.new_stories.add(next_id)
            next_id += 1
    for root, story_id in story_of_root.items():
        state = clusters.state[root]
        state.story_id = story_id
        state.trim()
        outcome.states[story_id] = state
        outcome.touched.add(story_id)
    additions: dict[tuple[int, int], list[int]] = {}
    for article_id in ids:
        story_id = story_of_root[clusters.find(article_id)]
        if article_id not in duplicate_of:
            # A copy's salient terms are its original's: its keys would only repeat them.
            for key in story_keys[article_id]:
                additions.setdefault((STORY_PERIOD, key), []).append(story_id)
        state = outcome.states[story_id]
        vector = vectors[article_id]
        similarity = sparse_dot(vector, state.vector_sum) / state.members
        outcome.assignments.append(
            Assignment(
                article_id, story_id, duplicate_of.get(article_id), round(min(1.0, similarity), 4),
                story_id in outcome.new_stories,
            )
        )
    # Each bucket keeps its `cap` most recently added stories (a story added again moves last).
    merged_into = dict(outcome.merges)
    for key, added in additions.items():
        stored = stored_story.get(key, [])
        named = stored if merged_into.keys().isdisjoint(stored) else [merged_into.get(s, s) for s in stored]
        bucket = latest_stories(named + added, cap)
        # Most keys of a grown story already end with it: rewriting them would only dirty pages.
        if bucket != stored:
            outcome.story_buckets[key] = bucket
    return outcome


def _near_duplicates(
    ordered: Sequence[Prepared],
    index: StoryIndex,
    settings: MatchingSettings,
    known: dict[str, IndexedArticle],
    stored_hashes: dict[str, str],
    stored_dup: dict[tuple[int, int], list[str]],
    batch_dup: dict[int, list[str]],
    probes: dict[str, tuple[int, ...]],
) -> tuple[dict[str, str], dict[str, str]]:
    """For each new article that copies another (identical content, or verified shingle Jaccard):
    the original it points at, and the article it matched (the same, or a copy of the original)."""
    candidates_of = _dup_candidates([p.article.article_id for p in ordered], stored_dup, batch_dup, probes)
    signatures = {p.article.article_id: p.fingerprint.dup_hashvalues for p in ordered}
    texts = {p.article.article_id: p.article.norm_text for p in ordered}
    shingle_cache: dict[str, frozenset[str]] = {}
    first_with_hash: dict[str, str] = {}
    found: dict[str, str] = {}
    matched: dict[str, str] = {}

    def shingle_set(article_id: str) -> frozenset[str]:
        if article_id not in shingle_cache:
            text = texts.get(article_id)
            if text is None:
                stored = index.indexed_articles([article_id], with_text=True)[article_id]
                text = matching_text(stored.text or "")
            shingle_cache[article_id] = shingles(words(text), settings.shingle_size)
        return shingle_cache[article_id]

    for item in ordered:
        article, fp = item.article, item.fingerprint
        match = first_with_hash.get(article.content_hash) or stored_hashes.get(article.content_hash)
        if match is None:
            best_score = settings.dup_jaccard
            for other_id in sorted(candidates_of[article.article_id]):
                other_signature = signatures.get(other_id) or known[other_id].dup_hashvalues
                estimate = estimated_jaccard(fp.dup_hashvalues, other_signature)
                if estimate < settings.dup_jaccard - _DUP_ESTIMATE_MARGIN:
                    continue
                if estimate >= settings.dup_jaccard + _DUP_CERTAIN_MARGIN:
                    score = estimate
                else:
                    score = jaccard(shingle_set(article.article_id), shingle_set(other_id))
                if score >= best_score:
                    match, best_score = other_id, score
        first_with_hash.setdefault(article.content_hash, article.article_id)
        if match is not None:
            original = found.get(match) or (known[match].duplicate_of if match in known else None) or match
            found[article.article_id] = original
            matched[article.article_id] = match
    return found, matched


def _dup_candidates(
    ids: Sequence[str],
    stored_dup: dict[tuple[int, int], list[str]],
    batch_dup: dict[int, list[str]],
    probes: dict[str, tuple[int, ...]],
) -> dict[str, set[str]]:
    """Each article's near-duplicate candidates (`ids` in assignment order): the stored articles
    in a bucket of one of its band keys in one of its probed periods, and the earlier articles of
    the batch that share a band key with it (a copy points back in time, never forward).

    Gathered from the buckets that hold anything rather than probe by probe: a batch makes
    ~110,000 (period, key) probes and most find nothing; looping over them in Python cost
    ~0.5 s of the writer's ~17 s on the 20,000 corpus."""
    found: dict[str, set[str]] = {article_id: set() for article_id in ids}
    for (period, key), stored in stored_dup.items():
        for article_id in batch_dup.get(key, ()):
            if period in probes[article_id]:
                found[article_id].update(stored)
    position = {article_id: n for n, article_id in enumerate(ids)}
    for members in batch_dup.values():
        if len(members) > 1:
            for later in members[1:]:
                found[later].update(a for a in members if position[a] < position[later])
    return found


def _agglomerate(
    clusters: _Clusters, neighbours: dict[object, set[object]], settings: MatchingSettings,
    apart: set[frozenset[int]] = frozenset(),
) -> None:
    """Merge the best-linked pair of neighbouring clusters first, while its link clears the threshold.

    Two clusters holding stored stories that are `apart` (pairs of story ids) never merge.

    The link of two clusters is their average linkage: the mean cosine over all pairs of their
    members. Members are unit vectors, so that is the dot product of the two vector sums divided
    by both sizes, exact for one sparse dot product; less `time_decay_per_day` for every day
    between their date ranges beyond `time_window_days`.
    """

    def threshold(left: object, right: object) -> float:
        # An article joins a story at `story_similarity`; two stories (two groups of articles,
        # stored or formed in this batch) join only at the stricter `merge_similarity`.
        single = min(clusters.state[left].members, clusters.state[right].members) == 1
        return settings.story_similarity if single else settings.merge_similarity

    heap: list[tuple[float, str, str, object, object, int, int]] = []
    # Ties between equal links break on the keys' text, the same way every run.
    names = {key: repr(key) for key in clusters.parent}
    # Dot products of cluster vector sums, by pair of current clusters. Vector sums add, so after
    # a merge the new cluster's dot with a neighbour is the sum of both parts' dots: each pair of
    # stored stories (centroids of up to _CENTROID_TERMS terms) is multiplied once per batch, not
    # after every merge.
    dots: dict[tuple[object, object], float] = {}

    def pair(left: object, right: object) -> tuple[object, object]:
        return (left, right) if names[left] < names[right] else (right, left)

    def dot(left: object, right: object) -> float:
        key = pair(left, right)
        value = dots.get(key)
        if value is None:
            small, large = clusters.state[left].vector_sum, clusters.state[right].vector_sum
            if len(small) > len(large):
                small, large = large, small
            value = dots[key] = sparse_dot(small, large)
        return value

    def kept_apart(left: object, right: object) -> bool:
        return any(frozenset((a, b)) in apart for a in clusters.stored[left] for b in clusters.stored[right])

    def push(left: object, right: object) -> None:
        if apart and kept_apart(left, right):
            return
        first, second = clusters.state[left], clusters.state[right]
        gap = time_gap_days(first, second, settings.time_window_days)
        link = dot(left, right) / (first.members * second.members) - settings.time_decay_per_day * gap
        if link >= threshold(left, right):
            heapq.heappush(
                heap, (-link, names[left], names[right], left, right, clusters.version[left], clusters.version[right])
            )

    for left, linked in neighbours.items():
        for right in linked:
            if names[left] < names[right]:
                push(left, right)
    while heap:
        _, _, _, left, right, left_version, right_version = heapq.heappop(heap)
        if left not in clusters.state or right not in clusters.state:
            continue
        if clusters.version[left] != left_version or clusters.version[right] != right_version:
            continue
        others = {clusters.find(n) for n in neighbours.get(left, set()) | neighbours.get(right, set())}
        others -= {left, right}
        merged_dots = {other: dot(left, other) + dot(right, other) for other in others}
        keep = clusters.union(left, right)
        neighbours.pop(right if keep == left else left, None)
        neighbours[keep] = others
        for other in others:
            dots[pair(keep, other)] = merged_dots[other]
            neighbours.setdefault(other, set()).add(keep)
            push(keep, other)


@dataclass(frozen=True)
class Member:
    """A story member as the canonical rule sees it."""

    article_id: str
    day: int | None
    published: str | None
    duplicate_of: str | None
    length: int
    titled: bool = True


# Reports published within this many days of a story's first report count as "early".
_EARLY_DAYS = 1


def first_original_day(members: Sequence[Member]) -> int | None:
    """The day the early-report window of `canonical_member` starts from: the earliest dated
    original (or, in a story of copies only, the earliest dated copy)."""
    originals = [m for m in members if m.duplicate_of is None] or list(members)
    days = [m.day for m in originals if m.day is not None]
    return min(days) if days else None


def canonical_member(members: Sequence[Member], first_day: int | None = None) -> str:
    """The story's canonical article: the most complete of its early original reports.

    Early reports are the originals (not near-duplicates) published within a day of the story's
    first dated original, plus undated originals (nothing says they came later). Of those the
    most complete wins: one with a headline before one without, then the longest; ties go to
    the earliest, then to the smallest id. Near-duplicates are considered only when a story
    has no original.

    `first_day` gives the window's start when `members` are only part of the story (the
    current canonical plus new arrivals); by default it is `first_original_day(members)`.
    """
    originals = [m for m in members if m.duplicate_of is None] or list(members)
    first = first_original_day(members) if first_day is None else first_day
    if first is not None:
        pool = [m for m in originals if m.day is None or m.day - first <= _EARLY_DAYS]
    else:
        pool = originals
    return min(pool, key=lambda m: (not m.titled, -m.length, m.published or "", m.article_id)).article_id
