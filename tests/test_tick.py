"""`abi tick`, sensors and schedules, with an injected clock; crontab lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import storage.runs
from collectors.sample_feeds import FeedServer, sample_rss
from collectors.scheduler import lanes, tick
from storage.config import load_config
from tests.conftest import ABI_BIN, run_cli

T0 = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(T0)
    monkeypatch.setattr(storage.runs, "utcnow", c)
    return c


def _config(tmp_path: Path, server: FeedServer, *, extra_sources: str = "") -> Path:
    server.set_feed("/a.xml", sample_rss("A", items=3))
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    cfg = tmp_path / "abi.toml"
    cfg.write_text(f"""
[sources.news]
kind = "rss"
module = "m"
interval = "5m"
retries = 0
feeds = [{{ url = "{server.url('/a.xml')}", query = "A" }}]

[sources.nightly]
kind = "files"
module = "m"
path = "inbox"
schedule = "0 2 * * *"
settle_seconds = 0

[sources.drop]
kind = "files"
module = "m"
path = "inbox"
output = "raw_data/drop"
settle_seconds = 0
sensor = {{ type = "files", minimum_interval = "1m" }}

[sources.manual]
kind = "files"
module = "m"
path = "inbox"
output = "raw_data/manual"
{extra_sources}
""")
    return cfg


def _by_source(rows):
    return {r["source"]: r for r in rows}


def test_exactly_the_due_sources_run(tmp_path, server, clock) -> None:
    config = load_config(_config(tmp_path, server))
    rows = _by_source(tick(config=config, now=clock()))
    assert all(r["action"] == "ran" and r["reason"] == "never run" for r in rows.values())
    rows = _by_source(tick(config=config, now=clock.advance(minutes=2)))
    assert [r["action"] for r in rows.values()] == ["wait", "wait", "skipped", "wait"]
    assert "run it by hand" in rows["manual"]["reason"]
    assert rows["drop"]["reason"] == f"sensor: no new files in {tmp_path / 'inbox'}"
    rows = _by_source(tick(config=config, now=clock.advance(minutes=4)))  # 6 minutes after the first run
    assert rows["news"]["action"] == "ran" and "interval 300s elapsed" in rows["news"]["reason"]
    assert rows["nightly"]["action"] == "wait" and rows["nightly"]["next_due"] == "2026-03-03T02:00:00.000000Z"


def test_missed_slots_run_once(tmp_path, server, clock) -> None:
    config = load_config(_config(tmp_path, server))
    tick(config=config, now=clock())
    later = clock.advance(days=3)  # the machine was off for three nights
    first = _by_source(tick(config=config, now=later))
    assert first["nightly"]["action"] == "ran"
    assert "schedule slot 2026-03-05T02:00Z passed" in first["nightly"]["reason"]
    again = _by_source(tick(config=config, now=clock.advance(seconds=30)))
    assert again["nightly"]["action"] == "wait"


def test_a_sensor_that_finds_nothing_is_skipped_cheaply_and_fires_on_a_new_file(tmp_path, server, clock) -> None:
    config = load_config(_config(tmp_path, server))
    tick(config=config, now=clock())
    runs_dir = tmp_path / "storage/datastore/core/modules/m/orchestration/history/runs"
    before = len(list(runs_dir.glob("*.json")))
    rows = _by_source(tick(config=config, now=clock.advance(minutes=2)))
    assert rows["drop"]["action"] == "skipped"
    assert len(list(runs_dir.glob("*.json"))) == before  # a skip is not a run record
    status = {r["source"]: r for r in json.loads(run_cli("status", "--json", "--config", str(config.path)).stdout)}
    assert status["drop"]["sensor_skip_reason"].startswith("no new files")
    rows = _by_source(tick(config=config, now=clock.advance(seconds=20)))
    assert rows["drop"]["action"] == "wait" and "minimum_interval 60s" in rows["drop"]["reason"]
    (tmp_path / "inbox" / "new.csv").write_text("x")
    os.utime(tmp_path / "inbox" / "new.csv", (time.time() - 5, time.time() - 5))
    rows = _by_source(tick(config=config, now=clock.advance(minutes=1)))
    assert rows["drop"]["action"] == "ran" and rows["drop"]["sensor"] == "1 new or changed file(s)"


def test_an_overlapping_tick_never_runs_a_source_twice(tmp_path) -> None:
    with FeedServer() as server:
        cfg = _config(tmp_path, server)
        server.routes["/a.xml"].latency = 1.0
        results = []

        def one() -> None:
            proc = subprocess.run([str(ABI_BIN), "tick", "--json", "--config", str(cfg), "--source", "news"],
                                  capture_output=True, text=True, timeout=60, check=False)
            results.append(json.loads(proc.stdout))

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        for t in threads:
            t.join()
        assert server.count("/a.xml") == 1
        statuses = sorted(rows[0].get("status") for rows in results)
        assert statuses == ["skipped", "success"]


def test_sources_sharing_a_host_share_a_lane(tmp_path, server) -> None:
    cfg = _config(tmp_path, server, extra_sources=f"""
[sources.news2]
kind = "rss"
module = "m"
feeds = [{{ url = "{server.url('/b.xml')}" }}]
""")
    config = load_config(cfg)
    groups = [[s.name for s in lane] for lane in lanes(list(config.sources.values()))]
    assert ["news", "news2"] in groups  # one host: one after the other
    assert ["nightly", "drop", "manual"] in groups  # one folder


def test_tick_loop_stops_gracefully_on_sigterm(tmp_path, server) -> None:
    cfg = _config(tmp_path, server)
    proc = subprocess.Popen([str(ABI_BIN), "tick", "--loop", "--every", "1s", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # the first tick ran the never-run sources
    assert "ran" in line
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped after" in err


def test_crontab_lines_and_an_idempotent_install(tmp_path, server, monkeypatch) -> None:
    cfg = _config(tmp_path, server)
    printed = run_cli("schedule", "--crontab", "--config", str(cfg)).stdout
    assert "\nCRON_TZ=UTC\n" in printed
    lines = [x for x in printed.splitlines() if x and not x.startswith(("#", "CRON_TZ="))]
    assert any(x.startswith("*/5 * * * * cd ") and "abi collect rss --source news" in x for x in lines)
    assert any(x.startswith("0 2 * * * cd ") and "abi collect files --source nightly" in x for x in lines)
    assert any(x.startswith("* * * * * cd ") and "abi tick --source drop" in x for x in lines)
    assert all("flock -n" in x and x.endswith("2>&1") for x in lines)
    # a stand-in `crontab` keeping the table in a file: the real one would edit this user's crontab
    bindir = tmp_path / "bin"
    bindir.mkdir()
    table = tmp_path / "crontab.txt"
    table.write_text("MAILTO=ops@example.com\n0 * * * * /usr/bin/backup\n")
    fake = bindir / "crontab"
    fake.write_text(f"#!{sys.executable}\nimport sys, pathlib\np = pathlib.Path({str(table)!r})\n"
                    "if sys.argv[1] == '-l':\n    sys.stdout.write(p.read_text())\n"
                    "else:\n    p.write_text(sys.stdin.read())\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert run_cli("schedule", "--install", "--config", str(cfg)).exit_code == 0
    once = table.read_text()
    assert run_cli("schedule", "--install", "--config", str(cfg)).exit_code == 0
    assert table.read_text() == once  # idempotent
    assert once.startswith("MAILTO=ops@example.com\n0 * * * * /usr/bin/backup\n")
    assert once.count(">>> abi-orchestration") == 1
    assert run_cli("schedule", "--remove", "--config", str(cfg)).exit_code == 0
    assert table.read_text() == "MAILTO=ops@example.com\n0 * * * * /usr/bin/backup\n"


def test_crontab_edge_cases(tmp_path, server) -> None:
    from collectors.crontab import BEGIN, crontab_block, merge_block

    cfg = _config(tmp_path, server, extra_sources='interval = "45m"')  # [sources.manual] every 45 minutes
    block = crontab_block(load_config(cfg), home=tmp_path / "100%")
    manual = [x for x in block.splitlines() if "--source manual" in x]
    assert len(manual) == 1 and manual[0].startswith("* * * * * ") and " tick --source manual" in manual[0]
    assert "100\\%" in block and "100%" not in block.replace("100\\%", "")  # cron would split at a bare %
    broken = f"0 * * * * /usr/bin/backup\n{BEGIN}\n5 * * * * /usr/bin/mine\n"  # no END marker
    assert merge_block(broken, None) == broken  # not ours after all: every line kept


def test_a_broken_sensor_does_not_stop_the_other_sources(tmp_path, server, clock, monkeypatch) -> None:
    import collectors.sensors

    config = load_config(_config(tmp_path, server))
    tick(config=config, now=clock())

    def boom(*args, **kwargs):
        raise RuntimeError("sensor bug")

    monkeypatch.setattr(collectors.sensors, "sense", boom)
    rows = _by_source(tick(config=config, now=clock.advance(minutes=6)))
    assert rows["drop"]["action"] == "ran" and "the sensor failed (sensor bug)" in rows["drop"]["sensor"]
    assert rows["news"]["action"] == "ran"


def test_minimum_interval_also_holds_for_a_scheduled_source_with_a_sensor(tmp_path, server, clock) -> None:
    cfg = _config(tmp_path, server, extra_sources='interval = "1m"\nsensor = { minimum_interval = "10m" }')
    config = load_config(cfg)
    tick(config=config, now=clock())
    first = _by_source(tick(config=config, now=clock.advance(minutes=2)))
    assert first["manual"]["action"] == "skipped"  # due by interval, the sensor found no new file
    again = _by_source(tick(config=config, now=clock.advance(minutes=2)))
    assert again["manual"]["action"] == "wait" and "minimum_interval 600s" in again["manual"]["reason"]


def test_tick_folds_new_data_into_the_aggregates_and_bridges_downstream(tmp_path, server, clock) -> None:
    pipeline = """
[aggregates.articles]
module = "m"
inputs = ["news"]
key = "url"
fields = ["title"]

[bridges.graph]
module = "m"
input = "articles"
pipeline = "builtin:news"
"""
    config = load_config(_config(tmp_path, server, extra_sources=pipeline))
    rows = _by_source(tick(config=config, now=clock(), source=None))
    assert rows["news"]["action"] == "ran"
    assert (rows["articles"]["action"], rows["articles"]["reason"]) == ("ran", "new data in news")
    assert (rows["graph"]["action"], rows["graph"]["reason"]) == ("ran", "new data in articles")
    assert rows["graph"]["status"] == "success" and rows["graph"]["summary"].endswith("triples added")
    assert list(rows)[-2:] == ["articles", "graph"]  # after the sources, in dependency order

    rows = _by_source(tick(config=config, now=clock.advance(minutes=2)))  # nothing collected: nothing folded
    assert rows["articles"]["action"] == rows["graph"]["action"] == "wait"
    assert rows["articles"]["reason"] == "up to date with its inputs"

    server.set_feed("/a.xml", sample_rss("A", items=5))
    rows = _by_source(tick(config=config, now=clock.advance(minutes=4)))  # news due again, with 2 new entries
    assert rows["news"]["action"] == "ran" and rows["news"]["summary"] == "2 new"
    assert rows["articles"]["summary"] == "2 new keys" and rows["graph"]["action"] == "ran"

    only = _by_source(tick(config=config, now=clock.advance(minutes=6), source="news"))
    assert list(only) == ["news"] and only["news"]["summary"] == "0 new"  # --source runs that source alone
    rows = _by_source(tick(config=config, now=clock.advance(seconds=30)))
    assert rows["articles"]["action"] == "wait"  # the news run found nothing: nothing to fold
    text = run_cli("tick", "--config", str(config.path)).stdout
    assert "2 aggregates and bridges up to date" in text
