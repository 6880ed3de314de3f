"""The run history index: one short JSON line per run, appended as each run record is written.

Listing runs by reading every run record costs a file open per run; with tens
of thousands of runs that is seconds. The index is one append-only JSON Lines
file per module (`orchestration/history/runs.jsonl`) read from its end, so
"the last 50 runs" costs the same however long the history is. The run
records stay the truth: a missing index is rebuilt from them, and a line cut
short by a crash is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from storage.paths import Datastore

BRIEF_KEYS = ("run_id", "module", "source", "kind", "status", "reason", "started_at", "ended_at", "duration_s")
_BLOCK = 1 << 16


def index_path(ds: Datastore, module: str) -> Path:
    return ds.orchestration(module) / "history" / "runs.jsonl"


def brief(record: dict[str, Any]) -> dict[str, Any]:
    """What a listing shows of a run: its identity, outcome, timing, counts and error line."""
    out = {k: record.get(k) for k in BRIEF_KEYS}
    out["counts"] = record.get("counts") or {}
    details = record.get("details") or {}
    if details.get("partition"):
        out["partition"] = details["partition"]
    if record.get("error"):
        out["error"] = record["error"].get("message")
    return out


def append(ds: Datastore, record: dict[str, Any]) -> None:
    """One line, one write with O_APPEND: concurrent runs never interleave inside a line."""
    import json

    from storage.locks import SourceLock

    path = index_path(ds, record["module"])
    line = (json.dumps(brief(record), ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()
    if not path.exists():
        # a new or older datastore: index every record, this one included. Two runs ending together
        # would both rebuild, and the later replace could drop the other's line: one at a time.
        with SourceLock(ds.orchestration(record["module"]) / "locks" / "history-index.lock", wait=True):
            if not path.exists():
                rebuild(ds, record["module"])
                return
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # the last line was cut short by a crash: start on a fresh line
        os.write(fd, line)
    finally:
        os.close(fd)


def rebuild(ds: Datastore, module: str) -> int:
    """Write the index afresh from the run records (oldest first); return the number of runs."""
    from storage.atomic import write_bytes

    lines = _record_lines(ds, module)
    path = index_path(ds, module)
    write_bytes(path, (b"\n".join(lines) + b"\n") if lines else b"")
    return len(lines)


def _record_lines(ds: Datastore, module: str) -> list[bytes]:
    """Index lines made from the run records, oldest first."""
    import json

    folder = ds.runs_dir(module)
    lines: list[bytes] = []
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                with open(folder / name, "rb") as fh:
                    record = json.load(fh)
            except (OSError, ValueError):
                continue
            lines.append(json.dumps(brief(record), ensure_ascii=False, separators=(",", ":"), default=str).encode())
    return lines


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's lines, last first, reading blocks from the end."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally
    except FileNotFoundError:
        return
    try:
        end = fh.seek(0, 2)
        rest = b""
        block_size = 4096  # "the last 10 runs" needs a few KiB; grow for longer reads
        while end > 0:
            start = max(0, end - block_size)
            block_size = min(block_size * 2, _BLOCK)
            fh.seek(start)
            block = fh.read(end - start) + rest
            end = start
            lines = block.split(b"\n")
            rest = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest
    finally:
        fh.close()


def parse_since(text: str | None, now: datetime) -> str | None:
    """'1d', '6h', '30m' or an ISO date/time -> the ISO timestamp runs must have started after."""
    if text is None:
        return None
    from storage.errors import UsageError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    value = text.strip()
    if value[:-1].isdigit() and value[-1:] in units:
        try:
            moment = now - timedelta(seconds=int(value[:-1]) * units[value[-1]])
        except OverflowError:
            raise UsageError(f"--since {text!r} reaches before the year 1: use a shorter window") from None
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--since {text!r}: use a duration like 30m, 6h, 1d or a date like 2026-01-31") from None
        if moment.tzinfo is None:
            from datetime import UTC

            moment = moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_runs(ds: Datastore, *, modules: list[str] | None = None, source: str | None = None,
              status: str | None = None, since: str | None = None, limit: int | None = 50,
              max_lines: int | None = None) -> list[dict[str, Any]]:
    """Runs newest first, filtered; reads each module's index from its end and stops at `limit` or `since`.

    `max_lines` bounds how far back a filtered search looks (per module), for callers that must stay
    cheap however rare the matches are.
    """
    import json

    found: list[dict[str, Any]] = []
    slack = _minus_minute(since) if since is not None else ""
    for module in modules if modules is not None else ds.modules():
        path = index_path(ds, module)
        # no index yet (a datastore from before it existed): read the records, write nothing (readers such
        # as the web UI never write); the next run's record builds the index
        lines = _lines_backwards(path) if path.exists() else reversed(_record_lines(ds, module))
        taken = 0
        for scanned, line in enumerate(lines, 1):
            if max_lines is not None and scanned > max_lines:
                break
            try:
                run = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if since is not None and (run.get("ended_at") or "") < slack:
                # lines are in (about) the order runs ended: every earlier line ended, so started, before
                # `since` (the slack covers runs that ended together and appended in the other order)
                break
            if since is not None and (run.get("started_at") or "") < since:
                continue
            if (source is None or run.get("source") == source) and (status is None or run.get("status") == status):
                found.append(run)
                taken += 1
                if limit is not None and taken >= limit:
                    break
    found.sort(key=lambda r: r.get("ended_at") or "", reverse=True)
    return found[:limit] if limit is not None else found


def _minus_minute(stamp: str) -> str:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) - timedelta(minutes=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
