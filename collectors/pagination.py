"""Walking the pages of a JSON API: page number, offset, cursor, next URL, Link header.

`iter_pages` asks `send` for one page at a time and yields its records, so a
result set of any size passes through with one page in memory. It stops on an
empty page, a missing cursor or next link, a short page, a cursor or URL seen
before (a server bug that would loop forever), or `max_pages`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from collectors.http import FetchResult
from storage.api_config import ApiConfig
from storage.redact import redact_text


class PageError(Exception):
    """A page could not be fetched or read; the message says which page and why."""


@dataclass
class Page:
    number: int
    records: Iterable[Any]  # a list, or SpooledRecords for a response too large for memory
    count: int
    result: FetchResult


class SpooledRecords:
    """The records of a response spooled to disk, read one at a time (ijson); iterable more than once."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path, self.prefix = path, prefix

    def __iter__(self) -> Iterator[Any]:
        import ijson

        with open(self.path, "rb") as fh:
            yield from ijson.items(fh, self.prefix, use_float=True)


@dataclass
class Walk:
    """What the walk saw, for the run record."""

    pages: int = 0
    truncated: bool = False
    stop_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    spooled: list[Path] = field(default_factory=list)  # for the caller to delete


Send = Callable[[str, dict[str, Any] | None], FetchResult]
_MISSING = object()


def dig(body: Any, path: str) -> Any:
    """`data.items` -> body['data']['items']; '' -> body. Returns _MISSING when absent."""
    node = body
    for part in [p for p in path.split(".") if p]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _decode(result: FetchResult, number: int, secrets: tuple[str, ...]) -> Any:
    try:
        return json.loads(result.body)
    except (ValueError, UnicodeDecodeError):
        kind = result.headers.get("content-type", "no content type")
        start = " ".join(result.body[:80].decode("utf-8", "replace").split())
        raise PageError(redact_text(f"page {number}: expected JSON, got {kind} starting with {start!r}",
                                    secrets)) from None


def _records(body: Any, path: str, number: int) -> list[Any]:
    found = dig(body, path)
    if found is _MISSING:
        keys = ", ".join(sorted(body)[:12]) if isinstance(body, dict) else type(body).__name__
        raise PageError(f"page {number}: no {path!r} in the response (found: {keys}); check 'records'")
    if not isinstance(found, list):
        where = repr(path) if path else "the body"
        raise PageError(f"page {number}: {where} is a {type(found).__name__}, not a list of records; "
                        "check 'records'")
    return found


def iter_pages(api: ApiConfig, *, send: Send, params: dict[str, Any], max_pages: int | None,
               walk: Walk, secrets: tuple[str, ...] = ()) -> Iterator[Page]:
    pag = api.pagination
    url = api.url
    params = dict(params)
    if pag and pag.type in ("page", "offset"):
        params[pag.param] = pag.start
        if pag.size_param and pag.size:
            params[pag.size_param] = pag.size
    limit = max_pages or (pag.max_pages if pag else None)
    page_size = pag.size if pag else None
    origin = _origin(api.url)
    seen_next: set[str] = set()
    number = 0
    while True:
        number += 1
        result = send(url, params)
        if result.error:
            raise PageError(f"page {number}: {result.error}")
        if result.body_path is not None:
            walk.spooled.append(result.body_path)
            records, count, body = _spooled(result, api, pag, number, secrets)
        else:
            body = _decode(result, number, secrets)
            records = _records(body, api.records, number)
            count = len(records)
        walk.pages = number
        yield Page(number, records, count, result)
        if pag is None:
            walk.stop_reason = "no pagination"
            return
        if not count:
            walk.stop_reason = "empty page"
            return
        if limit is not None and number >= limit:
            walk.truncated, walk.stop_reason = True, f"max_pages={limit} reached"
            return
        if pag.type in ("page", "offset"):
            if number == 1 and page_size and count < page_size:
                page_size = count  # the server may cap the page size: learn it, and let an empty page end
            elif page_size and count < page_size:
                walk.stop_reason = "short page"
                return
            params[pag.param] += 1 if pag.type == "page" else count
            continue
        if pag.type == "cursor":
            cursor = dig(body, pag.cursor_path or "")
            if cursor is _MISSING or cursor in (None, "", False):
                walk.stop_reason = "no next cursor"
                return
            key = json.dumps(cursor)
            nxt: str | None = None
        else:
            nxt = dig(body, pag.next_path or "") if pag.type == "next_url" else _link_next(result)
            if nxt is _MISSING or not nxt or not isinstance(nxt, str):
                walk.stop_reason = "no next link"
                return
            key = nxt = urljoin(result.final_url or url, nxt)
            if _origin(nxt) != origin:
                raise PageError(f"page {number}: the next page is on another host ({_origin_text(nxt)}); the "
                                f"credentials are only sent to {_origin_text(api.url)}, so the walk stops here")
        if key in seen_next:
            walk.stop_reason = "the server repeated a page link"
            walk.warnings.append(f"page {number}: the next page points back to one already fetched; stopped there")
            return
        seen_next.add(key)
        if nxt is None:
            params[pag.param] = cursor
        else:
            url, params = nxt, {}  # a next link carries its own query string


def _spooled(result: FetchResult, api: ApiConfig, pag: Any, number: int,
             secrets: tuple[str, ...]) -> tuple[SpooledRecords, int, dict[str, Any]]:
    """Check and count a spooled page with C-level ijson passes; return what iter_pages needs.

    The returned `body` holds only the cursor or next link (all the walk reads from it).
    """
    import ijson

    prefix = f"{api.records}.item" if api.records else "item"
    records = SpooledRecords(result.body_path, prefix)
    try:
        count = sum(1 for _ in records)
        if not count:
            with open(result.body_path, "rb") as fh:
                found = next(ijson.items(fh, api.records), _MISSING)
            if found is _MISSING:
                raise PageError(f"page {number}: no {api.records!r} in the response; check 'records'")
            if not isinstance(found, list):
                raise PageError(f"page {number}: {api.records!r} is a {type(found).__name__}, not a list of "
                                "records; check 'records'")
        body: dict[str, Any] = {}
        path = (pag.cursor_path if pag.type == "cursor" else pag.next_path if pag.type == "next_url" else None
                ) if pag else None
        if path:
            with open(result.body_path, "rb") as fh:
                value = next(ijson.items(fh, path), None)
            node = body
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    except ijson.JSONError as exc:
        kind = result.headers.get("content-type", "no content type")
        raise PageError(redact_text(f"page {number}: expected JSON, got {kind} that does not parse: {exc}",
                                    secrets)) from None
    return records, count, body


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _link_next(result: FetchResult) -> str | None:
    """rel="next" of an RFC 8288 Link header."""
    import requests.utils

    header = result.headers.get("link")
    if not header:
        return None
    for link in requests.utils.parse_header_links(header):
        if "next" in str(link.get("rel", "")).split():
            return link.get("url")
    return None


def prefetched(pages: Iterator[Page], *, depth: int = 2) -> Iterator[Page]:
    """Fetch the next pages in a thread while the caller processes this one.

    Network waits release the GIL, so fetching page n+1 overlaps storing page n.
    An error in the fetching thread is raised here, in order, after the pages
    before it; if the caller stops early, the thread stops after its current page.
    """
    import queue
    import threading

    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(("page", page)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the caller's thread
            put(("error", exc))

    worker = threading.Thread(target=produce, name="prefetch-pages", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "page":
                yield value
            elif kind == "done":
                worker.join()
                return
            else:
                worker.join()
                raise value
    finally:
        stop.set()  # the caller stopped (or failed): the thread ends after its current request
        worker.join()
