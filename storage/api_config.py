"""The `kind = "api"` part of the configuration: request, auth, pagination, increments.

Kept apart from storage.config so each kind's rules read on their own. Secrets
are never in the file: `auth` names environment variables, read at run time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from storage.config_checks import is_http_url
from storage.errors import ConfigError
from storage.redact import redact_url

API_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "url": ((str,), True),
    "method": ((str,), False),
    "params": ((dict,), False),
    "headers": ((dict,), False),
    "json": ((dict, list), False),
    "auth": ((dict,), False),
    "records": ((str,), False),
    "primary_key": ((str, list), False),
    "pagination": ((dict,), False),
    "incremental": ((dict,), False),
    "write": ((str,), False),
    "rate_limit": ((int, float), False),
    "max_bytes": ((int,), False),
}
WRITE_MODES = ("append", "merge", "replace")
_PAGINATION: dict[str, dict[str, tuple[type, ...]]] = {
    "page": {"param": (str,), "size_param": (str,), "size": (int,), "start": (int,), "max_pages": (int,)},
    "offset": {"param": (str,), "size_param": (str,), "size": (int,), "start": (int,), "max_pages": (int,)},
    "cursor": {"cursor_path": (str,), "param": (str,), "max_pages": (int,)},
    "next_url": {"next_path": (str,), "max_pages": (int,)},
    "link_header": {"max_pages": (int,)},
}
_PAGINATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "page": {"param": "page", "start": 1},
    "offset": {"param": "offset", "size_param": "limit", "size": 100, "start": 0},
    "cursor": {"param": "cursor"},
    "next_url": {},
    "link_header": {},
}
_SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")


@dataclass(frozen=True)
class AuthConfig:
    """Which environment variables hold the credentials (never the credentials)."""

    bearer_env: str | None = None
    header: str | None = None
    value_env: str | None = None
    basic_user_env: str | None = None
    basic_password_env: str | None = None

    def env_vars(self) -> tuple[str, ...]:
        names = (self.bearer_env, self.value_env, self.basic_user_env, self.basic_password_env)
        return tuple(n for n in names if n)


@dataclass(frozen=True)
class PaginationConfig:
    type: str
    param: str | None = None
    size_param: str | None = None
    size: int | None = None
    start: int = 0
    cursor_path: str | None = None
    next_path: str | None = None
    max_pages: int | None = None


@dataclass(frozen=True)
class IncrementalConfig:
    cursor_field: str
    param: str | None = None
    initial: Any = None


@dataclass(frozen=True)
class ApiConfig:
    url: str
    method: str = "GET"
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    auth: AuthConfig | None = None
    records: str = ""
    primary_key: tuple[str, ...] = ()
    pagination: PaginationConfig | None = None
    incremental: IncrementalConfig | None = None
    write: str = "append"
    rate_limit: float | None = None


def parse_api(table: dict[str, Any], where: str) -> ApiConfig:
    url = table["url"].strip()
    if not is_http_url(url):
        raise ConfigError(f"{where} key 'url' must be an http(s) URL (got {redact_url(url)!r})")
    method = table.get("method", "GET").upper()
    if method not in ("GET", "POST"):
        raise ConfigError(f"{where} key 'method' must be GET or POST (got {table['method']!r})")
    if "json" in table and method != "POST":
        raise ConfigError(f"{where} key 'json' (a request body) needs method = \"POST\"")
    params = table.get("params", {})
    for key, value in params.items():
        if isinstance(value, (dict, list)) or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{where} params.{key} must be a string, number or boolean")
    headers = table.get("headers", {})
    for key, value in headers.items():
        if not isinstance(value, str) or any(not c.isprintable() for c in value):
            raise ConfigError(f"{where} headers.{key} must be a one-line string")
        if key.lower() in _SECRET_HEADERS:
            raise ConfigError(f"{where} headers.{key} would put a secret in the file: use "
                              "auth = { bearer_env = \"VAR\" } or auth = { header = \"...\", value_env = \"VAR\" }")
    primary_key = table.get("primary_key", ())
    if isinstance(primary_key, str):
        primary_key = (primary_key,)
    if not all(isinstance(k, str) and k for k in primary_key):
        raise ConfigError(f"{where} key 'primary_key' must be a field name or a list of field names")
    write = table.get("write", "append")
    if write not in WRITE_MODES:
        raise ConfigError(f"{where} key 'write' must be one of: {', '.join(WRITE_MODES)} (got {write!r})")
    if write == "merge" and not primary_key:
        raise ConfigError(f"{where} write = \"merge\" needs a 'primary_key' to merge on")
    if write == "replace" and "incremental" in table:
        raise ConfigError(f"{where} write = \"replace\" keeps the latest full result, which an incremental "
                          "fetch is not: drop 'incremental' or use write = \"merge\"")
    rate = table.get("rate_limit")
    if rate is not None and not (math.isfinite(rate) and 0 < rate <= 10_000):
        raise ConfigError(f"{where} key 'rate_limit' must be requests per second, between 0 and 10000")
    return ApiConfig(
        url=url, method=method, params=dict(params), headers=dict(headers), json=table.get("json"),
        auth=_parse_auth(table["auth"], f"{where} auth") if "auth" in table else None,
        records=table.get("records", "").strip(), primary_key=tuple(primary_key),
        pagination=_parse_pagination(table["pagination"], f"{where} pagination") if "pagination" in table else None,
        incremental=_parse_incremental(table["incremental"], f"{where} incremental") if "incremental" in table
        else None,
        write=write, rate_limit=float(rate) if rate is not None else None)


def _parse_auth(auth: dict[str, Any], where: str) -> AuthConfig:
    forms = ({"bearer_env"}, {"header", "value_env"}, {"basic_user_env", "basic_password_env"})
    keys = set(auth)
    if keys not in forms:
        raise ConfigError(f"{where} must be one of {{ bearer_env = \"VAR\" }}, "
                          "{ header = \"X-Api-Key\", value_env = \"VAR\" } or "
                          f"{{ basic_user_env = \"VAR\", basic_password_env = \"VAR\" }} (got keys: {sorted(keys)})")
    for key, value in auth.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where} key {key!r} must name an environment variable")
    return AuthConfig(**auth)


def _parse_pagination(table: dict[str, Any], where: str) -> PaginationConfig:
    kind = table.get("type")
    if kind not in _PAGINATION:
        raise ConfigError(f"{where} key 'type' must be one of: {', '.join(_PAGINATION)} (got {kind!r})")
    allowed = _PAGINATION[kind]
    for key, value in table.items():
        if key == "type":
            continue
        if key not in allowed:
            raise ConfigError(f"{where} unknown key {key!r} for type = {kind!r} (allowed: {', '.join(allowed)})")
        if isinstance(value, bool) or not isinstance(value, allowed[key]):
            raise ConfigError(f"{where} key {key!r} has the wrong type")
        if isinstance(value, int) and value < (0 if key == "start" else 1):
            raise ConfigError(f"{where} key {key!r} must be positive")
    if kind == "cursor" and "cursor_path" not in table:
        raise ConfigError(f"{where} type = \"cursor\" needs cursor_path (where the next cursor is in the body)")
    if kind == "next_url" and "next_path" not in table:
        raise ConfigError(f"{where} type = \"next_url\" needs next_path (where the next URL is in the body)")
    values = {**_PAGINATION_DEFAULTS[kind], **{k: v for k, v in table.items() if k != "type"}}
    return PaginationConfig(type=kind, **values)


def _parse_incremental(table: dict[str, Any], where: str) -> IncrementalConfig:
    for key in table:
        if key not in ("cursor_field", "param", "initial"):
            raise ConfigError(f"{where} unknown key {key!r} (allowed: cursor_field, initial, param)")
    if not isinstance(table.get("cursor_field"), str) or not table["cursor_field"]:
        raise ConfigError(f"{where} needs cursor_field, the record field that only grows (e.g. updated_at)")
    if "param" in table and not isinstance(table["param"], str):
        raise ConfigError(f"{where} key 'param' must be a string")
    initial = table.get("initial")
    if initial is not None and (isinstance(initial, bool) or not isinstance(initial, (str, int, float))):
        raise ConfigError(f"{where} key 'initial' must be a string or a number")
    return IncrementalConfig(cursor_field=table["cursor_field"], param=table.get("param"), initial=initial)


def resolve_secrets(auth: AuthConfig | None, source: str) -> dict[str, str]:
    """Read the credentials from the environment now; a missing one is a config error (exit 2)."""
    if auth is None:
        return {}
    values = {}
    for var in auth.env_vars():
        value = os.environ.get(var)
        if not value:
            raise ConfigError(f"[sources.{source}] auth needs the environment variable {var}, which is not set: "
                              f"export {var}=... before running")
        values[var] = value
    return values
