"""The records that move between stages: small, frozen, and free of third-party objects."""

from __future__ import annotations

import re
import sys
from array import array
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping


@dataclass(frozen=True)
class RawDocument:
    """One input as it was read: a file, a JSON Lines record or a fetched page.

    `ref` names the input for people and for replay (a relative path, `path:N` for
    line N of a JSON Lines file, or a URL). `kind` is "text", "html" or "record";
    a record carries its already-parsed JSON object in `fields`.
    """

    ref: str
    kind: str
    body: bytes | str = b""
    url: str | None = None
    fields: Mapping[str, object] = field(default_factory=dict)
    source_path: str | None = None


@dataclass(frozen=True)
class Article:
    """A news article ready for matching; `text` is kept as published, `norm_text` is for matching."""

    article_id: str
    external_id: str
    url: str | None
    title: str | None
    source: str | None
    published: str | None  # ISO 8601 date or datetime, or None when unknown
    text: str
    norm_text: str
    content_hash: str
    extra: Mapping[str, object] = field(default_factory=dict)
    # For an input known only by its file (no URL, no id of its own): the file's name (for a
    # JSON Lines record, without its line number). The same file reached by another path
    # (`seeds/`, `seeds/a.txt`, `/abs/seeds/a.txt`), or the same record moved to another line
    # of a re-exported file, has another `external_id` but this same name, so the writer can
    # tell it is already stored (see `file_identity`).
    local_name: str | None = None


def file_name(external_id: str) -> str:
    """The name part of a file-derived `external_id`: its last path component."""
    return external_id.rsplit("/", 1)[-1]


# `feed.jsonl:7`: line 7 of a JSON Lines file, as sources.jsonl_documents names it.
_JSON_LINES_LINE = re.compile(r"\.(?:jsonl|ndjson)(?:\.gz)?:\d+$")


def record_file(external_id: str) -> str:
    """The file an input known only by its file came from: its name, without the line number
    of a JSON Lines line. The same record on another line of a re-exported file is the same
    article (`Article.local_name`)."""
    name = file_name(external_id)
    return name.rsplit(":", 1)[0] if _JSON_LINES_LINE.search(name) else name


def file_identity(
    content_hash: str, name: str, title: str | None, source: str | None, published: str | None
) -> tuple[str, str, str | None, str | None, str | None]:
    """What makes two inputs known only by their file one article: the file's name (see
    `record_file`), the content, and the title, outlet and date they carry (two records of
    one export with the same text from two outlets are two articles)."""
    return (content_hash, name, title, source, published)


@dataclass(frozen=True)
class ScoredTerms:
    """An article's scored terms, best first, kept packed: one joined string, one float64 array.

    Each prepared article carries 200 of them, and a batch waits in memory until the single
    writer takes it (several batches at once, see ingest.py). As a tuple of (str, float) pairs
    they took ~27 KB an article and ~600 objects for the writer to unpickle; packed they are
    ~3 KB and two objects, unpacked with C-level calls by the one stage that reads them.
    Iterating gives the (term, score) pairs; equality is exact, signed zeros included.
    """

    joined: str = ""
    packed: bytes = b""

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, float]]) -> "ScoredTerms":
        pairs = list(pairs)
        return cls(*pack_terms([term for term, _ in pairs], [score for _, score in pairs]))

    def texts(self) -> list[str]:
        return _split(self.joined)

    def scores(self) -> list[float]:
        return _unpacked("d", self.packed)

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return zip(self.texts(), self.scores())

    def __len__(self) -> int:
        return len(self.packed) // 8


@dataclass(frozen=True)
class Fingerprint:
    """What matching needs of one article.

    `story_hashvalues` is a MinHash of the salient-term set, `dup_hashvalues` a MinHash of the
    word-shingle set; both are datasketch-compatible (`scheme`, `num_perm`, `seed`).
    `terms` are the article's best terms scored against general use in its `language` (term,
    score), best first, packed (`ScoredTerms`); the story stage turns them into a unit vector with corpus
    statistics.
    """

    article_id: str
    content_hash: str
    scheme: str
    num_perm: int
    seed: int
    story_hashvalues: bytes  # little-endian uint32 hash values
    dup_hashvalues: bytes
    terms: ScoredTerms
    salient_terms: tuple[str, ...]
    day: int | None  # days since 1970-01-01 of the publication date, None when unknown
    story_keys: tuple[int, ...] = ()  # LSH band keys of story_hashvalues (fingerprint.band_keys)
    dup_keys: tuple[int, ...] = ()  # LSH band keys of dup_hashvalues
    language: str = "en"  # whose word frequencies weighed the terms (pipeline/language.py)

    def __reduce__(self) -> tuple:
        # Pickled packed: every prepared batch crosses a process boundary (workers to the writer,
        # Prefect's result cache), and as plain tuples a fingerprint is ~100 Python objects
        # (30 salient terms, 73 keys) that the single writer must rebuild one by one. Packed,
        # they are one string and two int64 arrays, unpacked with C-level calls (the scored
        # terms are packed already).
        return (
            _fingerprint_from_wire,
            (
                self.article_id, self.content_hash, self.scheme, self.num_perm, self.seed,
                self.story_hashvalues, self.dup_hashvalues,
                self.terms.joined, self.terms.packed,
                TERM_SEPARATOR.join(self.salient_terms), self.day,
                _packed("q", self.story_keys), _packed("q", self.dup_keys), self.language,
            ),
        )


# Joins terms wherever they are packed into one string (fingerprints on the wire, story and
# article vectors in the store); never part of a term: terms are runs of letters, digits and
# inner punctuation, never empty.
TERM_SEPARATOR = "\x1f"


def little_endian(values: array) -> array:
    """`values` in the packed byte order (little-endian), swapped in place on a big-endian host."""
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _packed(code: str, values) -> bytes:
    """`values` as a little-endian array of `code` ("d": float64, "q": int64), whatever the host."""
    return little_endian(array(code, values)).tobytes()


def _unpacked(code: str, data: bytes) -> list:
    values = array(code)
    values.frombytes(data)
    return little_endian(values).tolist()


def pack_terms(terms: Iterable[str], weights: Iterable[float]) -> tuple[str, bytes]:
    """Terms and their weights as one joined string and one float64 array: exact, and four to
    ten times faster to write and read than JSON."""
    return TERM_SEPARATOR.join(terms), _packed("d", weights)


def unpack_terms(joined: str, packed: bytes) -> Iterator[tuple[str, float]]:
    """The (term, weight) pairs `pack_terms` packed, in order."""
    return zip(_split(joined), _unpacked("d", packed))


def _split(joined: str) -> list[str]:
    return joined.split(TERM_SEPARATOR) if joined else []


def _fingerprint_from_wire(
    article_id: str, content_hash: str, scheme: str, num_perm: int, seed: int, story_hashvalues: bytes,
    dup_hashvalues: bytes, terms: str, scores: bytes, salient: str, day: int | None, story_keys: bytes,
    dup_keys: bytes, language: str = "en",
) -> "Fingerprint":
    return Fingerprint(
        article_id, content_hash, scheme, num_perm, seed, story_hashvalues, dup_hashvalues,
        ScoredTerms(terms, scores), tuple(_split(salient)), day,
        tuple(_unpacked("q", story_keys)), tuple(_unpacked("q", dup_keys)), language,
    )


@dataclass(frozen=True)
class Prepared:
    """An article with its fingerprint: the unit that story assignment consumes."""

    article: Article
    fingerprint: Fingerprint


@dataclass(frozen=True)
class Rejected:
    """An input that could not be stored, with the stage that refused it and why."""

    ref: str
    stage: str
    reason: str
    detail: str = ""
    input: str = ""  # the file or URL it came from, so it can be replayed
    # The id its article would have had, when the input was read and only a rule about its text
    # refused it (too short): an article stored under that id by an earlier run, under other
    # settings, is the same input, and counts as unchanged rather than rejected.
    article_id: str = ""


@dataclass(frozen=True)
class Assignment:
    """Where one new article went: its story, and what it copies if it is a near-duplicate."""

    article_id: str
    story_id: int
    duplicate_of: str | None
    similarity: float
    new_story: bool


@dataclass(frozen=True)
class PreparedBatch:
    """The output of the CPU-heavy stages for one batch of inputs."""

    prepared: tuple[Prepared, ...]
    rejected: tuple[Rejected, ...]
    inputs: int
    # (ref, input) of every input that became an article (new or already stored): earlier
    # rejects of these inputs are resolved and leave the rejects table.
    accepted: tuple[tuple[str, str], ...] = ()
    # (ref, input) of each of `prepared`, in its order: what a reject of that article is keyed by
    # when the writer refuses it (an article removed with `newsdedup remove`).
    prepared_refs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FeedEntry:
    """One link found in a feed or sitemap (or a page URL given directly), before it is fetched.

    `published` and `title` come from the feed; the page's own date wins when it has one.
    """

    url: str
    title: str | None = None
    published: str | None = None
    listing: str | None = None  # the feed or sitemap it was found in


@dataclass(frozen=True)
class Fetched:
    """One HTTP response that passed every check: final URL after redirects, decoded body.

    `not_modified` is set when a conditional request came back 304 (then `body` is empty).
    """

    url: str
    requested_url: str
    status: int
    body: bytes
    content_type: str | None = None
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


@dataclass(frozen=True)
class Listing:
    """What a feed or sitemap lists: page entries, and (for a sitemap index) further sitemaps."""

    kind: str  # "rss", "atom", "rdf", "json", "sitemap" or "sitemapindex"
    entries: tuple[FeedEntry, ...] = ()
    sitemaps: tuple[str, ...] = ()
    title: str | None = None
