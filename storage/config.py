"""Load and validate `abi.toml`.

Validation is strict and happens before any work: an unknown key is an error
(a typo must not silently fall back to a default), and every message names the
file, the table and the key so the fix is obvious from one line.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.api_config import API_KEYS, ApiConfig, parse_api
from storage.checks_config import AlertsConfig, ChecksConfig, parse_alerts, parse_checks
from storage.config_checks import check_keys, is_http_url
from storage.db_config import DB_KEYS, DbConfig, parse_db
from storage.errors import ConfigError
from storage.files_config import FILES_KEYS, FilesConfig, parse_files
from storage.partitions import Partitions, parse_partitions
from storage.paths import NAME_RE, Datastore, resolve_root
from storage.pipeline_config import (
    AggregateConfig,
    BridgeConfig,
    TripleStoreConfig,
    check_references,
    parse_aggregate,
    parse_bridge,
    parse_triplestore,
)
from storage.redact import redact_url

CONFIG_NAME = "abi.toml"
_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# key -> (accepted types, required). Shared by every kind of source.
_COMMON: dict[str, tuple[tuple[type, ...], bool]] = {
    "kind": ((str,), True),
    "module": ((str,), True),
    "path": ((str,), False),
    "description": ((str,), False),
    "interval": ((str, int), False),
    "schedule": ((str,), False),
    "timeout": ((int, float), False),
    "retries": ((int, dict), False),
    "retry_max_wait": ((int, float), False),
    "user_agent": ((str,), False),
    "sensor": ((dict,), False),
    "checks": ((dict,), False),
}
_PARTITION_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {"partitions": ((str,), False), "start": ((str,), False)}
SENSOR_TYPES = {"rss": "feeds", "api": "http", "db": "rows", "files": "files"}
_KINDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "rss": {
        "feeds": ((list,), True),
        "max_bytes": ((int,), False),
        "concurrency": ((int,), False),
        "per_host": ((int,), False),
    },
    "api": {**API_KEYS, **_PARTITION_KEYS},
    "db": {**DB_KEYS, **_PARTITION_KEYS},
    "files": FILES_KEYS,
}
_FEED_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "url": ((str,), True),
    "query": ((str,), False),
    "name": ((str,), False),
}
_TOP_KEYS = {"datastore", "sources", "aggregates", "bridges", "triplestore", "alerts"}
_BOUNDS: dict[str, tuple[float, float]] = {
    "timeout": (0.1, 600), "retry_max_wait": (0.01, 3600), "retries": (0, 20),
    "max_bytes": (1024, 2**31), "concurrency": (1, 256), "per_host": (1, 64),
}
_CRON_FIELD = r"[0-9A-Za-z*/,-]+"
_CRON_RE = re.compile(rf"^\s*{_CRON_FIELD}(\s+{_CRON_FIELD}){{4}}\s*$")


@dataclass(frozen=True)
class FeedConfig:
    url: str
    query: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.query or self.url

    @property
    def identity(self) -> str:
        """What a feed's state and seen ids hang on: its name, else its query, else its URL.

        Editing a feed's URL (after a permanent redirect, say) keeps its history,
        so its entries are not stored a second time.
        """
        return self.name or self.query or self.url


@dataclass(frozen=True)
class SensorConfig:
    """A cheap check before a run: new files, new rows, a changed feed or API response."""

    type: str
    minimum_interval_s: int = 30


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    module: str
    path: str | None = None
    description: str | None = None
    interval_s: int | None = None
    schedule: str | None = None
    timeout: float = 20.0
    retries: int = 4
    retry_max_wait: float = 60.0
    user_agent: str | None = None
    max_bytes: int | None = None  # each collector has its own default
    concurrency: int = 16
    per_host: int = 8
    feeds: tuple[FeedConfig, ...] = ()
    api: ApiConfig | None = None
    db: DbConfig | None = None
    files: FilesConfig | None = None
    sensor: SensorConfig | None = None
    partitions: Partitions | None = None
    checks: ChecksConfig = field(default_factory=ChecksConfig)


@dataclass(frozen=True)
class Config:
    path: Path
    datastore: Datastore
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    aggregates: dict[str, AggregateConfig] = field(default_factory=dict)
    bridges: dict[str, BridgeConfig] = field(default_factory=dict)
    triplestore: TripleStoreConfig = field(default_factory=TripleStoreConfig)
    alerts: AlertsConfig | None = None

    def module_of(self, name: str) -> str:
        """The module of a source, aggregate or bridge (its data and run records live there)."""
        for table in (self.sources, self.aggregates, self.bridges):
            if name in table:
                return table[name].module
        raise KeyError(name)

    def aggregate(self, name: str) -> AggregateConfig:
        if name not in self.aggregates:
            known = ", ".join(sorted(self.aggregates)) or "none; see [aggregates.NAME] in the README"
            raise ConfigError(f"{self.path}: no aggregate named {name!r} (configured: {known})")
        return self.aggregates[name]

    def bridge(self, name: str) -> BridgeConfig:
        if name not in self.bridges:
            known = ", ".join(sorted(self.bridges)) or "none; see [bridges.NAME] in the README"
            raise ConfigError(f"{self.path}: no bridge named {name!r} (configured: {known})")
        return self.bridges[name]

    def select(self, *, source: str | None = None, module: str | None = None,
               kind: str | None = None) -> list[SourceConfig]:
        """The sources a command should run; an unknown name is a config error."""
        if source is not None and source not in self.sources:
            known = ", ".join(sorted(self.sources)) or "none"
            raise ConfigError(f"{self.path}: no source named {source!r} (configured: {known})")
        chosen = [
            s for s in self.sources.values()
            if (source is None or s.name == source)
            and (module is None or s.module == module)
            and (kind is None or s.kind == kind)
        ]
        return chosen

    def select_kind(self, kind: str, *, source: str | None = None, module: str | None = None) -> list[SourceConfig]:
        """The sources of one kind a `collect KIND` command runs; none is a usage error (exit 2)."""
        from storage.errors import UsageError

        chosen = self.select(source=source, module=module, kind=kind)
        if source is not None and not chosen:
            other = self.sources[source].kind
            raise UsageError(f"{self.path}: [sources.{source}] is kind = {other!r}, not {kind!r}; "
                             f"use abi collect {other}")
        if not chosen:
            scope = f" in module {module!r}" if module else ""
            raise UsageError(f"{self.path}: no {kind} source{scope}; see [sources.*] with kind = \"{kind}\"")
        return chosen


def find_config(explicit: str | Path | None = None) -> Path:
    """--config, else ABI_CONFIG, else the nearest abi.toml in the current folder or its parents."""
    chosen = explicit or os.environ.get("ABI_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        return path
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_NAME} in {here} or its parents: pass --config PATH or set ABI_CONFIG")


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the configuration; raise ConfigError with one clear line."""
    file = find_config(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return parse_config(raw, file=file)


def parse_config(raw: dict[str, Any], *, file: Path) -> Config:
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{file}: unknown top-level key {key!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    datastore = raw.get("datastore")
    if datastore is not None and (not isinstance(datastore, str) or not datastore.strip()):
        raise ConfigError(f"{file}: key 'datastore' must be a non-empty path")
    sources_raw = raw.get("sources", {})
    if not isinstance(sources_raw, dict):
        raise ConfigError(f"{file}: 'sources' must be a table of [sources.NAME] tables")
    sources = {name: _parse_source(name, table, file, file.parent.absolute()) for name, table in sources_raw.items()}
    outputs: dict[tuple[str, str], str] = {}
    for src in sources.values():
        where = (src.module, src.path or f"raw_data/{src.name}")
        if where in outputs:
            raise ConfigError(f"{file}: [sources.{src.name}] writes to the same folder as [sources.{outputs[where]}] "
                              f"({where[0]}/{where[1]}): give it its own 'path'")
        outputs[where] = src.name
    tables = {}
    for key in ("aggregates", "bridges"):
        tables[key] = raw.get(key, {})
        if not isinstance(tables[key], dict):
            raise ConfigError(f"{file}: {key!r} must be a table of [{key}.NAME] tables")
    aggregates = {name: parse_aggregate(name, t, file) for name, t in tables["aggregates"].items()}
    bridges = {name: parse_bridge(name, t, file) for name, t in tables["bridges"].items()}
    check_references(file=file, sources=sources, aggregates=aggregates, bridges=bridges)
    for agg in aggregates.values():
        where = (agg.module, agg.folder)
        if where in outputs:
            raise ConfigError(f"{file}: [aggregates.{agg.name}] writes to the same folder as "
                              f"[sources.{outputs[where]}] ({where[0]}/{where[1]}): give it its own 'path'")
        outputs[where] = agg.name
    triplestore = parse_triplestore(raw["triplestore"], file) if "triplestore" in raw else TripleStoreConfig()
    root = resolve_root(config_dir=file.parent.absolute(), configured=datastore)
    alerts = parse_alerts(raw["alerts"], file) if "alerts" in raw else None
    return Config(path=file, datastore=Datastore(root), sources=sources, aggregates=aggregates, bridges=bridges,
                  triplestore=triplestore, alerts=alerts)


def _parse_source(name: str, table: Any, file: Path, config_dir: Path) -> SourceConfig:
    where = f"{file}: [sources.{name}]"
    if not NAME_RE.match(name):
        raise ConfigError(f"{where} source names may use letters, digits, '_' and '-' only")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    kind = table.get("kind")
    if kind not in _KINDS:
        raise ConfigError(f"{where} key 'kind' must be one of: {', '.join(sorted(_KINDS))} (got {kind!r})")
    check_keys(table, {**_COMMON, **_KINDS[kind]}, where)
    table = _flatten_retries(table, where)
    if not NAME_RE.match(table["module"]):
        raise ConfigError(f"{where} key 'module' may use letters, digits, '_' and '-' only")
    path = table.get("output") if kind == "files" else table.get("path")  # files: `path` is the watched folder
    if path is not None and (path.startswith("/") or ".." in Path(path).parts or not path.strip()):
        key = "output" if kind == "files" else "path"
        raise ConfigError(f"{where} key {key!r} must be a relative path inside the module folder")
    for key, (low, high) in _BOUNDS.items():
        if key in table and not (math.isfinite(table[key]) and low <= table[key] <= high):
            raise ConfigError(f"{where} key {key!r} must be between {low:g} and {high:g} (got {table[key]!r})")
    if any(not c.isprintable() for c in table.get("user_agent", "")):
        raise ConfigError(f"{where} key 'user_agent' must be one line of printable characters")
    schedule = table.get("schedule")
    if schedule is not None and not _CRON_RE.match(schedule):
        raise ConfigError(f"{where} key 'schedule' must be a 5-field cron expression, e.g. '*/5 * * * *'")
    options = {k: table[k] for k in ("timeout", "retries", "retry_max_wait", "user_agent", "max_bytes",
                                     "concurrency", "per_host", "description") if k in table}
    return SourceConfig(
        name=name, kind=kind, module=table["module"], path=path, schedule=schedule,
        interval_s=parse_interval(table["interval"], where) if "interval" in table else None,
        feeds=_parse_feeds(table["feeds"], where) if kind == "rss" else (),
        api=parse_api(table, where) if kind == "api" else None,
        db=parse_db(table, where, config_dir) if kind == "db" else None,
        files=parse_files(table, where, config_dir) if kind == "files" else None,
        sensor=_parse_sensor(table["sensor"], kind, where) if "sensor" in table else None,
        partitions=_parse_partitions(table, kind, where),
        checks=parse_checks(table["checks"], where) if "checks" in table else ChecksConfig(), **options,
    )


def _parse_partitions(table: dict[str, Any], kind: str, where: str) -> Partitions | None:
    if "partitions" not in table:
        if "start" in table:
            raise ConfigError(f"{where} key 'start' is the first partition: set partitions = \"daily\" too")
        return None
    return parse_partitions(table["partitions"], table.get("start"), where)


def _parse_sensor(table: dict[str, Any], kind: str, where: str) -> SensorConfig:
    expected = SENSOR_TYPES[kind]
    for key in table:
        if key not in ("type", "minimum_interval"):
            raise ConfigError(f"{where} sensor: unknown key {key!r} (allowed: minimum_interval, type)")
    kind_of = table.get("type", expected)
    if kind_of != expected:
        raise ConfigError(f"{where} sensor type for a {kind!r} source is {expected!r} (got {kind_of!r})")
    minimum = table.get("minimum_interval", "30s")
    return SensorConfig(type=expected, minimum_interval_s=parse_interval(minimum, f"{where} sensor"))


def _flatten_retries(table: dict[str, Any], where: str) -> dict[str, Any]:
    """`retries = 3` or `retries = { count = 3, max_wait = 30 }` (max_wait is retry_max_wait)."""
    retries = table.get("retries")
    if not isinstance(retries, dict):
        return table
    extra = set(retries) - {"count", "max_wait"}
    if extra or "count" not in retries:
        raise ConfigError(f"{where} key 'retries' must be a count or {{ count = 3, max_wait = 30 }}")
    flat = {k: v for k, v in table.items() if k != "retries"}
    flat["retries"] = retries["count"]
    if "max_wait" in retries:
        if "retry_max_wait" in table:
            raise ConfigError(f"{where} set retries.max_wait or retry_max_wait, not both")
        flat["retry_max_wait"] = retries["max_wait"]
    for key in ("retries", "retry_max_wait"):
        if key in flat and (isinstance(flat[key], bool) or not isinstance(flat[key], (int, float))):
            raise ConfigError(f"{where} key 'retries' must be a count or {{ count = 3, max_wait = 30 }}")
    return flat


def _parse_feeds(feeds: list[Any], where: str) -> tuple[FeedConfig, ...]:
    if not feeds:
        raise ConfigError(f"{where} key 'feeds' must list at least one {{ url = \"...\" }}")
    parsed: list[FeedConfig] = []
    seen: set[str] = set()
    for i, feed in enumerate(feeds):
        at = f"{where} feeds[{i}]"
        if not isinstance(feed, dict):
            raise ConfigError(f"{at} must be a table like {{ url = \"https://...\", query = \"AI\" }}")
        check_keys(feed, _FEED_KEYS, at)
        url = feed["url"].strip()
        if not is_http_url(url) or any(c.isspace() for c in url):
            raise ConfigError(f"{at} key 'url' must be an http(s) URL (got {redact_url(url)!r})")
        config = FeedConfig(url=url, query=feed.get("query"), name=feed.get("name"))
        if config.identity in seen:
            raise ConfigError(f"{at} is the same feed as an earlier one ({redact_url(config.identity)!r}): "
                              "give each feed a distinct name (or query)")
        seen.add(config.identity)
        parsed.append(config)
    return tuple(parsed)


def parse_interval(value: str | int, where: str = "interval") -> int:
    """'30s', '5m', '1h', '1d' or a number of seconds."""
    if isinstance(value, int):
        seconds = value
    else:
        match = _INTERVAL_RE.match(value)
        if not match:
            raise ConfigError(f"{where} key 'interval' must look like 30s, 5m, 1h or 1d (got {value!r})")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{where} key 'interval' must be positive")
    return seconds
