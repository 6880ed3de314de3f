"""Time partitions (daily, hourly, monthly) and the record of which ones were collected.

A partitioned source can collect one window at a time (`--partition 2024-01-31`)
into a file of its own, replaced whole when the partition runs again; a backfill
walks many. Partition runs never read or move the incremental watermark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storage.atomic import read_json, write_json
from storage.errors import ConfigError, UsageError
from storage.locks import SourceLock
from storage.paths import Datastore
from storage.runs import iso

GRAINS = ("hourly", "daily", "monthly")
_FORMATS = {"hourly": "%Y-%m-%dT%H", "daily": "%Y-%m-%d", "monthly": "%Y-%m"}
_KEY_RE = {"hourly": r"^\d{4}-\d{2}-\d{2}T\d{2}$", "daily": r"^\d{4}-\d{2}-\d{2}$", "monthly": r"^\d{4}-\d{2}$"}


@dataclass(frozen=True)
class Partitions:
    grain: str
    start: datetime

    def parse(self, key: str) -> datetime:
        if not re.match(_KEY_RE[self.grain], key):
            example = self.key(self.start)
            raise UsageError(f"partition {key!r} does not look like a {self.grain} partition such as {example!r}")
        moment = datetime.strptime(key, _FORMATS[self.grain]).replace(tzinfo=UTC)
        if moment < self.start:
            raise UsageError(f"partition {key} is before the source's partitions start ({self.key(self.start)})")
        return moment

    def key(self, moment: datetime) -> str:
        return moment.strftime(_FORMATS[self.grain])

    def end(self, start: datetime) -> datetime:
        if self.grain == "hourly":
            return start + timedelta(hours=1)
        if self.grain == "daily":
            return start + timedelta(days=1)
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)

    def window(self, key: str) -> tuple[datetime, datetime]:
        start = self.parse(key)
        return start, self.end(start)

    def between(self, first: str, last: str) -> Iterator[str]:
        moment, stop = self.parse(first), self.parse(last)
        if stop < moment:
            raise UsageError(f"--to {last} is before --from {first}")
        while moment <= stop:
            yield self.key(moment)
            moment = self.end(moment)


def parse_partitions(grain: Any, start: Any, where: str) -> Partitions:
    if grain not in GRAINS:
        raise ConfigError(f"{where} key 'partitions' must be one of: {', '.join(GRAINS)} (got {grain!r})")
    if not isinstance(start, str):
        raise ConfigError(f"{where} partitions need 'start', the first one, e.g. start = \"2024-01-01\"")
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where} key 'start' must be a date such as 2024-01-01 (got {start!r})") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    floor = datetime.strptime(moment.strftime(_FORMATS[grain]), _FORMATS[grain]).replace(tzinfo=UTC)
    return Partitions(grain=grain, start=floor)


def _status_path(ds: Datastore, module: str, source: str) -> Path:
    return ds.orchestration(module) / "state" / f"{source}.partitions.json"


def partition_status(ds: Datastore, module: str, source: str) -> dict[str, dict[str, Any]]:
    return read_json(_status_path(ds, module, source)) or {}


def record_partition(ds: Datastore, module: str, source: str, key: str, record: dict[str, Any]) -> None:
    """Remember how the partition's last run ended (parallel backfills share the file: locked)."""
    path = _status_path(ds, module, source)
    with SourceLock(path.with_suffix(".lock"), wait=True):
        status = read_json(path) or {}
        status[key] = {"status": record["status"], "run_id": record["run_id"], "at": iso(datetime.now(UTC)),
                       "records": record["counts"].get("records", 0)}
        write_json(path, status)
