"""`abi materialize`: run the whole graph (or a selection) now, in dependency order.

The `dagster asset materialize --select "*"` of this toolkit: sources first
(each collected by its kind's job), then aggregates (each after the ones it
reads), then bridges. A node whose upstream failed in this same run is not
run: it is recorded as skipped with the reason, so stale inputs never flow on
as if they were fresh. A partial upstream (some feeds failed) still feeds its
downstream: what it did collect is good.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from storage.config import Config
from storage.errors import UsageError
from storage.lineage import Lineage, build_lineage
from storage.runs import Run, write_run_record

Progress = Callable[[str, dict[str, Any]], None]


def select_nodes(graph: Lineage, select: str | None) -> list[str]:
    """Node names for a selection, in run order.

    `*` or nothing: everything. A comma-separated list of NAME patterns (globs);
    `*NAME` adds what NAME reads (upstream), `NAME*` adds what reads it (downstream).
    """
    runnable = [n.id for n in graph.nodes if n.kind != "store"]
    if select is None or select.strip() in ("", "*"):
        return runnable
    chosen: set[str] = set()
    for raw in (p.strip() for p in select.split(",")):
        if not raw:
            continue
        up, down = raw.startswith("*") and len(raw) > 1, raw.endswith("*") and len(raw) > 1
        core = raw[1 if up else 0:len(raw) - (1 if down else 0)]
        matched = [n for n in runnable if fnmatch.fnmatchcase(n, core)]
        if not matched:
            raise UsageError(f"--select {raw!r} matches nothing (nodes: {', '.join(runnable) or 'none'})")
        for name in matched:
            chosen.add(name)
            if up:
                chosen |= graph.upstream(name)
            if down:
                chosen |= graph.downstream(name)
    return [n for n in runnable if n in chosen]


def materialize(*, config: Config, select: str | None = None, full: bool = False, command: list[str] | None = None,
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the selected nodes in order; one run record each (skipped ones included)."""
    from collectors.scheduler import run_node

    graph = build_lineage(config)
    names = select_nodes(graph, select)
    command = command or ["abi", "materialize"]
    failed: set[str] = set()
    records = []
    for name in names:
        broken = sorted(graph.upstream(name) & failed - {name})
        if broken:
            record = _skipped(config, name, command, f"upstream {', '.join(broken)} failed in this run")
        else:
            record = run_node(config, name, command, full=full)
        if record["status"] == "failed" or broken:
            failed.add(name)
        records.append(record)
        if progress:
            progress(name, {"status": record["status"]})
    return records


def _skipped(config: Config, name: str, command: list[str], reason: str) -> dict[str, Any]:
    kind = (config.sources[name].kind if name in config.sources
            else "aggregate" if name in config.aggregates else "bridge")
    run = Run(module=config.module_of(name), source=name, kind=kind, command=command, status="skipped", reason=reason)
    record = run.record()
    write_run_record(config.datastore, record)
    return record
