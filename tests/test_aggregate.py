"""`abi aggregate` end to end: real collections (feeds on 127.0.0.1, a watched folder), then the aggregate."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import pytest

from collectors.sample_feeds import sample_rss
from tests.conftest import Env, run_cli, write_config

QUERIES = ("AI", "OpenAI", "NASA")


def _feeds(env: Env, items: int) -> None:
    for q in QUERIES:
        env.server.set_feed(f"/{q.lower()}.xml", sample_rss(q, items=items, shared=5))


def _config(tmp_path: Path, env_server, extra: str = "") -> Path:
    feeds = [{"url": env_server.url(f"/{q.lower()}.xml"), "query": q} for q in QUERIES]
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    cfg = write_config(tmp_path, feeds)
    cfg.write_text(cfg.read_text() + f"""
[sources.ratings]
kind = "files"
module = "abi"
path = "{drop}"
pattern = "*.jsonl"
process = "jsonl"
settle_seconds = 0

[aggregates.articles]
module = "abi"
inputs = ["news", "ratings"]
key = "url"
fields = ["title", "published", "feed.query", "rating", "run_id"]
combine = {{ query = "list", title = "latest", rating = "latest" }}
{extra}""")
    return cfg


@pytest.fixture
def agg(tmp_path: Path, server) -> Env:
    for q in QUERIES:
        server.set_feed(f"/{q.lower()}.xml", sample_rss(q, items=6, shared=5))
    return Env(tmp_path, server, _config(tmp_path, server))


def _dataset(env: Env) -> Path:
    return env.module_dir / "processed_data" / "articles" / "articles.jsonl"


def _rows(env: Env) -> dict[str, dict]:
    return {r["url"]: r for r in map(json.loads, _dataset(env).read_text().splitlines())}


def _aggregate(env: Env, *args: str) -> dict:
    result = env.abi("aggregate", "--name", "articles", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _drop(env: Env, name: str, records: list[dict]) -> None:
    path = env.tmp_path / "drop" / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    old = time.time() - 60
    os.utime(path, (old, old))


def test_overlapping_inputs_become_one_record_per_key_listing_every_query(agg: Env) -> None:
    assert agg.collect().exit_code == 0
    record = _aggregate(agg)
    assert record["status"] == "success" and record["details"]["mode"] == "full"
    rows = _rows(agg)
    # 3 feeds x 6 items; items 0 and 5 of each feed are the same two top stories
    assert record["counts"]["records_read"] == 18
    assert len(rows) == 14 == record["counts"]["records"]
    top = rows["https://news.example.org/top/story-5"]
    assert top["query"] == ["AI", "NASA", "OpenAI"]
    assert rows["https://news.example.org/nasa/story-3"]["query"] == ["NASA"]
    assert top["published"] == "2026-01-05T09:25:00Z"
    lines = _dataset(agg).read_text().splitlines()
    assert lines == sorted(lines, key=lambda line: json.dumps(json.loads(line)["url"]))  # sorted by key
    meta = json.loads(_dataset(agg).with_name("articles.jsonl.meta.json").read_text())
    assert meta["records"] == 14 and meta["key"] == "url"
    assert [(i["name"], i["records_read"]) for i in meta["inputs"]] == [("news", 18), ("ratings", 0)]


def test_conflicting_values_follow_the_combine_rule_in_collection_order(agg: Env) -> None:
    assert agg.collect().exit_code == 0
    url = "https://news.example.org/ai/story-2"
    _drop(agg, "r1.jsonl", [{"url": url, "rating": 3, "title": "Rated title"},
                            {"url": "https://example.org/only-rated", "rating": 5}])
    assert agg.abi("collect", "files").exit_code == 0
    _aggregate(agg)
    row = _rows(agg)[url]
    assert row["title"] == "Rated title"  # latest: the ratings run came after the news run
    assert row["rating"] == 3
    assert row["published"] == "2026-01-05T08:34:00Z"  # first: ratings have none, the news value stays
    assert row["query"] == ["AI"]
    news_run = next(r for r in agg.runs() if r["source"] == "news")
    assert row["run_id"] == news_run["run_id"]  # first: the run that first stored the article
    only = _rows(agg)["https://example.org/only-rated"]
    assert only == {"url": "https://example.org/only-rated", "title": None, "published": None, "query": [],
                    "rating": 5, "run_id": None}
    _drop(agg, "r2.jsonl", [{"url": url, "rating": None, "title": "Second title"}])
    assert agg.abi("collect", "files").exit_code == 0
    _aggregate(agg)
    row = _rows(agg)[url]
    assert (row["title"], row["rating"]) == ("Second title", 3)  # a null never replaces a value


def test_incremental_run_reads_only_new_records_and_equals_a_full_rebuild_byte_for_byte(agg: Env) -> None:
    assert agg.collect().exit_code == 0
    _drop(agg, "r1.jsonl", [{"url": "https://news.example.org/top/story-0", "rating": 4}])
    assert agg.abi("collect", "files").exit_code == 0
    _aggregate(agg)
    _feeds(agg, items=11)  # 5 more per feed, one more shared top story (10)
    assert agg.collect().exit_code == 0
    _drop(agg, "r2.jsonl", [{"url": "https://news.example.org/top/story-0", "rating": 2, "title": "Re-rated"},
                            {"url": "https://news.example.org/ai/story-9", "rating": 1}])
    assert agg.abi("collect", "files").exit_code == 0
    record = _aggregate(agg)
    assert record["details"]["mode"] == "incremental"
    assert record["counts"]["records_read"] == 15 + 2  # the new entries and the new file only
    # new keys: stories 6-9 of each feed and top story 10; updated: top story 0 (re-rated)
    assert record["counts"]["new"] == 13 and record["counts"]["updated"] == 1
    incremental = _dataset(agg).read_bytes()
    assert _rows(agg)["https://news.example.org/top/story-10"]["query"] == ["AI", "NASA", "OpenAI"]
    assert _rows(agg)["https://news.example.org/top/story-0"]["title"] == "Re-rated"

    full = _aggregate(agg, "--full")
    assert full["details"]["mode"] == "full" and full["counts"]["records_read"] == 33 + 3
    assert _dataset(agg).read_bytes() == incremental


def test_second_run_with_nothing_new_changes_nothing(agg: Env) -> None:
    assert agg.collect().exit_code == 0
    _aggregate(agg)
    folder = _dataset(agg).parent
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    record = _aggregate(agg)
    assert record["counts"]["records_read"] == 0 and record["details"]["mode"] == "incremental"
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before


def test_a_crash_before_the_state_is_saved_is_repaired_by_a_full_rebuild(agg: Env) -> None:
    assert agg.collect().exit_code == 0
    _aggregate(agg)
    state_file = agg.module_dir / "orchestration" / "state" / "articles.json"
    stale = state_file.read_bytes()
    _feeds(agg, items=8)
    assert agg.collect().exit_code == 0
    _aggregate(agg)
    expected = _dataset(agg).read_bytes()
    state_file.write_bytes(stale)  # as if killed after publishing the dataset, before saving the state
    record = _aggregate(agg)
    assert record["details"]["mode"] == "full"
    assert "does not match" in record["details"]["full_reason"]
    assert _dataset(agg).read_bytes() == expected


def test_csv_format_and_an_aggregate_of_an_aggregate(tmp_path: Path, server) -> None:
    _feeds_env = Env(tmp_path, server, _config(tmp_path, server, extra="""
[aggregates.by_query]
module = "abi"
inputs = ["articles"]
key = "title"
fields = ["url"]
combine = { url = "list" }
"""))
    for q in QUERIES:
        server.set_feed(f"/{q.lower()}.xml", sample_rss(q, items=6, shared=5))
    env = _feeds_env
    assert env.collect().exit_code == 0
    _aggregate(env, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(_dataset(env).with_suffix(".csv").read_text())))
    assert len(rows) == 14
    top = next(r for r in rows if r["url"] == "https://news.example.org/top/story-5")
    assert top["query"] == "AI | NASA | OpenAI"
    result = env.abi("aggregate", "--name", "by_query", "--json")
    assert result.exit_code == 0, result.stderr
    out = env.module_dir / "processed_data" / "by_query" / "by_query.jsonl"
    titles = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(titles) == 14
    # the upstream aggregate is rewritten in place: the next run rebuilds and says why
    _feeds(env, items=7)
    assert env.collect().exit_code == 0
    _aggregate(env)
    record = json.loads(env.abi("aggregate", "--name", "by_query", "--json").stdout)
    assert record["details"]["mode"] == "full" and "rewritten in place" in record["details"]["full_reason"]
    assert len(out.read_text().splitlines()) == 17


@pytest.mark.parametrize(("extra", "message"), [
    ('[aggregates.bad]\nmodule = "abi"\ninputs = ["nope"]\nkey = "url"\n', "input 'nope' is neither"),
    ('[aggregates.a1]\nmodule = "abi"\ninputs = ["a2"]\nkey = "k"\n'
     '[aggregates.a2]\nmodule = "abi"\ninputs = ["a1"]\nkey = "k"\n', "cycle: a1 -> a2 -> a1"),
    ('[aggregates.bad]\nmodule = "abi"\ninputs = ["news"]\nkey = "url"\ncombine = { title = "list" }\n',
     "combine names 'title', which is not one of the fields"),
    ('[aggregates.bad]\nmodule = "abi"\ninputs = ["news"]\nkey = "url"\nfields = ["title"]\n'
     'combine = { title = "sum" }\n', "combine.title must be one of first, latest, list"),
    ('[aggregates.news]\nmodule = "abi"\ninputs = ["ratings"]\nkey = "url"\n', "has the name of another source"),
])
def test_a_wrong_aggregate_definition_is_one_line_and_exit_2(tmp_path: Path, server, extra: str,
                                                             message: str) -> None:
    cfg = _config(tmp_path, server, extra=extra)
    result = run_cli("aggregate", "--name", "articles", "--config", str(cfg))
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_unknown_aggregate_name_lists_the_configured_ones(agg: Env) -> None:
    result = agg.abi("aggregate", "--name", "nope")
    assert result.exit_code == 2
    assert "no aggregate named 'nope' (configured: articles)" in result.stderr
