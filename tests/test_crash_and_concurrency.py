"""Kill -9 mid-run, crashes between data and state, and overlapping runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import collectors.rss
from collectors.sample_feeds import FeedServer, sample_rss
from storage.errors import StorageError
from tests.conftest import ABI_BIN, Env, news_feeds, write_config

QUERIES = tuple(f"Topic{i}" for i in range(12))


def _assert_no_partial_files(env: Env) -> None:
    for path in env.data_dir.iterdir():
        if path.name.startswith("."):
            continue  # a temp file of the killed writer: never taken as data
        assert path.suffix == ".json", path
        json.loads(path.read_text())  # complete, parseable


@pytest.fixture
def big_env(tmp_path: Path, server: FeedServer) -> Env:
    feeds = news_feeds(server, QUERIES, items=150)
    return Env(tmp_path, server, write_config(tmp_path, feeds))


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.1, 1.3])
def test_kill_9_mid_run_loses_nothing_and_the_next_run_completes_the_set(big_env: Env, delay: float) -> None:
    proc = subprocess.Popen([str(ABI_BIN), "collect", "rss", "--config", str(big_env.config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if big_env.data_dir.exists():
        _assert_no_partial_files(big_env)
    done = subprocess.run([str(ABI_BIN), "collect", "rss", "--config", str(big_env.config), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    entries = big_env.entries()
    assert len(entries) == len(QUERIES) * 150
    assert len({e["key"] for e in entries}) == len(entries)  # no duplicates
    assert not [p for p in big_env.data_dir.iterdir() if p.name.startswith(".")]  # leftovers cleaned
    again = json.loads(subprocess.run([str(ABI_BIN), "collect", "rss", "--config", str(big_env.config), "--json"],
                                      capture_output=True, text=True, timeout=60, check=True).stdout)
    assert again["counts"]["new"] == 0


def test_crash_between_publishing_and_saving_state_is_recovered(env: Env, monkeypatch) -> None:
    def die(*args, **kwargs):
        raise KeyboardInterrupt  # stands for the process dying right after the files were published

    monkeypatch.setattr(collectors.rss, "save_state", die)
    result = env.collect()
    assert result.exit_code == 130
    assert len(env.entry_files()) == 15
    journal = env.module_dir / "orchestration" / "state" / "news.journal.json"
    assert journal.exists()
    assert env.runs()[-1]["status"] == "failed"
    monkeypatch.undo()
    env.server.set_feed("/ai.xml", sample_rss("AI", items=6))  # and one new story meanwhile
    _, record = env.collect_json()
    assert record["counts"]["new"] == 1
    assert len(env.entry_files()) == 16
    assert not journal.exists()


def test_disk_full_fails_the_run_and_keeps_the_previous_state(env: Env, monkeypatch) -> None:
    env.collect()
    state_before = env.state()
    env.server.set_feed("/ai.xml", sample_rss("AI", items=8))

    def full(*args, **kwargs):
        raise StorageError("cannot write x: the disk is full: free space and run again (nothing stored was changed)")

    monkeypatch.setattr(collectors.rss, "publish_records", full)
    result = env.collect()
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk is full" in lines[0] and lines[0].startswith("error:")
    assert env.state()["seen"] == state_before["seen"]
    assert env.runs()[-1]["status"] == "failed"
    assert env.runs()[-1]["error"]["type"] == "StorageError"
    monkeypatch.undo()
    _, record = env.collect_json()
    assert record["counts"]["new"] == 3


def test_a_real_enospc_from_the_filesystem_is_one_clear_line(env: Env, monkeypatch) -> None:
    import errno

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", enospc)
    result = env.collect()
    assert result.exit_code == 1
    assert "the disk is full" in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in env.data_dir.iterdir()] if env.data_dir.exists() else True


def _slow_env(tmp_path: Path, server: FeedServer) -> Env:
    feeds = news_feeds(server, ("AI", "NASA"), items=20, latency=0.8)
    return Env(tmp_path, server, write_config(tmp_path, feeds))


def test_two_concurrent_runs_write_no_duplicates_and_the_second_is_skipped(tmp_path, server) -> None:
    env = _slow_env(tmp_path, server)
    cmd = [str(ABI_BIN), "collect", "rss", "--config", str(env.config), "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0
    skipped = json.loads(second.stdout)
    assert skipped["status"] == "skipped" and "another run holds" in skipped["reason"]
    assert json.loads(out)["status"] == "success"
    assert len(env.entry_files()) == 40
    assert sorted(r["status"] for r in env.runs()) == ["skipped", "success"]


def test_wait_runs_after_the_first_and_finds_nothing_new(tmp_path, server) -> None:
    env = _slow_env(tmp_path, server)
    cmd = [str(ABI_BIN), "collect", "rss", "--config", str(env.config), "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    second = subprocess.run([*cmd, "--wait"], capture_output=True, text=True, timeout=60, check=False)
    first.communicate(timeout=60)
    record = json.loads(second.stdout)
    assert record["status"] == "success" and record["counts"]["new"] == 0
    assert len(env.entry_files()) == 40
