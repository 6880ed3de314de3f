"""`abi collect db` against a real SQLite file (PostgreSQL: tests/test_collect_postgres.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import ABI_BIN, run_cli


class DbEnv:
    def __init__(self, tmp_path: Path, *, write: str = "append", extra: str = "", batch_size: int = 100) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "app.db"
        with sqlite3.connect(self.db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, payload TEXT, "
                         "updated_at TEXT NOT NULL)")
        self.config = tmp_path / "abi.toml"
        self.config.write_text("\n".join([
            "[sources.events]", 'kind = "db"', 'module = "app"', 'url = "sqlite:///app.db"',
            'query = "SELECT id, payload, updated_at FROM events"', 'cursor = "updated_at"',
            'primary_key = "id"', f"batch_size = {batch_size}", f'write = "{write}"', extra]) + "\n")

    def insert(self, rows: list[tuple[int, str, str]]) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.executemany("INSERT OR REPLACE INTO events (id, payload, updated_at) VALUES (?, ?, ?)", rows)

    def collect(self, *args: str) -> tuple[int, dict[str, Any] | None, str]:
        result = run_cli("collect", "db", "--config", str(self.config), "--json", *args)
        try:
            return result.exit_code, json.loads(result.stdout), result.stderr
        except ValueError:
            return result.exit_code, None, result.stderr

    @property
    def data_dir(self) -> Path:
        return self.tmp_path / "storage/datastore/core/modules/app/raw_data/events"

    def stored(self) -> list[dict[str, Any]]:
        files = sorted(self.data_dir.glob("*.jsonl")) if self.data_dir.exists() else []
        return [json.loads(x) for p in files for x in p.read_text().splitlines() if x]


def _ts(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00Z"


def test_first_run_reads_everything_second_run_nothing_then_only_new_rows(tmp_path) -> None:
    env = DbEnv(tmp_path)
    env.insert([(i, f"p{i}", _ts(i % 50)) for i in range(1, 251)])
    code, record, err = env.collect()
    assert code == 0, err
    assert record["counts"]["new"] == 250 and record["counts"]["batches"] == 3
    assert record["details"]["watermark_after"] == {"cursor": _ts(49), "key": [249]}
    code, record, _ = env.collect()
    assert record["counts"]["records"] == 0 and record["files_written"] == []
    env.insert([(251, "late", _ts(59)), (252, "later", _ts(59))])
    code, record, _ = env.collect()
    assert record["counts"]["new"] == 2
    assert sorted(r["id"] for r in env.stored()) == list(range(1, 253))


def test_a_thousand_rows_sharing_one_timestamp_across_the_boundary(tmp_path) -> None:
    env = DbEnv(tmp_path, batch_size=128)
    env.insert([(i, "a", _ts(0)) for i in range(1, 601)])
    env.collect()
    env.insert([(i, "b", _ts(0)) for i in range(601, 1001)])  # same timestamp, committed after the run
    code, record, _ = env.collect()
    assert code == 0 and record["counts"]["new"] == 400 and record["counts"]["unchanged"] == 0
    ids = [r["id"] for r in env.stored()]
    assert len(ids) == len(set(ids)) == 1000


def test_late_rows_with_an_older_timestamp_need_the_lookback(tmp_path) -> None:
    env = DbEnv(tmp_path, extra='lookback = "30m"')
    env.insert([(i, "x", _ts(i)) for i in range(1, 41)])
    env.collect()
    env.insert([(100, "late", _ts(20))])  # committed late, stamped 20 minutes before the watermark
    code, record, _ = env.collect()
    assert code == 0
    assert record["counts"]["new"] == 1 and record["counts"]["unchanged"] == 31  # minutes 9..39 re-read
    assert sorted(r["id"] for r in env.stored()) == [*range(1, 41), 100]


def test_merge_updates_changed_rows_in_place(tmp_path) -> None:
    env = DbEnv(tmp_path, write="merge")
    env.insert([(i, "v1", _ts(i)) for i in range(1, 11)])
    env.collect()
    env.insert([(3, "v2", _ts(30)), (11, "new", _ts(31))])
    code, record, _ = env.collect()
    assert code == 0
    assert (record["counts"]["new"], record["counts"]["updated"]) == (1, 1)
    rows = [json.loads(x) for x in (env.data_dir / "events.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(1, 12))
    assert rows[2]["payload"] == "v2"


def test_a_bad_query_is_one_clear_line_and_keeps_the_watermark(tmp_path) -> None:
    env = DbEnv(tmp_path)
    env.insert([(1, "x", _ts(1))])
    env.collect()
    state = (tmp_path / "storage/datastore/core/modules/app/orchestration/state/events.json").read_text()
    env.config.write_text(env.config.read_text().replace("payload,", "paylod,"))
    result = run_cli("collect", "db", "--config", str(env.config))
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: events: query failed: no such column: paylod")
    assert (tmp_path / "storage/datastore/core/modules/app/orchestration/state/events.json").read_text() == state


def test_a_missing_database_file_is_a_clear_failure(tmp_path) -> None:
    env = DbEnv(tmp_path)
    env.db.unlink()
    code, record, _ = env.collect()
    assert code == 1 and "no SQLite database at" in record["error"]["message"]


def test_the_source_database_is_opened_read_only(tmp_path) -> None:
    env = DbEnv(tmp_path)
    env.insert([(1, "x", _ts(1))])
    before = env.db.stat().st_mtime_ns
    env.collect()
    assert env.db.stat().st_mtime_ns == before
    assert not list(tmp_path.glob("app.db-*"))  # no journal or WAL created beside it


def test_full_refresh_reads_everything_again_without_duplicates(tmp_path) -> None:
    env = DbEnv(tmp_path)
    env.insert([(i, "x", _ts(i)) for i in range(1, 21)])
    env.collect()
    code, record, _ = env.collect("--full-refresh")
    assert code == 0
    assert record["counts"]["records"] == 20 and record["counts"]["unchanged"] == 20
    assert len(env.stored()) == 20


def test_kill_9_then_a_normal_run_loses_and_duplicates_nothing(tmp_path) -> None:
    env = DbEnv(tmp_path, batch_size=2000)
    env.insert([(i, "y" * 200, f"2024-05-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z")
                for i in range(1, 150_001)])
    for delay in (0.8, 1.6):
        proc = subprocess.Popen([str(ABI_BIN), "collect", "db", "--config", str(env.config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = subprocess.run([str(ABI_BIN), "collect", "db", "--config", str(env.config), "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in env.stored()]
    assert len(ids) == len(set(ids)) == 150_000
    assert not [p for p in env.data_dir.iterdir() if p.name.startswith(".")]


def test_rows_with_a_null_cursor_are_left_out_and_never_become_the_watermark(tmp_path) -> None:
    env = DbEnv(tmp_path)
    with sqlite3.connect(env.db) as conn:
        conn.execute("CREATE TABLE e2 (id INTEGER PRIMARY KEY, payload TEXT, updated_at TEXT)")
        conn.executemany("INSERT INTO e2 VALUES (?, ?, ?)", [(1, "a", _ts(1)), (2, "b", None)])
    env.config.write_text(env.config.read_text().replace("FROM events", "FROM e2"))
    code, record, _ = env.collect()
    assert code == 0 and record["counts"]["records"] == 1
    assert record["details"]["watermark_after"]["cursor"] == _ts(1)
    with sqlite3.connect(env.db) as conn:
        conn.execute("INSERT INTO e2 VALUES (3, 'c', ?)", (_ts(2),))
    code, record, _ = env.collect()
    assert record["counts"]["new"] == 1


def test_reserved_and_mixed_case_column_names_and_a_trailing_comment(tmp_path) -> None:
    env = DbEnv(tmp_path)
    with sqlite3.connect(env.db) as conn:
        conn.execute('CREATE TABLE t2 ("order" INTEGER PRIMARY KEY, "updatedAt" TEXT)')
        conn.executemany("INSERT INTO t2 VALUES (?, ?)", [(1, _ts(1)), (2, _ts(2))])
    env.config.write_text(env.config.read_text()
                          .replace('query = "SELECT id, payload, updated_at FROM events"',
                                   "query = 'SELECT \"order\", \"updatedAt\" FROM t2 -- every order'")
                          .replace('cursor = "updated_at"', 'cursor = "updatedAt"')
                          .replace('primary_key = "id"', 'primary_key = "order"'))
    code, record, err = env.collect()
    assert code == 0, record
    assert record["counts"]["new"] == 2


def test_a_date_only_cursor_with_a_lookback_keeps_the_boundary_day(tmp_path) -> None:
    env = DbEnv(tmp_path, extra='lookback = "1d"')
    env.insert([(1, "a", "2024-01-04"), (2, "b", "2024-01-05")])
    env.collect()
    env.insert([(3, "late", "2024-01-04")])
    code, record, _ = env.collect()
    assert record["counts"]["new"] == 1


def test_a_time_lookback_on_a_numeric_cursor_is_a_clear_error(tmp_path) -> None:
    env = DbEnv(tmp_path, extra='lookback = "1h"')
    with sqlite3.connect(env.db) as conn:
        conn.execute("CREATE TABLE n (id INTEGER PRIMARY KEY, payload TEXT, updated_at INTEGER)")
        conn.execute("INSERT INTO n VALUES (1, 'a', 100)")
    env.config.write_text(env.config.read_text().replace("FROM events", "FROM n"))
    env.collect()
    code, record, _ = env.collect()
    assert code == 1 and "lookback" in record["error"]["message"] and "numeric cursor" in record["error"]["message"]


def test_a_first_run_whose_query_repeats_rows_stores_each_once_and_indexes_every_key(tmp_path) -> None:
    env = DbEnv(tmp_path, batch_size=3, extra='lookback = "2h"')  # 3: repeats in a batch and across two
    env.config.write_text(env.config.read_text().replace(
        'FROM events"', 'FROM events UNION ALL SELECT id, payload, updated_at FROM events WHERE id % 3 = 0"'))
    env.insert([(i, f"p{i}", _ts(i)) for i in range(1, 31)])
    code, record, err = env.collect()  # a first run: the index is built at the end; the repeats are found then
    assert code == 0, err
    assert (record["counts"]["records"], record["counts"]["new"], record["counts"]["repeated"]) == (40, 30, 10)
    assert sorted(r["id"] for r in env.stored()) == list(range(1, 31))
    code, record, _ = env.collect()  # the lookback reads them all again: every key is known
    assert (record["counts"]["new"], record["counts"]["updated"], record["counts"]["unchanged"]) == (0, 0, 30)
    assert record["files_written"] == []


def test_a_key_index_written_by_the_first_format_keeps_every_row_known(tmp_path) -> None:
    import hashlib

    from storage.datasets import encode

    env = DbEnv(tmp_path)
    rows = [(i, f"p{i}", _ts(i)) for i in range(1, 21)]
    env.insert(rows)
    index = tmp_path / "storage/datastore/core/modules/app/orchestration/state/events.keys.sqlite"
    index.parent.mkdir(parents=True)
    with sqlite3.connect(index) as conn:  # the tables and hashes of the format before this one
        conn.executescript("""
            CREATE TABLE records (key TEXT PRIMARY KEY, hash TEXT NOT NULL, run_id TEXT) WITHOUT ROWID;
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, committed_at TEXT DEFAULT CURRENT_TIMESTAMP);
            INSERT INTO runs (run_id) VALUES ('20240501T100000Z-events-abcdef');
        """)
        conn.executemany("INSERT INTO records VALUES (?, ?, '20240501T100000Z-events-abcdef')", [
            (f"i:{i}", hashlib.sha256(encode({"id": i, "payload": p, "updated_at": t}, False)).hexdigest()[:32])
            for i, p, t in rows])
    conn.close()
    code, record, err = env.collect("--full-refresh")
    assert code == 0, err
    assert (record["counts"]["new"], record["counts"]["unchanged"]) == (0, 20) and record["files_written"] == []
    with sqlite3.connect(index) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
