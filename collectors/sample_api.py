"""A sample JSON API for the demo, the tests and the benchmark.

`SampleAPI` holds articles (`id`, `title`, `updated_at`, `body`) and serves
them, filtered by `since` (inclusive) and sorted by (updated_at, id), in every
pagination style the API collector knows: page number, offset, cursor, next
URL in the body, and RFC 8288 Link header. It checks a bearer token, and the
test can edit, add or remove records between runs.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from collectors.sample_feeds import FeedServer, Reply

STYLES = ("page", "offset", "cursor", "next_url", "link_header")
_BASE = datetime(2024, 1, 1, tzinfo=UTC)


def _stamp(minutes: int) -> str:
    return (_BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


class SampleAPI:
    def __init__(self, *, records: int = 250, token: str | None = None, same_time: int = 1,
                 body_size: int = 40) -> None:
        """`same_time` records share each updated_at (to test watermark boundaries)."""
        self.token = token
        self.body_size = body_size
        self._lock = threading.Lock()
        self._clock = 0
        self.records: dict[int, dict[str, Any]] = {}
        for i in range(1, records + 1):
            self.records[i] = self._make(i, minutes=(i - 1) // same_time)
        self._clock = (records - 1) // same_time

    def _make(self, i: int, *, minutes: int, title: str | None = None) -> dict[str, Any]:
        return {"id": i, "title": title or f"Article {i}", "updated_at": _stamp(minutes),
                "body": (f"Text of article {i}. " * (self.body_size // 20 + 1))[: self.body_size]}

    def touch(self, ids: list[int], *, title: str = "edited") -> None:
        """Edit these records; they move to a new, later updated_at (one tick for all)."""
        with self._lock:
            self._clock += 1
            for i in ids:
                self.records[i] = self._make(i, minutes=self._clock, title=f"{title} {i}")

    def add(self, count: int, *, at_current_time: bool = False) -> list[int]:
        """New records; `at_current_time` gives them the newest existing updated_at (a late commit)."""
        with self._lock:
            if not at_current_time:
                self._clock += 1
            start = max(self.records, default=0) + 1
            for i in range(start, start + count):
                self.records[i] = self._make(i, minutes=self._clock)
            return list(range(start, start + count))

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            for i in ids:
                self.records.pop(i, None)

    def _select(self, since: str | None) -> list[dict[str, Any]]:
        with self._lock:
            rows = sorted(self.records.values(), key=lambda r: (r["updated_at"], r["id"]))
        return [r for r in rows if since is None or r["updated_at"] >= since]

    def mount(self, server: FeedServer, prefix: str = "/api", *, latency: float = 0.0) -> dict[str, str]:
        """Register one endpoint per style; returns {style: url}."""
        urls = {}
        for style in STYLES:
            path = f"{prefix}/{style}"
            server.handle(path, self._handler(style, server.url(path)), latency=latency)
            urls[style] = server.url(path)
        return urls

    def _handler(self, style: str, url: str):
        def handle(query: dict[str, str], headers: dict[str, str]) -> Reply:
            if self.token and headers.get("authorization") != f"Bearer {self.token}":
                return _json(401, {"error": "unauthorized: send Authorization: Bearer <token>"})
            rows = self._select(query.get("since"))
            size = int(query.get("per_page") or query.get("limit") or 50)
            base = {k: v for k, v in query.items() if k in ("since",)}
            headers_out: dict[str, str] = {}
            body: dict[str, Any] = {}
            if style == "page":
                page = int(query.get("page") or 1)
                chunk = rows[(page - 1) * size: page * size]
            elif style == "offset":
                offset = int(query.get("offset") or 0)
                chunk = rows[offset: offset + size]
            else:
                start = _decode_cursor(query.get("cursor")) if style == "cursor" else int(query.get("from") or 0)
                chunk = rows[start: start + size]
                after = start + len(chunk)
                if after < len(rows):
                    if style == "cursor":
                        body["meta"] = {"next": _encode_cursor(after)}
                    else:
                        link = url + "?" + urlencode({**base, "from": after, "per_page": size})
                        if style == "next_url":
                            body["links"] = {"next": link}
                        else:
                            headers_out["Link"] = f'<{link}>; rel="next"'
            body["data"] = chunk
            return _json(200, body, headers_out)

        return handle


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, headers={"Content-Type": "application/json", **(headers or {})},
                 body=json.dumps(body).encode())


def _encode_cursor(n: int) -> str:
    return base64.urlsafe_b64encode(f"after:{n}".encode()).decode()


def _decode_cursor(value: str | None) -> int:
    if not value:
        return 0
    return int(base64.urlsafe_b64decode(value.encode()).decode().split(":")[1])
