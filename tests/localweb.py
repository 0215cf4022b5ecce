"""A real HTTP server on 127.0.0.1 for the fetching tests: routes set per test, requests recorded."""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str | None = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line: a server that does not answer
    etag: str | None = None  # answers 304 to a matching If-None-Match
    last_modified: str | None = None  # answers 304 to an equal If-Modified-Since
    drip_s: float = 0.0  # sleep between 1-byte writes of the body: a server that trickles
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    at: float


class LocalWeb:
    """`with LocalWeb() as web: web.add("/feed.xml", body, content_type=...); web.url("/feed.xml")`."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Callable[[BaseHTTPRequestHandler], None]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with web._lock:
                    web.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()))
                route = web.routes.get(self.path)
                if route is None:
                    self._send(Route(b"not found", status=404, content_type="text/plain"))
                elif callable(route):
                    route(self)
                else:
                    self._send(route)

            def _send(self, route: Route) -> None:
                if route.delay_s:
                    time.sleep(route.delay_s)
                if (route.etag and self.headers.get("If-None-Match") == route.etag) or (
                    route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified
                ):
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(route.status)
                if route.content_type:
                    self.send_header("Content-Type", route.content_type)
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if not route.send_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                elif "Content-Length" not in route.headers:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                try:
                    if route.drip_s:
                        for byte in route.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(route.drip_s)
                    else:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as the size and time caps make it do

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # clients hanging up early (size caps, timeouts) is what the tests provoke

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes | str = b"", **options) -> str:
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.routes[path] = Route(body=body, **options)
        return self.url(path)

    def hits(self, path: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.requests if seen.path == path]

    def __enter__(self) -> "LocalWeb":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


EVAL_HTML = Path(__file__).resolve().parent / "data" / "html" / "html"


def eval_page(number: int) -> bytes:
    """The HTML of the `number`th page of the extraction evaluation set (real news pages to serve)."""
    return gzip.decompress(sorted(EVAL_HTML.glob("*.html.gz"))[number].read_bytes())


def db_rows(db: str | Path, sql: str) -> list[dict]:
    """The rows a query returns from the story database at `db`."""
    from pipeline.store import open_store

    store = open_store(db)
    try:
        return list(store.db.query(sql))
    finally:
        store.close()
