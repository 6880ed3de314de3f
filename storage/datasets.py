"""Record datasets: classify records against the key index, write them, publish, replay.

Shared by the collectors that fetch records (API, database): each record gets
a key (its primary key, or a hash of its content) and a content digest; the
key index says whether it is new, updated or unchanged; what must be kept is
written (append) or staged (merge, replace) and published atomically with a
journal, so a run that dies after publishing is finished by the next one.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.atomic import read_json, remove_stale_temp_files, write_json
from storage.errors import AbiError
from storage.keyindex import NEW, REPEATED, UNCHANGED, UPDATED, KeyIndex
from storage.paths import Datastore
from storage.records import JsonLinesWriter, read_lines, sidecar_path
from storage.runs import Run, iso
from storage.state import clear_journal, read_journal, write_files_journal
from storage.watermarks import newer

WRITE_MODES = ("append", "merge", "replace")


class RecordError(AbiError):
    """A record cannot be stored as configured (no primary key, not an object)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where and how a source's records are kept."""

    module: str
    source: str
    kind: str
    folder: Path
    write: str = "append"
    primary_key: tuple[str, ...] = ()
    cursor_field: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # e.g. the redacted URL, for sidecars
    sort_keys: bool = True  # False when the field order is fixed by the source (database columns)
    partition: str | None = None  # a partition run: its own file, replaced whole; no history, no journal

    def target(self, run_id: str) -> Path:
        """append: one file per run, named by the run id (time first, so names sort by time)."""
        if self.partition is not None:
            return self.folder / "partitions" / f"{self.partition}.jsonl"
        return self.folder / (f"{run_id}.jsonl" if self.write == "append" else f"{self.source}.jsonl")


def batched(items: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    """itertools.batched, which Python 3.11 lacks."""
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


def json_default(value: Any) -> Any:
    """JSON for the values databases return: dates as ISO 8601, exact decimals as text, bytes as base64."""
    import base64
    import uuid
    from datetime import date, time
    from decimal import Decimal

    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)  # a float would round money
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


@functools.cache
def _orjson() -> tuple[Any, tuple[type[BaseException], ...], int]:
    import orjson  # several times faster than json.dumps, which is the cost of a large load

    return orjson.dumps, (TypeError, orjson.JSONEncodeError), orjson.OPT_SORT_KEYS


def encode(record: Any, sort_keys: bool = True) -> bytes:
    """The bytes of a record's stored line (no newline). Keys are sorted for records whose key order
    may vary (JSON APIs); database rows keep their column order, which the query fixes."""
    dumps, fails, sorted_ = _orjson()
    try:
        return dumps(record, default=json_default, option=sorted_ if sort_keys else 0)
    except fails:  # integers beyond 64 bits, non-string keys: the standard encoder
        return json.dumps(record, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":"),
                          default=json_default).encode()


def encode_batch(records: list[Any], primary_key: tuple[str, ...], sort_keys: bool,
                 where: str) -> tuple[bytes, list[str], list[int]]:
    """The stored lines of a batch (joined by newlines), and each record's key and content hash.

    The same as `encode`, `record_key` and `line_hash` record by record, with the common cases (orjson
    takes every record, one integer or text primary key) done in list comprehensions: this is the
    per-row cost of a large load. The lines are joined a few hundred at a time because each bytes
    object orjson returns keeps a 4 KiB buffer (a batch of 5,000 would hold 20 MB); `split_lines`
    gives them back one by one.
    """
    dumps, fails, sorted_ = _orjson()
    option = sorted_ if sort_keys else 0
    sha256, from_bytes = hashlib.sha256, int.from_bytes
    parts, hashes, digests = [], [], []
    for start in range(0, len(records), 256):
        chunk = records[start:start + 256]
        try:
            raws = [dumps(record, default=json_default, option=option) for record in chunk]
        except fails:
            raws = [encode(record, sort_keys) for record in chunk]
        if primary_key:
            hashes += [from_bytes(sha256(raw).digest()[:8], "big", signed=True) for raw in raws]
        else:
            digests += [sha256(raw).digest() for raw in raws]
        parts.append(b"\n".join(raws))
    blob = b"\n".join(parts)
    if not primary_key:
        keys = ["sha:" + digest[:16].hex() for digest in digests]
        return blob, keys, [from_bytes(digest[:8], "big", signed=True) for digest in digests]
    sha256, from_bytes = hashlib.sha256, int.from_bytes
    if not primary_key:
        digests = [sha256(raw).digest() for raw in raws]
        keys = ["sha:" + digest[:16].hex() for digest in digests]
        return raws, keys, [from_bytes(digest[:8], "big", signed=True) for digest in digests]
    keys = None
    if len(primary_key) == 1:
        name = primary_key[0]
        try:
            values = [record[name] for record in records]
        except (KeyError, TypeError, IndexError):  # not every record is an object with the key
            values = None
        else:
            types = set(map(type, values))
            if types == {int}:
                keys = [f"i:{value}" for value in values]
            elif types == {str}:
                keys = ["s:" + value for value in values]
    if keys is None:
        keys = [record_key(primary_key, record, "", where) for record in records]
    return blob, keys, hashes


def split_lines(blob: bytes, count: int) -> list[bytes]:
    """The lines of an `encode_batch` blob (a stored line never holds a raw newline)."""
    return blob.split(b"\n") if count else []


def line_hash(raw: bytes) -> int:
    """What the key index keeps of a stored line: the first 8 bytes of its SHA-256, as a signed integer."""
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big", signed=True)


def record_key(primary_key: tuple[str, ...], record: Any, digest: str, where: str) -> str:
    if not primary_key:
        return "sha:" + digest
    if not isinstance(record, dict):
        raise RecordError(f"{where}: a record is a {type(record).__name__}, not an object with "
                          f"{', '.join(primary_key)}")
    values = []
    for name in primary_key:
        value = record.get(name)
        if value is None:
            raise RecordError(f"{where}: a record has no {name!r} (the primary_key); "
                              f"its fields: {', '.join(sorted(record)[:10])}")
        if not isinstance(value, (str, int, float, bool)):
            value = json_default(value)  # a uuid, date or decimal keys the same as when read back from JSON
        values.append(value)
    if len(values) == 1 and type(values[0]) in (int, str):
        return f"{'i' if type(values[0]) is int else 's'}:{values[0]}"
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=json_default)


@dataclass
class Mark:
    """The highest watermark value seen, and whether the records came in its order."""

    highest: Any = None
    last: Any = None
    ordered: bool = True

    def see(self, value: Any) -> None:
        if value is None:
            return
        if self.last is not None and newer(self.last, value):
            self.ordered = False
        self.last = value
        if newer(value, self.highest):
            self.highest = value


class RecordSink:
    """One run's way into a dataset: `add` batches, then `publish` and `commit`, or nothing at all."""

    def __init__(self, ds: Datastore, spec: DatasetSpec, run: Run) -> None:
        self.ds, self.spec, self.run = ds, spec, run
        self.index = KeyIndex(None if spec.partition is not None
                              else ds.state_file(spec.module, spec.source).with_suffix(".keys.sqlite"))
        self.mark = Mark()
        self.target = spec.target(run.run_id)
        self.writer: JsonLinesWriter | None = None
        for key in ("records", NEW, UPDATED, UNCHANGED):
            run.counts.setdefault(key, 0)

    def open(self) -> None:
        """Replay an interrupted run, clear stale temp files, start this run's transaction."""
        if self.spec.partition is None:
            self._replay()
        remove_stale_temp_files(self.target.parent)
        self.index.begin(self.run.run_id)
        if self.spec.write == "append":
            self.writer = JsonLinesWriter(self.target)
            self.index.bulk_start()  # an empty index (a first run): every record is new, checked at the end

    def _encoded(self, records: list[Any], where: str) -> tuple[bytes, list[str], list[int]]:
        return encode_batch(records, self.spec.primary_key, self.spec.sort_keys, where)

    def peek(self, records: list[Any], where: str) -> dict[str, int]:
        """What `add` would say, without staging anything (dry runs)."""
        verdicts: dict[str, int] = {}
        _, keys, hashes = self._encoded(records, where)
        for key, digest in zip(keys, hashes, strict=True):
            verdict = self.index.peek(key, digest)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
        return verdicts

    def add(self, records: list[Any], where: str) -> None:
        """Classify a batch, write (append) or stage (merge, replace) what must be kept."""
        spec, run = self.spec, self.run
        blob, keys, hashes = self._encoded(records, where)
        run.count("records", len(records))
        if self.index.bulk:  # a first run: all new, unless a key comes twice (see _end_bulk)
            if self.index.bulk_add(keys, hashes):
                self.writer.write_joined(blob, len(records))
                run.count(NEW, len(records))
                if spec.cursor_field:
                    for record in records:
                        if isinstance(record, dict):
                            self.mark.see(record.get(spec.cursor_field))
                return
            self._end_bulk()  # this batch cannot be staged: build the index so far, go on the ordinary way
        self._keep(records, split_lines(blob, len(records)), keys, self.index.classify_many(keys, hashes))

    def _keep(self, records: Iterable[Any], raws: list[bytes], keys: list[str], verdicts: list[str]) -> None:
        spec, run = self.spec, self.run
        for record, raw, key, verdict in zip(records, raws, keys, verdicts, strict=True):
            if verdict == REPEATED:
                run.count("repeated")
                continue
            run.count(verdict)
            if spec.write == "replace" or (spec.write == "merge" and verdict in (NEW, UPDATED)):
                self.index.stage_line(key, raw.decode())  # keyed: a record seen twice in one run is written once
            elif verdict in (NEW, UPDATED):
                self.writer.write_line(raw)
            if spec.cursor_field and isinstance(record, dict):
                self.mark.see(record.get(spec.cursor_field))

    def _end_bulk(self) -> None:
        """Build the index of a first run from what it staged; if a key came twice, classify it again.

        The written lines and the staged pairs are in the same order, one each per record: the lines
        are read back from the temp file and written again the ordinary way (without the repeats)
        into a new one, and the counts and the mark are made again.
        """
        if self.index.bulk_finish():
            return
        old, run = self.writer, self.run
        old.close()
        dups = old.tmp.with_name(f".{self.target.name}.dups.{os.getpid()}-{threading.get_native_id()}.tmp")
        os.replace(old.tmp, dups)
        try:
            self.writer = JsonLinesWriter(self.target)
            for key in (NEW, UPDATED, UNCHANGED):
                run.counts[key] = 0
            run.counts.pop("repeated", None)
            self.mark = Mark()
            lines = read_lines(dups)
            for keys, hashes in self.index.bulk_pairs():
                raws = [line.encode() for line in itertools.islice(lines, len(keys))]
                records = [json.loads(raw) for raw in raws] if self.spec.cursor_field else [None] * len(raws)
                self._keep(records, raws, keys, self.index.classify_many(keys, hashes))
        finally:
            dups.unlink(missing_ok=True)

    def publish(self) -> bool:
        """Make this run's output visible, or decide there is nothing to publish."""
        spec, run, index = self.spec, self.run, self.index
        if index.bulk:
            self._end_bulk()
        changed = run.counts[NEW] + run.counts[UPDATED]
        writer = self.writer
        if spec.write == "append":
            if not changed:
                return False
        elif spec.write == "merge":
            if not changed:
                return False
            writer = JsonLinesWriter(self.target)
            if self.target.exists():
                for line in read_lines(self.target):
                    (key,) = self._encoded([json.loads(line)], "stored dataset")[1]
                    staged = index.take_staged(key)
                    writer.write_line(staged if staged is not None else line)
            for line in index.remaining_staged():
                writer.write_line(line)
        else:  # replace: exactly the records of this run
            run.count("removed", index.drop_unseen())
            if not changed and not run.counts["removed"] and self.target.exists():
                return False
            writer = JsonLinesWriter(self.target)
            for line in index.remaining_staged():
                writer.write_line(line)
        rel = str(self.target.relative_to(self.ds.module_dir(spec.module)))
        if spec.partition is None:  # a partition file is replaced whole: nothing to replay
            write_files_journal(self.ds, spec.module, spec.source, run_id=run.run_id, files=[rel], write=spec.write)
        try:
            writer.publish()
        finally:
            writer.abort()
        write_json(sidecar_path(self.target), {
            **spec.provenance, "run_id": run.run_id, "module": spec.module, "source": spec.source,
            "kind": spec.kind, "fetched_at": iso(run.started), "records": writer.count, "sha256": writer.sha256,
            "write": spec.write, "new": run.counts[NEW], "updated": run.counts[UPDATED],
            "watermark_before": run.details.get("watermark_before")})
        run.files += [self.ds.relative(self.target), self.ds.relative(sidecar_path(self.target))]
        return True

    def commit(self) -> None:
        """The index follows the published data (the caller saves the watermark next)."""
        self.index.commit()

    def finish(self) -> None:
        """After the state is saved: the journal is no longer needed."""
        if self.spec.partition is None:
            clear_journal(self.ds, self.spec.module, self.spec.source)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.abort()  # a no-op once published
        self.index.close()

    def _replay(self) -> None:
        """Finish the bookkeeping of a run that died after publishing but before committing its index.

        The index takes in every record of the files the journal names (harmless
        if a file is still the previous version), and their sidecars are rebuilt.
        """
        ds, spec, run = self.ds, self.spec, self.run
        journal = read_journal(ds, spec.module, spec.source)
        if not journal or "files" not in journal:
            return
        if not self.index.applied(journal["run_id"]):
            self.index.begin(journal["run_id"])
            folded = 0
            for rel in journal["files"]:
                path = ds.module_dir(spec.module) / rel
                if not path.is_file():
                    continue
                digest_of_file = hashlib.sha256()
                count = 0
                for line in read_lines(path):
                    _, (key,), (digest,) = self._encoded([json.loads(line)], str(rel))
                    self.index.upsert(key, digest)
                    digest_of_file.update(line.encode() + b"\n")
                    count += 1
                folded += count
                sidecar = read_json(sidecar_path(path)) or {}
                if sidecar.get("sha256") != digest_of_file.hexdigest():
                    write_json(sidecar_path(path), {
                        **spec.provenance, "run_id": journal["run_id"], "module": spec.module,
                        "source": spec.source, "kind": spec.kind, "records": count,
                        "sha256": digest_of_file.hexdigest(), "write": journal.get("write"),
                        "recovered_by": run.run_id})
            self.index.commit()
            if folded:
                run.warnings.append(f"recovered run {journal['run_id']}: {folded} published records added "
                                    "to the index")
        clear_journal(ds, spec.module, spec.source)
