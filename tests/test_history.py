"""`abi runs`, `abi logs`, `abi lineage`, `abi materialize` and `abi status` over aggregates and bridges."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import storage.runs
from collectors.sample_feeds import Reply, sample_rss
from tests.conftest import REPO, Env, news_feeds, write_config

PIPELINE = textwrap.dedent("""
    [aggregates.articles]
    module = "abi"
    inputs = ["news"]
    key = "url"
    fields = ["title", "feed.query", "run_id"]
    combine = { query = "list" }

    [bridges.graph]
    module = "abi"
    input = "articles"
    pipeline = "builtin:news"
    """)


@pytest.fixture
def env(tmp_path: Path, server) -> Env:
    cfg = write_config(tmp_path, news_feeds(server))
    cfg.write_text(cfg.read_text() + PIPELINE)
    return Env(tmp_path, server, cfg)


def _json(env: Env, *args: str):
    result = env.abi(*args, "--json")
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_runs_lists_newest_first_and_filters(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    real = storage.runs.utcnow
    monkeypatch.setattr(storage.runs, "utcnow", lambda: real() - timedelta(days=3))
    assert env.collect().exit_code == 0  # three days ago
    monkeypatch.setattr(storage.runs, "utcnow", real)
    env.server.script("/nasa.xml", *[Reply(status=500)] * 3)
    assert env.collect().exit_code == 1  # partial: one feed fails
    assert env.abi("aggregate").exit_code == 0
    runs = _json(env, "runs")
    assert [(r["source"], r["status"]) for r in runs] == [("articles", "success"), ("news", "partial"),
                                                          ("news", "success")]
    assert runs[0]["counts"]["records"] == 15
    assert [r["status"] for r in _json(env, "runs", "--source", "news")] == ["partial", "success"]
    assert [r["source"] for r in _json(env, "runs", "--status", "partial")] == ["news"]
    assert [r["source"] for r in _json(env, "runs", "--since", "1d")] == ["articles", "news"]
    assert len(_json(env, "runs", "--limit", "1")) == 1
    text = env.abi("runs").stdout  # piped: one tab-separated line per run
    assert text.splitlines()[0].split("\t")[1:4] == ["articles", "aggregate", "success"]
    bad = env.abi("runs", "--source", "nope")
    assert bad.exit_code == 2 and "no source, aggregate or bridge named 'nope'" in bad.stderr
    assert env.abi("runs", "--since", "yesterday").exit_code == 2


def test_the_index_is_rebuilt_from_the_run_records_and_survives_a_torn_line(env: Env) -> None:
    assert env.collect().exit_code == 0
    assert env.collect().exit_code == 0
    before = _json(env, "runs")
    index = env.module_dir / "orchestration" / "history" / "runs.jsonl"
    index.unlink()
    assert _json(env, "runs") == before  # read from the records; a reader writes nothing
    assert not index.exists()
    assert env.collect().exit_code == 0  # the next run's record builds the index from all the records
    assert len(index.read_bytes().splitlines()) == 3
    with open(index, "ab") as fh:
        fh.write(b'{"run_id": "20261126T0')  # a run killed in the middle of its line
    assert env.collect().exit_code == 0
    after = _json(env, "runs")
    assert len(after) == 4 and after[2:] == before


def test_logs_show_what_a_run_did(env: Env) -> None:
    env.server.set_feed("/nasa.xml", b"<html>not a feed</html>")
    result, record = env.collect_json()
    log = env.abi("logs", record["run_id"])
    assert log.exit_code == 0, log.stderr
    lines = log.stdout.splitlines()
    assert f"run {record['run_id']} started" in lines[0]
    assert any("feed AI: ok (HTTP 200)" in line for line in lines)
    assert any("feed NASA: failed (HTTP 200): not a readable feed" in line for line in lines)
    assert "rss news: partial in" in lines[-1]
    assert env.abi("logs", "--source", "news").stdout == log.stdout
    path = env.module_dir / "orchestration" / "compute_logs" / f"{record['run_id']}.log"
    assert path.read_text().splitlines() == lines
    missing = env.abi("logs", "20200101T000000.000Z-news-abcdef")
    assert missing.exit_code == 2 and "no log for run" in missing.stderr
    assert env.abi("logs").exit_code == 2


def test_logs_follow_a_running_collection_until_it_ends(env: Env) -> None:
    for q in ("AI", "OpenAI", "NASA"):
        env.server.set_feed(f"/{q.lower()}.xml", sample_rss(q, items=5), latency=0.6)
    cfg = str(env.config)
    collector = subprocess.Popen([sys.executable, "-m", "cli.main", "collect", "rss", "--config", cfg],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    logs = env.module_dir / "orchestration" / "compute_logs"
    try:
        deadline = time.monotonic() + 20
        while not (logs.is_dir() and any(logs.iterdir())):
            assert time.monotonic() < deadline and collector.poll() is None, "no log appeared"
            time.sleep(0.02)
        follower = subprocess.run([sys.executable, "-m", "cli.main", "logs", "--source", "news", "--follow",
                                   "--config", cfg], capture_output=True, text=True, timeout=30, cwd=REPO)
    finally:
        collector.wait(timeout=30)
    lines = follower.stdout.splitlines()
    assert follower.returncode == 0, follower.stderr
    assert "started" in lines[0] and "rss news: success in" in lines[-1]
    assert sum("feed " in line for line in lines) == 3


def test_lineage_in_every_format_lists_every_node(env: Env) -> None:
    text = env.abi("lineage").stdout
    assert text.splitlines() == [
        "news                     source/rss",
        "articles                 aggregate       <- news",
        "graph                    bridge          <- articles",
        "embedded Oxigraph store  store           <- graph",
    ]
    mermaid = env.abi("lineage", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and mermaid.count("-->") == 3
    dot = env.abi("lineage", "--format", "dot").stdout
    assert dot.startswith("digraph abi {") and dot.count("->") == 3
    svg = env.abi("lineage", "--format", "svg").stdout
    from xml.etree import ElementTree

    root = ElementTree.fromstring(svg)
    nodes = [g.get("data-node") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert nodes == ["news", "articles", "graph", "store:embedded"]
    assert env.abi("lineage", "--format", "png").exit_code == 2


def test_materialize_runs_in_order_and_stops_below_a_failure(env: Env) -> None:
    records = _json(env, "materialize")
    assert [(r["source"], r["status"]) for r in records] == [("news", "success"), ("articles", "success"),
                                                             ("graph", "success")]
    assert records[2]["counts"]["records_read"] == 15
    for q in ("ai", "openai", "nasa"):
        env.server.script(f"/{q}.xml", *[Reply(status=500)] * 5)
    result = env.abi("materialize", "--json")
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    assert [(r["source"], r["status"]) for r in records] == [("news", "failed"), ("articles", "skipped"),
                                                             ("graph", "skipped")]
    assert records[1]["reason"] == "upstream news failed in this run"
    assert [r["source"] for r in _json(env, "materialize", "--select", "articles*")] == ["articles", "graph"]
    assert [r["source"] for r in _json(env, "materialize", "--select", "*articles")] == ["news", "articles"]
    bad = env.abi("materialize", "--select", "nope")
    assert bad.exit_code == 2 and "matches nothing" in bad.stderr


def test_status_covers_aggregates_and_bridges_and_marks_them_behind(env: Env) -> None:
    assert env.abi("materialize").exit_code == 0
    rows = {r["source"]: r for r in _json(env, "status")}
    assert (rows["articles"]["kind"], rows["articles"]["total"], rows["articles"]["stale"]) == ("aggregate", 15,
                                                                                                False)
    assert rows["graph"]["kind"] == "bridge" and rows["graph"]["total"] > 100 and not rows["graph"]["stale"]
    assert env.collect().exit_code == 0  # nothing new upstream: nothing to catch up with
    assert not {r["source"]: r for r in _json(env, "status")}["articles"]["stale"]
    env.server.set_feed("/ai.xml", sample_rss("AI", items=7))
    assert env.collect().exit_code == 0  # new data upstream, not yet aggregated
    rows = {r["source"]: r for r in _json(env, "status")}
    assert rows["articles"]["stale"] and rows["articles"]["behind"] == ["news"]
    assert not rows["graph"]["stale"]
    text = env.abi("status").stdout
    assert "behind news" in text and "NAME" in text


def test_status_marks_a_source_overdue_when_nothing_runs_it(env: Env) -> None:
    from storage.config import load_config
    from storage.status import source_status

    assert env.collect().exit_code == 0
    config = load_config(env.config)
    soon = datetime.now(UTC) + timedelta(seconds=20)
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert not next(r for r in source_status(config=config, now=soon) if r["source"] == "news")["overdue"]
    late = next(r for r in source_status(config=config, now=later) if r["source"] == "news")
    assert late["overdue"] and late["stale"]


def test_lineage_never_shows_the_triple_store_credentials(env: Env) -> None:
    env.config.write_text(env.config.read_text() + textwrap.dedent("""
        [triplestore]
        url = "https://admin:S3cretPw@graphdb.internal:7200/repositories/abi?apikey=K3yK3y"
        """))
    for fmt in ("text", "mermaid", "dot", "svg"):
        out = env.abi("lineage", "--format", fmt).stdout
        assert "S3cretPw" not in out and "K3yK3y" not in out, fmt
        assert "graphdb.internal" in out, fmt


def test_logs_follow_stops_when_the_run_was_killed(env: Env) -> None:
    for q in ("AI", "OpenAI", "NASA"):
        env.server.set_feed(f"/{q.lower()}.xml", sample_rss(q, items=5), latency=5)
    cfg = str(env.config)
    collector = subprocess.Popen([sys.executable, "-m", "cli.main", "collect", "rss", "--config", cfg],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    logs = env.module_dir / "orchestration" / "compute_logs"
    deadline = time.monotonic() + 20
    while not (logs.is_dir() and any(logs.iterdir())):
        assert time.monotonic() < deadline and collector.poll() is None, "no log appeared"
        time.sleep(0.02)
    collector.kill()
    collector.wait(timeout=10)
    follower = subprocess.run([sys.executable, "-m", "cli.main", "logs", "--source", "news", "--follow",
                               "--config", cfg], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert follower.returncode == 0 and "started" in follower.stdout


def test_readers_cope_with_what_people_leave_in_a_datastore(env: Env, tmp_path: Path) -> None:
    result, record = env.collect_json()
    (env.datastore / "core" / "modules" / ".trash").mkdir()  # a stray folder
    assert [r["run_id"] for r in _json(env, "runs")] == [record["run_id"]]
    logs = env.module_dir / "orchestration" / "compute_logs"
    (logs / "20991231T235959.999Z-news-eu-abcdef.log").write_text("another source's log\n")  # a later name
    assert "another source" not in env.abi("logs", "--source", "news").stdout
    too_far = env.abi("runs", "--since", "99999999999d")
    assert too_far.exit_code == 2 and "shorter window" in too_far.stderr
    sneaky = env.datastore.parent / "nope" / ".." / env.datastore.name / "site"
    link = tmp_path / "dslink"
    link.symlink_to(env.datastore)
    for target in (sneaky, link / "site"):
        built = env.abi("ui", "--build", str(target))
        assert built.exit_code == 2 and "never writes into the datastore" in built.stderr
    assert not (env.datastore / "site").exists()
