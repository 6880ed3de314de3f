"""What a processing stage reads from its inputs: every record, or only what was added since a mark.

Each dataset is read in a way that lets a later run pick up exactly where the
last one stopped, from what the collectors already leave behind:

- `folder` (RSS: one JSON file per record): the run records of the source list
  the files each run wrote, so new records are the files of the runs after the
  mark;
- `runs` (append datasets of API, database and files sources): one JSON Lines
  file per run, named by its run id, so new records are the files named after
  the mark; partition files are replaced whole and force a full read;
- `dataset` (merge/replace datasets, aggregates): one file rewritten in place,
  so any change (its sidecar's digest moved) forces a full read.

Every chunk carries a position (the run id that wrote it): run ids start with
the time, so sorting by position puts all inputs in the order they were
collected, which is what `first` and `latest` mean.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.atomic import read_json
from storage.config import Config
from storage.errors import AbiError
from storage.paths import Datastore
from storage.records import sidecar_path
from storage.runs import RUN_ID_RE


class InputError(AbiError):
    """An input dataset cannot be read (a damaged line or file)."""


@dataclass(frozen=True)
class Chunk:
    """One file of new records: its position in collection order, and how to read it."""

    input: str
    position: str
    path: Path
    one_record: bool  # a .json file holding one record, else JSON Lines


@dataclass
class InputScan:
    """What one input adds, and the mark to save once it is consumed."""

    name: str
    style: str
    chunks: list[Chunk] = field(default_factory=list)
    mark: dict[str, Any] = field(default_factory=dict)
    full_reason: str | None = None  # set when only a full read is correct


@dataclass(frozen=True)
class InputInfo:
    name: str
    module: str
    kind: str  # rss, api, db, files, aggregate
    style: str  # folder, runs, dataset
    folder: Path
    key: str | None  # the field that identifies a record, when the input has one


def describe(config: Config, name: str) -> InputInfo:
    ds = config.datastore
    if name in config.aggregates:
        agg = config.aggregates[name]
        folder = ds.module_dir(agg.module) / agg.folder
        return InputInfo(name, agg.module, "aggregate", "dataset", folder, agg.key_name)
    src = config.sources[name]
    folder = ds.data_dir(src.module, src.name, src.path)  # for files sources, `path` holds its `output`
    if src.kind == "rss":
        # no key: the same story stored by two feeds is two records (each with its own query), never updated
        return InputInfo(name, src.module, "rss", "folder", folder, None)
    spec = {"api": src.api, "db": src.db, "files": src.files}[src.kind]
    write = getattr(spec, "write", "append")
    primary = tuple(getattr(spec, "primary_key", ()) or ())
    key = primary[0] if len(primary) == 1 else None
    return InputInfo(name, src.module, src.kind, "runs" if write == "append" else "dataset", folder, key)


def dataset_file(info: InputInfo) -> Path:
    """The one file of a `dataset`-style input."""
    return info.folder / f"{info.name}.jsonl"


def scan(config: Config, name: str, since: dict[str, Any] | None) -> InputScan:
    """The chunks after `since` (everything when None), in position order, and the new mark."""
    info = describe(config, name)
    if info.style == "folder":
        return _scan_folder(config.datastore, info, since)
    if info.style == "runs":
        return _scan_runs(info, since)
    return _scan_dataset(info, since)


def _scan_folder(ds: Datastore, info: InputInfo, since: dict[str, Any] | None) -> InputScan:
    out = InputScan(info.name, info.style)
    after = (since or {}).get("run_id") or ""
    last = after
    for run_id in run_ids(ds, info.module, info.name, after=after):
        record = read_json(ds.runs_dir(info.module) / f"{run_id}.json") or {}
        if record.get("status") == "skipped":
            # a skipped run never held the lock: its id may sort after a run still going on,
            # whose record (and entries) must not fall behind the mark
            continue
        for rel in record.get("files_written") or []:
            if rel.endswith(".json") and not rel.endswith(".meta.json"):
                path = ds.root / rel
                if path.parent == info.folder and path.is_file():
                    out.chunks.append(Chunk(info.name, run_id, path, one_record=True))
        last = max(last, run_id)
    out.mark = {"run_id": last or None}
    return out


def run_ids(ds: Datastore, module: str, source: str, *, after: str = "") -> list[str]:
    """Run ids of one source's run records, after `after`, oldest first."""
    folder = ds.runs_dir(module)
    if not folder.is_dir():
        return []
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            run_id = entry.name.removesuffix(".json")
            match = RUN_ID_RE.match(run_id) if entry.name.endswith(".json") else None
            if match and match["source"] == source and run_id > after:
                found.append(run_id)
    return sorted(found)


def _partitions_digest(folder: Path) -> str | None:
    part = folder / "partitions"
    if not part.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(part.glob("*.jsonl")):
        meta = read_json(sidecar_path(path)) or {}
        digest.update(f"{path.name}:{meta.get('sha256')}\n".encode())
    return digest.hexdigest()


def _scan_runs(info: InputInfo, since: dict[str, Any] | None) -> InputScan:
    out = InputScan(info.name, info.style)
    after = (since or {}).get("run_id") or ""
    names = []
    if info.folder.is_dir():
        with os.scandir(info.folder) as entries:
            names = sorted(e.name[:-6] for e in entries
                           if e.name.endswith(".jsonl") and RUN_ID_RE.match(e.name[:-6]) and e.name[:-6] > after)
    out.chunks = [Chunk(info.name, stem, info.folder / f"{stem}.jsonl", one_record=False) for stem in names]
    partitions = _partitions_digest(info.folder)
    out.mark = {"run_id": (names[-1] if names else after) or None, "partitions": partitions}
    if since is not None and partitions != since.get("partitions"):
        out.full_reason = f"partitions of {info.name} were collected again"
    if since is None:  # a full read: the partition files too, each at the run that wrote it
        for path in sorted((info.folder / "partitions").glob("*.jsonl")) if partitions else []:
            meta = read_json(sidecar_path(path)) or {}
            out.chunks.append(Chunk(info.name, meta.get("run_id") or "", path, one_record=False))
        out.chunks.sort(key=lambda c: c.position)
    return out


def _scan_dataset(info: InputInfo, since: dict[str, Any] | None) -> InputScan:
    out = InputScan(info.name, info.style)
    path = dataset_file(info)
    meta = (read_json(sidecar_path(path)) or {}) if path.is_file() else {}
    sha = meta.get("sha256") if path.is_file() else None
    out.mark = {"sha256": sha, "run_id": meta.get("run_id")}
    if since is not None:
        if sha != since.get("sha256"):
            out.full_reason = f"{info.name} is rewritten in place ({info.kind}, not append)"
        return out
    if sha is not None:
        out.chunks.append(Chunk(info.name, meta.get("run_id") or "", path, one_record=False))
    return out


def read_chunk(chunk: Chunk) -> Iterator[Any]:
    """The records of one chunk; a damaged one fails the run naming the file and line."""
    import orjson

    try:
        if chunk.one_record:
            yield orjson.loads(chunk.path.read_bytes())
            return
        with open(chunk.path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise InputError(f"{chunk.path} line {number}: not valid JSON ({exc}); restore the file "
                                         "or remove it, then run again") from None
    except FileNotFoundError:
        return  # removed since the scan: a full rebuild drops its records
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{chunk.path}: not valid JSON ({exc}); restore the file or remove it") from None
    except OSError as exc:
        raise InputError(f"{chunk.path}: cannot read it ({exc.strerror or exc})") from None


def get_path(record: Any, dotted: str) -> Any:
    """record["a"]["b"] for "a.b", None where any step is missing."""
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
