"""Compute logs: every run writes `orchestration/compute_logs/<run_id>.log` (Dagster's compute logs).

Library code logs through the standard `logging` module under the `abi`
logger; while a run is active in the current thread (or task), a handler
routes those lines to that run's file, so runs going on side by side in
`abi tick` each get their own log. The file holds what a terminal shows
(per-feed outcomes, batches, the summary line) plus debug detail, each line
stamped with the UTC time and level, and is flushed line by line so that
`abi logs --follow` can tail a run while it works.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from storage.paths import Datastore
from storage.runs import RUN_ID_RE

_current: ContextVar[IO[str] | None] = ContextVar("abi_run_log", default=None)
_installed = False


class _RunLogHandler(logging.Handler):
    """Writes a record to the log of the run active in this context, if any."""

    def emit(self, record: logging.LogRecord) -> None:
        fh = _current.get()
        if fh is None:
            return
        try:
            stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            fh.write(f"{stamp} {record.levelname:<7} {text}\n")
            fh.flush()
        except (OSError, ValueError):
            pass  # a log that cannot be written (disk full) must not fail the run


def _install() -> None:
    global _installed
    if not _installed:
        logger = logging.getLogger("abi")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(_RunLogHandler())
        logger.propagate = False  # terminal output is the CLI's job; this logger only feeds run logs
        _installed = True


def logs_dir(ds: Datastore, module: str) -> Path:
    return ds.orchestration(module) / "compute_logs"


def log_path(ds: Datastore, module: str, run_id: str) -> Path:
    return logs_dir(ds, module) / f"{run_id}.log"


@contextmanager
def run_log(ds: Datastore, module: str, run_id: str) -> Iterator[None]:
    """Route `abi.*` log lines of this context to the run's log file while the block runs."""
    _install()
    path = log_path(ds, module, run_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed below
    except OSError:
        yield  # no log rather than no run
        return
    token = _current.set(fh)
    try:
        yield
    finally:
        _current.reset(token)
        fh.close()


def find_log(ds: Datastore, *, run_id: str | None = None, source: str | None = None,
             modules: list[str] | None = None) -> Path | None:
    """The log of a run id, or the newest log of a source (the running one, if a run is going on)."""
    for module in modules if modules is not None else ds.modules():
        folder = logs_dir(ds, module)
        if not folder.is_dir():
            continue
        if run_id is not None:
            path = folder / f"{run_id}.log"
            if path.is_file():
                return path
            continue
        # the glob alone would also match a source named "<source>-eu": check the name's source part
        names = sorted(p.name for p in folder.glob(f"*Z-{source}-*.log") if _source_of(p.stem) == source)
        if names:
            return folder / names[-1]
    return None


def _source_of(run_id: str) -> str | None:
    match = RUN_ID_RE.match(run_id)
    return match["source"] if match else None


def follow(path: Path, *, done: callable, poll: float = 0.2, idle_timeout: float | None = None) -> Iterator[str]:
    """The log's lines, then new ones as they are written, until `done()` says the run ended."""
    with open(path, encoding="utf-8") as fh:
        last_line = time.monotonic()
        while True:
            line = fh.readline()
            if line:
                last_line = time.monotonic()
                yield line.rstrip("\n")
                continue
            if done():
                rest = fh.read()
                yield from (x for x in rest.splitlines() if x)
                return
            if idle_timeout is not None and time.monotonic() - last_line > idle_timeout:
                return
            time.sleep(poll)
