"""Canonical article URLs and filesystem-safe slugs.

News-search feeds (Bing, Google) wrap the article URL in a click-tracking
redirect; dedup and the knowledge graph need the article's own URL, so the
wrapper is peeled off and tracking parameters are dropped.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|ocid|cvid|ei|ved|usg)$", re.I)
_SLUG_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_URL_IN_BYTES = re.compile(rb"https?://[\x21-\x7e]+")


def _redirect_target(parts) -> str | None:
    host = (parts.hostname or "").lower()
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if host.endswith("bing.com") and "apiclick" in parts.path.lower():
        return params.get("url")
    if host.endswith("google.com") and parts.path == "/url":
        return params.get("url") or params.get("q")
    if host == "news.google.com" and "/articles/" in parts.path:
        return _google_news_article(parts.path.rsplit("/", 1)[-1])
    return None


def _google_news_article(token: str) -> str | None:
    """Older Google News ids embed the article URL in base64; newer ones are opaque."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    match = _URL_IN_BYTES.search(raw)
    return match.group(0).decode("ascii") if match else None


def canonical_url(link: str | None) -> str | None:
    """The article's own URL: unwrapped, lower-case host, no fragment or tracking parameters."""
    if not link:
        return None
    link = link.strip()
    for _ in range(3):  # a wrapper may wrap another wrapper
        try:
            parts = urlsplit(link)
        except ValueError:
            return link
        target = _redirect_target(parts)
        if not target or not target.lower().startswith(("http://", "https://")):
            break
        link = target
    try:
        parts = urlsplit(link)
    except ValueError:
        return link
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return link
    netloc = parts.hostname.lower()
    try:
        port = parts.port
    except ValueError:  # "host:99999": keep the link as it is rather than guess
        return link
    if port and port not in (80, 443):
        netloc += f":{port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not _TRACKING.match(k)])
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, ""))


def slug(text: str | None, *, max_len: int = 60, fallback: str = "untitled") -> str:
    """ASCII letters, digits, '_' and '-' only, bounded: safe as part of a file name."""
    ascii_text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    cleaned = _SLUG_BAD.sub("-", ascii_text).strip("-_")[:max_len].strip("-_")
    return cleaned or fallback
