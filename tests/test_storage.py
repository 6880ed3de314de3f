"""The storage primitives on their own: locks, atomic writes, journal, redaction."""

from __future__ import annotations

import json
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


# --------------------------------------------------------------------------- the key index and record sinks


def _sink_run(ds: Datastore, batches: list[list[dict]], *, write: str = "append", primary_key=("id",),
              cursor_field: str | None = None):
    """One run of a RecordSink over `batches`: (counts, the published lines, the sink's mark)."""
    from storage.datasets import DatasetSpec, RecordSink
    from storage.runs import Run

    run = Run("m", "s", "db", ["test"])
    spec = DatasetSpec(module="m", source="s", kind="db", folder=ds.module_dir("m") / "raw_data" / "s",
                       write=write, primary_key=tuple(primary_key), cursor_field=cursor_field, sort_keys=False)
    sink = RecordSink(ds, spec, run)
    try:
        sink.open()
        for n, batch in enumerate(batches):
            sink.add(batch, f"batch {n}")
        published = sink.publish()
        sink.commit()
        sink.finish()
    finally:
        sink.close()
    lines = sink.target.read_text(encoding="utf-8").splitlines() if published else []
    return {k: v for k, v in run.counts.items() if v}, lines, sink.mark


def _index_rows(ds: Datastore) -> dict[str, int]:
    import sqlite3

    path = ds.state_file("m", "s").with_suffix(".keys.sqlite")
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT key, hash FROM records").fetchall())
    conn.close()
    return rows


def _ordinary(monkeypatch) -> None:
    """Turn the first-run bulk load off: every batch is classified against the index."""
    from storage.keyindex import KeyIndex

    monkeypatch.setattr(KeyIndex, "bulk_start", lambda self: False)


REPEATS = [  # keys twice within a batch, across batches, once with other content
    [{"id": 1, "v": "a", "at": 1}, {"id": 2, "v": "b", "at": 2}, {"id": 1, "v": "a", "at": 1}],
    [{"id": 3, "v": "c", "at": 3}, {"id": 2, "v": "b", "at": 2}],
    [{"id": 4, "v": "d", "at": 4}, {"id": 3, "v": "C", "at": 5}],
    [{"id": 5, "v": "e", "at": 6}],
]
DISTINCT = [[{"id": i, "v": f"row {i}", "at": i} for i in range(b * 50, b * 50 + 50)] for b in range(5)]
NUL = [[{"id": "a\x00b", "v": 1}, {"id": "a", "v": 2}], [{"id": "a\x00c", "v": 3}, {"id": "b", "v": 4}]]


@pytest.mark.parametrize("batches", [DISTINCT, REPEATS, REPEATS[1:] + REPEATS[:1], NUL],
                         ids=["distinct", "repeats", "repeats-across-batches", "nul-in-a-key"])
def test_a_first_run_into_an_empty_index_counts_writes_and_indexes_as_the_ordinary_way(
        tmp_path: Path, monkeypatch, batches) -> None:
    fast = Datastore(tmp_path / "fast")
    got = _sink_run(fast, batches, cursor_field="at")
    with monkeypatch.context() as patch:
        _ordinary(patch)
        slow = Datastore(tmp_path / "slow")
        want = _sink_run(slow, batches, cursor_field="at")
    assert got[0] == want[0] and got[1] == want[1]
    assert (got[2].highest, got[2].ordered) == (want[2].highest, want[2].ordered)
    assert _index_rows(fast) == _index_rows(slow)
    assert len(_index_rows(fast)) == len({json.dumps(r["id"]) for b in batches for r in b})
    assert not [p for p in fast.module_dir("m").rglob(".*.tmp")]  # the rewrite left no temp file
    # the next run over the same records finds them all known, as after an ordinary first run
    again = _sink_run(fast, batches)
    assert "new" not in again[0] and again[:2] == _sink_run(slow, batches)[:2]
    if batches is DISTINCT:
        assert again[0] == {"records": 250, "unchanged": 250} and again[1] == []


def test_repeats_across_batches_in_a_first_run_are_dropped_from_the_file(tmp_path: Path, monkeypatch) -> None:
    from storage.keyindex import KeyIndex

    built = []
    real = KeyIndex.bulk_finish
    monkeypatch.setattr(KeyIndex, "bulk_finish", lambda self: built.append(real(self)) or built[-1])
    batches = [[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}], [{"id": 3, "v": "c"}, {"id": 2, "v": "b"}],
               [{"id": 4, "v": "d"}, {"id": 3, "v": "C"}], [{"id": 5, "v": "e"}]]
    counts, lines, _ = _sink_run(Datastore(tmp_path), batches)
    assert built == [False]  # found when the index was built: the run was classified again
    assert counts == {"records": 7, "new": 5, "updated": 1, "repeated": 1}
    assert [json.loads(x)["id"] for x in lines] == [1, 2, 3, 4, 3, 5]


def test_a_key_index_of_the_first_format_is_converted_in_place_and_keeps_every_record_known(
        tmp_path: Path) -> None:
    import hashlib
    import sqlite3

    from storage.datasets import encode
    from storage.keyindex import NEW, UNCHANGED, UPDATED, KeyIndex

    ds = Datastore(tmp_path)
    records = [{"id": i, "v": f"row {i}"} for i in range(1, 101)]
    path = ds.state_file("m", "s").with_suffix(".keys.sqlite")
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as old:  # what the first format wrote
        old.executescript("""
            CREATE TABLE records (key TEXT PRIMARY KEY, hash TEXT NOT NULL, run_id TEXT) WITHOUT ROWID;
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, committed_at TEXT DEFAULT CURRENT_TIMESTAMP);
            INSERT INTO runs (run_id) VALUES ('r1'), ('r2');
        """)
        old.executemany("INSERT INTO records VALUES (?, ?, ?)",
                        [(f"i:{r['id']}", hashlib.sha256(encode(r, False)).hexdigest()[:32], "r1" if i < 50 else "r2")
                         for i, r in enumerate(records)])
    old.close()

    index = KeyIndex(path)
    try:
        assert index.db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert index.count() == 100 and index.applied("r1") and index.applied("r2") and not index.applied("r3")
        assert {t for (t,) in index.db.execute("SELECT DISTINCT typeof(hash) FROM records")} == {"integer"}
        assert index.db.execute("SELECT count(*) FROM records WHERE run IS NULL").fetchone()[0] == 0
    finally:
        index.close()
    assert KeyIndex(path).count() == 100  # opened again: already converted, nothing to do

    changed = [*records[:99], {"id": 100, "v": "changed"}, {"id": 101, "v": "new"}]
    counts, lines, _ = _sink_run(ds, [changed], write="append")
    assert counts == {"records": 101, "unchanged": 99, "updated": 1, "new": 1}
    assert [json.loads(x)["id"] for x in lines] == [100, 101]
    index = KeyIndex(path)
    try:
        from storage.datasets import encode_batch

        _, keys, hashes = encode_batch(changed, ("id",), False, "test")
        assert [index.peek(k, h) for k, h in zip(keys, hashes, strict=True)] == [UNCHANGED] * 101
        assert index.peek("i:102", 0) == NEW and index.peek("i:1", 0) == UPDATED
    finally:
        index.close()
