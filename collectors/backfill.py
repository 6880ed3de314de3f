"""`abi backfill`: collect a range of partitions, resumable, without moving the watermark.

Each partition is one run (its own lock, its own file, replaced whole), and its
outcome is recorded as soon as it ends, so an interrupted backfill picks up
where it stopped with `--only missing`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from storage.config import Config
from storage.errors import UsageError
from storage.partitions import partition_status

ONLY = ("missing", "failed", "all")


def plan_backfill(*, config: Config, source: str, first: str, last: str, only: str = "missing") -> list[str]:
    """The partitions of [first, last] that the backfill will run."""
    if only not in ONLY:
        raise UsageError(f"--only must be one of: {', '.join(ONLY)}")
    (src,) = config.select(source=source)
    if src.partitions is None or src.kind not in ("api", "db"):
        raise UsageError(f"[sources.{source}] has no partitions: set partitions = \"daily\" and start = \"...\"")
    status = partition_status(config.datastore, src.module, src.name)
    keys = list(src.partitions.between(first, last))
    if only == "all":
        return keys
    if only == "failed":
        return [k for k in keys if status.get(k, {}).get("status") in ("failed", "partial")]
    return [k for k in keys if status.get(k, {}).get("status") != "success"]


def backfill(*, config: Config, source: str, first: str, last: str, only: str = "missing", parallel: int = 1,
             command: list[str] | None = None,
             progress: Callable[[str, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the planned partitions in order (`parallel` at a time); one run record per partition."""
    keys = plan_backfill(config=config, source=source, first=first, last=last, only=only)
    src = config.sources[source]
    if src.kind == "api":
        from collectors.api import collect_api as job
    else:
        from collectors.db import collect_db as job

    def one(key: str) -> dict[str, Any]:
        record = job(config=config, source=source, partition=key, command=command or ["abi", "backfill"])[0]
        if progress:
            progress(key, {"status": record["status"]})
        return record

    if parallel <= 1:
        return [one(key) for key in keys]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="backfill") as pool:
        return list(pool.map(one, keys))
