"""Run records: one JSON file per run, plus a small per-source summary.

The run record is the audit trail (what ran, with which arguments, what it
wrote, how it ended). The summary under `history/sources/` is the index that
`abi status` reads, so status costs one small file per source however long
the history grows.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage.atomic import read_json, write_json
from storage.locks import SourceLock
from storage.paths import Datastore
from storage.redact import redact_text

STATUSES = ("success", "failed", "skipped", "partial")
# What Run._new_id makes: the start time (to the millisecond; older ids have none), the source, a nonce.
# Time first, so ids (and the files named after them) sort by time.
RUN_ID_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6}(?:\.\d{3})?Z)-(?P<source>[A-Za-z0-9][A-Za-z0-9_-]{0,63})-[0-9a-f]{6}\Z")
# counts that mean a run changed its dataset (collectors, aggregates, bridges)
CHANGE_COUNTS = ("new", "updated", "removed", "new_files", "changed_files", "triples_added", "records_removed")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tool_version() -> str:
    from storage import __version__

    return __version__


@dataclass
class Run:
    """A run in progress; the job fills in counts, files and status."""

    module: str
    source: str
    kind: str
    command: list[str]
    started: datetime = field(default_factory=lambda: utcnow())  # looked up at call time: tests move the clock
    run_id: str = ""
    status: str = "success"
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    _t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = self._new_id()

    def _new_id(self) -> str:
        # to the millisecond, so that run ids (and the files named after them) sort by time
        stamp = self.started.strftime("%Y%m%dT%H%M%S") + f".{self.started.microsecond // 1000:03d}"
        return f"{stamp}Z-{self.source}-{secrets.token_hex(3)}"

    def restart(self) -> None:
        """Take the start time and id again once the lock is held.

        Runs of one source then get ids in the order they held its lock, and each
        writes its record before releasing it, so "the runs after id X" read from
        the run records never misses one that finishes later (aggregates rely on it).
        """
        self.started = utcnow()
        self._t0 = time.monotonic()
        self.run_id = self._new_id()

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def fail(self, exc: BaseException) -> None:
        self.status = "failed"
        self.error = {"type": type(exc).__name__, "message": redact_text(" ".join((str(exc) or repr(exc)).split()),
                                                                   self.secrets)}

    def record(self) -> dict[str, Any]:
        ended = utcnow()
        return {
            "run_id": self.run_id,
            "module": self.module,
            "source": self.source,
            "kind": self.kind,
            "command": [redact_text(a) for a in self.command],
            "status": self.status,
            "reason": self.reason,
            "started_at": iso(self.started),
            "ended_at": iso(ended),
            "duration_s": round(time.monotonic() - self._t0, 3),
            "counts": dict(self.counts),
            "items": self.items,
            "files_written": self.files,
            "warnings": self.warnings,
            "details": self.details,
            "error": self.error,
            "version": tool_version(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": sys.version.split()[0],
        }


def write_run_record(ds: Datastore, record: dict[str, Any], *, interval_s: int | None = None,
                     summarize: bool = True) -> None:
    """Store the record, add it to the history index, then fold it into the source's summary (not for partitions)."""
    from storage import run_index

    write_json(ds.runs_dir(record["module"]) / f"{record['run_id']}.json", record)
    run_index.append(ds, record)
    if summarize:
        _update_summary(ds, record, interval_s)


def _update_summary(ds: Datastore, record: dict[str, Any], interval_s: int | None) -> None:
    module, source = record["module"], record["source"]
    path = ds.summaries_dir(module) / f"{source}.json"
    brief = {k: record[k] for k in ("run_id", "status", "reason", "started_at", "ended_at", "duration_s", "counts")}
    if record["error"]:
        brief["error"] = {"type": record["error"]["type"], "message": record["error"]["message"]}
    # Skipped runs happen while another run holds the source lock, so the
    # read-modify-write of the summary takes a lock of its own.
    with SourceLock(ds.orchestration(module) / "locks" / f"{source}.summary.lock", wait=True):
        summary = read_json(path) or {"module": module, "source": source, "consecutive_failures": 0}
        summary["kind"] = record["kind"]
        summary["interval_s"] = interval_s
        summary["last_run"] = brief
        summary["runs"] = summary.get("runs", 0) + 1
        if record["status"] == "success":
            summary["last_success"] = brief
            summary["consecutive_failures"] = 0
        elif record["status"] in ("failed", "partial"):
            summary["consecutive_failures"] = summary.get("consecutive_failures", 0) + 1
            summary["last_failure"] = brief
        if record["status"] in ("success", "partial") and any(record["counts"].get(k) for k in CHANGE_COUNTS):
            summary["last_change"] = brief  # what aggregates and bridges downstream have to catch up with
        if record["status"] != "skipped":
            summary["last_attempt"] = brief
            summary["total_new"] = summary.get("total_new", 0) + record["counts"].get("new", 0)
        write_json(path, summary)


def read_summaries(ds: Datastore) -> list[dict[str, Any]]:
    out = []
    for module in ds.modules():
        folder = ds.summaries_dir(module)
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                data = read_json(path)
                if data:
                    out.append(data)
    return out


def read_run(ds: Datastore, module: str, run_id: str) -> dict[str, Any] | None:
    return read_json(ds.runs_dir(module) / f"{run_id}.json")
