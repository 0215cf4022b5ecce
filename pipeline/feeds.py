"""Feeds and sitemaps to the links they list: RSS 2.0/0.9x, RDF (RSS 1.0), Atom, JSON Feed, sitemaps.

XML is parsed with defusedxml: a document that declares entities is refused outright (entity
expansion, "billion laughs", and external entities are how XML parsers get attacked). A
document that is not well-formed is refused too; a feed is data from a stranger, and guessing
at a broken one is how wrong links get fetched.
"""

from __future__ import annotations

import codecs
import email.utils
import json
import re
import xml.etree.ElementTree as ET
from typing import Iterable
from urllib.parse import urljoin

import defusedxml
import defusedxml.ElementTree as SafeET

from .errors import EmptyInputError, ParseError
from .extract import iso_date
from .models import FeedEntry, Listing
from .sources import decode_text, gunzip_capped

STAGE = "feed"
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_NS_DC = "{http://purl.org/dc/elements/1.1/}"
_NS_NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _child(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    text = "".join(element.itertext()).strip()
    return " ".join(text.split()) or None


def _encoding_ok(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def xml_text(data: bytes, charset: str | None = None) -> str:
    """The text of an XML document: the HTTP charset, else the XML declaration, else UTF-8, else Windows-1252.

    Each is tried in turn and the first that decodes the bytes wins, so a server that labels
    a windows-1251 feed as UTF-8 still gives readable Cyrillic.

    Raises:
        DecodeError: binary data, or text in no encoding we can tell.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF8)):
        return decode_text(data)
    declared = _DECLARED.match(data[:512])
    candidates = [_encoding_ok(charset), _encoding_ok(declared.group(1).decode("ascii") if declared else None), "utf-8"]
    for encoding in dict.fromkeys(c for c in candidates if c):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return decode_text(data)


def _parse_xml(data: bytes, charset: str | None) -> ET.Element:
    text = _DECLARATION.sub("", xml_text(data, charset), count=1)
    if not text.strip():
        raise EmptyInputError("empty document")
    try:
        return SafeET.fromstring(text, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise ParseError(
            "XML declares entities or external references, which are refused (entity expansion attack)",
            repr(exc),
        ) from None
    except ET.ParseError as exc:
        raise ParseError("not well-formed XML (broken feed or sitemap)", str(exc)) from None


def _date(text: str | None) -> str | None:
    """An ISO date from an RSS (RFC 822) or Atom (RFC 3339) date."""
    if not text:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return iso_date(text)
    return iso_date(parsed.isoformat())


def _resolved(link: str | None, base: str | None) -> str | None:
    if not link:
        return None
    link = link.strip()
    return urljoin(base, link) if base else link


def _rss_items(items: Iterable[ET.Element], base: str | None, listing: str | None) -> list[FeedEntry]:
    entries = []
    for item in items:
        link = _text(_child(item, "link"))
        guid = _child(item, "guid")
        if not link and guid is not None and guid.get("isPermaLink", "true").lower() != "false":
            link = _text(guid)
        url = _resolved(link, base)
        if not url:
            continue
        date = _text(_child(item, "pubdate")) or _text(item.find(f"{_NS_DC}date"))
        entries.append(FeedEntry(url, _text(_child(item, "title")), _date(date), listing))
    return entries


def _atom_entries(root: ET.Element, base: str | None, listing: str | None) -> list[FeedEntry]:
    entries = []
    for entry in (e for e in root if _local(e.tag) == "entry"):
        links = [e for e in entry if _local(e.tag) == "link" and e.get("href")]
        preferred = [e for e in links if e.get("rel", "alternate") == "alternate"] or links
        url = _resolved(preferred[0].get("href"), base) if preferred else None
        if not url:
            continue
        date = _text(_child(entry, "published")) or _text(_child(entry, "updated"))
        entries.append(FeedEntry(url, _text(_child(entry, "title")), _date(date), listing))
    return entries


def _sitemap(root: ET.Element, base: str | None, listing: str | None) -> Listing:
    if _local(root.tag) == "sitemapindex":
        locations = [_resolved(_text(_child(s, "loc")), base) for s in root if _local(s.tag) == "sitemap"]
        return Listing("sitemapindex", sitemaps=tuple(loc for loc in locations if loc))
    entries = []
    for url_element in (e for e in root if _local(e.tag) == "url"):
        url = _resolved(_text(_child(url_element, "loc")), base)
        if not url:
            continue
        # lastmod is when the page last changed, not when it was published: only a news
        # sitemap's publication_date is a publication date.
        news = url_element.find(f"{_NS_NEWS}news")
        published = _date(_text(news.find(f"{_NS_NEWS}publication_date"))) if news is not None else None
        title = _text(news.find(f"{_NS_NEWS}title")) if news is not None else None
        entries.append(FeedEntry(url, title, published, listing))
    return Listing("sitemap", entries=tuple(entries))


def _json_feed(data: bytes, base: str | None, listing: str | None) -> Listing:
    try:
        feed = json.loads(decode_text(data))
    except ValueError as exc:
        raise ParseError("not valid JSON (broken JSON Feed)", str(exc)[:300]) from None
    if not isinstance(feed, dict) or "jsonfeed.org" not in str(feed.get("version", "")):
        raise ParseError("JSON, but not a JSON Feed (no jsonfeed.org version)")
    items = feed.get("items")
    if not isinstance(items, list):
        raise ParseError("JSON Feed has no 'items' list")
    entries = []
    for item in items:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url")
        url = _resolved(link, base) if isinstance(link, str) else None
        if not url:
            continue
        title = item.get("title") if isinstance(item.get("title"), str) else None
        published = item.get("date_published") if isinstance(item.get("date_published"), str) else None
        entries.append(FeedEntry(url, title, _date(published), listing))
    title = feed.get("title") if isinstance(feed.get("title"), str) else None
    return Listing("json", entries=tuple(entries), title=title)


def listing(
    data: bytes, *, charset: str | None = None, url: str | None = None, max_decompressed_bytes: int = 100_000_000
) -> Listing:
    """The links a feed or sitemap lists, resolved against `url` (where it was fetched from).

    Gzipped documents are decompressed under `max_decompressed_bytes`. A listing with no
    usable link is an error: there is nothing to ingest and the source is probably broken.

    Raises:
        EmptyInputError: the document is empty or lists no links.
        DecodeError: binary data or corrupt gzip; TooLargeError: a gzip bomb.
        ParseError: not well-formed, declares entities, or not a feed or sitemap at all.
    """
    if data[:2] == b"\x1f\x8b":
        data = gunzip_capped(data, max_decompressed_bytes)
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise EmptyInputError("empty document")
    if stripped.startswith(b"{"):
        result = _json_feed(stripped, url, url)
    elif stripped.startswith(b"["):
        # (a QA pass: a JSON array of articles was "not well-formed XML")
        raise ParseError(
            "a JSON array, not a feed or sitemap: articles as JSON go one object per line in a .jsonl file "
            "(jq -c '.[]' FILE.json > FILE.jsonl)"
        )
    else:
        root = _parse_xml(data, charset)
        kind = _local(root.tag)
        if kind == "rss":
            channel = _child(root, "channel")
            if channel is None:
                raise ParseError("RSS document without a <channel>")
            base = url or _text(_child(channel, "link"))
            result = Listing(
                "rss",
                entries=tuple(_rss_items((e for e in channel if _local(e.tag) == "item"), base, url)),
                title=_text(_child(channel, "title")),
            )
        elif kind == "rdf":
            channel = _child(root, "channel")
            items = [e for e in root if _local(e.tag) == "item"]
            title = _text(_child(channel, "title")) if channel is not None else None
            result = Listing("rdf", entries=tuple(_rss_items(items, url, url)), title=title)
        elif kind == "feed":
            result = Listing("atom", entries=tuple(_atom_entries(root, url, url)), title=_text(_child(root, "title")))
        elif kind in ("urlset", "sitemapindex"):
            result = _sitemap(root, url, url)
        elif kind == "html":
            raise ParseError("an HTML page, not a feed or sitemap")
        else:
            raise ParseError(f"not a feed or sitemap (its root element is <{kind}>)")
    if not result.entries and not result.sitemaps:
        raise EmptyInputError(f"{_KIND_NAMES[result.kind]} lists no links")
    return result


_KIND_NAMES = {
    "rss": "RSS feed", "rdf": "RDF feed", "atom": "Atom feed", "json": "JSON Feed",
    "sitemap": "sitemap", "sitemapindex": "sitemap index",
}


def looks_like_html(data: bytes) -> bool:
    """True when the bytes start like an HTML page rather than XML or JSON."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        not head.startswith((b"<?xml", b"{", b"<rss", b"<feed", b"<urlset", b"<sitemapindex", b"<rdf"))
        and b"<html" in head
    )

