"""`abi collect rss` end to end against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import time

from collectors.sample_feeds import Reply, sample_rss
from tests.conftest import Env, news_feeds, write_config

NAME_RE = re.compile(r"^\d{8}T\d{6}Z_[A-Za-z0-9_-]{1,40}_[A-Za-z0-9_-]{1,80}(_[0-9a-f]{12})?\.json$")


def test_first_run_stores_each_entry_once_with_normalised_fields(env: Env) -> None:
    result, record = env.collect_json()
    assert result.exit_code == 0, result.stderr
    assert record["status"] == "success"
    assert record["counts"]["new"] == 15 and record["counts"]["feeds"] == 3
    files = env.entry_files()
    assert len(files) == 15
    assert all(NAME_RE.match(p.name) for p in files), [p.name for p in files]
    sidecar_rel = "core/modules/abi/orchestration/rss_feed.meta.json"
    assert sorted(record["files_written"]) == sorted(
        [sidecar_rel, *(str(p.relative_to(env.datastore)) for p in files)])
    sidecar = json.loads((env.datastore / sidecar_rel).read_text())
    assert (sidecar["records"], sidecar["new_records"], sidecar["run_id"], sidecar["source"]) == (
        15, 15, record["run_id"], "news")
    entry = next(e for e in env.entries() if e["title"] == "OpenAI story 3: what changed this week")
    # the Bing redirect is unwrapped and tracking parameters dropped
    assert entry["url"] == "https://news.example.org/openai/story-3"
    assert "apiclick.aspx" in entry["link"]
    assert entry["published"] == "2026-01-05T08:51:00Z"
    assert entry["feed"]["query"] == "OpenAI"
    assert entry["run_id"] == record["run_id"]
    assert entry["raw"]["title"] == entry["title"]
    assert files[0].name.startswith("20260105T")


def test_second_run_writes_nothing_and_sends_conditional_headers(env: Env) -> None:
    env.collect()
    before = {p.name: p.stat().st_mtime_ns for p in env.entry_files()}
    requests_before = env.server.count()
    result, record = env.collect_json()
    assert result.exit_code == 0
    assert record["counts"]["new"] == 0
    assert record["counts"]["not_modified"] == 3
    assert record["files_written"] == []  # not even the sidecar: the dataset did not change
    assert {p.name: p.stat().st_mtime_ns for p in env.entry_files()} == before
    assert env.server.count() == requests_before + 3
    last = env.server.headers_for("/ai.xml")[-1]
    assert last["if-none-match"].startswith('"') and "if-modified-since" in last
    assert "abi-orchestration/" in last["user-agent"]


def test_new_entries_appear_after_a_feed_update(env: Env) -> None:
    env.collect()
    env.server.set_feed("/ai.xml", sample_rss("AI", items=7))  # two newer stories
    _, record = env.collect_json()
    assert record["counts"]["new"] == 2
    titles = sorted(e["title"] for e in env.entries() if e["feed"]["query"] == "AI")
    assert titles == sorted(f"AI story {n}: what changed this week" for n in range(7))


def test_reordered_and_redated_entries_are_not_stored_again(env: Env) -> None:
    env.collect()
    body = sample_rss("AI", items=5).decode()
    # same stories, different order and dates: identity is the unwrapped link, not the title or date
    items = re.findall(r"<item>.*?</item>", body, flags=re.S)
    redated = [re.sub(r"<pubDate>.*?</pubDate>", "<pubDate>Tue, 01 Sep 2026 10:00:00 GMT</pubDate>", i)
               for i in reversed(items)]
    env.server.set_feed("/ai.xml", body.replace("".join(items), "").replace(
        "</channel>", "".join(redated) + "</channel>").encode())
    _, record = env.collect_json()
    assert record["counts"]["new"] == 0
    assert len(env.entry_files()) == 15


def test_a_failing_feed_does_not_stop_the_others_and_exits_1(env: Env) -> None:
    env.server.stick("/openai.xml", Reply(status=500))
    result, record = env.collect_json()
    assert result.exit_code == 1
    assert record["status"] == "partial"
    failed = [i for i in record["items"] if i["status"] == "failed"]
    assert [i["query"] for i in failed] == ["OpenAI"]
    assert "HTTP 500" in failed[0]["error"] and "after 3 attempts" in failed[0]["error"]
    assert failed[0]["attempts"] == 3  # retries = 2
    assert len(env.entry_files()) == 10
    # the failure is one clear line on stderr naming the feed
    plain = env.collect()
    assert plain.exit_code == 1
    assert "OpenAI: HTTP 500" in plain.stderr and "Traceback" not in plain.stderr
    # the feed recovers: its entries arrive and nothing else is written again
    env.server.stick("/openai.xml", None)
    _, record = env.collect_json()
    assert record["status"] == "success" and record["counts"]["new"] == 5
    assert len(env.entry_files()) == 15


def test_all_feeds_failing_is_a_failed_run(env: Env) -> None:
    for path in ("/ai.xml", "/openai.xml", "/nasa.xml"):
        env.server.stick(path, Reply(status=503))
    result, record = env.collect_json()
    assert result.exit_code == 1
    assert record["status"] == "failed"
    assert "all 3 feeds failed" in record["error"]["message"]
    assert not (env.module_dir / "orchestration" / "rss_feed.meta.json").exists()  # no dataset yet


def test_429_with_a_short_retry_after_is_retried(env: Env) -> None:
    env.server.script("/nasa.xml", Reply(status=429, headers={"Retry-After": "0"}))
    _, record = env.collect_json()
    nasa = next(i for i in record["items"] if i["query"] == "NASA")
    assert nasa["status"] == "ok" and nasa["attempts"] == 2 and nasa["statuses"] == [429, 200]
    assert record["counts"]["retries"] == 1


def test_retry_after_longer_than_the_cap_is_not_hammered(env: Env) -> None:
    # retry_max_wait = 0.2: a server asking for an hour is left alone until the next run
    env.server.script("/nasa.xml", Reply(status=429, headers={"Retry-After": "3600"}))
    result, record = env.collect_json()
    nasa = next(i for i in record["items"] if i["query"] == "NASA")
    assert nasa["status"] == "failed" and nasa["attempts"] == 1
    assert "asks to wait 3600s" in nasa["error"]
    assert result.exit_code == 1 and len(env.entry_files()) == 10


def test_retry_after_is_waited_for_up_to_the_cap(tmp_path, server) -> None:
    feeds = news_feeds(server, ("AI",))
    cfg = write_config(tmp_path, feeds).read_text().replace("retry_max_wait = 0.2", "retry_max_wait = 5")
    (tmp_path / "abi.toml").write_text(cfg)
    server.script("/ai.xml", Reply(status=503, headers={"Retry-After": "1"}))
    env = Env(tmp_path, server, tmp_path / "abi.toml")
    t0 = time.monotonic()
    _, record = env.collect_json()
    assert time.monotonic() - t0 >= 0.9
    assert record["items"][0]["statuses"] == [503, 200]


def test_gone_feed_is_skipped_until_force(env: Env) -> None:
    env.server.stick("/nasa.xml", Reply(status=410))
    result, record = env.collect_json()
    assert result.exit_code == 0
    nasa = next(i for i in record["items"] if i["query"] == "NASA")
    assert nasa["status"] == "gone"
    assert any("410" in w for w in record["warnings"])
    count = env.server.count("/nasa.xml")
    _, record = env.collect_json()
    assert env.server.count("/nasa.xml") == count  # not requested again
    assert next(i for i in record["items"] if i["query"] == "NASA")["status"] == "skipped"
    env.server.stick("/nasa.xml", None)
    _, record = env.collect_json("--force")
    assert next(i for i in record["items"] if i["query"] == "NASA")["status"] == "ok"
    assert len(env.entry_files()) == 15


def test_permanent_redirect_is_recorded_and_followed_next_time(env: Env) -> None:
    env.server.set_feed("/space.xml", sample_rss("NASA", items=5))
    env.server.stick("/nasa.xml", Reply(status=301, headers={"Location": env.server.url("/space.xml")}))
    _, record = env.collect_json()
    nasa = next(i for i in record["items"] if i["query"] == "NASA")
    assert nasa["permanent_redirect"].endswith("/space.xml")
    assert any("permanently moved" in w for w in record["warnings"])
    moved = [f for f in env.state()["feeds"].values() if f["url"].endswith("/nasa.xml")]
    assert moved[0]["moved_to"].endswith("/space.xml")
    old = env.server.count("/nasa.xml")
    env.collect()
    assert env.server.count("/nasa.xml") == old
    assert len(env.entry_files()) == 15


def test_truncated_transfer_is_retried_then_stored(env: Env) -> None:
    env.server.script("/ai.xml", Reply(status=200, truncate_to=100))
    _, record = env.collect_json()
    ai = next(i for i in record["items"] if i["query"] == "AI")
    assert ai["status"] == "ok" and ai["attempts"] == 2
    assert len(env.entry_files()) == 15


def test_html_page_instead_of_a_feed_is_a_clear_per_feed_error(env: Env) -> None:
    env.server.set_feed("/ai.xml", b"<!DOCTYPE html><html><body>Sign in to continue</body></html>",
                        content_type="text/html")
    result, record = env.collect_json()
    assert result.exit_code == 1
    ai = next(i for i in record["items"] if i["query"] == "AI")
    assert ai["status"] == "failed" and "HTML page" in ai["error"]
    assert len(env.entry_files()) == 10


def test_malformed_feed_yields_readable_entries_with_a_warning(env: Env) -> None:
    body = sample_rss("AI", items=3).replace(b"story 1:", b"story 1: \x01 control")
    env.server.set_feed("/ai.xml", body)
    result, record = env.collect_json()
    ai = next(i for i in record["items"] if i["query"] == "AI")
    assert ai["status"] == "ok" and ai["entries"] >= 1
    assert "malformed" in ai["warning"]
    assert result.exit_code == 0


def test_unchanged_body_without_validators_is_not_parsed_again(tmp_path, server) -> None:
    feeds = news_feeds(server, ("AI",), validators=False)
    env = Env(tmp_path, server, write_config(tmp_path, feeds))
    env.collect()
    _, record = env.collect_json()
    assert record["items"][0]["status"] == "unchanged"
    assert "if-none-match" not in server.headers_for("/ai.xml")[-1]
    assert record["counts"]["new"] == 0 and len(env.entry_files()) == 5


def test_hostile_titles_and_queries_cannot_choose_a_path(tmp_path, server) -> None:
    hostile = [("../../../etc/passwd", "../x"), ("/abs/path\x00nul", "q/../../y"),
               ("a" * 500, "C:\\windows"), ("测试 标题", "..")]
    feeds = []
    for i, (title, query) in enumerate(hostile):
        body = sample_rss("X", items=1).replace(b"X story 0: what changed this week",
                                                 title.encode("utf-8", "ignore").replace(b"\x00", b""))
        server.set_feed(f"/h{i}.xml", body)
        feeds.append({"url": server.url(f"/h{i}.xml"), "query": query})
    env = Env(tmp_path, server, write_config(tmp_path, feeds))
    result, record = env.collect_json()
    assert result.exit_code == 0, record
    files = env.entry_files()
    assert len(files) == 4
    everything = [p for p in tmp_path.rglob("*") if p.is_file()]
    outside = [p for p in everything if env.datastore not in p.parents and p.name != "abi.toml"]
    assert outside == []
    for p in files:
        assert NAME_RE.match(p.name), p.name
        assert len(p.name) <= 200


def test_secrets_in_feed_urls_are_redacted_from_records(tmp_path, server) -> None:
    server.set_feed("/private.xml", sample_rss("AI", items=2))
    feeds = [{"url": server.url("/private.xml") + "?token=s3cr3t-value&q=AI", "query": "AI"}]
    env = Env(tmp_path, server, write_config(tmp_path, feeds))
    result, _ = env.collect_json()
    assert result.exit_code == 0
    for path in env.datastore.rglob("*"):
        if path.is_file():
            assert "s3cr3t-value" not in path.read_text(), path
    assert "s3cr3t-value" not in result.stdout


def test_unreachable_host_is_reported_per_feed(tmp_path, server) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = sock.getsockname()[1]
    sock.close()
    feeds = [*news_feeds(server, ("AI",)), {"url": f"http://127.0.0.1:{dead}/feed.xml", "query": "Dead"}]
    env = Env(tmp_path, server, write_config(tmp_path, feeds))
    result, record = env.collect_json()
    assert result.exit_code == 1
    dead_item = next(i for i in record["items"] if i["query"] == "Dead")
    assert "connection refused" in dead_item["error"]
    assert len(env.entry_files()) == 5


def test_json_output_is_the_stored_run_record(env: Env) -> None:
    _, record = env.collect_json()
    stored = env.runs()
    assert len(stored) == 1 and stored[0]["run_id"] == record["run_id"]
    assert stored[0]["status"] == record["status"] and stored[0]["counts"] == record["counts"]
    for key in ("run_id", "module", "source", "command", "status", "started_at", "ended_at", "duration_s",
                "counts", "files_written", "error", "version", "host"):
        assert key in stored[0]


def test_plain_output_is_one_summary_line_when_not_a_tty(env: Env) -> None:
    result = env.collect()
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("news: success: 3 feeds, 15 new")
    assert result.stderr == ""


def test_entry_files_are_valid_json_with_unique_keys(env: Env) -> None:
    env.collect()
    keys = [e["key"] for e in env.entries()]
    assert len(keys) == len(set(keys)) == 15
    for p in env.entry_files():
        json.loads(p.read_text())


def test_an_entry_with_a_broken_link_does_not_cost_the_other_feeds(env: Env) -> None:
    body = sample_rss("AI", items=2).replace(b"https%3A%2F%2Fnews.example.org%2Fai%2Fstory-1",
                                             b"http%3A%2F%2Fexample.com%3A99999%2Fa")
    env.server.set_feed("/ai.xml", body)
    result, record = env.collect_json()
    assert result.exit_code == 0, record
    assert len(env.entry_files()) == 12


def test_changing_a_feed_url_keeps_its_history(env: Env) -> None:
    env.collect()
    env.server.set_feed("/ai-new.xml", sample_rss("AI", items=5))
    env.config.write_text(env.config.read_text().replace("/ai.xml", "/ai-new.xml"))
    _, record = env.collect_json()
    assert record["counts"]["new"] == 0 and len(env.entry_files()) == 15


def test_the_same_story_in_two_searches_is_stored_once_per_search(tmp_path, server) -> None:
    # the aggregate needs to know every query that found a story, so raw entries are kept per feed
    server.set_feed("/a.xml", sample_rss("AI", items=2))
    server.set_feed("/b.xml", sample_rss("AI", items=2))
    feeds = [{"url": server.url("/a.xml"), "query": "AI"}, {"url": server.url("/b.xml"), "name": "AI-2"}]
    env = Env(tmp_path, server, write_config(tmp_path, feeds))
    _, record = env.collect_json()
    assert record["counts"]["new"] == 4
    names = [p.name for p in env.entry_files()]
    assert len(names) == len(set(names)) == 4


def test_colliding_file_names_never_overwrite(tmp_path, server) -> None:
    # three feeds without query or name: same slug; items with the same title and date but other links
    feeds = []
    for i in range(3):
        body = sample_rss("Same", items=3).replace(b"news.example.org", f"site{i}.example".encode())
        server.set_feed(f"/s{i}.xml", body)
        feeds.append({"url": server.url(f"/s{i}.xml")})
    env = Env(tmp_path, server, write_config(tmp_path, feeds))
    _, record = env.collect_json()
    assert record["counts"]["new"] == 9
    assert len(env.entry_files()) == 9
    assert len({e["url"] for e in env.entries()}) == 9


def test_a_corrupted_state_file_is_one_clear_line(env: Env) -> None:
    env.collect()
    state = env.module_dir / "orchestration" / "state" / "news.json"
    state.write_text("{ not json")
    result = env.collect()
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "news.json is not valid JSON" in line and "move it aside" in line
    assert state.read_text() == "{ not json"  # left for the user to inspect
