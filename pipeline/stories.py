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

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import numpy as np
import xxhash
from datasketch import MinHashLSH

from .fingerprint import cosine, hashvalues, jaccard, shingles
from .models import Assignment, Prepared
from .normalize import matching_text, words
from .settings import MatchingSettings

log = logging.getLogger(__name__)

STORY_LEVEL = "story"
DUP_LEVEL = "dup"
# A story's centroid keeps this many terms; beyond it, the tail adds nothing to a cosine.
_CENTROID_TERMS = 400
# Estimated Jaccard (from the MinHash) below which a near-duplicate candidate is not worth an
# exact check: 128 permutations estimate Jaccard to within about 0.09 at two standard errors.
_DUP_ESTIMATE_MARGIN = 0.1


@functools.lru_cache(maxsize=16)
def lsh_bands(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    """(bands, rows) chosen by datasketch's optimiser for this threshold and FP/FN weighting."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def band_keys(packed: bytes, bands: int, rows: int) -> list[int]:
    """The LSH bucket keys of a signature: one signed 64-bit key per band (band number mixed in)."""
    values = hashvalues(packed)
    keys = []
    for band in range(bands):
        chunk = values[band * rows : (band + 1) * rows].tobytes()
        key = xxhash.xxh64_intdigest(chunk, seed=band)
        keys.append(key - (1 << 64) if key >= (1 << 63) else key)
    return keys


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
        if len(self.vector_sum) > _CENTROID_TERMS * 2:
            self.vector_sum = dict(
                sorted(self.vector_sum.items(), key=lambda item: -item[1])[:_CENTROID_TERMS]
            )
        self.members += 1
        if day is not None:
            self.first_day = day if self.first_day is None else min(self.first_day, day)
            self.last_day = day if self.last_day is None else max(self.last_day, day)

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

    def lsh_matches(self, level: str, keys: Sequence[int]) -> dict[int, list[str]]: ...

    def originals_by_content_hash(self, hashes: Sequence[str]) -> dict[str, str]: ...

    def indexed_articles(self, article_ids: Iterable[str], with_text: bool) -> dict[str, IndexedArticle]: ...

    def story_states(self, story_ids: Iterable[int]) -> dict[int, StoryState]: ...

    def next_story_id(self) -> int: ...


@dataclass
class BatchOutcome:
    """What assigning one batch decided: to be written by the store in one transaction."""

    assignments: list[Assignment] = field(default_factory=list)
    band_rows: list[tuple[str, int, str]] = field(default_factory=list)  # (level, key, article_id)
    states: dict[int, StoryState] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (absorbed, into)
    touched: set[int] = field(default_factory=set)
    new_stories: set[int] = field(default_factory=set)


def time_gap_days(day: int | None, state: StoryState, window: int) -> int:
    """Days between `day` and the story's date range, beyond the tolerance window (0 if unknown)."""
    if day is None or state.first_day is None or state.last_day is None:
        return 0
    if day < state.first_day:
        gap = state.first_day - day
    elif day > state.last_day:
        gap = day - state.last_day
    else:
        return 0
    return max(0, gap - window)


def story_similarity(terms: dict[str, float], day: int | None, state: StoryState, settings: MatchingSettings) -> float:
    """How well an article fits a story: its mean cosine to the story's members, less a time penalty."""
    if state.members == 0:
        return 0.0
    mean_cosine = sum(weight * state.vector_sum.get(term, 0.0) for term, weight in terms.items()) / state.members
    gap = time_gap_days(day, state, settings.time_window_days)
    return mean_cosine - settings.time_decay_per_day * gap


def centroid_similarity(left: StoryState, right: StoryState, settings: MatchingSettings) -> float:
    """How alike two stories are: the cosine of their centroids, less a time penalty."""
    similarity = cosine(left.vector_sum, right.vector_sum)
    if left.first_day is None or right.first_day is None:
        return similarity
    gap = max(0, max(left.first_day, right.first_day) - min(left.last_day or 0, right.last_day or 0))
    return similarity - settings.time_decay_per_day * max(0, gap - settings.time_window_days)


def _assignment_order(item: Prepared) -> tuple[int, str]:
    # Earliest first, so a story's first report is assigned before its follow-ups; undated last.
    day = item.fingerprint.day
    return (day if day is not None else 1 << 30, item.article.article_id)


def assign_batch(batch: Sequence[Prepared], index: StoryIndex, settings: MatchingSettings) -> BatchOutcome:
    """Assign each new article of a batch to a story, noting near-duplicates, then merge stories that meet.

    `batch` must hold only articles not yet stored. The result is a plan; nothing is written.
    """
    outcome = BatchOutcome()
    story_bands, story_rows = lsh_bands(
        settings.story_lsh_threshold, settings.num_perm, tuple(settings.story_lsh_weights)
    )
    dup_bands, dup_rows = lsh_bands(settings.dup_lsh_threshold, settings.num_perm, (0.5, 0.5))
    ordered = sorted(batch, key=_assignment_order)

    # Look everything up in the store once, for the whole batch.
    story_keys = {p.article.article_id: band_keys(p.fingerprint.story_hashvalues, story_bands, story_rows) for p in ordered}
    dup_keys = {p.article.article_id: band_keys(p.fingerprint.dup_hashvalues, dup_bands, dup_rows) for p in ordered}
    stored_story = index.lsh_matches(STORY_LEVEL, sorted({k for keys in story_keys.values() for k in keys}))
    stored_dup = index.lsh_matches(DUP_LEVEL, sorted({k for keys in dup_keys.values() for k in keys}))
    stored_hashes = index.originals_by_content_hash(sorted({p.article.content_hash for p in ordered}))
    stored_ids = {a for ids in stored_story.values() for a in ids} | {a for ids in stored_dup.values() for a in ids}
    stored_ids |= set(stored_hashes.values())
    known: dict[str, IndexedArticle] = dict(index.indexed_articles(stored_ids, with_text=False))
    states: dict[int, StoryState] = index.story_states({a.story_id for a in known.values()})
    next_id = index.next_story_id()

    batch_story: dict[int, list[str]] = {}
    batch_dup: dict[int, list[str]] = {}
    batch_hashes: dict[str, str] = {}
    shingle_cache: dict[str, frozenset[str]] = {}
    batch_texts: dict[str, str] = {}
    redirect: dict[int, int] = {}  # merged story -> surviving story

    def live(story_id: int) -> int:
        while story_id in redirect:
            story_id = redirect[story_id]
        return story_id

    def shingle_set(article_id: str, text: str | None) -> frozenset[str]:
        if article_id not in shingle_cache:
            if text is None:
                fetched = index.indexed_articles([article_id], with_text=True)[article_id]
                text = matching_text(fetched.text or "")
            shingle_cache[article_id] = shingles(words(text), settings.shingle_size)
        return shingle_cache[article_id]

    candidate_stories_of: dict[str, set[int]] = {}
    for item in ordered:
        article, fp = item.article, item.fingerprint
        terms = dict(fp.terms)
        story_id: int | None = None
        duplicate_of: str | None = None
        similarity = 1.0

        # Level 2: identical content, then near-duplicates.
        matched = batch_hashes.get(article.content_hash) or stored_hashes.get(article.content_hash)
        if matched is None:
            candidates: set[str] = set()
            for key in dup_keys[article.article_id]:
                candidates.update(stored_dup.get(key, ()))
                candidates.update(batch_dup.get(key, ()))
            best_score = settings.dup_jaccard
            own: frozenset[str] | None = None
            for other_id in sorted(candidates):
                other = known[other_id]
                estimate = estimated_jaccard(fp.dup_hashvalues, other.dup_hashvalues)
                if estimate < settings.dup_jaccard - _DUP_ESTIMATE_MARGIN:
                    continue
                own = own if own is not None else shingle_set(article.article_id, article.norm_text)
                score = jaccard(own, shingle_set(other_id, batch_texts.get(other_id)))
                if score >= best_score:
                    matched, best_score = other_id, score
        if matched is not None:
            duplicate_of = known[matched].duplicate_of or matched
            story_id = live(known[matched].story_id)

        # Level 3: the story, verified against each candidate story as a whole.
        candidate_articles: set[str] = set()
        for key in story_keys[article.article_id]:
            candidate_articles.update(stored_story.get(key, ()))
            candidate_articles.update(batch_story.get(key, ()))
        candidate_stories = {live(known[a].story_id) for a in candidate_articles}
        candidate_stories_of[article.article_id] = candidate_stories
        if story_id is None:
            best_story, best_similarity = None, settings.story_similarity
            for candidate in sorted(candidate_stories):
                score = story_similarity(terms, fp.day, states[candidate], settings)
                if score >= best_similarity:
                    best_story, best_similarity = candidate, score
            if best_story is not None:
                story_id, similarity = best_story, best_similarity
        if story_id is None:
            story_id = next_id
            next_id += 1
            states[story_id] = StoryState(story_id, {}, 0, None, None)
            outcome.new_stories.add(story_id)
        else:
            similarity = story_similarity(terms, fp.day, states[story_id], settings) if duplicate_of is None else 1.0

        states[story_id].add(terms, fp.day)
        outcome.touched.add(story_id)
        outcome.assignments.append(
            Assignment(article.article_id, story_id, duplicate_of, round(max(0.0, similarity), 4), story_id in outcome.new_stories)
        )
        known[article.article_id] = IndexedArticle(article.article_id, story_id, duplicate_of, fp.dup_hashvalues)
        batch_texts[article.article_id] = article.norm_text
        batch_hashes.setdefault(article.content_hash, article.article_id)
        for key in story_keys[article.article_id]:
            batch_story.setdefault(key, []).append(article.article_id)
            outcome.band_rows.append((STORY_LEVEL, key, article.article_id))
        for key in dup_keys[article.article_id]:
            batch_dup.setdefault(key, []).append(article.article_id)
            outcome.band_rows.append((DUP_LEVEL, key, article.article_id))

    # Deliberate merges: a story this batch touched joins another only if their centroids agree.
    for story_id in sorted(outcome.touched):
        story_id = live(story_id)
        neighbours = {
            live(s)
            for a in outcome.assignments
            if live(a.story_id) == story_id
            for s in candidate_stories_of[a.article_id]
        } - {story_id}
        for other in sorted(neighbours):
            other = live(other)
            if other == story_id:
                continue
            if centroid_similarity(states[story_id], states[other], settings) < settings.merge_similarity:
                continue
            keep, drop = sorted((story_id, other), key=lambda s: (-states[s].members, s))
            states[keep].absorb(states.pop(drop))
            redirect[drop] = keep
            outcome.merges.append((drop, keep))
            log.info("merged story %s into story %s", drop, keep)
            story_id = keep

    outcome.assignments = [
        Assignment(a.article_id, live(a.story_id), a.duplicate_of, a.similarity, a.new_story)
        for a in outcome.assignments
    ]
    outcome.touched = {live(s) for s in outcome.touched}
    outcome.new_stories = {live(s) for s in outcome.new_stories} - {d for d, _ in outcome.merges}
    outcome.states = {s: states[s] for s in outcome.touched}
    return outcome


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


def canonical_member(members: Sequence[Member]) -> str:
    """The story's canonical article: the most complete of its early original reports.

    Early reports are the originals (not near-duplicates) published within a day of the story's
    first dated original, plus undated originals (nothing says they came later). Of those the
    most complete wins: one with a headline before one without, then the longest; ties go to
    the earliest, then to the smallest id. Near-duplicates are considered only when a story
    has no original.
    """
    originals = [m for m in members if m.duplicate_of is None] or list(members)
    dated = [m for m in originals if m.day is not None]
    if dated:
        first = min(m.day for m in dated if m.day is not None)
        pool = [m for m in originals if m.day is None or m.day - first <= _EARLY_DAYS]
    else:
        pool = originals
    return min(pool, key=lambda m: (not m.titled, -m.length, m.published or "", m.article_id)).article_id
