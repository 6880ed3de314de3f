"""Publishing record files into a data folder.

Names are planned before anything is written (the journal lists them), are
checked against a strict pattern so that no record content can choose a path,
and never overwrite another record: a clash gets the record's key appended.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from pathlib import Path
from typing import Any

from storage.atomic import dumps, read_json, write_json, write_many
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
