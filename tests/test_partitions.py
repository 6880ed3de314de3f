"""Partitions and backfills: per-partition files replaced whole, resumable, watermark untouched."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs

from collectors.sample_feeds import Reply
from tests.conftest import ABI_BIN, run_cli


def _db_env(tmp_path: Path, days: int = 5, per_day: int = 40) -> Path:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, v TEXT, updated_at TEXT)")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", [
            (d * 100_000 + i, "x", f"2024-05-{d:02d}T{i % 24:02d}:{i % 60:02d}:00Z")
            for d in range(1, days + 1) for i in range(per_day)])
    cfg = tmp_path / "abi.toml"
    cfg.write_text('[sources.events]\nkind = "db"\nmodule = "app"\nurl = "sqlite:///app.db"\n'
                   'query = "SELECT id, v, updated_at FROM events"\ncursor = "updated_at"\nprimary_key = "id"\n'
                   'partitions = "daily"\nstart = "2024-05-01"\n')
    return cfg


def _partition_file(tmp_path: Path, key: str) -> Path:
    return tmp_path / f"storage/datastore/core/modules/app/raw_data/events/partitions/{key}.jsonl"


def _state(tmp_path: Path) -> dict:
    path = tmp_path / "storage/datastore/core/modules/app/orchestration/state/events.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_partition_run_collects_its_window_and_a_rerun_replaces_exactly_it(tmp_path) -> None:
    cfg = _db_env(tmp_path)
    result = run_cli("collect", "db", "--config", str(cfg), "--source", "events", "--partition", "2024-05-02",
                     "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["details"]["partition"] == "2024-05-02" and record["counts"]["records"] == 40
    rows = [json.loads(x) for x in _partition_file(tmp_path, "2024-05-02").read_text().splitlines()]
    assert {r["updated_at"][:10] for r in rows} == {"2024-05-02"}
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("DELETE FROM events WHERE id = 200000")
        conn.execute("UPDATE events SET v = 'edited' WHERE id = 200001")
    record = json.loads(run_cli("collect", "db", "--config", str(cfg), "--source", "events",
                                "--partition", "2024-05-02", "--json").stdout)
    rows = [json.loads(x) for x in _partition_file(tmp_path, "2024-05-02").read_text().splitlines()]
    assert len(rows) == 39 and next(r for r in rows if r["id"] == 200001)["v"] == "edited"
    assert record["counts"]["records"] == 39
    assert not _partition_file(tmp_path, "2024-05-01").exists()
    assert "watermark" not in _state(tmp_path)


def test_backfill_runs_the_range_once_and_never_moves_the_watermark(tmp_path) -> None:
    cfg = _db_env(tmp_path)
    assert run_cli("collect", "db", "--config", str(cfg)).exit_code == 0  # the incremental run
    watermark = _state(tmp_path)["watermark"]
    result = run_cli("backfill", "--config", str(cfg), "--source", "events", "--from", "2024-05-01",
                     "--to", "2024-05-05", "--json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["details"]["partition"] for r in records] == [f"2024-05-0{d}" for d in range(1, 6)]
    assert all(r["counts"]["records"] == 40 for r in records)
    assert _state(tmp_path)["watermark"] == watermark
    again = run_cli("backfill", "--config", str(cfg), "--source", "events", "--from", "2024-05-01",
                    "--to", "2024-05-05")
    assert again.exit_code == 0 and "nothing to backfill" in again.stdout
    everything = run_cli("backfill", "--config", str(cfg), "--source", "events", "--from", "2024-05-01",
                         "--to", "2024-05-02", "--only", "all", "--parallel", "2", "--json")
    assert len(json.loads(everything.stdout)) == 2


def test_an_interrupted_backfill_resumes_where_it_stopped(tmp_path) -> None:
    cfg = _db_env(tmp_path, days=28, per_day=3000)
    proc = subprocess.Popen([str(ABI_BIN), "backfill", "--config", str(cfg), "--source", "events",
                             "--from", "2024-05-01", "--to", "2024-05-28"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = _partition_file(tmp_path, "x").parent
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(folder.glob("*.jsonl"))) < 3:
        time.sleep(0.05)  # kill it once a few partitions are done, in the middle of the others
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(_partition_file(tmp_path, "x").parent.glob("*.jsonl")))
    assert 0 < done_before < 28
    result = run_cli("backfill", "--config", str(cfg), "--source", "events", "--from", "2024-05-01",
                     "--to", "2024-05-28", "--json")
    records = json.loads(result.stdout)
    assert len(records) <= 28 - done_before + 1  # only what was missing (and the one cut off)
    files = sorted(_partition_file(tmp_path, "x").parent.glob("*.jsonl"))
    assert len(files) == 28
    assert all(len(f.read_text().splitlines()) == 3000 for f in files)
    assert not [p for p in files[0].parent.iterdir() if p.name.startswith(".")]


def test_failed_partitions_are_run_again_with_only_failed(tmp_path, server) -> None:
    calls = []

    def handler(query, headers):
        calls.append(query)
        if query["from"].startswith("2024-05-02"):
            return Reply(status=404, body=b'{"error": "no such day"}')
        return Reply(status=200, headers={"Content-Type": "application/json"},
                     body=json.dumps({"data": [{"id": query["from"][:10], "day": query["from"]}]}).encode())

    server.handle("/daily", handler)
    cfg = tmp_path / "abi.toml"
    cfg.write_text(f'[sources.daily]\nkind = "api"\nmodule = "app"\nurl = "{server.url("/daily")}"\n'
                   'records = "data"\nprimary_key = "id"\npartitions = "daily"\nstart = "2024-05-01"\n'
                   'params = { from = "{partition_start}", to = "{partition_end}" }\n')
    result = run_cli("backfill", "--config", str(cfg), "--source", "daily", "--from", "2024-05-01",
                     "--to", "2024-05-03", "--json")
    assert result.exit_code == 1
    statuses = [r["status"] for r in json.loads(result.stdout)]
    assert statuses == ["success", "failed", "success"]
    assert parse_qs(server.headers_for("/daily")[0][":query"]) == {
        "from": ["2024-05-01T00:00:00Z"], "to": ["2024-05-02T00:00:00Z"]}
    calls.clear()
    result = run_cli("backfill", "--config", str(cfg), "--source", "daily", "--from", "2024-05-01",
                     "--to", "2024-05-03", "--only", "failed", "--json")
    assert [c["from"] for c in calls] == ["2024-05-02T00:00:00Z"]


def test_partition_usage_errors_are_exit_2(tmp_path) -> None:
    cfg = _db_env(tmp_path)
    bad = run_cli("collect", "db", "--config", str(cfg), "--source", "events", "--partition", "May 2")
    assert bad.exit_code == 2 and "does not look like a daily partition such as '2024-05-01'" in bad.stderr
    early = run_cli("collect", "db", "--config", str(cfg), "--source", "events", "--partition", "2024-04-30")
    assert early.exit_code == 2 and "before the source's partitions start" in early.stderr
    cfg.write_text(cfg.read_text().replace('partitions = "daily"', 'partitions = "weekly"'))
    wrong = run_cli("collect", "db", "--config", str(cfg))
    assert wrong.exit_code == 2 and "key 'partitions' must be one of: hourly, daily, monthly" in wrong.stderr
