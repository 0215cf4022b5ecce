"""Web sources end to end in-process: feeds, sitemaps and pages from 127.0.0.1 into the story database."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pipeline import report, web
from pipeline.ingest import ingest
from pipeline.models import FeedEntry
from pipeline.settings import SourceConfig
from tests.localweb import LocalWeb, eval_page
from tests.localweb import db_rows as rows

pytestmark = pytest.mark.slow  # each test starts an HTTP server

DATA = Path(__file__).resolve().parent / "data"
FEEDS = DATA / "feeds"
NAV_ONLY = "<html><head><title>Home</title></head><body><nav><a href='/'>Home</a> <a href='/a'>About</a></nav></body></html>"


def rss(items: list[tuple[str, str]], pub_date: str = "Mon, 18 Nov 2019 09:00:00 GMT") -> str:
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><pubDate>{pub_date}</pubDate></item>" for title, link in items
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Local news</title>{body}</channel></rss>'


def quick(settings, **fetch_changes):
    return settings.model_copy(update={"fetch": settings.fetch.model_copy(update=fetch_changes)})


@pytest.fixture
def webserver():
    with LocalWeb() as server:
        yield server


def test_a_feed_with_every_kind_of_bad_link_stores_the_good_pages_and_rejects_the_rest(webserver, settings, db_path):
    w = webserver
    w.add("/news/one.html", eval_page(0))
    w.add("/news/two-moved.html", status=301, headers={"Location": "/news/two.html"}, content_type=None)
    w.add("/news/two.html", eval_page(1))
    w.add("/news/broken.html", "server trouble", status=500)
    w.add("/news/slow.html", eval_page(2), delay_s=1.0)
    w.add("/news/loop-a.html", status=302, headers={"Location": "/news/loop-b.html"}, content_type=None)
    w.add("/news/loop-b.html", status=302, headers={"Location": "/news/loop-a.html"}, content_type=None)
    w.add("/news/report.pdf", b"%PDF-1.4 not a page", content_type="application/pdf")
    w.add("/news/huge.html", b"<html><body>" + b"x" * 3_000_000 + b"</body></html>")
    w.add("/news/nav.html", NAV_ONLY)
    w.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    w.add("/private/secret.html", eval_page(3))
    links = [
        ("One", w.url("/news/one.html")),
        ("Two", w.url("/news/two-moved.html")),
        ("Missing", w.url("/news/missing.html")),
        ("Broken", w.url("/news/broken.html")),
        ("Slow", w.url("/news/slow.html")),
        ("Loop", w.url("/news/loop-a.html")),
        ("PDF", w.url("/news/report.pdf")),
        ("Huge", w.url("/news/huge.html")),
        ("Nav", w.url("/news/nav.html")),
        ("Metadata", "http://169.254.169.254/latest/meta-data"),
        ("Local file", "file:///etc/passwd"),
        ("Robots", w.url("/private/secret.html")),
    ]
    feed = w.add("/feed.xml", rss(links), content_type="application/rss+xml", etag='"v1"')
    run_settings = quick(settings, read_timeout_s=0.3, max_bytes=2_000_000)

    run = ingest([feed], run_settings, db_path)

    assert run.balanced and run.inputs == len(links)
    assert run.new_articles == 2 and run.rejects == len(links) - 2
    reasons = {row["ref"].rsplit("/", 1)[-1]: (row["stage"], row["reason"]) for row in rows(db_path, "SELECT * FROM rejects")}
    assert reasons["missing.html"] == ("fetch", "server answered HTTP 404 Not Found")
    assert reasons["broken.html"] == ("fetch", "server answered HTTP 500 Internal Server Error (gave up after 4 attempts)")
    assert reasons["slow.html"] == ("fetch", "timed out (gave up after 4 attempts)")
    assert reasons["loop-a.html"] == ("fetch", "redirect loop")
    assert reasons["report.pdf"] == ("fetch", "not an HTML page (content type application/pdf)")
    assert reasons["huge.html"][1].startswith("response is 3,000,") and "cap" in reasons["huge.html"][1]
    assert reasons["nav.html"][0] == "extract"
    assert "private, loopback or link-local" in reasons["meta-data"][1]
    assert reasons["passwd"][1] == "only http and https URLs are fetched, not file"
    assert reasons["secret.html"] == ("fetch", "robots.txt disallows fetching this URL")
    assert len(w.hits("/news/broken.html")) == 4  # 1 + fetch.retries
    assert not w.hits("/private/secret.html")
    stored = rows(db_path, "SELECT external_id, url, title FROM articles ORDER BY external_id")
    assert [row["external_id"] for row in stored] == [w.url("/news/one.html"), w.url("/news/two-moved.html")]


def test_a_url_of_neither_a_page_nor_a_listing_says_what_it_is(webserver, settings, db_path, tmp_path):
    """(QA pass: a PDF's URL given on its own was "not well-formed XML (broken feed or sitemap)".)
    And a feed file named on the command line counts as a feed read (the summary said 0)."""
    pdf = webserver.add("/report.pdf", b"%PDF-1.4 not a page", content_type="application/pdf")
    run = ingest([pdf], quick(settings, retries=0), db_path)
    assert rows(db_path, "SELECT stage, reason FROM rejects")[0] == {
        "stage": "fetch", "reason": "neither an HTML page nor a feed or sitemap (content type application/pdf)",
    }
    assert run.rejects == 1
    page = webserver.add("/p.html", eval_page(5))
    saved = tmp_path / "saved.rss"
    saved.write_text(rss([("P", page)]))
    from_file = ingest([str(saved)], settings, db_path)
    assert (from_file.listings_fetched, from_file.new_articles) == (1, 1)
    assert "1 feed or sitemap read" in report.web_lines(from_file.counts())[0]


def test_a_second_run_on_an_unchanged_feed_fetches_nothing_new(webserver, settings, db_path):
    pages = [webserver.add(f"/a/{n}.html", eval_page(n)) for n in range(3)]
    feed = webserver.add("/feed.xml", rss([(f"Item {n}", url) for n, url in enumerate(pages)]),
                         content_type="application/rss+xml", etag='"v1"')
    first = ingest([feed], settings, db_path)
    assert first.new_articles == 3 and first.pages_fetched == 3
    stories = rows(db_path, "SELECT count(*) AS n FROM stories")[0]["n"]

    second = ingest([feed], settings, db_path)
    lines = report.summary_lines(second)
    assert second.pages_fetched == 0 and second.new_articles == 0 and second.not_modified == [feed]
    assert "fetched nothing new: 1 source not modified since the last run" in lines
    assert webserver.hits("/feed.xml")[-1].headers["if-none-match"] == '"v1"'
    assert all(len(webserver.hits(f"/a/{n}.html")) == 1 for n in range(3))
    assert rows(db_path, "SELECT count(*) AS n FROM articles")[0]["n"] == 3
    assert rows(db_path, "SELECT count(*) AS n FROM stories")[0]["n"] == stories

    # The feed changes (and has no validators now): only the new link is fetched.
    new_page = webserver.add("/a/new.html", eval_page(4))
    webserver.add("/feed.xml", rss([("New", new_page)] + [(f"Item {n}", url) for n, url in enumerate(pages)]),
                  content_type="application/rss+xml")
    third = ingest([feed], settings, db_path)
    assert (third.pages_fetched, third.known_urls, third.new_articles) == (1, 3, 1)
    assert third.balanced and third.unchanged == 3
    assert all(len(webserver.hits(f"/a/{n}.html")) == 1 for n in range(3))


def test_a_syndicated_copy_of_a_stored_article_is_fetched_once(webserver, settings, db_path):
    """A link whose page names a stored article's URL as its canonical one is that article:
    not stored again, and not fetched again when its feed changes. (QA pass: it was fetched
    again at every change of the feed.)"""
    # The page names its canonical URL (on its outlet's site); so will the copy, served elsewhere.
    original = webserver.add("/news/original.html", eval_page(6))
    copy = webserver.add("/partner/copy.html", eval_page(6))
    feed_items = [("Original", original), ("Copy", copy)]
    feed = webserver.add("/feed.xml", rss(feed_items), content_type="application/rss+xml")

    first = ingest([feed], settings, db_path)
    assert (first.pages_fetched, first.new_articles, first.unchanged) == (2, 1, 1)
    assert first.balanced
    stored = rows(db_path, "SELECT id, url, external_id FROM articles")
    assert len(stored) == 1 and stored[0]["external_id"] == original
    assert stored[0]["url"].startswith("https://") and stored[0]["url"] not in (original, copy)
    assert rows(db_path, "SELECT url, article_id FROM _url_aliases") == [
        {"url": web.link_key(copy), "article_id": stored[0]["id"]}
    ]

    # The feed changes: only its new link is fetched, not the copy again.
    new_page = webserver.add("/news/new.html", eval_page(7))
    webserver.add("/feed.xml", rss([("New", new_page)] + feed_items), content_type="application/rss+xml")
    second = ingest([feed], settings, db_path)
    assert (second.pages_fetched, second.known_urls, second.new_articles) == (1, 2, 1)
    assert second.balanced
    assert len(webserver.hits("/partner/copy.html")) == 1
    assert len(webserver.hits("/news/original.html")) == 1


def test_known_urls_are_not_fetched_even_without_validators(webserver, settings, db_path):
    page = webserver.add("/page.html", eval_page(5))
    assert ingest([page], settings, db_path).new_articles == 1
    again = ingest([page], settings, db_path)
    assert (again.pages_fetched, again.known_urls, again.unchanged) == (0, 1, 1)
    assert "fetched nothing new: 1 listed URL already stored" in report.summary_lines(again)
    assert len(webserver.hits("/page.html")) == 1


def test_the_page_date_wins_over_the_feed_date_and_the_feed_date_fills_in(webserver, settings, db_path):
    dated = webserver.add("/dated.html", eval_page(0))  # the WSJ page says 2019-11-19
    undated_html = (
        "<html><head><title>Undated</title></head><body><article><h1>Undated report</h1>"
        + "".join(f"<p>Paragraph {n} of a report that carries no date of its own, only words about the council vote and the budget.</p>" for n in range(8))
        + "</article></body></html>"
    )
    undated = webserver.add("/undated.html", undated_html)
    feed = webserver.add("/feed.xml", rss([("Dated", dated), ("Feed title", undated)], "Wed, 02 Jan 2019 10:00:00 GMT"),
                         content_type="application/rss+xml")
    ingest([feed], settings, db_path)
    by_ref = {row["external_id"]: row for row in rows(db_path, "SELECT * FROM articles")}
    assert by_ref[dated]["published"].startswith("2019-11-19")
    assert by_ref[undated]["published"] == "2019-01-02T10:00:00"


@pytest.mark.parametrize(
    "fixture, content_type, title",
    [
        ("miniflux/encoding_WINDOWS-1251.xml", "application/rss+xml", "Цитата #17703"),
        ("miniflux/encoding_WINDOWS-1251.xml", "text/xml; charset=utf-8", "Цитата #17703"),  # mislabelled
        ("miniflux/encoding_ISO-8859-1.xml", "application/rss+xml", None),
        ("miniflux/no_encoding_ISO-8859-1.xml", "text/xml; charset=iso-8859-1", None),
        ("miniflux/no_encoding_ISO-8859-1.xml", "application/octet-stream", None),
        ("rss-parser/guardian.rss", "application/rss+xml; charset=utf-8", "Trump State of the Union address promised unity but emphasized discord"),
    ],
)
def test_real_feeds_served_in_their_encodings_list_readable_titles(webserver, settings, db_path, fixture, content_type, title):
    url = webserver.add("/feed", (FEEDS / fixture).read_bytes(), content_type=content_type)
    state = web.CrawlState(db_path)
    entries = [item for item in web.expand([url], None, settings, state, lambda u, e, m: web.get_listing(u, e, m, settings))]
    assert entries and all(isinstance(entry, FeedEntry) for entry in entries)
    titles = [entry.title or "" for entry in entries]
    assert not any("\ufffd" in t or "Ã" in t for t in titles)
    if title:
        assert entries[0].title == title
    assert state.listings == 1 and state.pages == 0


@pytest.mark.parametrize(
    "body, content_type, stage, words",
    [
        ((FEEDS / "rss-parser/unrecognized.rss").read_bytes(), "application/rss+xml", "feed", "not well-formed"),
        ((FEEDS / "rss-parser/incomplete-fields.atom").read_bytes(), "application/atom+xml", "feed", "lists no links"),
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
         b'<rss version="2.0"><channel><item><title>&b;</title><link>http://127.0.0.1/x</link></item></channel></rss>',
         "application/rss+xml", "feed", "entities"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"url": ', "application/feed+json", "feed", "not valid JSON"),
        (b"", "application/rss+xml", "feed", "empty"),
    ],
    ids=["malformed", "no-links", "entity-expansion", "broken-json", "empty"],
)
def test_a_broken_feed_is_a_reject_and_the_run_goes_on(webserver, settings, db_path, body, content_type, stage, words):
    bad = webserver.add("/bad-feed", body, content_type=content_type)
    good = webserver.add("/page.html", eval_page(6))
    run = ingest([bad, good], settings, db_path)
    assert run.new_articles == 1 and run.rejects == 1 and run.balanced
    reject = rows(db_path, "SELECT * FROM rejects")[0]
    assert reject["stage"] == stage and words in reject["reason"] and reject["ref"] == bad


def test_a_feed_that_keeps_failing_is_rejected_after_its_retries(webserver, settings, db_path):
    feed = webserver.add("/feed.xml", "down", status=503, content_type="text/plain")
    run = ingest([feed], settings, db_path)
    assert run.rejects == 1 and run.balanced
    assert rows(db_path, "SELECT reason FROM rejects")[0]["reason"].endswith("(gave up after 4 attempts)")
    assert len(webserver.hits("/feed.xml")) == 4


def test_a_feed_that_answers_again_leaves_the_rejects_table(webserver, settings, db_path, tmp_path):
    """Without --retry-rejects: the next run that reads a once-broken feed or feed file clears its reject."""
    feed = webserver.add("/feed.xml", "down", status=503, content_type="text/plain")
    saved = tmp_path / "saved.rss"
    saved.write_text("<rss><channel><item>", encoding="utf-8")
    first = ingest([feed, str(saved)], quick(settings, retries=0), db_path)
    assert first.rejects == 2
    page = webserver.add("/p.html", eval_page(9))
    webserver.add("/feed.xml", rss([("P", page)]), content_type="application/rss+xml")
    saved.write_text(rss([("P", page)]), encoding="utf-8")
    second = ingest([feed, str(saved)], settings, db_path)
    assert second.rejects == 0 and second.new_articles == 1
    assert rows(db_path, "SELECT ref FROM rejects") == []


def test_a_sitemap_index_with_a_gzipped_sitemap(webserver, settings, db_path):
    pages = [webserver.add(f"/s/{n}.html", eval_page(10 + n)) for n in range(2)]
    urlset = ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
              + "".join(f"<url><loc>{url}</loc></url>" for url in pages) + "</urlset>")
    child = webserver.add("/sitemap-1.xml.gz", gzip.compress(urlset.encode()), content_type="application/gzip")
    index = webserver.add(
        "/sitemap.xml",
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>{child}</loc></sitemap>'
        f"<sitemap><loc>{webserver.url('/sitemap-missing.xml')}</loc></sitemap></sitemapindex>",
        content_type="application/xml",
    )
    run = ingest([index], settings, db_path, kind="sitemap")
    assert run.new_articles == 2 and run.rejects == 1 and run.balanced
    assert rows(db_path, "SELECT reason FROM rejects")[0]["reason"] == "server answered HTTP 404 Not Found"


def test_a_sitemap_index_pointing_at_itself_stops_at_the_depth_cap(webserver, settings, db_path):
    index = webserver.url("/sitemap.xml")
    webserver.add("/sitemap.xml", f'<sitemapindex><sitemap><loc>{index}</loc></sitemap></sitemapindex>',
                  content_type="application/xml")
    run = ingest([index], settings, db_path, kind="sitemap")
    assert run.rejects == 1 and run.balanced
    assert "nested deeper than 3 levels" in rows(db_path, "SELECT reason FROM rejects")[0]["reason"]
    assert len(webserver.hits("/sitemap.xml")) == 4


def test_feed_and_sitemap_files_on_disk(webserver, settings, db_path, tmp_path):
    page = webserver.add("/p.html", eval_page(7))
    feed_file = tmp_path / "saved.rss.gz"
    feed_file.write_bytes(gzip.compress(rss([("Saved", page)]).encode("utf-8")))
    sitemap_file = tmp_path / "sitemap.xml.gz"
    sitemap_file.write_bytes(gzip.compress(
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{webserver.url("/q.html")}</loc></url></urlset>'.encode()
    ))
    webserver.add("/q.html", eval_page(8))
    broken = tmp_path / "broken.atom"
    broken.write_bytes((FEEDS / "rss-parser/missing-fields.atom").read_bytes())
    run = ingest([str(feed_file), str(sitemap_file), str(broken)], settings, db_path)
    assert run.new_articles == 2 and run.rejects == 1 and run.balanced
    assert rows(db_path, "SELECT ref FROM rejects")[0]["ref"] == str(broken)


def test_an_ad_hoc_page_url_is_fetched_once_and_a_non_page_rejected(webserver, settings, db_path):
    page = webserver.add("/story", eval_page(9))
    image = webserver.add("/photo.png", b"\x89PNG\r\n\x1a\n....", content_type="image/png")
    run = ingest([page, image], settings, db_path, kind="page")
    assert run.new_articles == 1 and run.rejects == 1
    assert len(webserver.hits("/story")) == 1
    assert rows(db_path, "SELECT reason FROM rejects")[0]["reason"] == "not an HTML page (content type image/png)"


def test_locations_split_between_files_and_web():
    local, remote = web.split_locations(["seeds/", "a.jsonl", "https://x.test/feed", "feed.rss", "map.xml.gz", "p.html"])
    assert local == ["seeds/", "a.jsonl", "p.html"]
    assert remote == ["https://x.test/feed", "feed.rss", "map.xml.gz"]
    assert web.split_locations(["odd-feed.txt"], kind="feed") == ([], ["odd-feed.txt"])


def test_configured_sources_resolve_their_location():
    feed = SourceConfig(name="f", kind="feed", location="https://example.org/feed.xml")
    directory = SourceConfig(name="d", kind="directory", location="seeds/")
    assert web.source_location(feed) == "https://example.org/feed.xml"
    assert Path(web.source_location(directory)).is_dir()


def test_run_counts_report_web_fetching(webserver, settings, db_path):
    page = webserver.add("/page.html", eval_page(11))
    counts = ingest([page], settings, db_path).counts()
    assert counts["pages_fetched"] == 1 and counts["known_urls_skipped"] == 0
    json.dumps(counts)  # a flow returns these; they must serialise


def test_link_keys_drop_tracking_but_keep_what_names_the_article():
    assert web.link_key("https://x.org/news.php?article=55&utm_source=rss#top") == "https://x.org/news.php?article=55"
    assert web.link_key(" https://EXAMPLE.org:443/a?fbclid=zz ") == "https://example.org/a"
    assert web.link_key("file:///etc/passwd") == "file:///etc/passwd"


FRENCH = "".join(
    f"<p>Le président a déclaré à la presse, pour la {n}e fois, que les élèves réussiront grâce à leur "
    "générosité et à leur curiosité, même après l'été.</p>" for n in range(2, 8)
)
RUSSIAN = "".join(
    f"<p>Президент заявил журналистам в {n}-й раз, что школьники добьются успеха благодаря щедрости и "
    "любопытству даже после лета.</p>" for n in range(2, 8)
)


def page_html(body: str, meta: str = "", declaration: str = "", title: str = "Élection") -> str:
    return f"{declaration}<html><head>{meta}<title>{title}</title></head><body><article><h1>{title}</h1>{body}</article></body></html>"


@pytest.mark.parametrize(
    "html, encoding, content_type, expected",
    [
        (page_html(FRENCH), "iso-8859-1", "text/html; charset=iso-8859-1", "déclaré à la presse"),
        (page_html(FRENCH), "iso-8859-1", "text/html", "déclaré à la presse"),  # no label anywhere
        (page_html(FRENCH, '<meta charset="iso-8859-1">'), "iso-8859-1", "text/html; charset=utf-8", "déclaré à la presse"),  # wrong label
        (page_html(RUSSIAN, title="Выборы"), "windows-1251", "text/html; charset=windows-1251", "заявил журналистам"),
        (page_html(RUSSIAN, '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">', title="Выборы"),
         "windows-1251", "text/html", "заявил журналистам"),
        (page_html(FRENCH, declaration='<?xml version="1.0" encoding="iso-8859-1"?>'), "iso-8859-1",
         "application/xhtml+xml; charset=iso-8859-1", "déclaré à la presse"),
    ],
    ids=["latin1-labelled", "latin1-unlabelled", "latin1-mislabelled", "cp1251-labelled", "cp1251-meta", "xhtml-declared"],
)
def test_pages_in_other_encodings_are_read_right(webserver, settings, db_path, html, encoding, content_type, expected):
    page = webserver.add("/page.html", html.encode(encoding), content_type=content_type)
    run = ingest([page], settings, db_path, kind="page")
    assert run.new_articles == 1, rows(db_path, "SELECT reason FROM rejects")
    text = rows(db_path, "SELECT text FROM articles")[0]["text"]
    assert expected in text and "\ufffd" not in text


def test_cli_local_engine_ingests_a_feed_and_says_when_nothing_is_new(webserver, db_path, capsys):
    from pipeline.cli import main

    pages = [webserver.add(f"/c/{n}.html", eval_page(40 + n)) for n in range(2)]
    feed = webserver.add("/feed.xml", rss([(f"C {n}", url) for n, url in enumerate(pages)]),
                         content_type="application/rss+xml", etag='"c1"')
    config = str(Path(__file__).resolve().parent.parent / "config" / "test.toml")
    command = ["ingest", feed, "--db", str(db_path), "--engine", "local", "--config", config, "--quiet"]
    assert main(command) == 0
    assert "new articles     2" in capsys.readouterr().out
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "fetched nothing new: 1 source not modified since the last run" in out
    assert "database now     2 articles" in out


def test_a_feed_with_a_link_that_failed_for_now_is_asked_for_in_full_next_time(webserver, settings, db_path):
    good = webserver.add("/ok.html", eval_page(12))
    webserver.add("/later.html", "busy", status=503)
    feed = webserver.add("/feed.xml", rss([("ok", good), ("later", webserver.url("/later.html"))]),
                         content_type="application/rss+xml", etag='"f1"')
    first = ingest([feed], settings, db_path)
    assert first.new_articles == 1 and first.rejects == 1
    webserver.add("/later.html", eval_page(13))  # the server recovers; the feed itself has not changed
    second = ingest([feed], settings, db_path)
    assert "if-none-match" not in webserver.hits("/feed.xml")[-1].headers
    assert (second.new_articles, second.known_urls) == (1, 1)
    assert rows(db_path, "SELECT count(*) AS n FROM rejects")[0]["n"] == 0  # the stored page's reject is gone
    third = ingest([feed], settings, db_path)
    assert third.not_modified == [feed]


def test_a_gzip_bomb_sitemap_served_as_a_file_is_refused(webserver, settings, db_path):
    bomb = gzip.compress(b"<urlset>" + b" " * 20_000_000 + b"</urlset>")
    sitemap = webserver.add("/sitemap.xml.gz", bomb, content_type="application/gzip")
    run = ingest([sitemap], quick(settings, max_bytes=1_000_000), db_path, kind="sitemap")
    assert run.rejects == 1 and run.balanced
    reject = rows(db_path, "SELECT stage, reason FROM rejects")[0]
    assert reject["stage"] == "feed" and reject["reason"] == "decompresses to more than 1,000,000 bytes (fetch.max_bytes)"


def test_fetches_in_flight_are_bounded_and_results_keep_their_order(webserver, settings, db_path):
    import time
    from concurrent.futures import ThreadPoolExecutor

    pages = [webserver.add(f"/slow/{n}.html", eval_page(50 + n), delay_s=0.5) for n in range(4)]
    chunk = [FeedEntry(url) for url in pages]
    run_settings = quick(settings, per_domain_concurrency=10)

    def timed(in_flight: int) -> tuple[float, list]:
        state = web.CrawlState(db_path)
        with ThreadPoolExecutor(max_workers=10) as pool:
            started = time.monotonic()
            results = web.fetch_chunk(
                chunk, submit=lambda entry: pool.submit(web.fetch_page, entry, run_settings),
                result_of=lambda future: future.result(), state=state, attempts=1, in_flight=in_flight,
            )
            return time.monotonic() - started, results

    two_at_a_time, results = timed(2)
    four_at_a_time, _ = timed(4)
    assert [doc.ref for doc in results] == pages
    # Two rounds of 0.5 s against one: a margin of 0.4 s either way for a busy machine.
    assert two_at_a_time >= 0.97 and four_at_a_time < 0.9


def test_retry_rejects_fetches_rejected_pages_again(webserver, settings, db_path):
    from pipeline.retry import retry_rejects

    webserver.add("/thin.html", NAV_ONLY)
    webserver.add("/busy.html", "busy", status=503)
    good = webserver.add("/good.html", eval_page(14))
    feed = webserver.add("/feed.xml", rss([("thin", webserver.url("/thin.html")), ("busy", webserver.url("/busy.html")),
                                           ("good", good)]), content_type="application/rss+xml", etag='"r1"')
    first = ingest([feed], settings, db_path)
    assert (first.new_articles, first.rejects) == (1, 2)
    keys = {(row["ref"], row["input"], row["stage"]) for row in rows(db_path, "SELECT * FROM rejects")}
    assert keys == {(webserver.url("/thin.html"), webserver.url("/thin.html"), "extract"),
                    (webserver.url("/busy.html"), webserver.url("/busy.html"), "fetch")}

    # Both pages are fixed on the server; a plain re-run would skip the known thin page.
    webserver.add("/thin.html", eval_page(15))
    webserver.add("/busy.html", eval_page(16))
    again = retry_rejects(settings, db_path)
    assert (again.new_articles, again.rejects) == (2, 0)
    assert rows(db_path, "SELECT count(*) AS n FROM rejects")[0]["n"] == 0
    assert len(webserver.hits("/good.html")) == 1


def test_a_run_whose_only_feed_is_down_has_read_nothing(webserver, settings, db_path, tmp_path):
    """(QA pass: a source down for days showed as a row of Completed runs.) A run over web
    sources only, none answering, reads nothing: the flow fails it (exit 7 from the CLI)."""
    from pipeline.ingest import nothing_read, nothing_read_error, run_overview

    feed = webserver.add("/feed.xml", "down", status=503, content_type="text/plain")
    down = ingest([feed], quick(settings, retries=0), db_path)
    assert nothing_read(down, [feed], None)
    error = nothing_read_error(down, [feed], run_overview(down, db_path)[2])
    assert error.exit_code == 7 and "HTTP 503" in str(error) and feed in str(error)
    # Nor when what answers is not a feed (a page where the feed was): nothing could be read.
    webserver.add("/feed.xml", eval_page(4))
    assert nothing_read(ingest([feed], quick(settings, retries=0), db_path, kind="feed"), [feed], "feed")
    # Not when the feed answers, even with nothing new (304), nor beside a local path.
    page = webserver.add("/p.html", eval_page(3))
    webserver.add("/feed.xml", rss([("P", page)]), content_type="application/rss+xml", etag='"v1"')
    assert not nothing_read(ingest([feed], settings, db_path), [feed], None)
    unchanged = ingest([feed], settings, db_path)
    assert unchanged.not_modified == [feed] and not nothing_read(unchanged, [feed], None)
    local = tmp_path / "empty.txt"
    local.write_text("")
    assert not nothing_read(down, [feed, str(local)], None)
    # A page that answered but is no article is not "nothing read": its server answered.
    thin = webserver.add("/thin.html", "<html><body><p>Too short.</p></body></html>")
    assert not nothing_read(ingest([thin], settings, db_path, kind="page"), [thin], "page")


def test_a_run_whose_feed_answers_but_every_page_fails_has_read_nothing(webserver, settings, db_path):
    """(QA pass: a readable feed whose every listed page failed ended as a finished run, exit 0.)
    Every page fetch failing is as much "nothing read" as the feed failing; one page that
    answers, even with no article in it, is not."""
    from pipeline.ingest import nothing_read, nothing_read_error, run_overview

    first = webserver.add("/a.html", "moved", status=404, content_type="text/plain")
    second = webserver.add("/b.html", "busy", status=503, content_type="text/plain")
    feed = webserver.add("/feed.xml", rss([("A", first), ("B", second)]), content_type="application/rss+xml")
    down = ingest([feed], quick(settings, retries=0), db_path)
    assert (down.listings_fetched, down.pages_fetched, down.pages_failed, down.rejects) == (1, 2, 2, 2)
    assert down.counts()["pages_failed"] == 2
    assert nothing_read(down, [feed], None)
    error = nothing_read_error(down, [feed], run_overview(down, db_path)[2])
    assert error.exit_code == 7 and "HTTP 404" in str(error) and "HTTP 503" in str(error)
    # The summary says how many of the fetches failed.
    assert "(2 failed: unreachable, HTTP errors or refused)" in report.web_lines(down.counts())[0]
    # One of the two pages answering, with no article in it: the source is up.
    webserver.add("/a.html", "<html><body><p>Too short.</p></body></html>")
    partly = ingest([feed], quick(settings, retries=0), db_path)
    assert (partly.pages_fetched, partly.pages_failed, partly.new_articles) == (2, 1, 0)
    assert not nothing_read(partly, [feed], None)


def test_the_cli_says_when_nothing_could_be_read_and_exits_7(webserver, settings, db_path, tmp_path, capsys):
    from pipeline.cli import main

    config = tmp_path / "web.toml"
    config.write_text('[fetch]\nallow_private_hosts = ["127.0.0.1"]\nretries = 0\n')
    feed = webserver.add("/gone.xml", "gone", status=410, content_type="text/plain")
    code = main(["ingest", feed, "--db", str(db_path), "--config", str(config), "--engine", "local", "--quiet"])
    captured = capsys.readouterr()
    assert code == 7, captured
    assert "rejects          1" in captured.out  # the summary first, then the one-line error
    assert captured.err.strip().splitlines()[-1].startswith(f"newsdedup: error: nothing could be read from {feed}")


def test_a_removed_page_is_not_fetched_again_and_each_listing_of_it_is_a_reject(webserver, settings, db_path):
    """A feed listing a page an editor removed (newsdedup remove): the page is not fetched, and
    the input is a reject with the reason, not counted as unchanged (a QA pass)."""
    from pipeline.remove import remove_articles

    w = webserver
    one, two = w.add("/news/one.html", eval_page(0)), w.add("/news/two.html", eval_page(1))
    feed = w.add("/feed.xml", rss([("One", one), ("Two", two)]), content_type="application/rss+xml")
    assert ingest([feed], settings, db_path).new_articles == 2
    remove_articles(db_path, [one], "legal request 12")  # the link as the feed gives it
    fetched = len(w.hits("/news/one.html"))
    for run_settings in (settings, settings):  # every run that reads the feed again
        run = ingest([feed], run_settings, db_path)
        assert run.balanced and (run.new_articles, run.unchanged, run.rejects) == (0, 1, 1)
    assert len(w.hits("/news/one.html")) == fetched
    refused = rows(db_path, "SELECT ref, stage, reason FROM rejects")
    assert [(r["ref"], r["stage"]) for r in refused] == [(one, "store")] and "legal request 12" in refused[0]["reason"]
    # Named on its own, too.
    run = ingest([one], settings, db_path)
    assert (run.new_articles, run.rejects) == (0, 1) and len(w.hits("/news/one.html")) == fetched
