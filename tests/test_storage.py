"""The storage primitives on their own: locks, atomic writes, journal, redaction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.atomic import remove_stale_temp_files, write_bytes
from storage.errors import SourceBusy
from storage.locks import SourceLock
from storage.paths import Datastore
from storage.redact import redact_text, redact_url
from storage.state import load_state, save_state, write_journal


def test_lock_is_exclusive_and_released_when_the_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with SourceLock(path), pytest.raises(SourceBusy, match=r"another run holds x.lock \(pid \d+\)"):
        SourceLock(path).acquire()
    holder = subprocess.Popen([sys.executable, "-c", (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from storage.locks import SourceLock\n"
        f"SourceLock(__import__('pathlib').Path({str(path)!r})).acquire(); print('held', flush=True); time.sleep(60)"
    )], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(SourceBusy):
        SourceLock(path).acquire()
    holder.kill()
    holder.wait()
    holder.stdout.close()
    with SourceLock(path):  # the kernel released it with the dead process
        pass


def test_atomic_write_leaves_no_temp_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "a.json"
    write_bytes(target, b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(Exception, match="the disk is full"):
        write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f".x.json.{dead}-{dead}.tmp").write_text("partial")
    (tmp_path / f".y.json.{os.getpid()}-1.tmp").write_text("mine, in progress")
    (tmp_path / "z.json").write_text("{}")
    assert remove_stale_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".y.json.{os.getpid()}-1.tmp", "z.json"]


def test_journal_recovers_only_ids_whose_files_exist(tmp_path: Path) -> None:
    ds = Datastore(tmp_path)
    save_state(ds, "m", "s", {"seen": {"feed": ["old"]}})
    data = ds.module_dir("m") / "raw_data" / "s"
    data.mkdir(parents=True)
    (data / "a.json").write_text("{}")
    write_journal(ds, "m", "s", run_id="r1", seen={"feed": [("k-a", "raw_data/s/a.json"),
                                                            ("k-b", "raw_data/s/b.json")]})
    state = load_state(ds, "m", "s")
    assert state["seen"]["feed"] == ["k-a", "old"]
    assert not ds.journal_file("m", "s").exists()


@pytest.mark.parametrize(("url", "expected"), [
    ("https://api.example.com/feed?token=abc123&q=ai", "https://api.example.com/feed?token=***&q=ai"),
    ("https://user:hunter22@example.com/x", "https://user:***@example.com/x"),
    ("https://example.com/x?q=ai", "https://example.com/x?q=ai"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_finds_urls_and_literal_secrets() -> None:
    text = "GET https://x.org/a?api_key=SECRET1 failed; header was Bearer TOPSECRET"
    assert redact_text(text, ("TOPSECRET",)) == "GET https://x.org/a?api_key=*** failed; header was Bearer ***"
