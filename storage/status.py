"""What ran, what failed, what is stale: one row per configured source.

Built from the per-source summaries (never by re-reading every run record),
so it stays instant however long the history is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.atomic import read_json
from storage.config import Config
from storage.runs import utcnow
from storage.schedules import decide, read_sensor_state

STALE_FACTOR = 2


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def _next_due(src, summary: dict[str, Any], sensor: dict[str, Any], now: datetime) -> str | None:
    decision = decide(src, summary, sensor, now)
    if decision.due:
        return "now"
    return decision.next_due.strftime("%Y-%m-%dT%H:%M:%SZ") if decision.next_due else None


def source_status(*, config: Config, module: str | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
    """Rows for `abi status`: last run, last success, new items, age, stale and failure marks."""
    now = now or utcnow()
    ds = config.datastore
    rows = []
    for src in config.select(module=module):
        summary = read_json(ds.summaries_dir(src.module) / f"{src.name}.json") or {}
        sensor = read_sensor_state(ds, src)  # read once: the due time and the skip reason both need it
        last = summary.get("last_run") or {}
        success = summary.get("last_success") or {}
        ended = _parse(success.get("ended_at"))
        age_s = round((now - ended).total_seconds(), 1) if ended else None
        stale = None  # unknown without an interval (cron schedules are judged by `abi tick` later)
        if src.interval_s:
            stale = age_s is None or age_s > STALE_FACTOR * src.interval_s
        rows.append({
            "source": src.name,
            "module": src.module,
            "kind": src.kind,
            "interval_s": src.interval_s,
            "schedule": src.schedule,
            "last_run_id": last.get("run_id"),
            "last_status": last.get("status") or "never run",
            "last_run_at": last.get("ended_at"),
            "last_reason": last.get("reason") or (last.get("error") or {}).get("message"),
            "last_success_at": success.get("ended_at"),
            "new_items": (last.get("counts") or {}).get("new"),
            "total_new": summary.get("total_new", 0),
            "age_s": age_s,
            "stale": stale,
            "consecutive_failures": summary.get("consecutive_failures", 0),
            "next_due": _next_due(src, summary, sensor, now),
            "sensor_skip_reason": sensor.get("last_skip_reason") if src.sensor else None,
        })
    for row in rows:
        row["overdue"] = _overdue(row, now)
    if module is None or any(a.module == module for a in config.aggregates.values()) or \
            any(b.module == module for b in config.bridges.values()):
        rows += _pipeline_rows(config, module, now)
    return rows


def _overdue(row: dict[str, Any], now: datetime) -> bool:
    """Due for more than a minute and not run: nothing (cron, abi tick) is running it."""
    due = row.get("next_due")
    if not due or due == "now":
        return bool(due == "now" and row["last_run_at"] and row["interval_s"]
                    and (now - _parse(row["last_run_at"])).total_seconds() > 2 * row["interval_s"] + 60)
    return (now - _parse(due)).total_seconds() > 60


def _pipeline_rows(config: Config, module: str | None, now: datetime) -> list[dict[str, Any]]:
    """Aggregates and bridges: stale when an input succeeded after their own last success began."""
    ds = config.datastore
    out: list[dict[str, Any]] = []
    nodes = [(a.name, a.module, "aggregate", a.inputs) for a in config.aggregates.values()]
    nodes += [(b.name, b.module, "bridge", (b.input,)) for b in config.bridges.values()]
    summaries: dict[str, dict[str, Any]] = {}

    def summary_of(name: str, mod: str) -> dict[str, Any]:
        if name not in summaries:
            summaries[name] = read_json(ds.summaries_dir(mod) / f"{name}.json") or {}
        return summaries[name]

    for name, mod, kind, inputs in nodes:
        if module is not None and mod != module:
            continue
        summary = summary_of(name, mod)
        last = summary.get("last_run") or {}
        success = summary.get("last_success") or {}
        ended = _parse(success.get("ended_at"))
        behind = _behind(success, {dep: summary_of(dep, config.module_of(dep)) for dep in inputs})
        counts = last.get("counts") or {}
        out.append({
            "source": name, "module": mod, "kind": kind, "interval_s": None, "schedule": None,
            "last_run_id": last.get("run_id"), "last_status": last.get("status") or "never run",
            "last_run_at": last.get("ended_at"),
            "last_reason": last.get("reason") or (last.get("error") or {}).get("message"),
            "last_success_at": success.get("ended_at"),
            "new_items": counts.get("new") if kind == "aggregate" else counts.get("triples_added"),
            "total_new": summary.get("total_new", 0),
            "total": counts.get("records") if kind == "aggregate" else counts.get("triples"),
            "age_s": round((now - ended).total_seconds(), 1) if ended else None,
            "stale": bool(behind) or not success,
            "behind": behind,
            "consecutive_failures": summary.get("consecutive_failures", 0),
            "next_due": None, "overdue": False, "sensor_skip_reason": None,
            "inputs": list(inputs),
        })
    return out


def _behind(success: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> list[str]:
    """The inputs whose data changed after this node's last success began (it has not read that yet).

    A run that found nothing new does not count: a source polled every 30 s would otherwise make its
    aggregate run every 30 s for nothing.
    """
    out = []
    for dep, summary in inputs.items():
        dep_change = (summary.get("last_change") or {}).get("ended_at")
        if dep_change and (not success or dep_change > success.get("started_at", "")):
            out.append(dep)
    return out


def behind_inputs(config: Config, name: str) -> list[str]:
    """For an aggregate or bridge: the inputs with data it has not read yet (what `abi tick` runs it for)."""
    ds = config.datastore
    node = config.aggregates.get(name) or config.bridges[name]
    inputs = node.inputs if name in config.aggregates else (node.input,)
    success = (read_json(ds.summaries_dir(node.module) / f"{name}.json") or {}).get("last_success") or {}
    return _behind(success, {dep: read_json(ds.summaries_dir(config.module_of(dep)) / f"{dep}.json") or {}
                             for dep in inputs})
