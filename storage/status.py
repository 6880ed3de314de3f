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


def _next_due(src, summary: dict[str, Any], ds, now: datetime) -> str | None:
    decision = decide(src, summary, read_sensor_state(ds, src), now)
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
            "next_due": _next_due(src, summary, ds, now),
            "sensor_skip_reason": read_sensor_state(ds, src).get("last_skip_reason") if src.sensor else None,
        })
    return rows
