"""HTTP fetching of pages, feeds and sitemaps: polite (robots.txt, per-host pacing), bounded and safe.

Every hop of a request is checked before it is made: the scheme is http or https, every
address the host resolves to is public (or allowed in `fetch.allow_private_hosts`), and
robots.txt allows the path. Bodies are streamed and cut off at `fetch.max_bytes`, after
decompression too. Failures that may pass (timeouts, 5xx, refused connections) raise
`TransientFetchError` so the caller can retry; the rest raise a `BadInputError` kind and
become rejects.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import socket
import threading
import time
import zlib
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from .errors import (
    DecodeError,
    FetchRefusedError,
    HttpStatusError,
    TooLargeError,
    TransientFetchError,
)
from .models import Fetched, Rejected
from .settings import FetchSettings

log = logging.getLogger(__name__)

STAGE = "fetch"
SCHEMES = ("http", "https")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Statuses that say "try again later" rather than "no": timeouts, rate limits, server trouble.
_TRANSIENT_STATUSES = frozenset({408, 425, 429})
# RFC 9309 asks crawlers to parse at least 500 KiB of robots.txt and to cache it at most 24 h;
# an hour keeps a long-running `serve` process current without asking on every page.
_ROBOTS_MAX_BYTES = 512 * 1024
_ROBOTS_TTL_S = 3600.0


# -- where we may go -----------------------------------------------------------------------------


def checked_url(url: str) -> str:
    """`url` stripped, if it is an absolute http(s) URL with a host.

    Raises:
        FetchRefusedError: another scheme (file:, ftp:, javascript:), or no host.
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise FetchRefusedError(
            f"only http and https URLs are fetched, not {parts.scheme or 'a relative URL'!s}", url
        )
    if not parts.hostname:
        raise FetchRefusedError("URL has no host", url)
    return url


def _allowed(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: tuple[str, ...]) -> bool:
    for item in allow:
        if item.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue  # a host name, compared above
    return False


def _refuse_unless_public(url: str, host: str, address_text: str, settings: FetchSettings) -> None:
    address = ipaddress.ip_address(address_text.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if not address.is_global and not _allowed(host, address, settings.allow_private_hosts):
        raise FetchRefusedError(
            f"refusing to fetch from a private, loopback or link-local address ({host} is {address}); "
            "allow it in fetch.allow_private_hosts if you mean it",
            url,
        )


def _resolved(host: str, port: int, timeout_s: float) -> list:
    """socket.getaddrinfo(host, port), waiting at most `timeout_s` for the resolver.

    getaddrinfo has no timeout of its own: a resolver that does not answer holds the caller for
    as long as the system's resolver settings say (tens of seconds), and a crawl thread with it.
    The lookup runs on a daemon thread, left to finish on its own when it is too slow.

    Raises:
        socket.gaierror: as getaddrinfo does; EAI_AGAIN when no answer came in time.
    """
    answer: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the caller, whatever it is
            answer["error"] = exc
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not done.wait(timeout_s):
        raise socket.gaierror(socket.EAI_AGAIN, f"no answer from the resolver in {timeout_s:g} s")
    if "error" in answer:
        raise answer["error"]  # type: ignore[misc]
    return answer["infos"]  # type: ignore[return-value]


def check_address(url: str, settings: FetchSettings) -> None:
    """Refuse a URL whose host resolves to a private, loopback, link-local or reserved address.

    Every address the host resolves to is checked: one public address does not excuse a
    private one (DNS answers can mix them to slip past a check of only the first).

    Raises:
        FetchRefusedError: the host does not resolve, or an address is not public and not allowed.
        TransientFetchError: the resolver could not answer for now (EAI_AGAIN), or not within
            `connect_timeout_s`.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = _resolved(host, port, settings.connect_timeout_s)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the resolver did not answer in time: may pass
            raise TransientFetchError(url, f"cannot resolve host {host} for now", str(exc)) from None
        raise FetchRefusedError(f"cannot resolve host {host}", str(exc)) from None
    except (UnicodeError, OSError) as exc:
        raise FetchRefusedError(f"cannot resolve host {host}", str(exc)) from None
    for info in infos:
        _refuse_unless_public(url, host, str(info[4][0]), settings)


def _check_peer(url: str, response: httpx.Response, settings: FetchSettings) -> None:
    """Refuse a response that came from a private address after all.

    The HTTP client resolves the host again; a DNS answer that changed since check_address
    (DNS rebinding) is caught here, before any of the body is read.
    """
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer:
        _refuse_unless_public(url, urlsplit(url).hostname or "", str(peer[0]), settings)


# -- politeness ----------------------------------------------------------------------------------


class _HostGate:
    """At most `concurrency` requests to one host at a time, started at least `delay` seconds
    apart, and none while the host has asked for a pause (Retry-After)."""

    def __init__(self, concurrency: int) -> None:
        self.slots = threading.BoundedSemaphore(concurrency)
        self.lock = threading.Lock()
        self.next_start = 0.0
        self.paused_until = 0.0  # time.monotonic() before which the host asked not to be asked

    def pause(self, seconds: float, longest: float) -> None:
        """The host asked for no requests for `seconds`: later turns wait for it, when that is at
        most `longest` (a longer pause is kept only to refuse requests: see `refused_for`)."""
        with self.lock:
            until = time.monotonic() + seconds
            self.paused_until = max(self.paused_until, until)
            if seconds <= longest:
                self.next_start = max(self.next_start, until)

    def refused_for(self, longest: float) -> float:
        """The seconds left of a pause the host asked for that is longer than `longest`, else 0."""
        with self.lock:
            left = self.paused_until - time.monotonic()
        return left if left > longest else 0.0

    @contextmanager
    def turn(self, delay: float) -> Iterator[None]:
        with self.slots:
            with self.lock:
                now = time.monotonic()
                start = max(now, self.next_start)
                self.next_start = start + delay
            if start > now:
                time.sleep(start - now)
            yield


# Shared by every fetch in this process (Prefect runs tasks in threads of one process), so
# parallel tasks still take turns per host.
_gates: dict[tuple[str, int], _HostGate] = {}
_gates_lock = threading.Lock()
_robots: dict[tuple[str, str], tuple[float, RobotFileParser | None]] = {}
_robots_lock = threading.Lock()


def _gate(host: str, concurrency: int) -> _HostGate:
    with _gates_lock:
        return _gates.setdefault((host.lower(), concurrency), _HostGate(concurrency))


def forget_hosts() -> None:
    """Drop every host's pacing and asked-for pause (tests, or a long-running process)."""
    with _gates_lock:
        _gates.clear()


def forget_robots() -> None:
    """Drop cached robots.txt rules (tests, or a long-running process told to re-read them)."""
    with _robots_lock:
        _robots.clear()


def _robots_rules(url: str, client: httpx.Client, settings: FetchSettings) -> RobotFileParser | None:
    """The robots.txt rules for `url`'s origin, None when there are none (404 and other 4xx).

    Raises:
        TransientFetchError: robots.txt could not be read for now (5xx, timeout): RFC 9309 says
            to assume everything is disallowed then, so the page waits for a retry.
    """
    parts = urlsplit(url)
    origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
    key = (origin, settings.robots_agent)
    with _robots_lock:
        cached = _robots.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    robots_url = origin + "/robots.txt"
    try:
        fetched = _get(client, robots_url, settings, {}, max_bytes=_ROBOTS_MAX_BYTES, robots=False)
        rules: RobotFileParser | None = RobotFileParser(robots_url)
        text = fetched.body.decode("utf-8", errors="replace")
        rules.parse(text.splitlines())  # type: ignore[union-attr]
    except HttpStatusError:
        rules = None  # 4xx: no robots.txt, so no restrictions (RFC 9309 2.3.1.3)
    except (FetchRefusedError, TooLargeError, DecodeError) as exc:
        log.warning("ignoring unreadable robots.txt at %s: %s", robots_url, exc)
        rules = None
    with _robots_lock:
        _robots[key] = (time.monotonic() + _ROBOTS_TTL_S, rules)
    return rules


def _crawl_delay(rules: RobotFileParser | None, settings: FetchSettings) -> float:
    asked = rules.crawl_delay(settings.robots_agent) if rules else None
    try:
        asked_s = float(asked) if asked is not None else 0.0
    except (TypeError, ValueError):
        asked_s = 0.0
    return max(settings.per_domain_delay_s, min(asked_s, settings.max_crawl_delay_s))


# -- one request ---------------------------------------------------------------------------------


def _media_type(header: str | None) -> tuple[str | None, str | None]:
    """(media type, charset) from a Content-Type header."""
    if not header:
        return None, None
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'").lower()
    return media.strip().lower() or None, charset


def _inflater(encoding: str, url: str):
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)
    raise DecodeError(f"unsupported content encoding {encoding!r}", url)


def _body(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    """The response body, decompressed, refusing more than `max_bytes` before or after decompression.

    Raises:
        TooLargeError, DecodeError (corrupt compressed data), TransientFetchError (too slow).
    """
    inflater = _inflater(response.headers.get("content-encoding", ""), url)
    out = bytearray()
    received = 0
    too_large = TooLargeError(
        f"response is over the {max_bytes:,}-byte cap (fetch.max_bytes)", url
    )
    for chunk in response.iter_raw():  # no chunk size: httpx would buffer up to it, past the deadline
        received += len(chunk)
        if received > max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise TransientFetchError(url, "response took too long (fetch.total_timeout_s)")
        if inflater is None:
            out += chunk
            continue
        try:
            # max_length bounds each step, so a gzip bomb never expands in memory past the cap.
            data = inflater.decompress(chunk, max_bytes + 1 - len(out))
            out += data
            while inflater.unconsumed_tail and len(out) <= max_bytes:
                out += inflater.decompress(inflater.unconsumed_tail, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise DecodeError("corrupt compressed response", str(exc)) from None
        if len(out) > max_bytes:
            raise TooLargeError(
                f"response decompresses to more than {max_bytes:,} bytes (fetch.max_bytes)", url
            )
    if inflater is not None:
        try:
            out += inflater.flush()
        except zlib.error as exc:
            raise DecodeError("corrupt compressed response", str(exc)) from None
        if not inflater.eof:
            raise DecodeError("corrupt compressed response (truncated)", url)
        if len(out) > max_bytes:
            raise too_large
    if len(out) > max_bytes:
        raise too_large
    return bytes(out)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's pause in seconds (delay-seconds or an HTTP date; RFC 9110 10.2.3),
    None when it is missing or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _too_long_a_pause(url: str, what: str, seconds: float, settings: FetchSettings) -> HttpStatusError:
    return HttpStatusError(
        f"{what} asked for a pause of {seconds:,.0f} s, longer than fetch.max_retry_after_s "
        f"({settings.max_retry_after_s:,.0f} s); replay it later with `newsdedup ingest --retry-rejects`",
        url,
    )


def _status_error(url: str, response: httpx.Response, gate: _HostGate, settings: FetchSettings) -> None:
    status = response.status_code
    phrase = f"HTTP {status} {response.reason_phrase}".strip()
    if status >= 500 or status in _TRANSIENT_STATUSES:
        pause = retry_after_seconds(response.headers.get("retry-after"))
        if pause is None:
            raise TransientFetchError(url, f"server answered {phrase}")
        # The whole host waits, not only this URL: a rate limit is the server's, not the page's.
        gate.pause(pause, settings.max_retry_after_s)
        if pause > settings.max_retry_after_s:
            raise _too_long_a_pause(url, f"server answered {phrase} and", pause, settings)
        raise TransientFetchError(url, f"server answered {phrase}", f"Retry-After: {pause:,.0f} s", retry_after_s=pause)
    if status >= 300 or status < 200:  # a redirect without a Location, or a 304 we did not ask for
        raise HttpStatusError(f"server answered {phrase}", url)


def _get(
    client: httpx.Client,
    url: str,
    settings: FetchSettings,
    headers: dict[str, str],
    *,
    max_bytes: int,
    robots: bool,
) -> Fetched:
    """GET `url`, following redirects by hand so that every hop is checked."""
    deadline = time.monotonic() + settings.total_timeout_s
    requested = url
    chain: list[str] = []
    for _ in range(settings.max_redirects + 1):
        url = checked_url(url)
        if url in chain:
            raise FetchRefusedError("redirect loop", " -> ".join(chain + [url]))
        chain.append(url)
        check_address(url, settings)
        delay = settings.per_domain_delay_s
        if robots and settings.respect_robots:
            rules = _robots_rules(url, client, settings)
            if rules is not None and not rules.can_fetch(settings.robots_agent, url):
                raise FetchRefusedError("robots.txt disallows fetching this URL", url)
            delay = _crawl_delay(rules, settings)
        host = urlsplit(url).hostname or ""
        gate = _gate(host, settings.per_domain_concurrency)
        refused = gate.refused_for(settings.max_retry_after_s)
        if refused:  # the host asked for a longer pause than we wait for: not asked again this run
            raise _too_long_a_pause(url, f"{host}", refused, settings)
        with gate.turn(delay):
            try:
                with client.stream("GET", url, headers=headers) as response:
                    _check_peer(url, response, settings)
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        url = str(response.url.join(location))
                        continue
                    if response.status_code == 304 and headers.keys() & {"If-None-Match", "If-Modified-Since"}:
                        return Fetched(url=url, requested_url=requested, status=304, body=b"", not_modified=True)
                    _status_error(url, response, gate, settings)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise TooLargeError(
                            f"response is {int(declared):,} bytes, over the {max_bytes:,}-byte cap (fetch.max_bytes)",
                            url,
                        )
                    body = _body(response, url, max_bytes, deadline)
                    media, charset = _media_type(response.headers.get("content-type"))
                    return Fetched(
                        url=url,
                        requested_url=requested,
                        status=response.status_code,
                        body=body,
                        content_type=media,
                        charset=charset,
                        etag=response.headers.get("etag"),
                        last_modified=response.headers.get("last-modified"),
                    )
            except httpx.TimeoutException as exc:
                raise TransientFetchError(url, "timed out", type(exc).__name__) from None
            except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
                raise TransientFetchError(url, "connection failed", f"{type(exc).__name__}: {exc}") from None
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                raise FetchRefusedError("URL cannot be requested", f"{type(exc).__name__}: {exc}") from None
    raise FetchRefusedError(f"more than {settings.max_redirects} redirects (fetch.max_redirects)", requested)


def _client(settings: FetchSettings) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
        follow_redirects=False,
        # Proxies and .netrc from the environment would route around the address checks.
        trust_env=False,
        headers={
            "User-Agent": settings.user_agent,
            # Only encodings we can decompress under a cap ourselves.
            "Accept-Encoding": "gzip, deflate",
        },
    )


def fetch(
    url: str,
    settings: FetchSettings,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str | None = None,
) -> Fetched:
    """The response to GET `url`, after every check; a conditional GET when validators are given.

    Raises:
        FetchRefusedError: not http(s), a private address, robots.txt, a redirect loop or too many.
        HttpStatusError: a 4xx answer.
        TooLargeError: over `fetch.max_bytes`, declared or streamed, before or after decompression.
        DecodeError: a corrupt or unsupported compressed body.
        TransientFetchError: a timeout, a 5xx or 429, a connection failure (retry it).
    """
    headers: dict[str, str] = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    if accept:
        headers["Accept"] = accept
    with _client(settings) as client:
        return _get(client, url, settings, headers, max_bytes=settings.max_bytes, robots=True)


def unreachable(url: str, error: TransientFetchError, attempts: int) -> Rejected:
    """The reject for a URL that still failed after all its retries."""
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    return Rejected(url, STAGE, f"{error.reason} (gave up after {tries})", error.detail, url)
