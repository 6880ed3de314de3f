"""Per-source state (HTTP validators, seen ids, watermarks) with a write-ahead journal.

The rule is that state never runs ahead of data. A job first records in a
journal which files it is about to publish and which ids they cover, then
publishes them, then saves the state and drops the journal. If the process dies
in between, `load_state` folds in the ids whose files did get published, so the
next run neither writes them again nor forgets the ones that were lost.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from storage.atomic import read_json, write_json
from storage.paths import Datastore

STATE_VERSION = 1


def load_state(ds: Datastore, module: str, source: str, *, recover: bool = True) -> dict[str, Any]:
    """The source's state; with `recover` (the job, under its lock) an interrupted run's journal is folded in.

    Readers outside the lock (sensors, status) pass recover=False: they must never write the state
    a running job is about to replace.
    """
    state = read_json(ds.state_file(module, source)) or {"version": STATE_VERSION}
    if not recover:
        return state
    journal_path = ds.journal_file(module, source)
    journal = read_json(journal_path)
    if journal and "seen" in journal:  # other journals are replayed by their job (see read_journal)
        files = _recover(state, journal, ds.module_dir(module))
        # kept until a run takes them into its run record (see take_recovered): the record is the ledger of
        # published files that aggregates and bridges read
        state.setdefault("recovered", []).append({"run_id": journal.get("run_id"), "files": files})
        save_state(ds, module, source, state)
    return state


def _recover(state: dict[str, Any], journal: dict[str, Any], module_dir: Path) -> list[str]:
    """Fold in the ids whose files were published; return those files (relative to the module)."""
    seen = state.setdefault("seen", {})
    files = []
    for group, items in journal.get("seen", {}).items():
        known = set(seen.get(group, []))
        for key, rel in items:
            if key not in known and (module_dir / rel).is_file():
                known.add(key)
                files.append(rel)
        seen[group] = sorted(known)
    return files


def take_recovered(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The recoveries not yet reported by a run: {run_id, files}; the caller lists them in its run record."""
    return state.pop("recovered", [])


def read_journal(ds: Datastore, module: str, source: str) -> dict[str, Any] | None:
    return read_json(ds.journal_file(module, source))


def write_files_journal(ds: Datastore, module: str, source: str, *, run_id: str, files: list[str],
                        **extra: Any) -> None:
    """Record data files about to be published (relative to the module), for a job that replays them."""
    write_json(ds.journal_file(module, source), {"run_id": run_id, "files": files, **extra})


def clear_journal(ds: Datastore, module: str, source: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        ds.journal_file(module, source).unlink()


def write_journal(ds: Datastore, module: str, source: str, *, run_id: str,
                  seen: dict[str, list[tuple[str, str]]]) -> None:
    """Record ids about to be published: {group: [(id, file relative to the module), ...]}."""
    write_json(ds.journal_file(module, source), {"run_id": run_id, "seen": seen})


def save_state(ds: Datastore, module: str, source: str, state: dict[str, Any]) -> None:
    state["version"] = STATE_VERSION
    write_json(ds.state_file(module, source), state)
    with contextlib.suppress(FileNotFoundError):
        ds.journal_file(module, source).unlink()
