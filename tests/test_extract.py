"""Extraction: text files, HTML through trafilatura, JSON Lines records; junk becomes BadInputError."""

import pytest

from pipeline.errors import BadInputError, NoArticleError, ParseError
from pipeline.extract import article_from, canonical_url, iso_date
from pipeline.models import RawDocument
from pipeline.settings import IngestSettings

from pathlib import Path

SEEDS = Path(__file__).resolve().parent.parent / "seeds"

SETTINGS = IngestSettings()
BODY = " ".join(f"Sentence number {i} tells more of the story about the council vote." for i in range(12))


def test_first_line_of_a_text_file_is_its_title():
    raw = RawDocument(ref="a.txt", kind="text", body=f"Council votes on budget\n\n{BODY}".encode())
    article = article_from(raw, SETTINGS)
    assert article.title == "Council votes on budget"
    assert article.text.startswith("Sentence number 0")
    assert article.external_id == "a.txt" and article.published is None


def test_date_marker_gives_the_publication_date():
    raw = RawDocument(ref="b.txt", kind="text", body=(SEEDS / "001_b6e53b65f60d6b35.txt").read_bytes())
    article = article_from(raw, SETTINGS)
    assert article.published == "2020-04-02"
    assert article.title is None
    assert article.text.startswith("The Trump campaign sent a letter")


@pytest.mark.parametrize("head", [
    "Council votes on budget\ndate 2020-05-02\n\n",
    "Council votes on budget\n\ndate 2020-05-02\n",
    "date 2020-05-02\nCouncil votes on budget\n\n",
    "\ndate 2020-05-02\n\nCouncil votes on budget\n",
])
def test_a_text_file_may_give_both_a_title_and_a_date(head):
    """(Docs walk-through QA: a marker took the title's place, and one after the title stayed in
    the text.) A date marker alone on its line, before or after the title line, gives the date."""
    article = article_from(RawDocument(ref="t.txt", kind="text", body=(head + BODY).encode()), SETTINGS)
    assert (article.title, article.published) == ("Council votes on budget", "2020-05-02")
    assert "date 2020" not in article.text and article.text.startswith(BODY.strip()[:20])


@pytest.mark.parametrize("marker, kept", [
    ("2020-13-45", {"published_unreadable": "2020-13-45"}),
    ("2999-01-01", {"published_in_future": "2999-01-01"}),
])
def test_a_date_marker_that_cannot_be_used_is_kept_in_extra(marker, kept):
    """As a JSON Lines record's unusable date is (a QA pass saw a .txt file's simply vanish)."""
    raw = RawDocument(ref="c.txt", kind="text", body=f"date {marker} The vote came late.\n{BODY}".encode())
    article = article_from(raw, SETTINGS)
    assert article.published is None and article.extra == kept
    assert article.text.startswith("The vote came late.")


def test_html_page_through_trafilatura_with_metadata():
    html = f"""<html><head><title>Council votes on budget | Daily Planet</title>
    <meta property="og:site_name" content="Daily Planet">
    <meta name="date" content="2021-03-04">
    <link rel="canonical" href="https://planet.example/news/council-budget?utm_source=x"></head>
    <body><nav>Home | World | Sport</nav><article><h1>Council votes on budget</h1>
    <p>{BODY}</p><p>{BODY}</p></article><footer>Copyright Daily Planet</footer></body></html>"""
    article = article_from(RawDocument(ref="p.html", kind="html", body=html.encode()), SETTINGS)
    assert article.title == "Council votes on budget"
    assert article.published == "2021-03-04"
    assert article.url == "https://planet.example/news/council-budget"
    assert "Home | World" not in article.text


def test_html_without_an_article_and_binary_html_are_rejected():
    with pytest.raises(NoArticleError):
        article_from(RawDocument(ref="n.html", kind="html", body=b"<html><script>var a=1;</script></html>"), SETTINGS)
    with pytest.raises(BadInputError, match="binary"):
        article_from(RawDocument(ref="i.html", kind="html", body=b"\x89PNG\r\n\x1a\n" + bytes(200)), SETTINGS)


def test_records_need_text_of_the_right_type():
    with pytest.raises(ParseError, match="no 'text'"):
        article_from(RawDocument(ref="r:1", kind="record", fields={"title": "x"}), SETTINGS)
    with pytest.raises(ParseError, match="'text' must be a string"):
        article_from(RawDocument(ref="r:2", kind="record", fields={"text": 5}), SETTINGS)
    with pytest.raises(ParseError, match="'title' must be a string"):
        article_from(RawDocument(ref="r:3", kind="record", fields={"text": BODY, "title": ["x"]}), SETTINGS)


def test_record_fields_and_extras_are_kept():
    fields = {"id": 17, "text": BODY, "title": "T", "url": "HTTPS://Example.org/a#frag", "source": "ex",
              "published": "2020-01-02T03:04:05Z", "lang": "en"}
    article = article_from(RawDocument(ref="r:1", kind="record", fields=fields), SETTINGS)
    assert article.external_id == "17"
    assert article.url == "https://example.org/a"
    assert article.published == "2020-01-02T03:04:05"
    assert article.extra == {"lang": "en"}


def test_too_short_text_is_not_an_article():
    with pytest.raises(NoArticleError, match="too short"):
        article_from(RawDocument(ref="s.txt", kind="text", body=b"Title\n\nOnly a few words here."), SETTINGS)


def test_same_url_means_same_article_id_and_same_content_other_id_does_not():
    first = article_from(RawDocument(ref="r:1", kind="record", fields={"text": BODY, "url": "https://x.org/a"}), SETTINGS)
    again = article_from(RawDocument(ref="r:9", kind="record", fields={"text": BODY + " More.", "url": "https://x.org/a"}), SETTINGS)
    other = article_from(RawDocument(ref="r:2", kind="record", fields={"text": BODY, "id": "b"}), SETTINGS)
    assert first.article_id == again.article_id
    assert other.article_id != first.article_id and other.content_hash == first.content_hash


def test_dates_future_and_unreadable_are_dropped():
    assert iso_date("2999-01-01") is None
    assert iso_date("not a date at all") is None
    assert iso_date("March 4, 2021") == "2021-03-04"
    assert canonical_url("ftp://x.org/a") is None


def test_query_parameters_that_name_an_article_are_kept():
    assert canonical_url("https://x.org/news.php?article=55&utm_source=feed#top") == "https://x.org/news.php?article=55"
    assert canonical_url("https://x.org/news.php?article=55") != canonical_url("https://x.org/news.php?article=56")


_CLIMATE = "<p>" + "Leaders met in Geneva on Tuesday to revisit the Paris agreement signed in 2015, officials said. " * 5 + "</p>"


def _page(head: str = "", tail: str = "") -> str:
    return f"<html><head><title>Leaders meet over climate deal</title>{head}</head><body><article>{_CLIMATE}{tail}</article></body></html>"


@pytest.mark.parametrize("page, given, expected", [
    # (QA pass) a year the text mentions is not the page's date, with or without a feed's date
    (_page(), None, None),
    (_page(), "Mon, 06 Jan 2025 10:00:00 GMT", "2025-01-06T10:00:00"),
    # the page's own markup first, then the date it came with, then a full date in its text
    (_page('<meta property="article:published_time" content="2024-05-02T10:00:00Z">'), "2025-01-06", "2024-05-02"),
    (_page(tail="<p>Published: March 3, 2024</p>"), None, "2024-03-03"),
    (_page(tail="<p>Published: March 3, 2024</p>"), "2025-01-06", "2025-01-06"),
])
def test_an_html_page_is_dated_by_its_markup_then_its_feed_then_a_full_date_in_its_text(page, given, expected):
    fields = {"published": given} if given else {}
    article = article_from(RawDocument(ref="page.html", kind="html", body=page, fields=fields), IngestSettings())
    assert article.published == expected
