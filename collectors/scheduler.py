"""`abi tick`: run, once, every source that is due; `--loop` keeps ticking.

One crontab line (`* * * * * ... abi tick`) replaces one line per job. Due
sources run concurrently, one lane per group of sources that share a host (so a
slow host never blocks the others and no host gets two jobs at once), each
under its own source lock (so an overlapping tick never runs a source twice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from storage import runs
from storage.atomic import read_json
from storage.config import Config, SourceConfig
from storage.errors import AbiError
from storage.runs import iso
from storage.schedules import Decision, decide, read_sensor_state, record_sensor, sensor_state_path


def _hosts(src: SourceConfig) -> set[str]:
    if src.kind == "rss":
        return {urlsplit(f.url).netloc.lower() for f in src.feeds}
    if src.kind == "api":
        return {urlsplit(src.api.url).netloc.lower()}
    if src.kind == "db":
        return {str(src.db.sqlite_path) if src.db.sqlite_path else urlsplit(src.db.url).netloc.lower()}
    return {f"folder:{src.files.watch}"}


def lanes(sources: list[SourceConfig]) -> list[list[SourceConfig]]:
    """Group sources that share a host (transitively); groups run in parallel, members one by one."""
    groups: list[tuple[set[str], list[SourceConfig]]] = []
    for src in sources:
        hosts = _hosts(src)
        merged = [g for g in groups if g[0] & hosts]
        for g in merged:
            groups.remove(g)
            hosts |= g[0]
        groups.append((hosts, [s for g in merged for s in g[1]] + [src]))
    return [members for _, members in groups]


def run_source(config: Config, src: SourceConfig, command: list[str]) -> dict[str, Any]:
    """Run one source's job by its kind; returns its run record."""
    if src.kind == "rss":
        from collectors.rss import collect_rss as job
    elif src.kind == "api":
        from collectors.api import collect_api as job
    elif src.kind == "db":
        from collectors.db import collect_db as job
    else:
        from collectors.files import collect_files as job
    return job(config=config, source=src.name, command=command)[0]


def run_node(config: Config, name: str, command: list[str], *, full: bool = False) -> dict[str, Any]:
    """Run one node of the graph (a source, an aggregate or a bridge) by its kind; returns its run record."""
    if name in config.sources:
        return run_source(config, config.sources[name], command)
    if name in config.aggregates:
        from bridges.aggregate import aggregate

        return aggregate(config=config, name=name, full=full, command=command)
    from bridges.rdf import bridge

    return bridge(config=config, name=name, full=full, command=command)


def tick(*, config: Config, now: datetime | None = None, module: str | None = None, source: str | None = None,
         command: list[str] | None = None, max_lanes: int = 8,
         stop: threading.Event | None = None) -> list[dict[str, Any]]:
    """Decide for every source, check sensors, run what is due; one result row per source."""
    now = now or runs.utcnow()
    ds = config.datastore
    sources = config.select(module=module, source=source)
    rows: dict[str, dict[str, Any]] = {}
    due: list[SourceConfig] = []
    for src in sources:
        summary = read_json(ds.summaries_dir(src.module) / f"{src.name}.json") or {}
        state = read_sensor_state(ds, src)
        decision = decide(src, summary, state, now)
        rows[src.name] = _row(src, decision)
        if not decision.due:
            continue
        if decision.check_sensor:
            try:
                from collectors.sensors import sense

                fired, reason, extra = sense(config, src, state)
            except Exception as exc:  # a broken sensor must not stop the other sources: run the job, it reports
                detail = " ".join(str(exc).split()) or type(exc).__name__
                fired, reason, extra = True, f"the sensor failed ({detail}): running the job to report it", {}
            record_sensor(ds, src, now=now, fired=fired, reason=reason)
            if extra:
                _remember(ds, src, extra)
            rows[src.name]["sensor"] = reason
            if not fired:
                rows[src.name].update(action="skipped", reason=f"sensor: {reason}")
                continue
        due.append(src)
    cmd = command or ["abi", "tick"]

    def run_lane(lane: list[SourceConfig]) -> None:
        for src in lane:
            if stop is not None and stop.is_set():
                rows[src.name].update(action="wait", reason="stopping: left for the next tick")
                continue
            try:
                record = run_source(config, src, cmd)
            except Exception as exc:  # this source's problem (a missing secret, a bug): the others go on
                prefix = "" if isinstance(exc, AbiError) else f"unexpected {type(exc).__name__}: "
                rows[src.name].update(action="error", reason=prefix + " ".join(str(exc).split()))
                continue
            rows[src.name].update(action="ran", status=record["status"], run_id=record["run_id"],
                                  summary=_brief(record))

    groups = lanes(due)
    if groups:
        with ThreadPoolExecutor(max_workers=min(max_lanes, len(groups)), thread_name_prefix="tick") as pool:
            list(pool.map(run_lane, groups))
    out = [rows[src.name] for src in sources]
    if source is None:  # then the aggregates and bridges whose inputs have data they have not read
        out += _downstream(config, module=module, command=cmd, stop=stop)
    return out


def _downstream(config: Config, *, module: str | None, command: list[str],
                stop: threading.Event | None) -> list[dict[str, Any]]:
    """Aggregates (each after those it reads), then bridges: run each one that is behind its inputs.

    This makes the one cron line `abi tick` the whole pipeline: collect what is due, then fold what
    was collected into the aggregates and the knowledge graph, and nothing when nothing came in.
    """
    if not config.aggregates and not config.bridges:
        return []
    from storage.pipeline_config import aggregate_order
    from storage.status import behind_inputs

    names = [(n, "aggregate") for n in aggregate_order(config.aggregates)] + [(n, "bridge") for n in config.bridges]
    rows = []
    for name, kind in names:
        node_module = config.module_of(name)
        if module is not None and node_module != module:
            continue
        row = {"source": name, "module": node_module, "kind": kind, "due": False, "next_due": None}
        behind = behind_inputs(config, name)
        if not behind:
            row.update(action="wait", reason="up to date with its inputs")
        elif stop is not None and stop.is_set():
            row.update(due=True, action="wait", reason="stopping: left for the next tick")
        else:
            row.update(due=True, reason=f"new data in {', '.join(behind)}")
            try:
                record = run_node(config, name, command)
            except Exception as exc:
                prefix = "" if isinstance(exc, AbiError) else f"unexpected {type(exc).__name__}: "
                row.update(action="error", reason=prefix + " ".join(str(exc).split()))
            else:
                c = record["counts"]
                summary = (f"{c.get('new', 0)} new keys" if kind == "aggregate"
                           else f"{c.get('triples_added', 0)} triples added")
                row.update(action="ran", status=record["status"], run_id=record["run_id"], summary=summary)
        rows.append(row)
    return rows


def _row(src: SourceConfig, decision: Decision) -> dict[str, Any]:
    return {"source": src.name, "module": src.module, "kind": src.kind, "due": decision.due,
            "reason": decision.reason, "action": "wait" if not decision.due else "run",
            "next_due": iso(decision.next_due) if decision.next_due else None}


def _brief(record: dict[str, Any]) -> str:
    c = record["counts"]
    return f"{c.get('new', 0)} new" + (f", {c['errors']} errors" if c.get("errors") else "")


def _remember(ds, src: SourceConfig, extra: dict[str, Any]) -> None:
    from storage.atomic import write_json

    state = read_sensor_state(ds, src)
    state.update(extra)
    write_json(sensor_state_path(ds, src), state)


def tick_loop(*, load: Callable[[], Config], every: float, stop: threading.Event,
              on_tick: Callable[[list[dict[str, Any]]], None] | None = None, max_ticks: int | None = None) -> int:
    """Tick every `every` seconds until `stop` is set (running jobs finish first); returns ticks done."""
    done = 0
    while not stop.is_set() and (max_ticks is None or done < max_ticks):
        started = runs.utcnow()
        rows = tick(config=load(), now=started, command=["abi", "tick", "--loop"], stop=stop)
        done += 1
        if on_tick:
            on_tick(rows)
        elapsed = (runs.utcnow() - started).total_seconds()
        stop.wait(max(0.0, every - elapsed))
    return done


