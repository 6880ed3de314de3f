"""Publishing record files into a data folder.

Names are planned before anything is written (the journal lists them), are
checked against a strict pattern so that no record content can choose a path,
and never overwrite another record: a clash gets the record's key appended.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
from pathlib import Path
from typing import Any

from storage.atomic import dumps, fsync_dir, read_json, storage_error, tmp_path_for, write_json, write_many
from storage.errors import StorageError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.json$")


def plan_names(folder: Path, wanted: list[tuple[str, str]]) -> list[str]:
    """For (stem, key) pairs return unique, safe file names that do not exist yet in `folder`."""
    taken: set[str] = set()
    names = []
    for stem, key in wanted:
        candidates = itertools.chain((f"{stem}.json", f"{stem}_{key[:12]}.json"),
                                     (f"{stem}_{key[:12]}-{n}.json" for n in itertools.count(2)))
        name = next(c for c in candidates if c not in taken and not (folder / c).exists())
        taken.add(name)
        names.append(name)
    return names


def publish_records(folder: Path, records: list[tuple[str, dict[str, Any]]]) -> list[Path]:
    """Write each (name, record) atomically as JSON; every file is complete or absent."""
    for name, _ in records:
        if not SAFE_NAME.match(name):
            raise StorageError(f"refusing unsafe record file name {name!r}")
    return write_many((folder / name, dumps(record)) for name, record in records)


def sidecar_path(data: Path) -> Path:
    """`<file>.meta.json` beside a data file, or beside a folder that holds one record per file."""
    return data.with_name(data.name + ".meta.json")


def refresh_folder_sidecar(folder: Path, *, provenance: dict[str, Any]) -> dict[str, Any] | None:
    """Describe a folder dataset (record count, digest of its file list) when it changed.

    The digest covers the sorted record file names, so a reader (an aggregate,
    `abi status`) can tell whether the dataset moved without listing it twice.
    Returns the new sidecar, or None when the stored one is still accurate.
    """
    if not folder.is_dir():
        return None  # nothing collected yet: no dataset to describe
    names = sorted(e.name for e in os.scandir(folder) if SAFE_NAME.match(e.name))
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    path = sidecar_path(folder)
    current = read_json(path) or {}
    if current.get("sha256") == digest and current.get("records") == len(names):
        return None
    meta = {**provenance, "records": len(names), "sha256": digest, "sha256_of": "sorted record file names"}
    write_json(path, meta)
    return meta


class JsonLinesWriter:
    """Stream records into a hidden temp file beside `target`; `publish` makes it visible atomically.

    Memory stays flat however many records pass through; the SHA-256 of the
    bytes is computed on the way for the sidecar.
    """

    def __init__(self, target: Path) -> None:
        if not SAFE_NAME.match(target.name.replace(".jsonl", ".json")):
            raise StorageError(f"refusing unsafe data file name {target.name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.tmp = tmp_path_for(target)
        self.count = 0
        self._sha = hashlib.sha256()
        try:
            self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by publish/abort
        except OSError as exc:
            raise storage_error(exc, target) from exc

    def write_line(self, line: str | bytes) -> None:
        self._write((line.encode() if isinstance(line, str) else line) + b"\n", 1)

    def write_joined(self, blob: bytes, lines: int) -> None:
        """`lines` encoded lines already joined by newlines (without the last one), in one write."""
        if lines:
            self._write(blob + b"\n", lines)

    def _write(self, data: bytes, lines: int) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            self.abort()
            raise storage_error(exc, self.target) from exc
        self._sha.update(data)
        self.count += lines

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def publish(self) -> Path:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.abort()
            raise storage_error(exc, self.target) from exc
        fsync_dir(self.target.parent)
        return self.target

    def close(self) -> None:
        """Flush and close the temp file without publishing it (it stays where it is)."""
        try:
            self._fh.close()
        except OSError as exc:
            self.abort()
            raise storage_error(exc, self.target) from exc

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def read_lines(path: Path):
    """The lines of a JSON Lines file, one at a time (no trailing newline)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line:
                yield line
