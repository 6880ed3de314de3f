"""The life of one job run, shared by every command.

lock -> (the job reads state, works, publishes, saves state) -> run record ->
unlock. A busy lock becomes a `skipped` record and an error a `failed` one,
returned like any other, so one source's failure never stops the next source.
Only an interruption (Ctrl-C, SIGTERM turned into SystemExit) propagates,
after its record is written.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

from storage.errors import AbiError, SourceBusy
from storage.locks import SourceLock
from storage.paths import Datastore
from storage.redact import redact_text
from storage.run_logs import run_log
from storage.runs import Run, write_run_record

log = logging.getLogger("abi.jobs")


def run_job(*, ds: Datastore, module: str, source: str, kind: str, command: list[str],
            work: Callable[[Run], None], wait: bool = False, interval_s: int | None = None,
            secrets: tuple[str, ...] = (), partition: str | None = None) -> dict[str, Any]:
    """Run `work` under the source's lock and return the run record it produced.

    `secrets` (credential values) are masked in the record's error and traceback. A
    `partition` run takes that partition's own lock (partitions run side by side, and
    beside the incremental runs) and stays out of the source's freshness summary.
    """
    run = Run(module=module, source=source, kind=kind, command=command, secrets=secrets)
    if partition is not None:
        run.details["partition"] = partition
    lock_name = source if partition is None else f"{source}.partition-{partition}"
    lock = SourceLock(ds.lock_file(module, lock_name), wait=wait)
    try:
        lock.acquire()
    except SourceBusy as busy:
        run.status, run.reason = "skipped", str(busy)
        record = run.record()
        write_run_record(ds, record, interval_s=interval_s, summarize=partition is None)
        return record
    run.restart()  # ids in lock order: a run that waited for the lock sorts after the one it waited for
    try:
        with run_log(ds, module, run.run_id):
            log.info("%s %s: run %s started (pid %s on %s): %s", kind, source, run.run_id, os.getpid(),
                     socket.gethostname(), " ".join(redact_text(a) for a in command))
            try:
                work(run)
            except AbiError as exc:
                run.fail(exc)
            except Exception as exc:  # a bug: keep the traceback in the record for whoever looks
                run.fail(exc)
                run.error["traceback"] = redact_text("".join(traceback.format_exception(exc))[-4000:], secrets)
                log.debug("%s", run.error["traceback"])
            except BaseException as exc:
                run.fail(InterruptedError(f"interrupted ({type(exc).__name__})"))
                log.error("%s %s: interrupted (%s)", kind, source, type(exc).__name__)
                write_run_record(ds, run.record(), interval_s=interval_s, summarize=partition is None)
                raise
            record = run.record()
            for warning in record["warnings"]:
                log.warning("%s", warning)
            if record["error"]:
                log.error("%s %s: %s", kind, source, record["error"]["message"])
            counts = ", ".join(f"{k} {v}" for k, v in record["counts"].items())
            log.info("%s %s: %s in %.2fs (%s)", kind, source, record["status"], record["duration_s"], counts)
            write_run_record(ds, record, interval_s=interval_s, summarize=partition is None)
        return record
    finally:
        lock.release()
