"""What `abi runs` and `abi logs` show: the run history and a run's log, for the configured nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from storage.atomic import pid_alive
from storage.config import Config
from storage.errors import UsageError
from storage.run_index import parse_since, read_runs
from storage.run_logs import find_log
from storage.run_logs import follow as follow_file
from storage.runs import utcnow

STATUSES = ("success", "partial", "failed", "skipped")


def node_names(config: Config) -> dict[str, str]:
    """Every source, aggregate and bridge name -> its module."""
    names = {name: src.module for name, src in config.sources.items()}
    names.update({name: agg.module for name, agg in config.aggregates.items()})
    names.update({name: b.module for name, b in config.bridges.items()})
    return names


def _modules(config: Config, *, source: str | None, module: str | None) -> list[str]:
    names = node_names(config)
    if source is not None and source not in names:
        known = ", ".join(sorted(names)) or "none"
        raise UsageError(f"no source, aggregate or bridge named {source!r} (configured: {known})")
    if source is not None:
        return [names[source]]
    modules = sorted(set(names.values()) | set(config.datastore.modules()))
    return [module] if module is not None else modules


def list_runs(*, config: Config, source: str | None = None, status: str | None = None, since: str | None = None,
              limit: int | None = 50, module: str | None = None, now: Any = None) -> list[dict[str, Any]]:
    """Runs newest first, as brief rows (see storage.run_index.brief)."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    modules = _modules(config, source=source, module=module)
    return read_runs(config.datastore, modules=modules, source=source, status=status,
                     since=parse_since(since, now or utcnow()), limit=limit)


def run_log_lines(*, config: Config, run_id: str | None = None, source: str | None = None,
                  follow: bool = False) -> Iterator[str]:
    """The lines of one run's log; with `follow`, new lines until that run's record is written."""
    if (run_id is None) == (source is None):
        raise UsageError("give a run id (see abi runs) or --source NAME (its latest run), one of the two")
    ds = config.datastore
    modules = _modules(config, source=source, module=None)
    path = find_log(ds, run_id=run_id, source=source, modules=modules)
    if path is None:
        what = f"run {run_id}" if run_id else f"{source} (no run yet)"
        raise UsageError(f"no log for {what}: logs are written from this version on, in "
                         "orchestration/compute_logs/ of the module")
    if not follow:
        return _lines_of(path)
    record = ds.runs_dir(path.parent.parent.parent.name) / f"{path.stem}.json"
    writer = _writer_of(path)

    def done() -> bool:
        # the run wrote its record, or its process is gone (killed: it never will)
        return record.exists() or (writer is not None and not pid_alive(writer))

    return follow_file(path, done=done)


def _lines_of(path) -> Iterator[str]:
    """One line at a time: a log of gigabytes costs no memory, and `| head` stops early."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            yield line.rstrip("\n")


def _writer_of(path) -> int | None:
    """The pid in the log's first line, when it was written on this host."""
    import re
    import socket

    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    match = re.search(r"\(pid (\d+) on (\S+)\)", first)
    if not match or match.group(2) != socket.gethostname():
        return None
    return int(match.group(1))
