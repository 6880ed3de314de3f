"""The processing stages of the configuration: `[aggregates.X]`, `[bridges.X]` and `[triplestore]`.

Kept apart from the sources' rules so each reads on its own. Validation is as
strict as for sources: every message names the file, the table and the key,
and a reference to a name that does not exist (or a cycle of aggregates) is
reported before any work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.checks_config import ChecksConfig, parse_checks
from storage.config_checks import check_keys, is_http_url
from storage.errors import ConfigError
from storage.paths import NAME_RE
from storage.redact import redact_url

COMBINE_MODES = ("first", "latest", "list")
AGGREGATE_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "module": ((str,), True),
    "inputs": ((list,), True),
    "key": ((str,), True),
    "fields": ((list, dict), False),
    "combine": ((dict,), False),
    "path": ((str,), False),
    "description": ((str,), False),
    "checks": ((dict,), False),
}
BRIDGE_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "module": ((str,), True),
    "input": ((str,), True),
    "pipeline": ((str,), True),
    "graph": ((str,), False),
    "store": ((str,), False),
    "batch_size": ((int,), False),
    "key": ((str,), False),
    "description": ((str,), False),
    "checks": ((dict,), False),
}
TRIPLESTORE_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "url": ((str,), False),
    "query_url": ((str,), False),
    "update_url": ((str,), False),
    "store_url": ((str,), False),
    "user_env": ((str,), False),
    "password_env": ((str,), False),
    "timeout": ((int, float), False),
}
_PATH_RE = re.compile(r"^[^.\s][^\s]*$")
_PIPELINE_RE = re.compile(r"^(builtin:[a-z_]+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")
_IRI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$")
BUILTIN_PIPELINES = ("news",)


@dataclass(frozen=True)
class AggregateConfig:
    """Several datasets combined into one, one record per key."""

    name: str
    module: str
    inputs: tuple[str, ...]
    key: str  # a dotted path into the input records
    fields: tuple[tuple[str, str], ...]  # (output name, dotted path), the key first
    combine: tuple[tuple[str, str], ...]  # (output name, mode) for every field but the key
    path: str | None = None
    description: str | None = None
    checks: ChecksConfig = field(default_factory=ChecksConfig)

    @property
    def key_name(self) -> str:
        return self.fields[0][0]

    @property
    def folder(self) -> str:
        return self.path or f"processed_data/{self.name}"


@dataclass(frozen=True)
class BridgeConfig:
    """Records of one source or aggregate turned into triples in one named graph."""

    name: str
    module: str
    input: str
    pipeline: str
    graph: str
    store: str | None = None
    batch_size: int = 1000
    key: str | None = None
    description: str | None = None
    checks: ChecksConfig = field(default_factory=ChecksConfig)


@dataclass(frozen=True)
class TripleStoreConfig:
    """Where bridges write: the embedded store (url None) or a SPARQL 1.1 server."""

    url: str | None = None
    endpoints: tuple[tuple[str, str], ...] = ()
    user_env: str | None = None
    password_env: str | None = None
    timeout: float = 60.0


def _check_name(name: str, table: Any, where: str) -> None:
    if not NAME_RE.match(name):
        raise ConfigError(f"{where} names may use letters, digits, '_' and '-' only")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")


def _check_module(table: dict[str, Any], where: str) -> None:
    if not NAME_RE.match(table["module"]):
        raise ConfigError(f"{where} key 'module' may use letters, digits, '_' and '-' only")


def _dotted(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not _PATH_RE.match(value) or ".." in value or value.endswith("."):
        raise ConfigError(f"{where} key {key!r} must be a field name or a dotted path like 'feed.query' "
                          f"(got {value!r})")
    return value


def parse_aggregate(name: str, table: Any, file: Path) -> AggregateConfig:
    where = f"{file}: [aggregates.{name}]"
    _check_name(name, table, where)
    check_keys(table, AGGREGATE_KEYS, where)
    _check_module(table, where)
    inputs = table["inputs"]
    if not inputs or not all(isinstance(i, str) and i for i in inputs):
        raise ConfigError(f"{where} key 'inputs' must list at least one source or aggregate name")
    if len(set(inputs)) != len(inputs):
        raise ConfigError(f"{where} key 'inputs' names the same input twice")
    key_path = _dotted(table["key"], where, "key")
    raw_fields = table.get("fields", [])
    if isinstance(raw_fields, dict):
        pairs = [(str(k), _dotted(v, where, f"fields.{k}")) for k, v in raw_fields.items()]
    else:
        pairs = [(_dotted(p, where, "fields").rsplit(".", 1)[-1], p) for p in raw_fields]
    key_name = key_path.rsplit(".", 1)[-1]
    fields = [(key_name, key_path)] + [(n, p) for n, p in pairs if p != key_path]
    seen: dict[str, str] = {}
    for out, path in fields:
        if out in seen:
            raise ConfigError(f"{where} fields {seen[out]!r} and {path!r} both become {out!r}: name them with "
                              f"a table, e.g. fields = {{ {out} = \"{seen[out]}\", other_{out} = \"{path}\" }}")
        seen[out] = path
    combine_raw = table.get("combine", {})
    for field_name, mode in combine_raw.items():
        if field_name not in seen or field_name == key_name:
            raise ConfigError(f"{where} combine names {field_name!r}, which is not one of the fields "
                              f"({', '.join(n for n, _ in fields[1:]) or 'none'})")
        if mode not in COMBINE_MODES:
            raise ConfigError(f"{where} combine.{field_name} must be one of {', '.join(COMBINE_MODES)} "
                              f"(got {mode!r})")
    path = table.get("path")
    if path is not None and (path.startswith("/") or ".." in Path(path).parts or not path.strip()):
        raise ConfigError(f"{where} key 'path' must be a relative path inside the module folder")
    return AggregateConfig(name=name, module=table["module"], inputs=tuple(inputs), key=key_path,
                           fields=tuple(fields), combine=tuple((n, combine_raw.get(n, "first")) for n, _ in fields[1:]),
                           path=path, description=table.get("description"),
                           checks=parse_checks(table["checks"], where) if "checks" in table else ChecksConfig())


def parse_bridge(name: str, table: Any, file: Path) -> BridgeConfig:
    where = f"{file}: [bridges.{name}]"
    _check_name(name, table, where)
    check_keys(table, BRIDGE_KEYS, where)
    _check_module(table, where)
    pipeline = table["pipeline"]
    if not _PIPELINE_RE.match(pipeline):
        raise ConfigError(f"{where} key 'pipeline' must be builtin:NAME or an import path 'package.module:Class' "
                          f"(got {pipeline!r})")
    if pipeline.startswith("builtin:") and pipeline[8:] not in BUILTIN_PIPELINES:
        raise ConfigError(f"{where} key 'pipeline': no built-in pipeline {pipeline[8:]!r} "
                          f"(built in: {', '.join('builtin:' + p for p in BUILTIN_PIPELINES)})")
    graph = table.get("graph", f"urn:abi:graph:{table['module']}:{name}")
    if not _IRI_RE.match(graph):
        raise ConfigError(f"{where} key 'graph' must be an absolute IRI such as urn:abi:graph:news (got {graph!r})")
    store = table.get("store")
    if store is not None:
        store = _store_url(store, where, "store")
    batch = table.get("batch_size", 1000)
    if not 1 <= batch <= 1_000_000:
        raise ConfigError(f"{where} key 'batch_size' must be between 1 and 1000000 (got {batch})")
    key = _dotted(table["key"], where, "key") if "key" in table else None
    return BridgeConfig(name=name, module=table["module"], input=table["input"], pipeline=pipeline, graph=graph,
                        store=store, batch_size=batch, key=key, description=table.get("description"),
                        checks=parse_checks(table["checks"], where) if "checks" in table else ChecksConfig())


def _store_url(value: str, where: str, key: str) -> str | None:
    if value.strip() in ("", "embedded"):
        return None
    if not is_http_url(value.strip()):
        raise ConfigError(f"{where} key {key!r} must be \"embedded\" or the http(s) URL of a SPARQL server "
                          f"(got {redact_url(value)!r})")
    return value.strip().rstrip("/")


def parse_triplestore(table: Any, file: Path) -> TripleStoreConfig:
    where = f"{file}: [triplestore]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    check_keys(table, TRIPLESTORE_KEYS, where)
    url = _store_url(table["url"], where, "url") if "url" in table else None
    endpoints = tuple((k[:-4], _store_url(table[k], where, k) or "") for k in ("query_url", "update_url", "store_url")
                      if k in table)
    timeout = float(table.get("timeout", 60.0))
    if not 0.1 <= timeout <= 3600:
        raise ConfigError(f"{where} key 'timeout' must be between 0.1 and 3600 (got {timeout:g})")
    return TripleStoreConfig(url=url, endpoints=endpoints, user_env=table.get("user_env"),
                             password_env=table.get("password_env"), timeout=timeout)


def check_references(*, file: Path, sources: dict[str, Any], aggregates: dict[str, AggregateConfig],
                     bridges: dict[str, BridgeConfig]) -> None:
    """Names are unique across sources, aggregates and bridges; inputs exist; aggregates form no cycle."""
    for kind, table in (("aggregates", aggregates), ("bridges", bridges)):
        for name in table:
            if name in sources or (kind == "bridges" and name in aggregates):
                raise ConfigError(f"{file}: [{kind}.{name}] has the name of another source or aggregate: "
                                  "names are shared by run records and status, give it another one")
    datasets = set(sources) | set(aggregates)
    for agg in aggregates.values():
        for name in agg.inputs:
            if name not in datasets:
                raise ConfigError(f"{file}: [aggregates.{agg.name}] input {name!r} is neither a source nor an "
                                  f"aggregate (known: {', '.join(sorted(datasets)) or 'none'})")
            src = sources.get(name)
            if src is not None and src.kind == "files" and src.files.process == "copy":
                raise ConfigError(f"{file}: [aggregates.{agg.name}] input {name!r} copies files without reading "
                                  "them: set process = \"csv\", \"json\" or \"jsonl\" on it to aggregate its records")
    for bridge in bridges.values():
        if bridge.input not in datasets:
            raise ConfigError(f"{file}: [bridges.{bridge.name}] input {bridge.input!r} is neither a source nor an "
                              f"aggregate (known: {', '.join(sorted(datasets)) or 'none'})")
    state: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == 2 or name not in aggregates:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*trail[trail.index(name):], name))
            raise ConfigError(f"{file}: aggregates depend on each other in a cycle: {cycle}")
        state[name] = 1
        for dep in aggregates[name].inputs:
            visit(dep, (*trail, name))
        state[name] = 2

    for name in aggregates:
        visit(name, ())


def aggregate_order(aggregates: dict[str, AggregateConfig]) -> list[str]:
    """Aggregate names, each after the aggregates it reads (the configuration has no cycle)."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done or name not in aggregates:
            return
        for dep in aggregates[name].inputs:
            visit(dep)
        done.append(name)

    for name in aggregates:
        visit(name)
    return done


def store_url_for(triplestore: TripleStoreConfig, bridge: BridgeConfig | None = None) -> str | None:
    """The bridge's `store`, else $ABI_TRIPLESTORE, else [triplestore] url, else None (embedded)."""
    if bridge is not None and bridge.store:
        return bridge.store
    env = os.environ.get("ABI_TRIPLESTORE", "").strip()
    if env:
        return None if env == "embedded" else env.rstrip("/")
    return triplestore.url
