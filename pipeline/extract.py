"""Raw documents to Articles: text files, HTML pages (trafilatura) and JSON Lines records."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import urlsplit

from .errors import DecodeError, EmptyInputError, NoArticleError, ParseError, TooLargeError
from .fingerprint import content_hash
from .models import Article, RawDocument, record_file
from .normalize import count_words, date_marker, display_text, matching_text, without_lone_surrogates
from .report import plural
from .settings import IngestSettings
from .sources import decode_text

log = logging.getLogger(__name__)

STAGE = "extract"
# A first line longer than this is the start of the body, not a headline.
_MAX_TITLE_WORDS = 30
# Publication dates further in the future than this are clock or parsing errors.
_FUTURE_SLACK = timedelta(days=2)
# trafilatura's precision mode now and then keeps only a fragment of an article (a Barron's
# page of the evaluation set: 24 words where the default mode finds 486). A text this short is
# extracted again in the default mode, which wins when it finds this many times as many words;
# on the 181 evaluation pages no page where precision mode was right came near that ratio
# (the closest: 67 words against 106). See docs/extraction.md.
_PRECISION_RECHECK_WORDS = 100
_PRECISION_LOSS_RATIO = 3
# The fields a JSON Lines record is read for; any other field is kept in `articles.extra`.
RECORD_FIELDS = ("id", "title", "url", "source", "published", "text")
# A page whose extracted text is nearly all short lines is a menu, a link list or a gallery,
# not an article: trafilatura falls back to such text when a page has no article. In the 181
# pages of eval/html, at least 23% of every article's characters sit in lines of 60 or more
# characters; navigation-only pages have none.
_PROSE_LINE_CHARS = 60
_MIN_PROSE_SHARE = 0.10
_BINARY_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"%PDF", b"PK\x03\x04", b"\x1f\x8b")


def canonical_url(url: str | None) -> str | None:
    """A normalised http(s) URL (lower-case host, no fragment, no tracking parameters), else None."""
    if not url or not isinstance(url, str):
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    try:
        from courlan import normalize_url

        # Not strict: strict mode drops query parameters that name the article (?article=55).
        # Tracking parameters go either way; the fragment never names another page.
        return normalize_url(url, strict=False).split("#", 1)[0]
    except Exception:  # courlan raises assorted errors on odd URLs; the plain form is still usable
        return url.split("#", 1)[0]


def _date_not_used(raw: str) -> dict[str, str]:
    """A date an input gave that `iso_date` did not take, kept (in `extra`), not lost: the
    article is stored undated and the raw value stays visible, named for why."""
    future = iso_date(raw, now=datetime.max - _FUTURE_SLACK)
    return {"published_in_future" if future else "published_unreadable": raw}


def iso_date(value: object, now: datetime | None = None) -> str | None:
    """An ISO 8601 date or UTC datetime string, or None for missing, unreadable or future dates."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            from dateutil import parser as dateparser

            parsed = dateparser.parse(text)
        except (ValueError, OverflowError, TypeError):
            return None
    if parsed is None or parsed.year < 1900:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    if parsed > now + _FUTURE_SLACK:
        return None
    if (parsed.hour, parsed.minute, parsed.second) == (0, 0, 0) and ":" not in text:
        return parsed.date().isoformat()
    return parsed.isoformat(timespec="seconds")


def article_id_for(url: str | None, external_id: str, hash_of_content: str) -> str:
    """A stable id: from the canonical URL when there is one, else from the input id and content."""
    key = f"url:{url}" if url else f"id:{external_id}\x00{hash_of_content}"
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def _host(url: str | None) -> str | None:
    if not url:
        return None
    host = urlsplit(url).hostname
    return host.removeprefix("www.") if host else None


def _check_length(text: str, settings: IngestSettings) -> None:
    if len(text) > settings.max_text_chars:
        raise TooLargeError(
            f"text is {len(text):,} characters, over the {settings.max_text_chars:,}-character cap "
            "(ingest.max_text_chars): not a news article"
        )


def build_article(
    *,
    external_id: str,
    text: str,
    settings: IngestSettings,
    title: str | None = None,
    url: str | None = None,
    source: str | None = None,
    published: str | None = None,
    extra: Mapping[str, object] | None = None,
    local_file: bool = False,
) -> Article:
    """An Article from already-extracted parts, checked to be a real article.

    `local_file` says that `external_id` names a local file (or a line of one), not an id the
    input carries itself.

    Raises:
        EmptyInputError: the text is empty or blank.
        NoArticleError: the text is too short to be an article.
        TooLargeError: the text is longer than ingest.max_text_chars.
    """
    # Checked before and after unification: NFKC may lengthen a text (up to 18x for some characters).
    _check_length(text, settings)
    text = display_text(text)
    if not text:
        raise EmptyInputError("no text")
    _check_length(text, settings)
    norm = matching_text(text)
    title = " ".join(display_text(title).split()) if title else None
    # A wire brief is a headline and two sentences: the headline counts towards its length.
    title_words = len(title.split()) if title else 0
    # Only whether the count reaches min_words matters: stop counting there.
    count = title_words + count_words(norm, settings.min_words - title_words)
    url = canonical_url(url)
    digest = content_hash(norm)
    if count < settings.min_words:
        raise NoArticleError(
            f"text too short to be an article: {plural(count, 'word')} with the title (ingest.min_words is {settings.min_words})",
            article_id=article_id_for(url, external_id, digest),
        )
    return Article(
        article_id=article_id_for(url, external_id, digest),
        external_id=external_id,
        url=url,
        title=title or None,
        source=source or _host(url),
        published=published,
        text=text,
        norm_text=norm,
        content_hash=digest,
        extra=dict(extra or {}),
        local_name=record_file(external_id) if local_file and not url else None,
    )


def from_text(raw: RawDocument, settings: IngestSettings) -> Article:
    """A plain-text article: the first non-empty line is the title, or a `date YYYY-MM-DD` marker
    followed by the first paragraph; a marker alone on its line next to the title line dates it.

    Raises:
        DecodeError, EmptyInputError, NoArticleError, TooLargeError.
    """
    body = raw.body if isinstance(raw.body, str) else decode_text(raw.body)
    _check_length(body, settings)
    lines = display_text(body).split("\n")
    _drop_blank_head(lines)
    if not lines:
        raise EmptyInputError("file holds only white space")
    title: str | None = None
    published: str | None = None
    extra: dict[str, object] = {}

    def take_date(marker: tuple[str, str]) -> None:
        nonlocal published
        published = iso_date(marker[0])
        if published is None:  # kept, as a JSON Lines record's is (a QA pass saw it vanish)
            extra.update(_date_not_used(marker[0]))

    marker = date_marker(lines[0])
    if marker and marker[1]:
        # "date 2020-04-02 The first paragraph...": the marker opens the text, which has no title.
        take_date(marker)
        lines[0] = marker[1]
    else:
        # A title, and a date marker alone on its line, in either order: both are taken (a QA
        # pass found no way to give a .txt file both).
        if marker:  # alone on its line: the title may follow it
            take_date(marker)
            lines.pop(0)
            _drop_blank_head(lines)
        if lines and len(lines[0].split()) <= _MAX_TITLE_WORDS:
            title = lines.pop(0).strip()
        if not marker:  # or the marker may follow the title
            at = next((n for n, line in enumerate(lines) if line.strip()), None)
            later = date_marker(lines[at]) if at is not None else None
            if later and not later[1]:
                take_date(later)
                del lines[at]
    return build_article(
        external_id=raw.ref,
        text="\n".join(lines),
        title=title,
        published=published,
        url=raw.url,
        settings=settings,
        extra=extra or None,
        local_file=_from_local_file(raw),
    )


def _drop_blank_head(lines: list[str]) -> None:
    while lines and not lines[0].strip():
        lines.pop(0)


def _prose_share(text: str) -> float:
    lines = [line.strip() for line in text.split("\n")]
    total = sum(len(line) for line in lines)
    return sum(len(line) for line in lines if len(line) >= _PROSE_LINE_CHARS) / total if total else 0.0


def from_html(raw: RawDocument, settings: IngestSettings) -> Article:
    """An article from an HTML page through trafilatura, with its metadata.

    Raises:
        DecodeError: the bytes are not an HTML document (an image, a PDF, binary).
        NoArticleError: trafilatura finds no article text, or only navigation.
        TooLargeError: the article text is longer than ingest.max_text_chars.
    """
    data = raw.body if isinstance(raw.body, bytes) else raw.body.encode("utf-8")
    head = data[:1024].lstrip()
    if head.startswith(_BINARY_MAGIC) or b"\x00" in data[:4096]:
        raise DecodeError("not an HTML page (binary content)")
    # Text already decoded (a fetched page whose charset the server gave) goes in as text.
    page = raw.body if isinstance(raw.body, str) else data
    document = _trafilatura_document(page, raw.url, settings.html_favor_precision)
    found = len((document.text or "").split()) if document is not None else 0
    if settings.html_favor_precision and found < _PRECISION_RECHECK_WORDS:
        fuller = _trafilatura_document(page, raw.url, False)
        if fuller is not None and len((fuller.text or "").split()) >= _PRECISION_LOSS_RATIO * max(found, 1):
            document = fuller
    if document is None or not (document.text or "").strip():
        raise NoArticleError("no article text found in the HTML page")
    if _prose_share(document.text) < _MIN_PROSE_SHARE:
        raise NoArticleError("the HTML page holds only short lines (navigation, link lists), no article text")
    meta = document.as_dict()
    extra = {
        key: meta[key]
        for key in ("author", "sitename", "language", "description")
        if meta.get(key)
    }
    return build_article(
        external_id=raw.ref,
        text=document.text,
        title=meta.get("title") or _optional_text(raw.fields, "title"),
        url=meta.get("url") or raw.url,
        source=meta.get("sitename") or meta.get("hostname"),
        published=iso_date(meta.get("date")) or iso_date(raw.fields.get("published")) or _date_in_text(page),
        extra=extra,
        settings=settings,
        local_file=_from_local_file(raw),
    )


def _from_local_file(raw: RawDocument) -> bool:
    """Whether `raw` was read from a local file (its ref is a path), not fetched."""
    return raw.url is None and raw.source_path is not None


def _trafilatura_document(data: bytes | str, url: str | None, favor_precision: bool):
    """trafilatura's document for an HTML page (None when it finds nothing); kept inside this module.

    Raises:
        NoArticleError: the markup cannot be parsed at all.
    """
    import trafilatura  # imported here: it is slow to import and only HTML needs it

    # trafilatura logs at ERROR what this stage turns into a reject with its reason ("lxml
    # parsing failed: Document is empty", twice a page, then "empty HTML tree"): said once,
    # in the rejects table, is enough. Left alone when a caller set its level.
    for name in ("trafilatura", "htmldate"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.CRITICAL)

    try:
        return trafilatura.bare_extraction(
            data, url=url, with_metadata=True, include_comments=False, favor_precision=favor_precision,
            # The page's own date from its markup (meta tags, <time>, the URL) only: the
            # extensive search also reads dates out of the text, where a year the story
            # mentions ("the Paris agreement signed in 2015") became its date, 2015-01-01,
            # ahead of the date its feed gave (a QA pass). See `_date_in_text`.
            date_extraction_params={"original_date": True, "extensive_search": False, "max_date": _today()},
        )
    except Exception as exc:  # trafilatura and lxml raise many types on junk markup
        raise NoArticleError("HTML could not be parsed", f"{type(exc).__name__}: {exc}") from None


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def _date_in_text(page: bytes | str) -> str | None:
    """A date found in the page's text, for a page whose markup has none and that came with no
    date of its own (a local file, a feed item without one): htmldate's extensive search.

    Its first of January is left out: that is how it renders a bare year ("signed in 2015"),
    and a wrong date misplaces the article in time for matching and for the canonical choice,
    where no date only places it when it was ingested. Of the 181 real pages in the extraction
    evaluation, 179 have a date in their markup; the 2 others get one from their text (neither
    on 1 January).
    """
    from htmldate import find_date  # installed with trafilatura

    try:
        found = find_date(page, extensive_search=True, original_date=True, max_date=_today())
    except Exception:  # htmldate, like lxml, raises many types on junk markup; a date is optional
        return None
    if not found or found.endswith("-01-01"):
        return None
    return iso_date(found)


def _optional_text(record: Mapping[str, object], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "id":
        return str(value)
    if not isinstance(value, str):
        raise ParseError(f"field '{key}' must be a string, got {type(value).__name__}")
    return value.strip() or None


def from_record(raw: RawDocument, settings: IngestSettings) -> Article:
    """An article from one JSON Lines record; `text` is required, other fields are optional.

    Raises:
        ParseError: a field has the wrong type, or `text` is missing.
        EmptyInputError, NoArticleError.
    """
    # Records parsed by sources are clean already; records built elsewhere may not be.
    record = without_lone_surrogates(dict(raw.fields))
    assert isinstance(record, dict)
    text = record.get("text")
    if text is None:
        raise ParseError("record has no 'text' field")
    if not isinstance(text, str):
        raise ParseError(f"field 'text' must be a string, got {type(text).__name__}")
    record_id = _optional_text(record, "id")
    published_raw = _optional_text(record, "published")
    published = iso_date(published_raw)
    extra = {key: value for key, value in record.items() if key not in RECORD_FIELDS}
    if published_raw and not published:
        extra.update(_date_not_used(published_raw))
    return build_article(
        external_id=record_id or raw.ref,
        text=text,
        title=_optional_text(record, "title"),
        url=_optional_text(record, "url"),
        source=_optional_text(record, "source"),
        published=published,
        extra=extra,
        settings=settings,
        local_file=record_id is None and _from_local_file(raw),
    )


_EXTRACTORS = {"text": from_text, "html": from_html, "record": from_record}


def article_from(raw: RawDocument, settings: IngestSettings) -> Article:
    """The Article in one raw document, whatever its kind.

    Raises:
        BadInputError (any kind): the document cannot become an article.
    """
    extractor = _EXTRACTORS.get(raw.kind)
    if extractor is None:
        raise ParseError(f"unknown document kind {raw.kind!r}")
    return extractor(raw, settings)
