"""`abi check`: is every source, aggregate and bridge doing what it should?

Four rules per node (see `storage.checks_config.ChecksConfig` for the defaults):

* stale   - the last success ended longer ago than `max_age` (default: 2 x the
            source's interval; nodes without an interval have no age rule unless
            one is configured). A node with an age rule that never succeeded is
            overdue too.
* failing - `max_consecutive_failures` failed or partial runs in a row.
* silent  - fewer than `min_new_items` new items over `window` (a feed that went
            quiet still "succeeds" every run, so only the counts show it).
* drop    - the last successful run's record count fell below (1 - max_drop) x
            the median of the previous `drop_runs` successful runs.

Only reads: the per-source summaries answer "last success" and "failures in a
row" in one small file each, and the run index is read from its end with
`since=` so a check costs what its window holds, not the whole history. The
clock is a parameter so that tests (and `--now`) can move it.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from storage.atomic import read_json
from storage.checks_config import ChecksConfig
from storage.config import Config
from storage.errors import UsageError
from storage.run_index import read_runs
from storage.runs import iso, utcnow

RULES = ("stale", "failing", "silent", "drop")
MIN_DROP_HISTORY = 3  # a median of fewer runs says too little to call a drop
_PARTITION_SLACK = 4  # read this many times drop_runs successes, so backfilled partitions can be left out


@dataclass(frozen=True)
class Node:
    """Something that runs and leaves run records: a source, an aggregate or a bridge."""

    name: str
    module: str
    kind: str  # "source", "aggregate" or "bridge"
    checks: ChecksConfig
    interval_s: int | None = None

    @property
    def max_age_s(self) -> int | None:
        """The configured max_age, else twice the interval, else no age rule."""
        if self.checks.max_age_s is not None:
            return self.checks.max_age_s
        return 2 * self.interval_s if self.interval_s else None


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one node; `key` (node + rule) is what alert state hangs on."""

    node: str
    module: str
    kind: str
    rule: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.node}/{self.rule}"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, **asdict(self)}


def select_nodes(config: Config, module: str | None = None) -> list[Node]:
    """Every source, aggregate and bridge of the config (of `module`), disabled ones included."""
    nodes = [Node(s.name, s.module, "source", s.checks, s.interval_s) for s in config.sources.values()]
    nodes += [Node(a.name, a.module, "aggregate", a.checks) for a in config.aggregates.values()]
    nodes += [Node(b.name, b.module, "bridge", b.checks) for b in config.bridges.values()]
    if module is not None:
        nodes = [n for n in nodes if n.module == module]
        if not nodes:
            known = ", ".join(sorted({n.module for n in select_nodes(config)})) or "none"
            raise UsageError(f"{config.path}: no source, aggregate or bridge in module {module!r} "
                             f"(modules: {known})")
    return nodes


def run_checks(*, config: Config, module: str | None = None, now: datetime | None = None) -> list[Finding]:
    """The findings of every enabled node, in config order (sources, aggregates, bridges), rule by rule."""
    now = now or utcnow()
    findings: list[Finding] = []
    for node in select_nodes(config, module):
        if node.checks.enabled:
            findings += check_node(config, node, now)
    return findings


def check_node(config: Config, node: Node, now: datetime) -> list[Finding]:
    ds = config.datastore
    summary = read_json(ds.summaries_dir(node.module) / f"{node.name}.json") or {}
    found = [_stale(node, summary, now), _failing(node, summary)]
    if node.checks.min_new_items is not None:
        found.append(_silent(config, node, now))
    if node.checks.max_drop is not None:
        found.append(_drop(config, node))
    return [f for f in found if f is not None]


def _finding(node: Node, rule: str, message: str, **values: Any) -> Finding:
    return Finding(node=node.name, module=node.module, kind=node.kind, rule=rule, message=message, values=values)


def _stale(node: Node, summary: dict[str, Any], now: datetime) -> Finding | None:
    limit = node.max_age_s
    if limit is None:
        return None
    rule = f"max_age {duration(limit)}"
    if node.checks.max_age_s is None:
        rule += f" = 2 x interval {duration(node.interval_s)}"
    success = summary.get("last_success") or {}
    ended = _parse(success.get("ended_at"))
    tail = _last_problem(summary)
    if ended is None:
        runs = summary.get("runs", 0)
        said = "never ran" if not runs else f"never succeeded in {runs} run{'s' if runs != 1 else ''}"
        return _finding(node, "stale", f"{said} ({rule}){tail}", age_s=None, max_age_s=limit, last_success_at=None)
    age = (now - ended).total_seconds()
    if age <= limit:
        return None
    return _finding(node, "stale", f"last success {duration(age)} ago ({success['ended_at'][:19]}Z), "
                                   f"more than {rule}{tail}",
                    age_s=round(age, 1), max_age_s=limit, last_success_at=success["ended_at"])


def _failing(node: Node, summary: dict[str, Any]) -> Finding | None:
    limit = node.checks.max_consecutive_failures
    failures = summary.get("consecutive_failures", 0)
    if limit is None or failures < limit:
        return None
    return _finding(node, "failing", f"{failures} failed runs in a row (max_consecutive_failures {limit})"
                                     f"{_last_problem(summary)}",
                    consecutive_failures=failures, max_consecutive_failures=limit)


def _last_problem(summary: dict[str, Any]) -> str:
    """'; last: <why the last attempt failed>' when it did: the first thing whoever is paged wants to know."""
    last = summary.get("last_attempt") or {}
    if last.get("status") not in ("failed", "partial"):
        return ""
    why = (last.get("error") or {}).get("message") or last.get("reason") or last["status"]
    why = " ".join(str(why).split())
    return f"; last run {last['status']}: {why[:160]}"


def _silent(config: Config, node: Node, now: datetime) -> Finding | None:
    window, wanted = node.checks.window_s, node.checks.min_new_items
    runs = read_runs(config.datastore, modules=[node.module], source=node.name,
                     since=iso(now - timedelta(seconds=window)), limit=None)
    new = sum(new_items(r) for r in runs)
    if new >= wanted:
        return None
    return _finding(node, "silent", f"{new} new item{'s' if new != 1 else ''} in the last {duration(window)} "
                                    f"over {len(runs)} run{'s' if len(runs) != 1 else ''} "
                                    f"(min_new_items {wanted})",
                    new=new, runs=len(runs), window_s=window, min_new_items=wanted)


def new_items(run: dict[str, Any]) -> int:
    """counts['new'] (collectors, aggregates), else counts['records_new'] (what a bridge calls its new records)."""
    counts = run.get("counts") or {}
    value = counts.get("new", counts.get("records_new"))
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def record_count(run: dict[str, Any]) -> int | None:
    """What a run's size is judged by: counts['records'] when the job reports it, else counts['new']."""
    counts = run.get("counts") or {}
    value = counts.get("records", counts.get("new"))
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


DROP_SCAN_LINES = 20_000  # index lines (all sources of the module) a drop check looks back through at most


def _drop(config: Config, node: Node) -> Finding | None:
    wanted = node.checks.drop_runs + 1
    # Backfilled partitions are another series (one whole day each): only the incremental runs are compared.
    # bounded: a node that rarely succeeds must not make every check read the whole history
    runs = read_runs(config.datastore, modules=[node.module], source=node.name, status="success",
                     limit=wanted * _PARTITION_SLACK, max_lines=DROP_SCAN_LINES)
    counts = [c for c in (record_count(r) for r in runs if not r.get("partition")) if c is not None][:wanted]
    if len(counts) < MIN_DROP_HISTORY + 1:
        return None
    last, previous = counts[0], counts[1:]
    median = statistics.median(previous)
    floor = (1 - node.checks.max_drop) * median
    if last >= floor:
        return None
    return _finding(node, "drop", f"last successful run had {last} records, below {1 - node.checks.max_drop:.0%} "
                                  f"of the median {median:g} of the {len(previous)} successful runs before it "
                                  f"(max_drop {node.checks.max_drop:g})",
                    records=last, median=median, previous_runs=len(previous), max_drop=node.checks.max_drop)


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def duration(seconds: float | None) -> str:
    """3d 4h, 2h 5m, 12m, 40s: exact enough for an alert, short enough for one line."""
    if seconds is None:
        return "-"
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            parts.append(f"{total // size}{unit}")
            total %= size
        if len(parts) == 2:
            break
    return " ".join(parts)
