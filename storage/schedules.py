"""When is a source due? Schedules, intervals, sensor state; no daemon needed.

`decide` compares the last attempt (from the source's summary) with its cron
schedule (UTC) or interval. Missed slots collapse into one run: a source is due
when its most recent slot passed after its last attempt, however many slots
were missed. A failed run is retried at the next slot, not at every tick.
Sensor checks and their skip reasons live in `orchestration/schedules/`, not in
the run history, so a sensor that finds nothing every minute stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.atomic import read_json, write_json
from storage.config import SourceConfig
from storage.paths import Datastore
from storage.runs import iso


@dataclass
class Decision:
    source: str
    due: bool
    reason: str
    next_due: datetime | None = None
    check_sensor: bool = False


def parse_time(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def last_slot(schedule: str, now: datetime) -> datetime:
    from croniter import croniter

    return croniter(schedule, now + timedelta(microseconds=1)).get_prev(datetime)


def next_slot(schedule: str, now: datetime) -> datetime:
    from croniter import croniter

    return croniter(schedule, now).get_next(datetime)


def decide(src: SourceConfig, summary: dict[str, Any], sensor_state: dict[str, Any], now: datetime) -> Decision:
    decision = _decide(src, summary, now)
    if decision.check_sensor:  # a sensor is checked at most every minimum_interval, whatever made the source due
        checked = parse_time(sensor_state.get("last_check_at"))
        wait = src.sensor.minimum_interval_s
        if checked is not None and (now - checked).total_seconds() < wait:
            return Decision(src.name, False, f"sensor checked {int((now - checked).total_seconds())}s ago "
                            f"(minimum_interval {wait}s)", next_due=checked + timedelta(seconds=wait))
    return decision


def _decide(src: SourceConfig, summary: dict[str, Any], now: datetime) -> Decision:
    last = parse_time((summary.get("last_attempt") or {}).get("started_at"))
    if last is None:
        return Decision(src.name, True, "never run")
    if src.schedule:
        slot = last_slot(src.schedule, now)
        if last < slot:
            return Decision(src.name, True, f"schedule slot {iso(slot)[:16]}Z passed",
                            next_due=next_slot(src.schedule, now), check_sensor=src.sensor is not None)
        due_next = next_slot(src.schedule, now)
    elif src.interval_s:
        due_next = last + timedelta(seconds=src.interval_s)
        if now >= due_next:
            return Decision(src.name, True, f"interval {src.interval_s}s elapsed", next_due=now,
                            check_sensor=src.sensor is not None)
    elif src.sensor is not None:
        due_next = None
    else:
        return Decision(src.name, False, "no schedule, interval or sensor: run it by hand")
    if src.sensor is not None and src.schedule is None and src.interval_s is None:
        return Decision(src.name, True, "sensor check", check_sensor=True)
    return Decision(src.name, False, "not due yet", next_due=due_next)


def sensor_state_path(ds: Datastore, src: SourceConfig):
    return ds.orchestration(src.module) / "schedules" / f"{src.name}.json"


def read_sensor_state(ds: Datastore, src: SourceConfig) -> dict[str, Any]:
    return read_json(sensor_state_path(ds, src)) or {}


def record_sensor(ds: Datastore, src: SourceConfig, *, now: datetime, fired: bool, reason: str) -> None:
    """Remember the check (and a skip reason when it found nothing) for `abi status`."""
    state = read_sensor_state(ds, src)
    state.update(last_check_at=iso(now), last_result="fired" if fired else "skipped", last_reason=reason)
    if not fired:
        state.update(last_skip_at=iso(now), last_skip_reason=reason, skips=state.get("skips", 0) + 1)
    write_json(sensor_state_path(ds, src), state)
