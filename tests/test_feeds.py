"""Feeds and sitemaps to links: the real fixture feeds, their encodings, and broken or hostile XML."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline import feeds
from pipeline.errors import DecodeError, EmptyInputError, ParseError, TooLargeError

FEEDS = Path(__file__).resolve().parent / "data" / "feeds"


def read(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def test_windows_1251_feed_titles_come_out_as_cyrillic():
    listing = feeds.listing(read("miniflux/encoding_WINDOWS-1251.xml"))
    assert listing.kind == "rss"
    assert len(listing.entries) == 50
    assert listing.entries[0].title == "Цитата #17703"
    assert listing.entries[0].url == "http://ibash.org.ru/quote.php?id=17703"
    assert listing.entries[0].published == "2018-03-21T07:27:32"


def test_declared_iso_8859_1_feed_keeps_its_umlauts():
    listing = feeds.listing(read("miniflux/encoding_ISO-8859-1.xml"))
    titles = " ".join(entry.title or "" for entry in listing.entries)
    assert len(listing.entries) == 40
    assert any(letter in titles for letter in "äöüÄÖÜß")
    assert "\ufffd" not in titles


def test_latin1_feed_without_a_declaration_falls_back_to_latin1():
    listing = feeds.listing(read("miniflux/no_encoding_ISO-8859-1.xml"))
    titles = " ".join(entry.title or "" for entry in listing.entries)
    assert len(listing.entries) == 9
    assert "é" in titles and "\ufffd" not in titles


def test_http_charset_wins_when_it_decodes_and_the_declaration_rescues_a_wrong_label():
    data = '<?xml version="1.0" encoding="windows-1251"?><a>Привет</a>'.encode("cp1251")
    assert "Привет" in feeds.xml_text(data, charset="utf-8")  # wrong label: UTF-8 fails, the declaration decodes
    assert "Привет" in feeds.xml_text(data, charset="windows-1251")
    assert "Привет" not in feeds.xml_text(data, charset="iso-8859-1")  # the server's label is honoured


@pytest.mark.parametrize(
    "name, kind, count, first_url",
    [
        ("rss-parser/guardian.rss", "rss", 55, "https://www.theguardian.com/us-news/2018/jan/31/"),
        ("miniflux/rdf_UTF8.xml", "rdf", 60, "https://www.heise.de/newsticker/meldung/"),
        ("miniflux/small_atom.xml", "atom", 20, "https://github.com/miniflux/v2/commit/"),
        ("rss-parser/heise.atom", "atom", 15, "http://www.heise.de/developer/meldung/"),
        ("trafilatura/feed.json", "json", 25, "https://www.npr.org/2021/10/29/"),
        ("trafilatura/sitemap.xml", "sitemap", 84, "https://www.sitemaps.org/"),
        ("trafilatura/sitemap.xml.gz", "sitemap", 84, "https://www.sitemaps.org/"),
    ],
)
def test_each_format_lists_its_links(name, kind, count, first_url):
    listing = feeds.listing(read(name))
    assert listing.kind == kind
    assert len(listing.entries) == count
    assert listing.entries[0].url.startswith(first_url)
    assert all(entry.url.startswith("http") for entry in listing.entries)


def test_feed_entries_carry_title_and_date():
    entry = feeds.listing(read("rss-parser/guardian.rss")).entries[0]
    assert entry.title.startswith("Trump State of the Union")
    assert entry.published == "2018-01-31T07:26:05"


def test_sitemap_index_lists_sitemaps_not_pages():
    listing = feeds.listing(read("trafilatura/sitemap2.xml"))
    assert listing.kind == "sitemapindex"
    assert listing.entries == ()
    assert listing.sitemaps == ("http://www.example.com/sitemap1.xml.gz", "http://www.example.com/sitemap2.xml.gz")


def test_relative_links_resolve_against_the_feed_url():
    data = b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><link href="/news/1.html"/></entry></feed>'
    listing = feeds.listing(data, url="http://127.0.0.1:8000/feeds/atom.xml")
    assert listing.entries[0].url == "http://127.0.0.1:8000/news/1.html"


def test_a_news_sitemap_gives_publication_dates():
    data = b"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
      xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"><url><loc>https://example.org/a</loc>
      <lastmod>2024-01-05</lastmod><news:news><news:publication_date>2019-11-19T08:00:00+01:00</news:publication_date>
      <news:title>A title</news:title></news:news></url><url><loc>https://example.org/b</loc><lastmod>2024-01-05</lastmod></url>
      </urlset>"""
    first, second = feeds.listing(data).entries
    assert (first.published, first.title) == ("2019-11-19T07:00:00", "A title")
    assert second.published is None  # lastmod is not a publication date


@pytest.mark.parametrize(
    "name, error, words",
    [
        ("rss-parser/unrecognized.rss", ParseError, "not well-formed"),
        ("rss-parser/incomplete-fields.atom", EmptyInputError, "lists no links"),
        ("rss-parser/missing-fields.atom", EmptyInputError, "lists no links"),
    ],
)
def test_malformed_fixture_feeds_are_refused_with_a_reason(name, error, words):
    with pytest.raises(error) as caught:
        feeds.listing(read(name))
    assert words in caught.value.reason


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rss version="2.0"><channel><item><title>&lol3;</title><link>http://example.org/a</link></item></channel></rss>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><item><title>&xxe;</title><link>http://example.org/a</link></item></channel></rss>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["entity-expansion", "external-entity"])
def test_entity_declarations_are_refused(data):
    with pytest.raises(ParseError) as caught:
        feeds.listing(data)
    assert "entities" in caught.value.reason


def test_html_is_not_a_feed():
    with pytest.raises(ParseError, match="HTML page"):
        feeds.listing(b"<html><head><title>x</title></head><body><p>hi</p></body></html>")


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", EmptyInputError),
        (b"   \n", EmptyInputError),
        (b'{"version": "https://jsonfeed.org/version/1", "items": [', ParseError),
        (b'{"title": "not a feed"}', ParseError),
        (b"<rss version='2.0'><channel><item><link>http://example.org/a</link></item>", ParseError),
        (b"\x00\x01\x02\x03binary\xff\xfe", DecodeError),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", ParseError),
    ],
    ids=["empty", "blank", "broken-json", "json-not-feed", "unclosed-rss", "binary", "other-xml"],
)
def test_broken_documents_raise_bad_input(data, error):
    with pytest.raises(error):
        feeds.listing(data)


def test_a_gzip_bomb_sitemap_stops_at_the_cap():
    bomb = gzip.compress(b"<urlset>" + b" " * 5_000_000 + b"</urlset>")
    assert len(bomb) < 10_000
    with pytest.raises(TooLargeError):
        feeds.listing(bomb, max_decompressed_bytes=1_000_000)


def test_html_sniffing():
    assert feeds.looks_like_html(b"<!DOCTYPE html><html><body>x</body></html>")
    assert feeds.looks_like_html(b"\n  <html lang='en'>")
    assert not feeds.looks_like_html(b"<?xml version='1.0'?><rss/>")
    assert not feeds.looks_like_html(b'{"version": "https://jsonfeed.org/version/1"}')
