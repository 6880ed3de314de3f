"""`abi collect files`: a real folder, files appearing, changing, breaking."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import run_cli


class FilesEnv:
    def __init__(self, tmp_path: Path, *, extra: str = "", settle: float = 0) -> None:
        self.tmp_path = tmp_path
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.config = tmp_path / "abi.toml"
        self.config.write_text("\n".join(["[sources.drop]", 'kind = "files"', 'module = "ingest"',
                                          'path = "inbox"', f"settle_seconds = {settle}", extra]) + "\n")

    @property
    def module_dir(self) -> Path:
        return self.tmp_path / "storage/datastore/core/modules/ingest"

    @property
    def out(self) -> Path:
        return self.module_dir / "raw_data/drop"

    def collect(self) -> tuple[int, dict[str, Any]]:
        result = run_cli("collect", "files", "--config", str(self.config), "--json")
        return result.exit_code, json.loads(result.stdout)

    def drop(self, name: str, content: str | bytes, *, age: float = 60) -> Path:
        path = self.inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        past = time.time() - age
        os.utime(path, (past, past))
        return path


def test_each_file_is_copied_once_with_a_sidecar(tmp_path) -> None:
    env = FilesEnv(tmp_path, extra='pattern = "*.txt"')
    env.drop("a.txt", "alpha")
    env.drop("b.txt", "beta")
    env.drop("ignore.csv", "x")
    env.drop(".partial.txt", "uploader temp file")
    code, record = env.collect()
    assert code == 0 and record["counts"]["new_files"] == 2 and record["counts"]["files"] == 2
    assert (env.out / "a.txt").read_text() == "alpha"
    meta = json.loads((env.out / "a.txt.meta.json").read_text())
    assert meta["sha256"].startswith("8ed3f6ad") and meta["size"] == 5 and meta["run_id"] == record["run_id"]
    code, record = env.collect()
    assert record["counts"]["unchanged_files"] == 2 and record["counts"]["processed"] == 0
    assert record["files_written"] == []


def test_a_rewritten_file_is_processed_again(tmp_path) -> None:
    env = FilesEnv(tmp_path)
    env.drop("data.bin", "v1")
    env.collect()
    env.drop("data.bin", "version 2", age=30)
    _code, record = env.collect()
    assert record["counts"]["changed_files"] == 1 and (env.out / "data.bin").read_text() == "version 2"


def test_a_file_still_being_written_waits_for_the_next_run(tmp_path) -> None:
    env = FilesEnv(tmp_path, settle=5)
    env.drop("done.txt", "ready")
    env.drop("young.txt", "just arrived", age=0)
    code, record = env.collect()
    assert record["counts"]["new_files"] == 1 and record["counts"]["waiting"] == 1
    assert not (env.out / "young.txt").exists()
    past = time.time() - 10
    os.utime(env.inbox / "young.txt", (past, past))
    _code, record = env.collect()
    assert record["counts"]["new_files"] == 1 and (env.out / "young.txt").exists()


def test_files_appearing_during_a_run_are_taken_next_time(tmp_path) -> None:
    env = FilesEnv(tmp_path, settle=0)
    for i in range(300):
        env.drop(f"f{i:04d}.txt", f"content {i}" * 50)
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            env.drop(f"late{n:04d}.txt", f"late {n}")
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    code, first = env.collect()
    stop.set()
    thread.join()
    _code, second = env.collect()
    copied = sorted(p.name for p in env.out.glob("*.txt"))
    dropped = sorted(p.name for p in env.inbox.glob("*.txt"))
    assert copied == dropped  # every file, none twice
    assert first["counts"]["processed"] + second["counts"]["processed"] == len(dropped)


def test_parsed_csv_and_json_become_records_and_a_corrupt_file_is_quarantined(tmp_path) -> None:
    env = FilesEnv(tmp_path, extra='process = "csv"\npattern = "*.csv"\nprimary_key = "id"\nwrite = "merge"')
    env.drop("jan.csv", "id,amount\n1,10\n2,20\n")
    env.drop("feb.csv", "id,amount\n3,30\n2,25\n", age=30)  # dropped later: wins the merge
    env.drop("broken.csv", "id,amount\n4,40,extra\n")
    code, record = env.collect()
    assert code == 1 and record["status"] == "partial" and record["counts"]["quarantined"] == 1
    rows = [json.loads(x) for x in (env.out / "drop.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["amount"]) for r in rows) == [("1", "10"), ("2", "25"), ("3", "30")]
    quarantine = env.module_dir / "quarantine/drop"
    assert (quarantine / "broken.csv").exists() and not (env.inbox / "broken.csv").exists()
    error = json.loads((quarantine / "broken.csv.meta.json").read_text())["error"]
    assert "line 2 has a different number of fields" in error
    code, record = env.collect()
    assert code == 0 and record["counts"]["unchanged_files"] == 2


def test_json_lines_with_a_bad_line_is_quarantined_whole(tmp_path) -> None:
    env = FilesEnv(tmp_path, extra='process = "jsonl"')
    env.drop("good.jsonl", '{"a": 1}\n{"a": 2}\n')
    env.drop("bad.jsonl", '{"a": 3}\n{oops\n')
    _code, record = env.collect()
    assert record["counts"]["records"] == 2 and record["counts"]["quarantined"] == 1
    stored = [json.loads(x) for p in env.out.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert sorted(r["a"] for r in stored) == [1, 2]  # nothing of the bad file


def test_on_success_move_and_delete_happen_after_the_data_is_safe(tmp_path) -> None:
    env = FilesEnv(tmp_path, extra='on_success = "move:done"')
    env.drop("x.txt", "x")
    env.drop("sub/y.txt", "y")
    env.config.write_text(env.config.read_text() + "recursive = true\n")
    code, record = env.collect()
    assert code == 0 and (env.inbox / "done/x.txt").exists() and (env.inbox / "done/sub/y.txt").exists()
    assert (env.out / "sub/y.txt").read_text() == "y"
    code, record = env.collect()
    assert record["counts"]["files"] == 0  # the done folder is not watched
    env2 = FilesEnv(tmp_path / "second", extra='on_success = "delete"')
    env2.drop("z.txt", "z")
    env2.collect()
    assert not (env2.inbox / "z.txt").exists() and (env2.out / "z.txt").read_text() == "z"


def test_ten_thousand_files_are_processed_once(tmp_path) -> None:
    env = FilesEnv(tmp_path)
    past = time.time() - 60
    for i in range(10_000):
        path = env.inbox / f"n{i:05d}.txt"
        path.write_text(str(i))
        os.utime(path, (past, past))
    code, record = env.collect()
    assert code == 0 and record["counts"]["new_files"] == 10_000 and record["counts"]["new"] == 10_000
    assert len(list(env.out.glob("*.txt"))) == 10_000
    code, record = env.collect()
    assert record["counts"]["unchanged_files"] == 10_000 and record["counts"]["processed"] == 0


def test_a_missing_folder_is_a_clear_failure(tmp_path) -> None:
    env = FilesEnv(tmp_path)
    env.inbox.rmdir()
    result = run_cli("collect", "files", "--config", str(env.config))
    assert result.exit_code == 1
    assert "error: drop: the watched folder" in result.stderr and "does not exist" in result.stderr


def test_a_replaced_file_with_the_same_size_and_time_is_still_seen(tmp_path) -> None:
    env = FilesEnv(tmp_path)
    path = env.drop("b.txt", "BBBB")
    env.collect()
    st = path.stat()
    path.unlink()
    path.write_text("CCCC")  # same size, and the old time put back (as cp -p or rsync -a do)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    code, record = env.collect()
    assert record["counts"]["changed_files"] == 1 and (env.out / "b.txt").read_text() == "CCCC"
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # touched again, same content: unchanged
    code, record = env.collect()
    assert record["counts"]["unchanged_files"] == 1


def test_symlinks_and_sidecar_names_are_not_taken(tmp_path) -> None:
    env = FilesEnv(tmp_path)
    secret = tmp_path / "outside.txt"
    secret.write_text("not for the datastore")
    (env.inbox / "link.txt").symlink_to(secret)
    env.drop("x.csv.meta.json", "{}")
    env.drop("x.csv", "a")
    code, record = env.collect()
    assert record["counts"]["files"] == 1 and not (env.out / "link.txt").exists()


def test_a_record_without_its_primary_key_quarantines_that_file_only(tmp_path) -> None:
    env = FilesEnv(tmp_path, extra='process = "json"\nprimary_key = "id"')
    env.drop("ok.json", '[{"id": 1}, {"id": 2}]')
    env.drop("nokey.json", '[{"id": 3}, {"name": "no id"}]')
    code, record = env.collect()
    assert record["counts"]["quarantined"] == 1 and record["counts"]["new"] == 2
    stored = [json.loads(x) for p in env.out.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert sorted(r["id"] for r in stored) == [1, 2]
