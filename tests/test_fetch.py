"""HTTP fetching against a real server on 127.0.0.1: politeness, caps, redirects, address checks."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest

from pipeline import fetch
from pipeline.errors import (
    DecodeError,
    FetchRefusedError,
    HttpStatusError,
    TooLargeError,
    TransientFetchError,
)
from pipeline.settings import FetchSettings, Settings, load_settings
from tests.localweb import LocalWeb

pytestmark = pytest.mark.slow  # each test starts an HTTP server

PAGE = "<html><head><title>t</title></head><body><p>Hello from a page.</p></body></html>"


def limits(**changes) -> FetchSettings:
    base = {
        "allow_private_hosts": ("127.0.0.1",), "per_domain_delay_s": 0.0, "retry_delay_s": 0.01,
        "connect_timeout_s": 1.0, "read_timeout_s": 1.0, "total_timeout_s": 3.0,
    }
    return FetchSettings(**{**base, **changes})


@pytest.fixture
def web():
    with LocalWeb() as server:
        yield server
    fetch.forget_hosts()  # pacing and pauses are per host, and every test's host is 127.0.0.1


def test_fetches_a_page_with_an_honest_user_agent(web):
    url = web.add("/page.html", PAGE)
    fetched = fetch.fetch(url, limits())
    assert fetched.status == 200
    assert fetched.body == PAGE.encode()
    assert (fetched.content_type, fetched.charset) == ("text/html", "utf-8")
    agent = web.hits("/page.html")[0].headers["user-agent"]
    assert agent.startswith("newsdedup/0.1 (")
    assert agent == FetchSettings().user_agent


def test_client_errors_are_permanent_and_server_errors_transient(web):
    web.add("/gone", b"gone", status=410)
    web.add("/broken", b"oops", status=500)
    web.add("/busy", b"slow down", status=429)
    with pytest.raises(HttpStatusError, match="HTTP 410"):
        fetch.fetch(web.url("/gone"), limits())
    with pytest.raises(TransientFetchError, match="HTTP 500"):
        fetch.fetch(web.url("/broken"), limits())
    with pytest.raises(TransientFetchError, match="HTTP 429"):
        fetch.fetch(web.url("/busy"), limits())


def test_a_server_that_does_not_answer_times_out(web):
    web.add("/silent", PAGE, delay_s=1.5)
    started = time.monotonic()
    with pytest.raises(TransientFetchError, match="timed out"):
        fetch.fetch(web.url("/silent"), limits(read_timeout_s=0.3))
    assert time.monotonic() - started < 1.4


def test_a_trickling_response_is_cut_off_by_the_total_timeout(web):
    web.add("/drip", "x" * 200, drip_s=0.02)  # 4 s for the whole body, each byte well within read_timeout
    started = time.monotonic()
    with pytest.raises(TransientFetchError, match="too long"):
        fetch.fetch(web.url("/drip"), limits(total_timeout_s=0.5))
    assert time.monotonic() - started < 2.5


def test_connection_refused_is_transient():
    with LocalWeb() as closed:
        url = closed.url("/x")
    with pytest.raises(TransientFetchError, match="connection failed"):
        fetch.fetch(url, limits())


def test_redirects_are_followed_and_checked_hop_by_hop(web):
    web.add("/old", status=301, headers={"Location": "/new"}, content_type=None)
    web.add("/new", PAGE)
    fetched = fetch.fetch(web.url("/old"), limits())
    assert fetched.url == web.url("/new")
    assert fetched.requested_url == web.url("/old")


def test_a_redirect_without_a_location_is_an_error(web):
    web.add("/nowhere", b"moved", status=302, content_type="text/plain")
    with pytest.raises(HttpStatusError, match="HTTP 302"):
        fetch.fetch(web.url("/nowhere"), limits())


def test_a_redirect_loop_is_refused(web):
    web.add("/a", status=302, headers={"Location": "/b"}, content_type=None)
    web.add("/b", status=302, headers={"Location": "/a"}, content_type=None)
    with pytest.raises(FetchRefusedError, match="redirect loop") as caught:
        fetch.fetch(web.url("/a"), limits())
    assert "/b" in caught.value.detail


def test_too_many_redirects_are_refused(web):
    for hop in range(5):
        web.add(f"/r{hop}", status=302, headers={"Location": f"/r{hop + 1}"}, content_type=None)
    web.add("/r5", PAGE)
    with pytest.raises(FetchRefusedError, match="more than 2 redirects"):
        fetch.fetch(web.url("/r0"), limits(max_redirects=2))
    assert not web.hits("/r3")
    assert fetch.fetch(web.url("/r0"), limits(max_redirects=5)).body == PAGE.encode()


@pytest.mark.parametrize(
    "target, words",
    [
        ("http://169.254.169.254/latest/meta-data/", "private, loopback or link-local"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://127.0.0.1/x", "only http and https"),
    ],
)
def test_a_redirect_to_a_forbidden_place_is_refused(web, target, words):
    web.add("/jump", status=302, headers={"Location": target}, content_type=None)
    with pytest.raises(FetchRefusedError, match=words):
        fetch.fetch(web.url("/jump"), limits())


def test_private_addresses_are_refused_unless_allowed(web):
    url = web.add("/page.html", PAGE)
    for refused in (url, url.replace("127.0.0.1", "localhost"), f"http://[::1]:{web.port}/page.html",
                    "http://10.1.2.3/", "http://192.168.0.1/", "http://169.254.169.254/"):
        with pytest.raises(FetchRefusedError, match="private, loopback or link-local"):
            fetch.fetch(refused, limits(allow_private_hosts=()))
    assert web.requests == []  # refused before connecting
    assert fetch.fetch(url, limits(allow_private_hosts=("127.0.0.0/8",))).status == 200
    assert fetch.fetch(url, limits(allow_private_hosts=("127.0.0.1",))).status == 200


def test_the_shipped_defaults_refuse_private_addresses_and_test_config_allows_loopback(settings, web):
    url = web.add("/page.html", PAGE)
    with pytest.raises(FetchRefusedError):
        fetch.fetch(url, Settings().fetch)
    assert load_settings(environ={}).fetch.allow_private_hosts == ()
    assert fetch.fetch(url, settings.fetch).status == 200


def test_oversized_responses_are_refused_declared_or_streamed(web):
    big = "x" * 50_000
    web.add("/declared", big)
    web.add("/streamed", big, send_length=False)
    with pytest.raises(TooLargeError, match="50,000 bytes"):
        fetch.fetch(web.url("/declared"), limits(max_bytes=10_000))
    with pytest.raises(TooLargeError, match="cap"):
        fetch.fetch(web.url("/streamed"), limits(max_bytes=10_000))
    assert len(fetch.fetch(web.url("/streamed"), limits()).body) == 50_000


def test_gzip_content_encoding_is_decoded_and_a_gzip_bomb_stopped(web):
    web.add("/zipped", gzip.compress(PAGE.encode()), headers={"Content-Encoding": "gzip"})
    bomb = gzip.compress(b"\0" * 30_000_000)
    assert len(bomb) < 100_000
    web.add("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    web.add("/corrupt", b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"})
    assert fetch.fetch(web.url("/zipped"), limits()).body == PAGE.encode()
    with pytest.raises(TooLargeError, match="decompresses to more than"):
        fetch.fetch(web.url("/bomb"), limits(max_bytes=1_000_000))
    with pytest.raises(DecodeError, match="corrupt"):
        fetch.fetch(web.url("/corrupt"), limits())


def test_robots_txt_is_respected(web):
    web.add("/robots.txt", "User-agent: *\nDisallow: /private/\n\nUser-agent: newsdedup\nDisallow: /no-bots/\n",
            content_type="text/plain")
    web.add("/private/page.html", PAGE)
    web.add("/no-bots/page.html", PAGE)
    web.add("/public/page.html", PAGE)
    settings = limits()
    assert fetch.fetch(web.url("/public/page.html"), settings).status == 200
    with pytest.raises(FetchRefusedError, match="robots.txt"):
        fetch.fetch(web.url("/no-bots/page.html"), settings)
    # Our own group applies, not the * group (RFC 9309): /private/ is allowed for newsdedup.
    assert fetch.fetch(web.url("/private/page.html"), settings).status == 200
    assert not web.hits("/no-bots/page.html")
    assert len(web.hits("/robots.txt")) == 1  # read once, then cached
    assert fetch.fetch(web.url("/no-bots/page.html"), limits(respect_robots=False)).status == 200


def test_robots_txt_that_fails_makes_the_page_wait(web):
    web.add("/robots.txt", "down", status=503, content_type="text/plain")
    web.add("/page.html", PAGE)
    with pytest.raises(TransientFetchError, match="503"):
        fetch.fetch(web.url("/page.html"), limits())
    assert not web.hits("/page.html")


def _parallel(urls, settings):
    threads = [threading.Thread(target=fetch.fetch, args=(url, settings)) for url in urls]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def test_per_host_delay_spaces_requests(web):
    for number in range(3):
        web.add(f"/p{number}", PAGE)
    settings = limits(per_domain_delay_s=0.3)
    for number in range(3):
        fetch.fetch(web.url(f"/p{number}"), settings)
    starts = [web.hits(f"/p{number}")[0].at for number in range(3)]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert min(gaps) >= 0.27, gaps


def test_per_host_concurrency_is_limited(web):
    for number in range(3):
        web.add(f"/slow{number}", PAGE, delay_s=0.4)
    one_at_a_time = _parallel([web.url(f"/slow{n}") for n in range(3)], limits(per_domain_concurrency=1))
    three_at_a_time = _parallel([web.url(f"/slow{n}") for n in range(3)], limits(per_domain_concurrency=3))
    assert one_at_a_time >= 1.15
    assert three_at_a_time < 1.0


def test_conditional_requests_get_not_modified(web):
    url = web.add("/feed.xml", "<rss/>", content_type="application/rss+xml", etag='"v1"',
                  last_modified="Tue, 19 Nov 2019 10:00:00 GMT")
    first = fetch.fetch(url, limits())
    assert (first.etag, first.last_modified) == ('"v1"', "Tue, 19 Nov 2019 10:00:00 GMT")
    by_etag = fetch.fetch(url, limits(), etag=first.etag)
    by_date = fetch.fetch(url, limits(), last_modified=first.last_modified)
    assert by_etag.not_modified and by_date.not_modified and by_etag.body == b""
    assert web.hits("/feed.xml")[1].headers["if-none-match"] == '"v1"'
    assert not fetch.fetch(url, limits(), etag='"v0"').not_modified


def test_unreachable_reject_names_the_attempts():
    rejected = fetch.unreachable("http://x.test/", TransientFetchError("http://x.test/", "timed out"), 4)
    assert (rejected.stage, rejected.reason) == ("fetch", "timed out (gave up after 4 attempts)")



def test_the_address_actually_connected_to_is_checked_too(web, monkeypatch):
    # Stands in for DNS rebinding: the pre-connection check sees a public answer, the
    # connection goes to 127.0.0.1, which this configuration does not allow.
    url = web.add("/page.html", PAGE)
    monkeypatch.setattr(fetch, "check_address", lambda url, settings: None)
    with pytest.raises(FetchRefusedError, match="private, loopback or link-local"):
        fetch.fetch(url, limits(allow_private_hosts=(), respect_robots=False))


def test_a_robots_crawl_delay_raises_the_per_host_delay(web):
    web.add("/robots.txt", "User-agent: *\nCrawl-delay: 1\n", content_type="text/plain")
    web.add("/a", PAGE)
    web.add("/b", PAGE)
    settings = limits(per_domain_delay_s=0.0)
    fetch.fetch(web.url("/a"), settings)
    fetch.fetch(web.url("/b"), settings)
    assert web.hits("/b")[0].at - web.hits("/a")[0].at >= 0.95
    assert fetch.fetch(web.url("/a"), limits(max_crawl_delay_s=0.0)).status == 200  # capped by max_crawl_delay_s


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert fetch.retry_after_seconds("120") == 120.0
    assert fetch.retry_after_seconds(" 0 ") == 0.0
    soon = time.time() + 90
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(soon))
    assert 85 <= fetch.retry_after_seconds(date) <= 91
    assert fetch.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # already past
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert fetch.retry_after_seconds(unreadable) is None


def test_a_retry_after_pauses_every_request_to_the_host(web):
    web.add("/busy", b"slow down", status=429, headers={"Retry-After": "1"})
    web.add("/other", PAGE)
    with pytest.raises(TransientFetchError, match="HTTP 429") as caught:
        fetch.fetch(web.url("/busy"), limits())
    assert caught.value.retry_after_s == 1.0
    assert caught.value.detail == "Retry-After: 1 s"
    assert fetch.fetch(web.url("/other"), limits()).status == 200
    waited = web.hits("/other")[0].at - web.hits("/busy")[0].at
    assert waited >= 0.9, waited


def test_a_pause_longer_than_we_wait_rejects_without_asking_the_host_again(web):
    web.add("/busy", b"come back tomorrow", status=503, headers={"Retry-After": "3600"})
    web.add("/other", PAGE)
    with pytest.raises(HttpStatusError, match=r"HTTP 503 .*pause of 3,600 s.*max_retry_after_s \(120 s\).*--retry-rejects"):
        fetch.fetch(web.url("/busy"), limits(max_retry_after_s=120.0))
    with pytest.raises(HttpStatusError, match=r"127\.0\.0\.1 asked for a pause of 3,[56]\d\d s"):
        fetch.fetch(web.url("/other"), limits(max_retry_after_s=120.0))
    assert web.hits("/other") == []
    fetch.forget_hosts()
    assert fetch.fetch(web.url("/other"), limits()).status == 200


def test_library_retries_wait_as_long_as_the_server_asks(web, settings):
    calls: list[float] = []
    web.add("/page", PAGE)

    def flaky():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise TransientFetchError("http://x/", "server answered HTTP 429", retry_after_s=0.6)
        return "done"

    from pipeline import web as web_module

    fast = settings.model_copy(update={"fetch": settings.fetch.model_copy(update={"retry_delay_s": 0.01})})
    assert web_module.retrying(flaky, fast) == "done"
    assert calls[1] - calls[0] >= 0.55


def test_a_resolver_that_cannot_answer_for_now_is_transient(monkeypatch):
    def no_answer(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_answer)
    with pytest.raises(TransientFetchError, match="cannot resolve host news.example for now"):
        fetch.check_address("https://news.example/a", limits())


def test_a_resolver_that_never_answers_costs_at_most_the_connect_timeout(monkeypatch):
    # getaddrinfo has no timeout of its own: a hung resolver would hold a crawl thread for as
    # long as the system's resolver settings allow.
    released = threading.Event()

    def hung(*args, **kwargs):
        released.wait(30)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    started = time.monotonic()
    try:
        with pytest.raises(TransientFetchError, match="cannot resolve host news.example for now") as caught:
            fetch.check_address("https://news.example/a", limits(connect_timeout_s=0.3))
    finally:
        released.set()
    assert time.monotonic() - started < 2.0
    assert "no answer from the resolver in 0.3 s" in caught.value.detail


def test_a_lookup_that_answers_in_time_is_checked_as_before(monkeypatch):
    def slow_loopback(host, port, *args, **kwargs):
        time.sleep(0.1)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", slow_loopback)
    with pytest.raises(FetchRefusedError, match=r"news.example is 127.0.0.1"):
        fetch.check_address("https://news.example/a", limits(connect_timeout_s=2.0, allow_private_hosts=()))
