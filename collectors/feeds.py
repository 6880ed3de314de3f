"""Parse feed bytes (RSS 0.9x/1.0/2.0, Atom, JSON Feed) into normalised entries.

feedparser is given bytes plus the response headers (not a URL), so the HTTP
side stays ours: conditional GET, retries and size caps live in collectors.http.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collectors.jsonfeed import JSONFeedError, looks_like_json, parse_json_feed
from collectors.urls import canonical_url


class FeedParseError(ValueError):
    """Nothing readable in the document."""


@dataclass
class ParsedFeed:
    format: str
    title: str | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    warning: str | None = None


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}Z"  # %Y is not zero-padded for years < 1000


def _from_struct(value: Any) -> datetime | None:
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def plain(value: Any) -> Any:
    """feedparser structures as plain JSON values (struct_time becomes an ISO string)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not isinstance(value, time.struct_time):
        return [plain(v) for v in value]
    if isinstance(value, time.struct_time):
        return _iso(_from_struct(value))
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def entry_identity(*, guid: str | None, url: str | None, title: str | None, published: str | None) -> str:
    """guid, else canonical link, else title+published: stable across re-ordering and re-dating."""
    if guid and guid.strip():
        basis = "id:" + guid.strip()
    elif url:
        basis = "url:" + url
    else:
        basis = "title:" + (title or "").strip() + "|" + (published or "")
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def parse_feed(body: bytes, *, headers: dict[str, str] | None = None, base_url: str | None = None) -> ParsedFeed:
    """Read what can be read; raise FeedParseError when the document yields nothing."""
    headers = headers or {}
    if looks_like_json(body, headers.get("content-type", "")):
        try:
            doc = parse_json_feed(body)
        except JSONFeedError as exc:
            raise FeedParseError(str(exc)) from None
        entries = [_normalise_json_item(item) for item in doc["entries"]]
        return ParsedFeed(format="jsonfeed", title=doc["title"], entries=entries)
    return _parse_xml(body, headers, base_url)


def _parse_xml(body: bytes, headers: dict[str, str], base_url: str | None) -> ParsedFeed:
    import feedparser

    response_headers = dict(headers)
    if base_url:
        response_headers.setdefault("content-location", base_url)
    parsed = feedparser.parse(body, response_headers=response_headers,
                              sanitize_html=False, resolve_relative_uris=False)
    version = parsed.get("version") or ""
    entries = [_normalise_xml_entry(e) for e in parsed.entries]
    problem = parsed.get("bozo_exception")
    if not entries and (parsed.get("bozo") or not version):
        reason = _describe(problem) if problem else "no feed elements found"
        if not version and body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
            reason = "the server returned an HTML page, not a feed"
        raise FeedParseError(f"not a readable feed: {reason}")
    warning = None
    if parsed.get("bozo") and problem is not None and not _harmless(problem):
        warning = f"malformed feed, read {len(entries)} entries anyway: {_describe(problem)}"
    return ParsedFeed(format=version or "unknown", title=parsed.feed.get("title"), entries=entries,
                      warning=warning)


def _harmless(problem: BaseException) -> bool:
    # feedparser flags a declared/actual encoding mismatch it has already handled.
    return type(problem).__name__ in ("CharacterEncodingOverride",)


def _describe(problem: BaseException) -> str:
    text = str(getattr(problem, "getMessage", lambda: problem)())
    return f"{type(problem).__name__}: {text}"[:300]


def _normalise_xml_entry(entry: Any) -> dict[str, Any]:
    # dict.get: FeedParserDict.get falls back from 'updated' to 'published' with a warning.
    updated = _from_struct(dict.get(entry, "updated_parsed"))
    published = _from_struct(dict.get(entry, "published_parsed")) or updated
    link = entry.get("link")
    authors = [a.get("name") for a in entry.get("authors", []) if isinstance(a, dict) and a.get("name")]
    if not authors and entry.get("author"):
        authors = [entry.get("author")]
    tags = [t.get("term") for t in entry.get("tags", []) if isinstance(t, dict) and t.get("term")]
    return _normalised(guid=entry.get("id"), link=link, title=entry.get("title"),
                       summary=entry.get("summary"), published=published, updated=updated,
                       authors=authors, tags=tags, raw=plain(dict(entry)))


def _normalise_json_item(item: dict[str, Any]) -> dict[str, Any]:
    return _normalised(guid=item["id"], link=item["link"], title=item["title"], summary=item["summary"],
                       published=item["published_dt"] or item["updated_dt"], updated=item["updated_dt"],
                       authors=item["authors"], tags=item["tags"], raw=item["raw"])


def _normalised(*, guid: Any, link: Any, title: Any, summary: Any, published: datetime | None,
                updated: datetime | None, authors: list[Any], tags: list[Any],
                raw: dict[str, Any]) -> dict[str, Any]:
    link = link.strip() if isinstance(link, str) and link.strip() else None
    title = " ".join(title.split()) if isinstance(title, str) else ""
    url = canonical_url(link)
    guid = guid.strip() if isinstance(guid, str) and guid.strip() else None
    published_iso = _iso(published)
    return {
        "key": entry_identity(guid=guid, url=url, title=title, published=published_iso),
        "id": guid,
        "title": title,
        "link": link,
        "url": url,
        "published": published_iso,
        "updated": _iso(updated),
        "summary": summary if isinstance(summary, str) else None,
        "authors": [str(a) for a in authors],
        "tags": [str(t) for t in tags],
        "raw": raw,
    }
