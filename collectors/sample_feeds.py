"""Sample news feeds and a local HTTP server for the demo, the tests and the benchmark.

The feeds are generated here (Bing-News-shaped RSS 2.0 with redirect links),
not copied from anyone. The server is a real HTTP/1.1 server on 127.0.0.1 with
ETag/Last-Modified and 304s, per-route latency, and scripted faults (500, 429
with Retry-After, 410, 301, truncated transfers, arbitrary bodies), and it
counts the requests it sees, so a test can check what a collector really sent.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

DEMO_QUERIES = ("Ontology", "AI", "Palantir", "LLM", "Elon Musk", "OpenAI", "Google", "Meta", "Microsoft",
                "Apple", "Amazon", "Tesla", "SpaceX", "NASA", "Donald Trump")
_EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def sample_rss(query: str, *, items: int = 20, first: int = 0, start: datetime = _EPOCH, shared: int = 0) -> bytes:
    """An RSS 2.0 news search result for `query` with items first..first+items-1 (newest first).

    With `shared` = k, every k-th item is a top story that every query finds (same
    URL in every feed), as real searches overlap: what an aggregate merges by URL.
    """
    slugq = quote(query.lower().replace(" ", "-"))
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:News="https://www.bing.com:443/news/search?q=ns">',
        f"<channel><title>{escape(query)} - Sample News</title>",
        f"<link>https://news.example.org/search?q={slugq}</link>",
        f"<description>Sample search results for {escape(query)}</description>",
    ]
    for n in reversed(range(first, first + items)):
        top = shared and n % shared == 0
        article = f"https://news.example.org/{'top' if top else slugq}/story-{n}?utm_source=rss"
        link = ("http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=sample"
                f"&url={quote(article, safe='')}&c=123&mkt=en-us")
        when = format_datetime(start + timedelta(minutes=17 * n), usegmt=True)
        parts.append(
            f"<item><title>{'Top' if top else escape(query)} story {n}: what changed this week</title>"
            f"<link>{escape(link)}</link>"
            f"<description>Summary of story {n} about {escape(query)}.</description>"
            f"<pubDate>{when}</pubDate><News:Source>Example Wire</News:Source></item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs when a collector opens 8+ connections at
    # once, and the kernel's 1 s SYN retry then shows up as a slow feed.
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a killed collector) is normal here, not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Reply:
    """A scripted response; `truncate_to` sends fewer bytes than Content-Length promises."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    truncate_to: int | None = None


@dataclass
class Route:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    validators: bool = True
    latency: float = 0.0
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    script: list[Reply] = field(default_factory=list)
    sticky: Reply | None = None
    handler: Callable[[dict[str, str], dict[str, str]], Reply] | None = None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


class FeedServer:
    """`with FeedServer() as srv: srv.set_feed('/a.xml', body); url = srv.url('/a.xml')`."""

    def __init__(self, *, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latency = latency
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer((host, port), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def set_feed(self, path: str, body: bytes, **kwargs: object) -> Route:
        with self._lock:
            old = self.routes.get(path)
            route = Route(body=body, **kwargs)  # type: ignore[arg-type]
            if old is not None and old.body == body:
                route.last_modified = old.last_modified
            self.routes[path] = route
            return route

    def handle(self, path: str, handler: Callable[[dict[str, str], dict[str, str]], Reply], *,
               latency: float = 0.0) -> Route:
        """Answer `path` with `handler(query, headers)`: dynamic endpoints such as a sample API."""
        with self._lock:
            route = Route(body=b"", content_type="application/json", validators=False, latency=latency,
                          handler=handler)
            self.routes[path] = route
            return route

    def script(self, path: str, *replies: Reply) -> None:
        """Serve these replies, one per request, before falling back to the feed."""
        with self._lock:
            self.routes[path].script.extend(replies)

    def stick(self, path: str, reply: Reply | None) -> None:
        """Answer every request to `path` with `reply` (None restores the feed)."""
        with self._lock:
            self.routes[path].sticky = reply

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for p, _ in self.requests if path is None or p == path)

    def headers_for(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [h for p, h in self.requests if p == path]

    def start(self) -> FeedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="feed-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self, path: str, headers: dict[str, str]) -> tuple[Route | None, Reply | None]:
        with self._lock:
            self.requests.append((path, headers))
            route = self.routes.get(path)
            if route is None:
                return None, None
            if route.script:
                return route, route.script.pop(0)
            return route, route.sticky


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "abi-sample-feeds/1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length)
            self._serve(head=False)

        def _serve(self, *, head: bool) -> None:
            path, _, query = self.path.partition("?")
            headers_in = {k.lower(): v for k, v in self.headers.items()}
            body_in = getattr(self, "_body", b"").decode("utf-8", "replace")
            route, reply = server._take(path, {**headers_in, ":query": query, ":method": self.command,
                                               ":body": body_in, ":time": f"{time.monotonic():.6f}"})
            delay = route.latency if route and route.latency else server.latency
            if delay:
                time.sleep(delay)
            if route is None:
                return self._send(404, {}, b"not found\n", head)
            if reply is None and route.handler is not None:
                reply = route.handler(dict(parse_qsl(query, keep_blank_values=True)), headers_in)
            if reply is not None:
                body = reply.body if reply.body is not None else (route.body if reply.status == 200 else b"")
                headers = {"Content-Type": route.content_type, **reply.headers}
                return self._send(reply.status, headers, body, head, truncate_to=reply.truncate_to)
            headers = {"Content-Type": route.content_type}
            if route.validators:
                headers["ETag"] = route.etag
                headers["Last-Modified"] = format_datetime(route.last_modified, usegmt=True)
                if self._not_modified(route):
                    return self._send(304, {"ETag": route.etag}, b"", head)
            return self._send(200, headers, route.body, head)

        def _not_modified(self, route: Route) -> bool:
            tag = self.headers.get("If-None-Match")
            if tag is not None:
                return route.etag in [t.strip() for t in tag.split(",")]
            since = self.headers.get("If-Modified-Since")
            if since:
                try:
                    return route.last_modified <= parsedate_to_datetime(since)
                except (TypeError, ValueError):
                    return False
            return False

        def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool,
                  truncate_to: int | None = None) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            if truncate_to is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if head or status == 304:
                return
            self.wfile.write(body if truncate_to is None else body[:truncate_to])
            if truncate_to is not None:
                self.wfile.flush()
                self.close_connection = True

    return Handler


@contextmanager
def demo_server(*, queries: tuple[str, ...] = DEMO_QUERIES, items: int = 20,
                latency: float = 0.0) -> Iterator[FeedServer]:
    """A running server with one sample search feed per query at /news/search/<slug>.xml."""
    with FeedServer(latency=latency) as srv:
        for query in queries:
            srv.set_feed(feed_path(query), sample_rss(query, items=items))
        yield srv


def feed_path(query: str) -> str:
    return "/news/search/" + quote(query.lower().replace(" ", "-")) + ".xml"
