"""A small JSON Feed 1.0/1.1 reader with feedparser-shaped output.

feedparser 6 does not read JSON Feed; this maps its items onto the same keys
(`id`, `link`, `title`, `summary`, `published_parsed`, ...) so one normaliser
serves every format.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


class JSONFeedError(ValueError):
    pass


def looks_like_json(body: bytes, content_type: str = "") -> bool:
    if "json" in content_type.lower():
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _authors(node: dict[str, Any]) -> list[str]:
    authors = node.get("authors")
    if not isinstance(authors, list):
        single = node.get("author")
        authors = [single] if isinstance(single, dict) else []
    return [a["name"] for a in authors if isinstance(a, dict) and isinstance(a.get("name"), str)]


def parse_json_feed(body: bytes) -> dict[str, Any]:
    """Return {'title', 'version', 'entries': [feedparser-like dicts]} or raise JSONFeedError."""
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise JSONFeedError(f"JSON Feed is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise JSONFeedError(f"invalid JSON Feed: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise JSONFeedError("invalid JSON Feed: nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise JSONFeedError("not a JSON Feed: no 'items' list at the top level")
    version = doc.get("version") if isinstance(doc.get("version"), str) else None
    feed_authors = _authors(doc)
    entries = []
    for item in doc["items"]:
        if not isinstance(item, dict):
            continue
        published = _date(item.get("date_published"))
        updated = _date(item.get("date_modified"))
        tags = item.get("tags") if isinstance(item.get("tags"), list) else []
        entries.append({
            "id": str(item["id"]) if item.get("id") is not None else None,
            "link": item.get("url") or item.get("external_url"),
            "title": item.get("title") or "",
            "summary": item.get("summary") or item.get("content_text") or item.get("content_html"),
            "published_dt": published,
            "updated_dt": updated,
            "authors": _authors(item) or feed_authors,
            "tags": [t for t in tags if isinstance(t, str)],
            "raw": item,
        })
    return {"title": doc.get("title"), "version": version, "entries": entries}
