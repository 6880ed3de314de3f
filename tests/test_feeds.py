"""Parsing and normalisation: formats, dates, canonical URLs, slugs, the shared corpus."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from collectors.feeds import FeedParseError, entry_identity, parse_feed
from collectors.sample_feeds import sample_rss
from collectors.urls import canonical_url, slug
from tests.conftest import CORPUS, Env, write_config

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"feed corpus not present at {CORPUS} "
                                  "(it ships beside the project in ../shared, not with a clone)")


@pytest.mark.parametrize(("link", "expected"), [
    ("http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=x&url=https%3a%2f%2fwww.Example.com%2fa%2fb"
     "%3fid%3d3%26utm_source%3dbing&c=1&mkt=en-us", "https://www.example.com/a/b?id=3"),
    ("https://www.google.com/url?rct=j&sa=t&url=https://investorplace.com/2019/07/slack/&ct=ga&usg=X",
     "https://investorplace.com/2019/07/slack/"),
    ("HTTPS://Example.COM:443/path#section", "https://example.com/path"),
    ("https://example.com/a?fbclid=1&page=2", "https://example.com/a?page=2"),
    ("https://news.google.com/rss/articles/CBMiK2h0dHBzOi8vZXhhbXBsZS5vcmcvbmV3cy9zdG9yeS0xMjMuaHRtbNIBAA?oc=5",
     "https://example.org/news/story-123.html"),
    (None, None),
])
def test_canonical_url_unwraps_redirects_and_drops_tracking(link, expected) -> None:
    assert canonical_url(link) == expected


def test_slug_is_bounded_and_safe() -> None:
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("Élan vital: “quotes”") == "Elan-vital-quotes"
    assert slug("北京") == "untitled"
    assert len(slug("x" * 500, max_len=80)) == 80
    assert slug("", fallback="feed") == "feed"


def test_identity_prefers_guid_then_url_then_title_and_date() -> None:
    a = entry_identity(guid="g1", url="https://x/1", title="T", published=None)
    assert a == entry_identity(guid="g1", url="https://x/other", title="Other", published="2020")
    b = entry_identity(guid=None, url="https://x/1", title="T", published=None)
    assert b == entry_identity(guid=None, url="https://x/1", title="Edited", published="2021")
    c = entry_identity(guid=None, url=None, title="T", published="2020-01-01T00:00:00Z")
    assert c != entry_identity(guid=None, url=None, title="T", published=None)


def test_dates_become_iso_utc_or_null() -> None:
    body = b"""<rss version="2.0"><channel><title>t</title>
      <item><title>a</title><link>http://x/a</link><pubDate>Tue, 10 Jun 2025 15:30:00 +0200</pubDate></item>
      <item><title>b</title><link>http://x/b</link><pubDate>not a date at all</pubDate></item>
      <item><title>c</title><link>http://x/c</link></item>
    </channel></rss>"""
    entries = parse_feed(body).entries
    assert [e["published"] for e in entries] == ["2025-06-10T13:30:00Z", None, None]


def test_atom_feed() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
      <entry><id>tag:x,2024:1</id><title>One</title><link href="https://x.org/1"/>
      <updated>2024-03-01T10:00:00Z</updated><author><name>Ann</name></author><category term="ai"/></entry></feed>"""
    feed = parse_feed(body)
    assert feed.format == "atom10"
    (entry,) = feed.entries
    assert (entry["id"], entry["url"], entry["published"], entry["authors"], entry["tags"]) == (
        "tag:x,2024:1", "https://x.org/1", "2024-03-01T10:00:00Z", ["Ann"], ["ai"])


def test_json_feed_1_1() -> None:
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "J", "authors": [{"name": "Feed Author"}],
           "items": [{"id": "1", "url": "https://j.org/1?utm_medium=x", "title": "First",
                      "content_text": "body", "date_published": "2024-05-01T12:00:00+02:00", "tags": ["t"]},
                     {"id": 2, "content_html": "<p>untitled</p>"}]}
    feed = parse_feed(json.dumps(doc).encode(), headers={"content-type": "application/feed+json"})
    assert feed.format == "jsonfeed" and feed.title == "J"
    first, second = feed.entries
    assert first["url"] == "https://j.org/1" and first["published"] == "2024-05-01T10:00:00Z"
    assert first["authors"] == ["Feed Author"] and first["tags"] == ["t"]
    assert second["id"] == "2" and second["published"] is None and second["title"] == ""


def test_truncated_json_feed_is_a_clear_error() -> None:
    with pytest.raises(FeedParseError, match=r"invalid JSON Feed: .*\(line 1, column \d+\)"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1", "items": [{"id": "1", "ti')


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(FeedParseError, match="not a readable feed"):
        parse_feed(b"\x00\x01\x02 definitely not xml")


def test_sample_feed_round_trip() -> None:
    feed = parse_feed(sample_rss("Elon Musk", items=3))
    assert [e["url"] for e in feed.entries] == [f"https://news.example.org/elon-musk/story-{n}" for n in (2, 1, 0)]


def _manifest() -> list[dict[str, str]]:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@needs_corpus
def test_every_corpus_feed_is_collected_or_reported_per_feed(tmp_path: Path, server) -> None:
    rows = _manifest()
    feeds = []
    for row in rows:
        content_type = "application/feed+json" if row["format"] == "jsonfeed" else "application/xml"
        path = "/" + row["file"]
        server.set_feed(path, (CORPUS / row["file"]).read_bytes(), content_type=content_type)
        feeds.append({"url": server.url(path), "name": row["file"]})
    env = Env(tmp_path, server, write_config(tmp_path, feeds))
    result, record = env.collect_json()
    assert result.exit_code in (0, 1)
    items = {i["feed"]: i for i in record["items"]}
    assert len(items) == len(rows)
    for row in rows:
        item = items[row["file"]]
        malformed = "malformed" in row["traits"]
        if item["status"] == "failed":
            assert malformed, f"{row['file']} is well-formed but failed: {item.get('error')}"
            assert item["error"] and "\n" not in item["error"]
            continue
        assert item["status"] == "ok", item
        assert item["entries"] == int(row["entries"]) or (malformed and item["entries"] > 0), (row, item)
        assert item["new"] <= item["entries"]
    stored = env.entries()
    assert len(stored) == sum(i.get("new", 0) for i in items.values()) > 800
    for entry in stored:
        assert entry["published"] is None or entry["published"].endswith("Z")
    # a second pass over the corpus finds nothing new
    _, again = env.collect_json()
    assert again["counts"]["new"] == 0
