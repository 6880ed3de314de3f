"""The run records are the ledger aggregates and bridges read: nothing published may fall out of it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from collectors.sample_feeds import sample_rss
from tests.conftest import REPO, Env, news_feeds, write_config

AGGREGATE = textwrap.dedent("""
    [aggregates.articles]
    module = "abi"
    inputs = ["news"]
    key = "url"
    fields = ["title"]
    """)


def _env(tmp_path: Path, server) -> Env:
    cfg = write_config(tmp_path, news_feeds(server))
    cfg.write_text(cfg.read_text() + AGGREGATE)
    return Env(tmp_path, server, cfg)


def _rows(env: Env) -> int:
    path = env.module_dir / "processed_data" / "articles" / "articles.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_entries_of_a_run_killed_before_its_record_reach_the_aggregate(tmp_path: Path, server) -> None:
    env = _env(tmp_path, server)
    # the collection publishes its entries and saves its state, then dies before writing its run record
    script = textwrap.dedent(f"""
        import os, sys
        import storage.jobs
        real = storage.jobs.write_run_record
        def dying(ds, record, **kw):
            if record["kind"] == "rss" and record["status"] != "skipped":
                os._exit(9)
            return real(ds, record, **kw)
        storage.jobs.write_run_record = dying
        sys.argv = ["abi", "collect", "rss", "--config", {str(env.config)!r}]
        from cli.main import main
        main()
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    assert len(env.entry_files()) == 15 and not env.runs()
    result, record = env.collect_json()  # nothing new to fetch, but the lost run's entries are listed
    assert record["counts"]["new"] == 0
    assert "stopped before writing its run record" in " ".join(record["warnings"])
    assert env.abi("aggregate").exit_code == 0
    assert _rows(env) == 15
    assert env.abi("aggregate", "--full").exit_code == 0
    assert _rows(env) == 15


def test_a_skipped_run_does_not_hide_the_run_it_waited_for(tmp_path: Path, server) -> None:
    env = _env(tmp_path, server)
    for q in ("AI", "OpenAI", "NASA"):
        server.set_feed(f"/{q.lower()}.xml", sample_rss(q, items=5), latency=1.5)
    slow = subprocess.Popen([sys.executable, "-m", "cli.main", "collect", "rss", "--config", str(env.config)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = env.module_dir / "orchestration" / "locks" / "news.lock"
        deadline = time.monotonic() + 20
        while not (env.module_dir / "orchestration" / "compute_logs").is_dir():  # the slow run holds the lock
            assert time.monotonic() < deadline and slow.poll() is None
            time.sleep(0.02)
        assert lock.exists()
        skipped = json.loads(env.collect("--json").stdout)
        assert skipped["status"] == "skipped"
        assert env.abi("aggregate").exit_code == 0  # runs while the slow collection is still going
    finally:
        slow.wait(timeout=60)
    assert slow.returncode == 0
    result = json.loads(env.abi("aggregate", "--json").stdout)
    assert result["details"]["mode"] == "incremental"
    assert _rows(env) == 15
