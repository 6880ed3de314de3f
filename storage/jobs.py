"""The life of one job run, shared by every command.

lock -> (the job reads state, works, publishes, saves state) -> run record ->
unlock. A busy lock becomes a `skipped` record; any error becomes a `failed`
record with its type and message before it propagates to the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.errors import SourceBusy
from storage.locks import SourceLock
from storage.paths import Datastore
from storage.runs import Run, write_run_record


def run_job(*, ds: Datastore, module: str, source: str, kind: str, command: list[str],
            work: Callable[[Run], None], wait: bool = False,
            interval_s: int | None = None) -> dict[str, Any]:
    """Run `work` under the source's lock and return the run record it produced."""
    run = Run(module=module, source=source, kind=kind, command=command)
    lock = SourceLock(ds.lock_file(module, source), wait=wait)
    try:
        lock.acquire()
    except SourceBusy as busy:
        run.status, run.reason = "skipped", str(busy)
        record = run.record()
        write_run_record(ds, record, interval_s=interval_s)
        return record
    try:
        try:
            work(run)
        except BaseException as exc:
            run.fail(exc if not isinstance(exc, KeyboardInterrupt) else InterruptedError("interrupted"))
            record = run.record()
            write_run_record(ds, record, interval_s=interval_s)
            raise
        record = run.record()
        write_run_record(ds, record, interval_s=interval_s)
        return record
    finally:
        lock.release()
