"""`abi collect api` against a real JSON API on 127.0.0.1 (collectors.sample_api)."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from collectors.sample_api import STYLES, SampleAPI
from collectors.sample_feeds import FeedServer, Reply
from tests.conftest import ABI_BIN, run_cli

TOKEN = "tok-5ecret-abc123"


PAGINATION = {
    "page": '{ type = "page", param = "page", size_param = "per_page", size = 20 }',
    "offset": '{ type = "offset", param = "offset", size_param = "limit", size = 20 }',
    "cursor": '{ type = "cursor", cursor_path = "meta.next", param = "cursor" }',
    "next_url": '{ type = "next_url", next_path = "links.next" }',
    "link_header": '{ type = "link_header" }',
}


class ApiEnv:
    def __init__(self, tmp_path: Path, server: FeedServer, api: SampleAPI, *, style: str = "cursor",
                 write: str = "append", extra: str = "", incremental: bool = True) -> None:
        self.tmp_path, self.server, self.api = tmp_path, server, api
        self.urls = api.mount(server)
        self.style = style
        self.config = tmp_path / "abi.toml"
        lines = ["[sources.articles]", 'kind = "api"', 'module = "news"', f'url = "{self.urls[style]}"',
                 'records = "data"', 'primary_key = "id"', f'write = "{write}"',
                 'auth = { bearer_env = "ABI_TEST_TOKEN" }', "retries = { count = 2, max_wait = 0.2 }",
                 "timeout = 2", f"pagination = {PAGINATION[style]}"]
        if style in ("cursor", "next_url", "link_header"):
            lines.append("params = { per_page = 20 }")
        if incremental:
            lines.append('incremental = { cursor_field = "updated_at", param = "since", '
                         'initial = "2000-01-01T00:00:00Z" }')
        if extra:
            lines.append(extra)
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def data_dir(self) -> Path:
        return self.tmp_path / "storage" / "datastore" / "core" / "modules" / "news" / "raw_data" / "articles"

    def data_files(self) -> list[Path]:
        return sorted(self.data_dir.glob("*.jsonl")) if self.data_dir.exists() else []

    def stored(self) -> list[dict[str, Any]]:
        return [json.loads(line) for p in self.data_files() for line in p.read_text().splitlines() if line]

    def collect(self, *args: str) -> tuple[int, dict[str, Any] | None, str]:
        result = run_cli("collect", "api", "--config", str(self.config), "--json", *args)
        try:
            record = json.loads(result.stdout)
        except ValueError:
            record = None
        return result.exit_code, record, result.stderr

    def state(self) -> dict[str, Any]:
        path = self.tmp_path / "storage/datastore/core/modules/news/orchestration/state/articles.json"
        return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABI_TEST_TOKEN", TOKEN)


@pytest.mark.parametrize("style", STYLES)
def test_every_pagination_style_collects_all_pages_exactly_once(tmp_path, server, style) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=95, token=TOKEN), style=style)
    code, record, err = env.collect()
    assert code == 0, err
    assert record["counts"]["pages"] == 5  # 95 records, 20 a page: the short last page ends the walk
    ids = [r["id"] for r in env.stored()]
    assert sorted(ids) == list(range(1, 96))
    assert record["counts"]["new"] == 95 and record["details"]["watermark_after"] == "2024-01-01T01:34:00Z"


def test_second_run_fetches_only_changed_records(tmp_path, server) -> None:
    api = SampleAPI(records=60, token=TOKEN)
    env = ApiEnv(tmp_path, server, api)
    env.collect()
    code, record, _ = env.collect()
    assert code == 0
    # the request carries the watermark: only the boundary record comes back, and it is not stored again
    assert record["counts"]["records"] == 1 and record["counts"]["new"] == 0
    assert record["files_written"] == [] and len(env.data_files()) == 1
    assert server.headers_for("/api/cursor")[-1][":query"] == "per_page=20&since=2024-01-01T00%3A59%3A00Z"
    api.touch([3, 7])
    api.add(2)
    code, record, _ = env.collect()
    assert (record["counts"]["new"], record["counts"]["updated"]) == (2, 2)
    assert len(env.data_files()) == 2
    newest = env.tmp_path / "storage" / "datastore" / record["files_written"][0]
    latest = [json.loads(x) for x in newest.read_text().splitlines()]
    assert sorted(r["id"] for r in latest) == [3, 7, 61, 62]
    assert record["details"]["watermark_before"] == "2024-01-01T00:59:00Z"
    assert record["details"]["watermark_after"] == "2024-01-01T01:01:00Z"


def test_requests_carry_the_watermark_and_the_token(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=30, token=TOKEN))
    env.collect()
    env.collect()
    sent = server.headers_for("/api/cursor")
    assert all(h["authorization"] == f"Bearer {TOKEN}" for h in sent)
    assert "abi-orchestration/" in sent[-1]["user-agent"]


def test_boundary_records_sharing_one_timestamp_are_neither_lost_nor_duplicated(tmp_path, server) -> None:
    api = SampleAPI(records=100, token=TOKEN, same_time=25)  # 4 timestamps, 25 records each
    env = ApiEnv(tmp_path, server, api)
    env.collect()
    late = api.add(5, at_current_time=True)  # committed late, with the watermark's own timestamp
    code, record, _ = env.collect()
    assert code == 0
    assert record["counts"]["new"] == 5
    ids = [r["id"] for r in env.stored()]
    assert len(ids) == len(set(ids)) == 105 and set(late) <= set(ids)
    _code, record, _ = env.collect()
    assert record["counts"]["new"] == 0 and record["counts"]["unchanged"] == 30


def test_merge_updates_changed_records_in_place(tmp_path, server) -> None:
    api = SampleAPI(records=40, token=TOKEN)
    env = ApiEnv(tmp_path, server, api, write="merge")
    env.collect()
    (dataset,) = env.data_files()
    assert dataset.name == "articles.jsonl"
    before = [json.loads(x) for x in dataset.read_text().splitlines()]
    api.touch([5, 9])
    api.add(1)
    code, record, _ = env.collect()
    assert code == 0 and (record["counts"]["updated"], record["counts"]["new"]) == (2, 1)
    (dataset,) = env.data_files()
    after = [json.loads(x) for x in dataset.read_text().splitlines()]
    assert [r["id"] for r in after] == [r["id"] for r in before] + [41]  # order kept, new at the end
    assert after[4]["title"] == "edited 5" and after[8]["title"] == "edited 9"
    assert after[0] == before[0]
    sidecar = json.loads((dataset.parent / "articles.jsonl.meta.json").read_text())
    assert sidecar["records"] == 41 and sidecar["run_id"] == record["run_id"] and sidecar["updated"] == 2


def test_replace_keeps_the_latest_full_result(tmp_path, server) -> None:
    api = SampleAPI(records=30, token=TOKEN)
    env = ApiEnv(tmp_path, server, api, write="replace", incremental=False)
    env.collect()
    api.remove([1, 2, 3])
    code, record, _ = env.collect()
    assert code == 0
    assert record["counts"]["removed"] == 3
    (dataset,) = env.data_files()
    assert sorted(json.loads(x)["id"] for x in dataset.read_text().splitlines()) == list(range(4, 31))
    _code, record, _ = env.collect()
    assert record["files_written"] == []  # nothing changed: the dataset is not rewritten


def test_429_and_intermittent_503_are_retried_within_budget(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=50, token=TOKEN))
    server.script("/api/cursor", Reply(status=429, headers={"Retry-After": "0"}), Reply(status=503))
    code, record, _ = env.collect()
    assert code == 0
    assert record["counts"]["retries"] == 2
    assert record["details"]["http_statuses"] == {"200": 3, "429": 1, "503": 1}
    assert len(env.stored()) == 50


def test_retries_give_up_with_a_clear_failure_and_store_nothing(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=50, token=TOKEN))
    env.collect()
    server.routes["/api/cursor"].script.extend([Reply(status=503)] * 3)
    env.api.touch([1])
    code, record, _err = env.collect()
    assert code == 1 and record["status"] == "failed"
    assert "page 1: HTTP 503 Service Unavailable (after 3 attempts)" in record["error"]["message"]
    assert "nothing of this run was stored" in record["error"]["message"]
    server.routes["/api/cursor"].script.extend([Reply(status=503)] * 3)
    plain = run_cli("collect", "api", "--config", str(env.config))
    assert plain.exit_code == 1 and plain.stderr.count("\n") == 1
    assert plain.stderr.startswith("error: articles: page 1: HTTP 503")
    assert len(env.data_files()) == 1
    assert env.state()["watermark"] == "2024-01-01T00:49:00Z"  # unchanged
    code, record, _ = env.collect()
    assert record["counts"]["updated"] == 1  # the next run picks it up


def test_a_hanging_response_times_out_and_is_reported(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=10, token=TOKEN), extra="")
    env.config.write_text(env.config.read_text().replace("timeout = 2", "timeout = 0.5"))
    server.routes["/api/cursor"].latency = 3
    code, record, _ = env.collect()
    assert code == 1 and "timed out after 0.5s (after 3 attempts)" in record["error"]["message"]


def test_invalid_json_and_html_error_pages_are_one_clear_failure(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=10, token=TOKEN))
    server.script("/api/cursor", Reply(status=200, headers={"Content-Type": "application/json"},
                                       body=b'{"data": [1, 2'))
    code, record, _err = env.collect()
    assert code == 1 and "page 1: expected JSON, got application/json starting with" in record["error"]["message"]
    server.script("/api/cursor", Reply(status=200, headers={"Content-Type": "text/html"},
                                       body=b"<!DOCTYPE html><html><body>Maintenance</body></html>"))
    code, record, _err = env.collect()
    assert "expected JSON, got text/html starting with '<!DOCTYPE html>" in record["error"]["message"]
    server.script("/api/cursor", Reply(status=200, headers={"Content-Type": "application/json"},
                                       body=b'{"items": [], "total": 0}'))
    code, record, _err = env.collect()
    assert "no 'data' in the response (found: items, total); check 'records'" in record["error"]["message"]
    assert env.data_files() == []


def test_4xx_fails_at_once_with_a_redacted_body_excerpt(tmp_path, server, monkeypatch) -> None:
    monkeypatch.setenv("ABI_TEST_TOKEN", "wrong-token-value")
    env = ApiEnv(tmp_path, server, SampleAPI(records=10, token=TOKEN))
    code, record, _err = env.collect()
    assert code == 1
    assert "HTTP 401 Unauthorized: {\"error\": \"unauthorized" in record["error"]["message"]
    assert server.count("/api/cursor") == 1  # a 401 is not retried


def test_missing_token_variable_is_exit_2_naming_it(tmp_path, server, monkeypatch) -> None:
    monkeypatch.delenv("ABI_TEST_TOKEN")
    env = ApiEnv(tmp_path, server, SampleAPI(records=10, token=TOKEN))
    result = run_cli("collect", "api", "--config", str(env.config))
    assert result.exit_code == 2
    assert "environment variable ABI_TEST_TOKEN, which is not set" in result.stderr
    assert server.count() == 0 and not (tmp_path / "storage").exists()


def test_the_token_appears_in_no_file_and_no_output(tmp_path, server) -> None:
    api = SampleAPI(records=30, token=TOKEN)
    env = ApiEnv(tmp_path, server, api)
    outputs = [run_cli("collect", "api", "--config", str(env.config), *a) for a in ([], ["--json"])]
    server.stick("/api/cursor", Reply(status=400, body=f"bad request for token {TOKEN}".encode()))
    outputs.append(run_cli("collect", "api", "--config", str(env.config)))
    outputs.append(run_cli("collect", "api", "--config", str(env.config), "--dry-run", "--source", "articles"))
    for out in outputs:
        assert TOKEN not in out.stdout and TOKEN not in out.stderr
    assert "bad request for token ***" in outputs[2].stderr
    for path in (tmp_path / "storage").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_full_refresh_and_since(tmp_path, server) -> None:
    api = SampleAPI(records=30, token=TOKEN)
    env = ApiEnv(tmp_path, server, api)
    env.collect()
    code, record, _ = env.collect("--since", "2024-01-01T00:10:00Z")
    assert code == 0
    assert record["counts"]["records"] == 20 and record["counts"]["new"] == 0
    assert env.state()["watermark"] == "2024-01-01T00:29:00Z"  # a smaller one is not saved
    _code, record, _ = env.collect("--full-refresh")
    assert record["counts"]["records"] == 30 and record["details"]["watermark_requested"] == "2000-01-01T00:00:00Z"
    assert record["counts"]["new"] == 0 and env.state()["watermark"] == "2024-01-01T00:29:00Z"


def test_max_pages_stops_and_the_next_run_continues(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=100, token=TOKEN))
    code, record, _ = env.collect("--max-pages", "2")
    assert code == 0
    assert record["counts"]["records"] == 40 and record["details"]["truncated"] is True
    assert any("stopped after 2 pages" in w for w in record["warnings"])
    _code, record, _ = env.collect()
    assert record["counts"]["new"] == 60
    assert sorted(r["id"] for r in env.stored()) == list(range(1, 101))


def test_dry_run_stores_nothing(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=50, token=TOKEN))
    result = run_cli("collect", "api", "--config", str(env.config), "--source", "articles", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    preview = json.loads(result.stdout)
    assert preview["records_on_first_page"] == 20 and preview["would_write"] == {"new": 20}
    assert preview["more_pages"] is True
    assert not env.data_dir.exists()
    text = run_cli("collect", "api", "--config", str(env.config), "--source", "articles", "--dry-run").stdout
    assert "20 records on the first page: 20 new; more pages follow" in text


def test_kill_9_then_a_normal_run_loses_and_duplicates_nothing(tmp_path) -> None:
    with FeedServer() as server:
        api = SampleAPI(records=3000, token=TOKEN, body_size=200)
        env = ApiEnv(tmp_path, server, api)
        for route in server.routes.values():
            route.latency = 0.01
        envvars = {"ABI_TEST_TOKEN": TOKEN}
        import os

        for delay in (0.6, 1.2):
            proc = subprocess.Popen([str(ABI_BIN), "collect", "api", "--config", str(env.config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, **envvars})
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            api.touch([1, 2])
        done = subprocess.run([str(ABI_BIN), "collect", "api", "--config", str(env.config), "--json"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, **envvars})
        assert done.returncode == 0, done.stderr
        stored = env.stored()
        latest: dict[int, dict[str, Any]] = {}
        for r in stored:
            latest[r["id"]] = r
        assert sorted(latest) == list(range(1, 3001))
        first_versions = [r["id"] for r in stored if not r["title"].startswith("edited")]
        assert len(first_versions) == len(set(first_versions))  # no record stored twice
        assert latest[1]["title"] == "edited 1"
        assert not [p for p in env.data_dir.iterdir() if p.name.startswith(".")]


def test_crash_between_publishing_and_committing_the_index_is_replayed(tmp_path, server, monkeypatch) -> None:
    import storage.keyindex

    api = SampleAPI(records=45, token=TOKEN)
    env = ApiEnv(tmp_path, server, api)
    real_commit = storage.keyindex.KeyIndex.commit

    def die(self):
        raise KeyboardInterrupt  # stands for the process dying right after the file was published

    monkeypatch.setattr(storage.keyindex.KeyIndex, "commit", die)
    result = run_cli("collect", "api", "--config", str(env.config))
    assert result.exit_code == 130
    assert len(env.data_files()) == 1 and len(env.stored()) == 45  # published, index not committed
    monkeypatch.setattr(storage.keyindex.KeyIndex, "commit", real_commit)
    api.add(3)
    code, record, _ = env.collect()
    assert code == 0
    assert any("recovered run" in w and "45 published records" in w for w in record["warnings"])
    assert record["counts"]["new"] == 3  # the 45 are known again: not stored a second time
    ids = [r["id"] for r in env.stored()]
    assert sorted(ids) == list(range(1, 49))


def _plain_api_config(tmp_path: Path, url: str, body: str) -> Path:
    cfg = tmp_path / "abi.toml"
    cfg.write_text('[sources.articles]\nkind = "api"\nmodule = "news"\n'
                   f'url = "{url}"\nrecords = "data"\nprimary_key = "id"\n' + body)
    return cfg


def test_api_key_header_and_basic_auth_come_from_the_environment(tmp_path, server, monkeypatch) -> None:
    import base64

    urls = SampleAPI(records=5).mount(server)
    monkeypatch.setenv("KEY_VAR", "key-value-1234")
    cfg = _plain_api_config(tmp_path, urls["page"], 'auth = { header = "X-Api-Key", value_env = "KEY_VAR" }\n')
    assert run_cli("collect", "api", "--config", str(cfg)).exit_code == 0
    assert server.headers_for("/api/page")[-1]["x-api-key"] == "key-value-1234"
    monkeypatch.setenv("U_VAR", "alice")
    monkeypatch.setenv("P_VAR", "pa55word")
    cfg = _plain_api_config(tmp_path, urls["page"],
                            'auth = { basic_user_env = "U_VAR", basic_password_env = "P_VAR" }\n')
    assert run_cli("collect", "api", "--config", str(cfg)).exit_code == 0
    expected = "Basic " + base64.b64encode(b"alice:pa55word").decode()
    assert server.headers_for("/api/page")[-1]["authorization"] == expected
    for path in (tmp_path / "storage").rglob("*"):
        if path.is_file():
            assert b"pa55word" not in path.read_bytes() and b"key-value-1234" not in path.read_bytes()


def test_post_with_a_json_body(tmp_path, server) -> None:
    urls = SampleAPI(records=5).mount(server)
    cfg = _plain_api_config(tmp_path, urls["page"], 'method = "POST"\njson = { query = "ai", limit = 5 }\n')
    result = run_cli("collect", "api", "--config", str(cfg), "--json")
    assert result.exit_code == 0, result.stderr
    sent = server.headers_for("/api/page")[-1]
    assert sent[":method"] == "POST" and json.loads(sent[":body"]) == {"query": "ai", "limit": 5}
    assert json.loads(result.stdout)["counts"]["new"] == 5


def test_rate_limit_spaces_the_requests_to_one_host(tmp_path, server) -> None:
    urls = SampleAPI(records=50).mount(server)
    cfg = _plain_api_config(tmp_path, urls["page"], "rate_limit = 20\n"
                            'pagination = { type = "page", param = "page", size_param = "per_page", size = 5 }\n')
    result = run_cli("collect", "api", "--config", str(cfg), "--json")
    assert json.loads(result.stdout)["counts"]["pages"] == 11
    times = [float(h[":time"]) for h in server.headers_for("/api/page")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 20 per second: 50 ms apart when sent. Arrival times jitter on a loaded machine (one request
    # late, the next on time), so the span of all 11 is checked closely and each gap loosely.
    assert times[-1] - times[0] >= 10 * 0.05 * 0.9
    assert min(gaps) >= 0.02


def test_records_without_a_primary_key_are_keyed_by_content(tmp_path, server) -> None:
    api = SampleAPI(records=10)
    urls = api.mount(server)
    cfg = tmp_path / "abi.toml"
    cfg.write_text(f'[sources.articles]\nkind = "api"\nmodule = "news"\nurl = "{urls["page"]}"\nrecords = "data"\n')
    first = json.loads(run_cli("collect", "api", "--config", str(cfg), "--json").stdout)
    api.touch([4])
    second = json.loads(run_cli("collect", "api", "--config", str(cfg), "--json").stdout)
    assert first["counts"]["new"] == 10
    assert (second["counts"]["new"], second["counts"]["unchanged"], second["counts"]["updated"]) == (1, 9, 0)


def test_a_record_without_its_primary_key_fails_the_run_clearly(tmp_path, server) -> None:
    server.handle("/odd", lambda q, h: Reply(status=200, headers={"Content-Type": "application/json"},
                                              body=b'{"data": [{"id": 1}, {"name": "no id"}]}'))
    cfg = _plain_api_config(tmp_path, server.url("/odd"), "")
    result = run_cli("collect", "api", "--config", str(cfg))
    assert result.exit_code == 1
    assert "page 1: a record has no 'id' (the primary_key); its fields: name" in result.stderr
    assert not [p for p in (tmp_path / "storage").rglob("*.jsonl") if "history" not in p.parts]  # no data file


def test_a_response_too_large_for_memory_streams_through_disk(tmp_path, server, monkeypatch) -> None:
    # one 10 MB page: above the 8 MiB threshold it is spooled to a hidden file and read with ijson
    import collectors.http

    spools = []
    real_open = collectors.http._open_spool
    monkeypatch.setattr(collectors.http, "_open_spool", lambda folder: spools.append(folder) or real_open(folder))
    api = SampleAPI(records=10_000, body_size=1000)
    urls = api.mount(server)
    cfg = _plain_api_config(tmp_path, urls["cursor"], 'write = "merge"\nparams = { per_page = 10000 }\n'
                            'pagination = { type = "cursor", cursor_path = "meta.next", param = "cursor" }\n')
    api.add(5)
    result = run_cli("collect", "api", "--config", str(cfg), "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["counts"]["pages"] == 2 and record["counts"]["new"] == 10_005
    assert len(spools) == 1  # the big page went to disk, the small second one did not
    data = tmp_path / "storage/datastore/core/modules/news/raw_data/articles"
    ids = [json.loads(line)["id"] for line in (data / "articles.jsonl").read_text().splitlines()]
    assert sorted(ids) == list(range(1, 10_006))
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == []  # spool files removed
    again = json.loads(run_cli("collect", "api", "--config", str(cfg), "--json").stdout)
    assert again["counts"]["unchanged"] == 10_005 and again["files_written"] == []


def test_replace_refuses_a_walk_cut_short(tmp_path, server) -> None:
    api = SampleAPI(records=60, token=TOKEN)
    env = ApiEnv(tmp_path, server, api, write="replace", incremental=False)
    assert env.collect()[0] == 0
    code, record, _ = env.collect("--max-pages", "1")
    assert code == 1 and "write = \"replace\" needs the full result" in record["error"]["message"]
    (dataset,) = env.data_files()
    assert len(dataset.read_text().splitlines()) == 60  # untouched


def test_replace_writes_a_record_seen_twice_in_one_run_once(tmp_path, server) -> None:
    body = b'{"data": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "c"}]}'
    server.handle("/dup", lambda q, h: Reply(status=200, headers={"Content-Type": "application/json"}, body=body))
    cfg = _plain_api_config(tmp_path, server.url("/dup"), 'write = "replace"\n')
    assert run_cli("collect", "api", "--config", str(cfg)).exit_code == 0
    data = tmp_path / "storage/datastore/core/modules/news/raw_data/articles/articles.jsonl"
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    assert sorted((r["id"], r["v"]) for r in rows) == [(1, "c"), (2, "b")]


def test_a_next_link_to_another_host_is_not_followed_with_the_token(tmp_path, server) -> None:
    with FeedServer() as other:
        other.handle("/steal", lambda q, h: Reply(status=200, headers={"Content-Type": "application/json"},
                                                  body=b'{"data": []}'))
        link = other.url("/steal")
        server.handle("/first", lambda q, h: Reply(
            status=200, headers={"Content-Type": "application/json"},
            body=json.dumps({"data": [{"id": 1}], "links": {"next": link}}).encode()))
        env = ApiEnv(tmp_path, server, SampleAPI(records=1), style="next_url")
        env.config.write_text(env.config.read_text().replace(env.urls["next_url"], server.url("/first")))
        code, record, _ = env.collect()
        assert code == 1 and "the next page is on another host" in record["error"]["message"]
        assert other.count() == 0


def test_a_server_that_caps_the_page_size_is_still_read_to_the_end(tmp_path, server) -> None:
    api = SampleAPI(records=130)
    urls = api.mount(server)

    def capped(query, headers):  # asks for 100, gets at most 30
        query = {**query, "per_page": str(min(30, int(query.get("per_page", 30))))}
        return api._handler("page", urls["page"])(query, headers)

    server.handle("/capped", capped)
    cfg = _plain_api_config(tmp_path, server.url("/capped"),
                            'pagination = { type = "page", param = "page", size_param = "per_page", size = 100 }\n')
    record = json.loads(run_cli("collect", "api", "--config", str(cfg), "--json").stdout)
    assert record["counts"]["new"] == 130 and record["details"]["stop_reason"] == "short page"


def test_newest_first_walk_cut_short_keeps_the_watermark(tmp_path, server) -> None:
    api = SampleAPI(records=50)
    urls = api.mount(server)

    def newest_first(query, headers):
        rows = sorted(api._select(query.get("since")), key=lambda r: r["updated_at"], reverse=True)
        page = int(query.get("page", 1))
        return Reply(status=200, headers={"Content-Type": "application/json"},
                     body=json.dumps({"data": rows[(page - 1) * 20: page * 20]}).encode())

    server.handle("/newest", newest_first)
    cfg = _plain_api_config(tmp_path, server.url("/newest"),
                            'pagination = { type = "page", param = "page", size_param = "per_page", size = 20 }\n'
                            'incremental = { cursor_field = "updated_at", param = "since" }\n')
    first = json.loads(run_cli("collect", "api", "--config", str(cfg), "--json", "--max-pages", "1").stdout)
    assert first["details"]["watermark_after"] is None
    assert any("not in watermark order" in w for w in first["warnings"])
    second = json.loads(run_cli("collect", "api", "--config", str(cfg), "--json").stdout)
    assert second["counts"]["new"] == 30 and second["details"]["watermark_after"] == "2024-01-01T00:49:00Z"
    assert urls  # the stock endpoints stay mounted beside the custom one


def test_server_issued_tokens_in_error_bodies_are_masked(tmp_path, server) -> None:
    env = ApiEnv(tmp_path, server, SampleAPI(records=5, token=TOKEN))
    server.stick("/api/cursor", Reply(status=400, body=b'{"error": "expired", "retry": "/api?access_token=SRV9x8"}'))
    code, record, _ = env.collect()
    assert code == 1 and "access_token=***" in record["error"]["message"]
    for path in (tmp_path / "storage").rglob("*"):
        if path.is_file():
            assert b"SRV9x8" not in path.read_bytes(), path


def test_sidecar_is_rebuilt_after_a_crash_before_it_was_written(tmp_path, server, monkeypatch) -> None:
    import storage.datasets

    api = SampleAPI(records=20, token=TOKEN)
    env = ApiEnv(tmp_path, server, api, write="merge")
    env.collect()
    api.touch([4])
    real = storage.datasets.write_json

    def die(path, obj, **kw):
        if str(path).endswith(".meta.json"):
            raise KeyboardInterrupt  # the process dies right after publishing the merged dataset
        return real(path, obj, **kw)

    monkeypatch.setattr(storage.datasets, "write_json", die)
    assert run_cli("collect", "api", "--config", str(env.config)).exit_code == 130
    monkeypatch.setattr(storage.datasets, "write_json", real)  # (undo() would also drop the token variable)
    code, record, _ = env.collect()
    assert code == 0 and record["counts"]["updated"] == 0  # the merged record was folded into the index
    (dataset,) = env.data_files()
    sidecar = json.loads((dataset.parent / "articles.jsonl.meta.json").read_text())
    import hashlib

    assert sidecar["sha256"] == hashlib.sha256(dataset.read_bytes()).hexdigest() and sidecar["records"] == 20


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("2024-01-02T00:00:00Z", "2024-01-01T23:59:59Z", True),
    ("2024-01-01T00:00:00+02:00", "2023-12-31T23:00:00Z", False),
    ("10", "9", True), (100, "99", True), (1.5, 2, False),
    ("Tue, 02 Jan 2024 00:00:00 GMT", "Mon, 01 Jan 2024 23:00:00 GMT", True),
    ("2024-01-01 00:00:01Z", "2024-01-01T00:00:00Z", True),
    ("b", "a", True), (None, "a", False), ("a", None, True),
])
def test_watermark_order(a, b, expected) -> None:
    from storage.watermarks import newer

    assert newer(a, b) is expected
