"""`abi aggregate`: several datasets combined into one record per key.

The output is JSON Lines sorted by key, which is what makes the incremental
run cheap: records added upstream since the last run are folded into their
keys, and each changed key is found by binary search in the stored dataset
and rewritten while everything else is copied as bytes (storage.sorted_lines).

`first`, `latest` and `list` are folds in collection order (run ids sort by
time), so folding the new records into the stored result gives exactly what
folding everything from scratch gives: the incremental run and `--full`
produce the same bytes. When that would not hold (an input rewritten in place,
a partition collected again, a run that finished late, a changed definition)
the run rebuilds in full by itself and says why.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridges.inputs import Chunk, InputScan, get_path, read_chunk, scan
from storage.atomic import read_json, write_bytes, write_json
from storage.config import Config
from storage.errors import AbiError
from storage.jobs import run_job
from storage.pipeline_config import AggregateConfig, aggregate_order
from storage.records import sidecar_path
from storage.runs import Run, iso
from storage.sorted_lines import merge_changes, write_sorted
from storage.state import load_state, save_state

Progress = Callable[[str, dict[str, Any]], None]
_SCALARS = (str, int, float, bool)
FORMATS = ("jsonl", "csv")

log = logging.getLogger("abi.bridges.aggregate")


class AggregateError(AbiError):
    """The aggregate cannot be built as configured."""


def aggregate(*, config: Config, name: str, full: bool = False, formats: tuple[str, ...] = ("jsonl",),
              wait: bool = False, command: list[str] | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Bring aggregate `name` up to date with its inputs; return the run record."""
    agg = config.aggregate(name)
    for fmt in formats:
        if fmt not in FORMATS:
            raise AggregateError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")

    def work(run: Run) -> None:
        _build(config, agg, run, full=full, formats=formats, progress=progress)

    return run_job(ds=config.datastore, module=agg.module, source=name, kind="aggregate",
                   command=command or ["abi", "aggregate", "--name", name], work=work, wait=wait)


def aggregate_all(*, config: Config, full: bool = False, formats: tuple[str, ...] = ("jsonl",), wait: bool = False,
                  command: list[str] | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every configured aggregate, each after the aggregates it reads; one run record each."""
    if not config.aggregates:
        from storage.errors import UsageError

        raise UsageError(f"{config.path}: no [aggregates.NAME] configured; see the README's Configuration section")
    return [aggregate(config=config, name=name, full=full, formats=formats, wait=wait, command=command,
                      progress=progress) for name in dependency_order(config)]


def dependency_order(config: Config) -> list[str]:
    """Aggregate names, each after its inputs (the configuration is checked to have no cycle)."""
    return aggregate_order(config.aggregates)


def output_path(config: Config, agg: AggregateConfig) -> Path:
    return config.datastore.module_dir(agg.module) / agg.folder / f"{agg.name}.jsonl"


def _fingerprint(agg: AggregateConfig) -> str:
    basis = repr((agg.inputs, agg.key, agg.fields, agg.combine))
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def _build(config: Config, agg: AggregateConfig, run: Run, *, full: bool, formats: tuple[str, ...],
           progress: Progress | None) -> None:
    import orjson

    ds = config.datastore
    target = output_path(config, agg)
    state = load_state(ds, agg.module, agg.name)
    marks: dict[str, Any] = state.get("inputs", {})
    meta = read_json(sidecar_path(target)) if target.is_file() else None
    reason = None
    if full:
        reason = "--full"
    elif not state.get("output_sha256"):
        reason = "first run"
    elif state.get("fingerprint") != _fingerprint(agg):
        reason = "the aggregate's definition changed"
    elif not meta or meta.get("sha256") != state["output_sha256"]:
        reason = "the stored dataset does not match the last run (changed or interrupted)"
    scans: list[InputScan] = []
    if reason is None:
        scans = [scan(config, name, marks.get(name) or {}) for name in agg.inputs]
        reason = next((s.full_reason for s in scans if s.full_reason), None)
        consumed = max((m.get("run_id") or "" for m in marks.values()), default="")
        late = [c for s in scans for c in s.chunks if c.position < consumed]
        if reason is None and late:
            reason = f"a run of {late[0].input} finished after the last aggregate but started before it"
    if reason is not None:
        scans = [scan(config, name, None) for name in agg.inputs]
    run.details["mode"] = "full" if reason else "incremental"
    if reason:
        run.details["full_reason"] = reason
    log.info("aggregate %s: %s%s", agg.name, run.details["mode"], f" ({reason})" if reason else "")

    order = {name: i for i, name in enumerate(agg.inputs)}
    chunks = sorted((c for s in scans for c in s.chunks), key=lambda c: (c.position, order[c.input]))
    folded, read_counts = _fold(agg, chunks, run, progress)
    run.count("keys_touched", len(folded))

    previous = state.get("input_records", {}) if not reason else {}
    totals = {name: previous.get(name, 0) + read_counts.get(name, 0) for name in agg.inputs}
    key_name = agg.key_name

    def key_of(line: bytes) -> bytes:
        return orjson.dumps(orjson.loads(line)[key_name])

    if reason is None and not folded and target.is_file():
        run.details["unchanged"] = True
        records, sha = state["records"], state["output_sha256"]
    else:
        if reason is None:
            changes = []
            counter = {"updated": 0}
            for kb in sorted(folded):
                changes.append((kb, _merger(agg, folded[kb], counter)))
            records, sha = merge_changes(old=target, target=target, changes=changes, key_of=key_of,
                                         old_count=state.get("records", 0))
            run.count("new", records - state.get("records", 0))
            run.count("updated", counter["updated"])
        else:
            records, sha = write_sorted(target=target, lines=(_line(folded[kb]) for kb in sorted(folded)))
            run.count("new", records)
        run.files += [ds.relative(target), ds.relative(sidecar_path(target))]
        write_json(sidecar_path(target), {
            "dataset": ds.relative(target), "kind": "aggregate", "aggregate": agg.name, "module": agg.module,
            "run_id": run.run_id, "written_at": iso(run.started), "records": records, "sha256": sha,
            "key": agg.key, "fields": [{"name": n, "path": p, "combine": dict(agg.combine).get(n, "key")}
                                       for n, p in agg.fields],
            "mode": run.details["mode"],
            "inputs": [{"name": s.name, "style": s.style, "records_read": totals[s.name], "read_at": s.mark}
                       for s in scans]})
    run.counts["records"] = records
    if "csv" in formats:
        csv_path = target.with_suffix(".csv")
        write_bytes(csv_path, _csv(agg, target))
        run.files.append(ds.relative(csv_path))
    state.update(fingerprint=_fingerprint(agg), output_sha256=sha, records=records, input_records=totals,
                 inputs={s.name: s.mark for s in scans})
    save_state(ds, agg.module, agg.name, state)


def _fold(agg: AggregateConfig, chunks: list[Chunk], run: Run,
          progress: Progress | None) -> tuple[dict[bytes, dict[str, Any]], dict[str, int]]:
    """key bytes -> combined values of the records in `chunks`, folded in order."""
    import orjson

    folded: dict[bytes, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    key_path, fields, modes = agg.key, agg.fields[1:], dict(agg.combine)
    run.counts.setdefault("records_read", 0)
    run.counts.setdefault("no_key", 0)
    for n, chunk in enumerate(chunks, 1):
        for record in read_chunk(chunk):
            counts[chunk.input] = counts.get(chunk.input, 0) + 1
            run.counts["records_read"] += 1
            key = get_path(record, key_path)
            if key is None or not isinstance(key, _SCALARS):
                run.counts["no_key"] += 1
                continue
            kb = orjson.dumps([key])[1:-1]  # a copy of exact size: orjson's own result keeps a 4 KiB buffer
            acc = folded.get(kb)
            if acc is None:
                acc = folded[kb] = {agg.key_name: key}
                for name, _ in fields:
                    acc[name] = [] if modes[name] == "list" else None
            for name, path in fields:
                acc[name] = combine(modes[name], acc[name], get_path(record, path))
        if progress and n % 500 == 0:
            progress(agg.name, {"status": f"{n}/{len(chunks)} files, {run.counts['records_read']} records"})
    return folded, counts


def combine(mode: str, acc: Any, value: Any) -> Any:
    """Fold one value (or an already combined one) into the accumulator, in collection order."""
    if mode == "first":
        return acc if acc is not None else value
    if mode == "latest":
        return value if value is not None else acc
    if value is None:
        return acc
    import orjson

    merged = {orjson.dumps(v): v for v in (*acc, *(value if isinstance(value, list) else [value])) if v is not None}
    return [merged[k] for k in sorted(merged)]


def _line(values: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(values)


def _merger(agg: AggregateConfig, new: dict[str, Any], counter: dict[str, int]) -> Callable[[bytes | None], bytes]:
    """The new line for one key: the stored combined record folded with the new values."""
    import orjson

    def make(old_line: bytes | None) -> bytes:
        if old_line is None:
            return _line(new)
        old = orjson.loads(old_line)
        merged = {agg.key_name: old.get(agg.key_name)}
        for name, mode in agg.combine:
            start = old.get(name, [] if mode == "list" else None)
            merged[name] = combine(mode, start, new[name])
        line = _line(merged)
        if line != old_line:
            counter["updated"] += 1
        return line

    return make


def _csv(agg: AggregateConfig, source: Path) -> bytes:
    """The dataset as CSV: one column per field; lists joined with ' | ', objects as JSON."""
    import orjson

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [n for n, _ in agg.fields]
    writer.writerow(names)
    with open(source, "rb") as fh:
        for line in fh:
            record = orjson.loads(line)
            writer.writerow([_cell(record.get(n)) for n in names])
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    import orjson

    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return " | ".join(str(v) for v in value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)
