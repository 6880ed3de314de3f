"""`abi collect db` against a real PostgreSQL server started by the fixture (tests/pg.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.pg import PASSWORD, Postgres, start_postgres


@pytest.fixture(scope="module")
def pg() -> Postgres:
    yield from start_postgres()


@pytest.fixture
def table(pg: Postgres, request) -> str:
    name = "orders_" + request.node.name.split("[")[0][-20:].replace("-", "_").lower()
    with pg.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, status text, amount numeric(12,2), "
                     "ref uuid DEFAULT gen_random_uuid(), updated_at timestamptz NOT NULL)")
    return name


T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _insert(pg: Postgres, table: str, rows: list[tuple[int, str, str, datetime]]) -> None:
    with pg.connect() as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (id, status, amount, updated_at) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at",
                        rows)


def _config(tmp_path: Path, pg: Postgres, table: str, extra: str = "") -> Path:
    cfg = tmp_path / "abi.toml"
    cfg.write_text("\n".join([
        "[sources.orders]", 'kind = "db"', 'module = "shop"', f'url = "{pg.url}"', 'password_env = "ABI_PG_PASSWORD"',
        f'query = "SELECT id, status, amount, ref, updated_at FROM {table} WHERE status <> \'void\'"',
        'cursor = "updated_at"', 'primary_key = "id"', "batch_size = 250", extra]) + "\n")
    return cfg


def _collect(cfg: Path, *args: str) -> tuple[int, dict[str, Any] | None, str, str]:
    result = run_cli("collect", "db", "--config", str(cfg), "--json", *args)
    try:
        return result.exit_code, json.loads(result.stdout), result.stdout, result.stderr
    except ValueError:
        return result.exit_code, None, result.stdout, result.stderr


def _stored(tmp_path: Path) -> list[dict[str, Any]]:
    folder = tmp_path / "storage/datastore/core/modules/shop/raw_data/orders"
    return [json.loads(x) for p in sorted(folder.glob("*.jsonl")) for x in p.read_text().splitlines()]


def test_rows_stream_in_batches_and_the_boundary_holds(tmp_path, pg, table, monkeypatch) -> None:
    monkeypatch.setenv("ABI_PG_PASSWORD", PASSWORD)
    _insert(pg, table, [(i, "paid", "9.99", T0) for i in range(1, 1001)])  # 1,000 rows, one timestamp
    cfg = _config(tmp_path, pg, table)
    code, record, _, err = _collect(cfg)
    assert code == 0, err
    assert record["counts"]["new"] == 1000 and record["counts"]["batches"] == 4
    assert record["details"]["watermark_after"]["key"] == [1000]
    _insert(pg, table, [(i, "paid", "1.00", T0) for i in range(1001, 1101)])  # late, same timestamp
    _insert(pg, table, [(5, "refunded", "9.99", T0 + timedelta(minutes=5))])  # changed
    code, record, _, _ = _collect(cfg)
    assert (record["counts"]["new"], record["counts"]["updated"], record["counts"]["records"]) == (100, 1, 101)
    rows = _stored(tmp_path)
    assert len({r["id"] for r in rows}) == 1100
    first = next(r for r in rows if r["id"] == 1)
    assert first["amount"] == "9.99" and first["updated_at"] == "2024-06-01T12:00:00+00:00"
    assert len(first["ref"]) == 36
    code, record, _, _ = _collect(cfg)
    assert record["counts"]["records"] == 0


def test_late_rows_with_an_older_timestamp_are_caught_by_the_lookback(tmp_path, pg, table, monkeypatch) -> None:
    monkeypatch.setenv("ABI_PG_PASSWORD", PASSWORD)
    _insert(pg, table, [(i, "paid", "1", T0 + timedelta(minutes=i)) for i in range(1, 61)])
    cfg = _config(tmp_path, pg, table, extra='lookback = "15m"')
    _collect(cfg)
    _insert(pg, table, [(500, "paid", "1", T0 + timedelta(minutes=50))])
    code, record, _, _ = _collect(cfg)
    assert code == 0 and record["counts"]["new"] == 1 and record["counts"]["unchanged"] == 16


def test_the_password_is_never_printed_or_stored(tmp_path, pg, table, monkeypatch) -> None:
    _insert(pg, table, [(1, "paid", "1", T0)])
    cfg = _config(tmp_path, pg, table)
    monkeypatch.delenv("ABI_PG_PASSWORD", raising=False)
    missing = run_cli("collect", "db", "--config", str(cfg))
    assert missing.exit_code == 2 and "environment variable ABI_PG_PASSWORD" in missing.stderr
    monkeypatch.setenv("ABI_PG_PASSWORD", "Wrong-" + PASSWORD)
    wrong = run_cli("collect", "db", "--config", str(cfg))
    assert wrong.exit_code == 1
    (line,) = wrong.stderr.strip().splitlines()
    assert "cannot connect to postgresql://***@127.0.0.1" in line and "password authentication failed" in line
    monkeypatch.setenv("ABI_PG_PASSWORD", PASSWORD)
    good = run_cli("collect", "db", "--config", str(cfg), "--json")
    assert good.exit_code == 0
    for out in (missing, wrong, good):
        assert PASSWORD not in out.stdout + out.stderr
    for path in (tmp_path / "storage").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_password_in_the_url_is_refused(tmp_path, pg) -> None:
    cfg = tmp_path / "abi.toml"
    cfg.write_text(f'[sources.o]\nkind = "db"\nmodule = "m"\nurl = "postgresql://abi:{PASSWORD}@127.0.0.1:1/x"\n'
                   'query = "SELECT 1"\n')
    result = run_cli("collect", "db", "--config", str(cfg))
    assert result.exit_code == 2 and "holds a password" in result.stderr and PASSWORD not in result.stderr


def test_a_query_error_keeps_the_watermark(tmp_path, pg, table, monkeypatch) -> None:
    monkeypatch.setenv("ABI_PG_PASSWORD", PASSWORD)
    _insert(pg, table, [(1, "paid", "1", T0)])
    cfg = _config(tmp_path, pg, table)
    _collect(cfg)
    cfg.write_text(cfg.read_text().replace("status,", "statuz,"))
    code, record, _, _ = _collect(cfg)
    assert code == 1 and 'column "statuz" does not exist' in record["error"]["message"]
    state = json.loads((tmp_path / "storage/datastore/core/modules/shop/orchestration/state/orders.json").read_text())
    assert state["watermark"]["key"] == [1]


def test_merge_on_a_uuid_key_updates_in_place(tmp_path, pg, monkeypatch) -> None:
    monkeypatch.setenv("ABI_PG_PASSWORD", PASSWORD)
    with pg.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS things")
        conn.execute("CREATE TABLE things (ref uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text, "
                     "changed date NOT NULL)")
        conn.execute("INSERT INTO things (name, changed) SELECT 'n' || g, DATE '2024-01-01' FROM "
                     "generate_series(1, 5) g")
    cfg = tmp_path / "abi.toml"
    cfg.write_text(f'[sources.things]\nkind = "db"\nmodule = "shop"\nurl = "{pg.url}"\n'
                   'password_env = "ABI_PG_PASSWORD"\nquery = "SELECT ref, name, changed FROM things"\n'
                   'cursor = "changed"\nprimary_key = "ref"\n'
                   'write = "merge"\n')
    assert _collect(cfg)[0] == 0
    with pg.connect() as conn:
        conn.execute("UPDATE things SET name = 'renamed', changed = DATE '2024-01-02' WHERE name = 'n3'")
    code, record, _, _ = _collect(cfg)
    assert (record["counts"]["updated"], record["counts"]["new"]) == (1, 0)
    data = tmp_path / "storage/datastore/core/modules/shop/raw_data/things/things.jsonl"
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    assert len(rows) == 5 and sum(r["name"] == "renamed" for r in rows) == 1


def test_kill_9_then_a_normal_run_loses_and_duplicates_nothing(tmp_path, pg, table) -> None:
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import ABI_BIN

    with pg.connect() as conn:
        conn.execute(f"INSERT INTO {table} (id, status, amount, updated_at) SELECT g, 'paid', 1, "
                     "timestamptz '2024-06-01 00:00:00+00' + (g / 7) * interval '1 second' "
                     "FROM generate_series(1, 200000) g")
    cfg = _config(tmp_path, pg, table, extra="batch_size = 5000").read_text().replace("batch_size = 250\n", "")
    (tmp_path / "abi.toml").write_text(cfg)
    env = {**os.environ, "ABI_PG_PASSWORD": PASSWORD}
    data = tmp_path / "storage/datastore/core/modules/shop/raw_data/orders"
    for delay in (1.0, 2.0):
        proc = subprocess.Popen([str(ABI_BIN), "collect", "db", "--config", str(tmp_path / "abi.toml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = subprocess.run([str(ABI_BIN), "collect", "db", "--config", str(tmp_path / "abi.toml"), "--json"],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in _stored(tmp_path)]
    assert len(ids) == len(set(ids)) == 200_000
    assert not [p for p in data.iterdir() if p.name.startswith(".")]
