"""Web sources: page URLs, feeds and sitemaps (fetched or from files) to raw documents.

The work is split so that a runner can put network I/O in retryable tasks and keep parsing
apart: `expand` turns locations into `FeedEntry`s (fetching listings through the `get` it is
given), `fetch_page` fetches one entry, `outcome` turns a fetch that kept failing into a
reject. `documents` runs all of it in-process with its own retries, for library use and the
`--engine local` path. Entries whose URL is already stored are skipped before any fetch.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from . import feeds, fetch
from .errors import BadInputError, ContentTypeError, TooLargeError, TransientFetchError
from .models import FeedEntry, Fetched, Listing, RawDocument, Rejected
from .remove import STAGE as REMOVED_STAGE
from .remove import refusal_reason, removed_urls
from .settings import PROJECT_ROOT, Settings, SourceConfig
from .sources import LISTING_SUFFIXES, is_url, missing_locations, read_capped
from .store import open_store

log = logging.getLogger(__name__)

STAGE_FEED = feeds.STAGE
STAGE_FETCH = fetch.STAGE
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Types a server may send for a page it did not label well; the bytes then decide.
_UNLABELLED_TYPES = frozenset({"application/octet-stream", "text/plain"})
_ACCEPT_PAGE = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
_ACCEPT_LISTING = (
    "application/rss+xml,application/atom+xml,application/feed+json,application/xml;q=0.9,"
    "text/xml;q=0.9,application/json;q=0.8,text/html;q=0.5,*/*;q=0.1"
)
WEB_KINDS = ("feed", "sitemap", "page")

# (url, etag, last_modified) -> the response; raises BadInputError or TransientFetchError.
Getter = Callable[[str, "str | None", "str | None"], Fetched]


def link_key(url: str) -> str:
    """The form of a link used to fetch it and to know it again: courlan-normalised, no fragment.

    courlan's non-strict mode drops tracking parameters (utm_*, fbclid, session ids) but keeps
    the rest; strict mode also drops parameters such as `?article=55`, which would make every
    article of such a site one URL.
    """
    url = url.strip()
    try:
        from courlan import normalize_url

        url = normalize_url(url) or url
    except Exception:  # courlan raises assorted errors on odd URLs; the plain form is still usable
        pass
    return urlsplit(url)._replace(fragment="").geturl()


def is_listing_file(location: str) -> bool:
    return location.lower().endswith(LISTING_SUFFIXES)


def split_locations(paths: Sequence[str], kind: str | None = None) -> tuple[list[str], list[str]]:
    """(files and directories for `sources.discover`, URLs and feed/sitemap files for `expand`)."""
    kind = kind if kind in WEB_KINDS else None  # "directory" and "file" sources read as files do
    local: list[str] = []
    web: list[str] = []
    for path in paths:
        if is_url(path) or (kind in ("feed", "sitemap")) or (kind is None and is_listing_file(path)):
            web.append(path)
        else:
            local.append(path)
    return local, web


def source_location(source: SourceConfig) -> str:
    """Where a configured source is: its URL, or its path resolved against the project."""
    if is_url(source.location) or Path(source.location).is_absolute():
        return source.location
    return str(PROJECT_ROOT / source.location)


def missing_sources(sources: Sequence[SourceConfig]) -> list[str]:
    """A warning for each enabled local source whose location does not exist now: its runs
    will fail until it does (a directory not mounted yet, a typo in the sources file)."""
    warnings = []
    for source in sources:
        location = source_location(source)
        if source.enabled and missing_locations([location]):
            warnings.append(
                f"source '{source.name}': {location} does not exist; its runs fail until it does "
                "(check its location in the sources file)"
            )
    return warnings


@dataclass
class CrawlState:
    """What a run over web sources remembers: known URLs, listing validators, counts."""

    db_path: str | Path
    busy_timeout_s: float = 120.0
    pages: int = 0  # page fetches attempted
    pages_failed: int = 0  # of those, the ones that got no page (unreachable, HTTP errors, refused)
    listings: int = 0  # feeds and sitemaps read (fetched or from files), or answered 'not modified' (a page that is not one: not counted)
    known: int = 0
    not_modified: list[str] = field(default_factory=list)
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # A listing with a link that failed for now keeps no validators, or a 304 next time would
    # hide that link until the listing changes; a sitemap index goes with its sitemaps.
    incomplete: set[str] = field(default_factory=set)
    parents: dict[str, str] = field(default_factory=dict)
    # Links fetched even when known: rejected pages replayed by `ingest --retry-rejects`.
    refetch: frozenset[str] = frozenset()
    # Feeds and sitemaps that answered this run (read, or not modified): a reject recorded for
    # one by an earlier run (unreachable, refused, broken) no longer holds.
    answered: set[str] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)

    def failed_for_now(self, listing: str | None) -> None:
        while listing and listing not in self.incomplete:
            self.incomplete.add(listing)
            listing = self.parents.get(listing)

    def _store(self):
        return open_store(self.db_path, self.busy_timeout_s)

    def listing_validators(self, url: str) -> tuple[str | None, str | None]:
        store = self._store()
        try:
            return store.listing_validators(url)
        finally:
            store.close()

    def fresh(self, entries: Iterable[FeedEntry]) -> list[FeedEntry | Rejected]:
        """The entries worth fetching: canonical URLs, not seen earlier in this run, not stored;
        and a reject for each URL an editor removed (`newsdedup remove`), not fetched either."""
        candidates: list[FeedEntry] = []
        for entry in entries:
            url = link_key(entry.url)
            if url in self._seen:
                continue
            self._seen.add(url)
            candidates.append(FeedEntry(url, entry.title, entry.published, entry.listing))
        store = self._store()
        try:
            known = store.known_urls(e.url for e in candidates) - self.refetch
            removed = removed_urls(store.conn, sorted(known)) if known else {}
        finally:
            store.close()
        fresh: list[FeedEntry | Rejected] = [e for e in candidates if e.url not in known]
        self.known += len(candidates) - len(fresh) - len(removed)
        if len(fresh) < len(candidates):
            log.info("%d of %d links already stored, not fetched again", len(candidates) - len(fresh), len(candidates))
        fresh.extend(
            Rejected(url, REMOVED_STAGE, refusal_reason(found.removed_at, found.reason), "", url)
            for url, found in sorted(removed.items())
        )
        return fresh

    def save_listings(self, run_id: str) -> None:
        """Remember what run `run_id` learnt of its feeds and sitemaps (call once its batches
        are stored): the validators of every listing read in full, and that the listings which
        answered are no longer rejects of earlier runs."""
        kept = {url: pair for url, pair in self.validators.items() if any(pair) and url not in self.incomplete}
        if not kept and not self.answered:
            return
        store = self._store()
        try:
            with store.transaction():
                store.save_listing_validators(kept)
                store.forget_earlier_rejects([(location, location) for location in sorted(self.answered)], run_id)
        finally:
            store.close()


def listing_from(fetched: Fetched, settings: Settings) -> Listing:
    """The feed or sitemap in a response.

    Raises:
        BadInputError: see feeds.listing.
    """
    # A gzipped sitemap is a response like any other: fetch.max_bytes caps what it expands to.
    cap = settings.fetch.max_bytes
    try:
        return feeds.listing(fetched.body, charset=fetched.charset, url=fetched.url, max_decompressed_bytes=cap)
    except TooLargeError:
        raise TooLargeError(f"decompresses to more than {cap:,} bytes (fetch.max_bytes)", fetched.url) from None


def _may_be_listing(content_type: str | None) -> bool:
    """Whether a response of this type may hold a feed or sitemap: XML, JSON or gzip of any
    flavour, or no telling (no type, text/plain, octet-stream); a PDF or an image may not."""
    if content_type is None or content_type in _UNLABELLED_TYPES:
        return True
    return any(word in content_type for word in ("xml", "json", "rss", "atom", "gzip"))


def is_html(fetched: Fetched) -> bool:
    """True when a response is an HTML page, by its type or, when unlabelled, by its first bytes."""
    if fetched.content_type in HTML_TYPES:
        return True
    if fetched.content_type is None or fetched.content_type in _UNLABELLED_TYPES:
        return feeds.looks_like_html(fetched.body)
    return False


_META_CHARSET = re.compile(rb"<meta[^>]+charset", re.IGNORECASE)


def page_text(fetched: Fetched) -> str | bytes:
    """A page's text as the HTML standard orders the clues: byte-order mark, HTTP charset, then the page.

    Bytes with a BOM or a `<meta charset>`, or valid UTF-8, go to trafilatura as they are;
    bytes with none of these are Windows-1252 (a superset of Latin-1), which is what such
    pages nearly always are, rather than left to a guess that reads French as Central European.
    """
    body = fetched.body
    if body.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return body
    if fetched.charset:
        try:
            return body.decode(fetched.charset)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong label: fall through to what the page says
    if _META_CHARSET.search(body[:4096]):
        return body
    try:
        body.decode("utf-8")
        return body
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")


def page_document(fetched: Fetched, entry: FeedEntry) -> RawDocument:
    """The raw HTML document of a fetched page, carrying the feed's title and date as fallbacks.

    Raises:
        ContentTypeError: the response is not an HTML page.
    """
    if not is_html(fetched):
        raise ContentTypeError(
            f"not an HTML page (content type {fetched.content_type or 'unknown'})", fetched.url
        )
    hints = {"published": entry.published, "title": entry.title, "listing": entry.listing}
    return RawDocument(
        ref=entry.url, kind="html", body=page_text(fetched), url=fetched.url,
        fields={key: value for key, value in hints.items() if value},
        # The URL is the input: what `ingest --retry-rejects` fetches again, and the key under
        # which a page now stored settles its earlier reject.
        source_path=entry.url,
    )


def fetch_page(entry: FeedEntry, settings: Settings) -> RawDocument | Rejected:
    """The page an entry links to, or the reason it cannot be had.

    Raises:
        TransientFetchError: the fetch may succeed later; retry it, then call `outcome`.
    """
    try:
        fetched = fetch.fetch(entry.url, settings.fetch, accept=_ACCEPT_PAGE)
        return page_document(fetched, entry)
    except BadInputError as exc:
        return Rejected(entry.url, STAGE_FETCH, exc.reason, exc.detail, entry.url)


def get_listing(url: str, etag: str | None, last_modified: str | None, settings: Settings) -> Fetched:
    """A conditional GET of a feed or sitemap (the `Getter` the runners wrap in retries)."""
    return fetch.fetch(url, settings.fetch, etag=etag, last_modified=last_modified, accept=_ACCEPT_LISTING)


def outcome(entry: FeedEntry, result: object, attempts: int) -> RawDocument | Rejected:
    """A page fetch's final result: the document or reject, or a reject for a fetch that kept failing.

    Any other exception is a bug and is raised again.
    """
    if isinstance(result, (RawDocument, Rejected)):
        return result
    if isinstance(result, TransientFetchError):
        return fetch.unreachable(entry.url, result, attempts)
    if isinstance(result, BaseException):
        raise result
    raise TypeError(f"unexpected fetch result {type(result).__name__}")


def _listing_rejected(location: str, exc: BadInputError) -> Rejected:
    return Rejected(location, STAGE_FEED, exc.reason, exc.detail, location)


def _expand_listing(
    listing: Listing, location: str, settings: Settings, state: CrawlState, get: Getter, depth: int
) -> Iterator[FeedEntry | RawDocument | Rejected]:
    # Entries name the listing as it was asked for (not where it redirected), as validators do.
    yield from state.fresh(replace(entry, listing=location) for entry in listing.entries)
    for sitemap_url in listing.sitemaps:
        if depth >= settings.fetch.max_sitemap_depth:
            yield Rejected(
                sitemap_url, STAGE_FEED,
                f"sitemap nested deeper than {settings.fetch.max_sitemap_depth} levels (fetch.max_sitemap_depth)",
                f"listed in {location}", sitemap_url,
            )
            continue
        state.parents.setdefault(link_key(sitemap_url), location)
        yield from _expand_url(sitemap_url, "sitemap", settings, state, get, depth + 1)


def _expand_url(
    url: str, kind: str | None, settings: Settings, state: CrawlState, get: Getter, depth: int = 0
) -> Iterator[FeedEntry | RawDocument | Rejected]:
    url = link_key(url)
    if kind == "page":
        yield from state.fresh([FeedEntry(url)])
        return
    if kind is None:
        found = state.fresh([FeedEntry(url)])
        if not found:
            return  # an ad-hoc page URL already stored; feeds and sitemaps are never stored as articles
        if isinstance(found[0], Rejected):
            yield found[0]  # a page an editor removed
            return
    etag, modified = state.listing_validators(url)
    try:
        fetched = get(url, etag, modified)
    except TransientFetchError as exc:
        state.failed_for_now(state.parents.get(url))
        yield outcome(FeedEntry(url), exc, settings.fetch.retries + 1)
        return
    except BadInputError as exc:
        yield Rejected(url, STAGE_FETCH, exc.reason, exc.detail, url)
        return
    if kind is None and not fetched.not_modified and is_html(fetched):
        state.pages += 1
        yield page_document(fetched, FeedEntry(url))
        return
    if fetched.not_modified:
        state.listings += 1
        state.answered.add(url)
        log.info("not modified since the last run: %s", url)
        state.not_modified.append(url)
        return
    if kind is None and not _may_be_listing(fetched.content_type):
        # (a QA pass: a PDF's URL was rejected as "not well-formed XML (broken feed or sitemap)")
        yield Rejected(
            url, STAGE_FETCH, f"neither an HTML page nor a feed or sitemap (content type {fetched.content_type})",
            "", url,
        )
        return
    try:
        listing = listing_from(fetched, settings)
    except BadInputError as exc:
        yield _listing_rejected(url, exc)
        return
    state.listings += 1
    state.validators[url] = (fetched.etag, fetched.last_modified)
    state.answered.add(url)
    yield from _expand_listing(listing, url, settings, state, get, depth)


def _expand_file(
    path: str, settings: Settings, state: CrawlState, get: Getter
) -> Iterator[FeedEntry | RawDocument | Rejected]:
    try:
        data = read_capped(Path(path), settings.ingest)
        listing = feeds.listing(data, max_decompressed_bytes=settings.ingest.max_decompressed_bytes)
    except BadInputError as exc:
        yield _listing_rejected(path, exc)
        return
    except OSError as exc:
        yield Rejected(path, STAGE_FEED, "cannot read file", str(exc), path)
        return
    state.listings += 1  # read from a file, not fetched, but read (the summary said "0 feeds read")
    state.answered.add(path)
    yield from _expand_listing(listing, path, settings, state, get, depth=0)


def expand(
    locations: Sequence[str], kind: str | None, settings: Settings, state: CrawlState, get: Getter
) -> Iterator[FeedEntry | RawDocument | Rejected]:
    """The page entries to fetch for `locations` (URLs, feed and sitemap files), known URLs left out.

    `kind` ("feed", "sitemap", "page" or None to tell by the response) applies to every
    location. An ad-hoc URL that turns out to be an HTML page comes back as its RawDocument
    at once, so it is not fetched twice. Listings that cannot be read come back as Rejected.
    """
    kind = kind if kind in WEB_KINDS else None
    for location in locations:
        if is_url(location):
            yield from _expand_url(location, kind, settings, state, get)
        else:
            yield from _expand_file(location, settings, state, get)


def retrying(call: Callable[[], object], settings: Settings) -> object:
    """`call()`, retried on TransientFetchError with exponential backoff, or after the pause the
    server asked for (Retry-After) when that is longer; the last error is returned."""
    delay = settings.fetch.retry_delay_s
    for attempt in range(settings.fetch.retries + 1):
        try:
            return call()
        except TransientFetchError as exc:
            if attempt == settings.fetch.retries:
                return exc
            wait = max(delay, exc.retry_after_s or 0.0)
            log.info("retrying in %.1fs%s: %s", wait, " (Retry-After)" if wait > delay else "", exc)
            time.sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")


def _retrying_get(settings: Settings) -> Getter:
    def get(url: str, etag: str | None, modified: str | None) -> Fetched:
        result = retrying(lambda: get_listing(url, etag, modified, settings), settings)
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[return-value]

    return get


def documents(
    locations: Sequence[str], kind: str | None, settings: Settings, state: CrawlState
) -> Iterator[RawDocument | Rejected]:
    """Every raw document from web `locations`, fetched in this process one at a time, with retries."""
    for item in expand(locations, kind, settings, state, _retrying_get(settings)):
        yield from fetch_chunk(
            [item],
            submit=lambda entry: retrying(lambda: fetch_page(entry, settings), settings),
            result_of=lambda result: result,
            state=state,
            attempts=settings.fetch.retries + 1,
        )



def batched(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size`, lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def fetch_chunk(
    chunk: Sequence[FeedEntry | RawDocument | Rejected],
    submit: Callable[[FeedEntry], object],
    result_of: Callable[[object], object],
    state: CrawlState,
    attempts: int,
    in_flight: int = 1,
) -> list[RawDocument | Rejected]:
    """Every entry of `chunk` fetched through `submit`, at most `in_flight` at a time, results in order.

    `result_of(handle)` gives a fetch's result, or the exception it ended with; a runner
    passes its own task submission here (Prefect futures in flows/ingest.py).
    """
    results: list[RawDocument | Rejected | None] = [None] * len(chunk)
    pending: deque[tuple[int, FeedEntry, object]] = deque()

    def settle() -> None:
        index, entry, handle = pending.popleft()
        result = result_of(handle)
        if isinstance(result, TransientFetchError):
            state.failed_for_now(entry.listing)
        results[index] = settled = outcome(entry, result, attempts)
        if isinstance(settled, Rejected) and settled.stage == STAGE_FETCH:
            state.pages_failed += 1

    for index, item in enumerate(chunk):
        if not isinstance(item, FeedEntry):
            results[index] = item
            continue
        if len(pending) >= max(in_flight, 1):
            settle()
        state.pages += 1
        pending.append((index, item, submit(item)))
    while pending:
        settle()
    assert all(result is not None for result in results), "a fetch lost a record"
    return results  # type: ignore[return-value]
