"""The `kind = "db"` part of the configuration: connection, query, cursor, batches.

The password never sits in the file: `password_env` names the environment
variable that holds it, read at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from storage.errors import ConfigError
from storage.redact import redact_url

DB_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "url": ((str,), True),
    "password_env": ((str,), False),
    "query": ((str,), True),
    "cursor": ((str,), False),
    "primary_key": ((str, list), False),
    "initial": ((str, int, float), False),
    "lookback": ((str, int), False),
    "batch_size": ((int,), False),
    "write": ((str,), False),
}
_LOOKBACK = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DbConfig:
    url: str
    dialect: str  # "sqlite" or "postgresql"
    query: str
    sqlite_path: Path | None = None
    password_env: str | None = None
    cursor: str | None = None
    primary_key: tuple[str, ...] = ()
    initial: Any = None
    lookback: timedelta | int | None = None
    batch_size: int = 5000
    write: str = "append"


def parse_db(table: dict[str, Any], where: str, config_dir: Path) -> DbConfig:
    url = table["url"].strip()
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative/to/abi.toml.db or sqlite:////absolute/path.db
        raw = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not raw:
            raise ConfigError(f"{where} key 'url' for SQLite looks like sqlite:///data/app.db (relative to the "
                              "configuration file) or sqlite:////abs/path/app.db")
        path = Path(raw)
        sqlite_path = path if path.is_absolute() else (config_dir / path)
        dialect = "sqlite"
    elif parts.scheme in ("postgresql", "postgres"):
        if parts.password:
            raise ConfigError(f"{where} key 'url' holds a password ({redact_url(url)}): remove it and set "
                              "password_env = \"VAR\" instead")
        sqlite_path, dialect = None, "postgresql"
    else:
        raise ConfigError(f"{where} key 'url' must start with sqlite:/// or postgresql:// (got {redact_url(url)!r})")
    if "password_env" in table and dialect == "sqlite":
        raise ConfigError(f"{where} key 'password_env' is for postgresql:// URLs; SQLite has no password")
    query = table["query"].strip().rstrip(";")
    if not re.match(r"(?is)^\s*(select|with)\b", query):
        raise ConfigError(f"{where} key 'query' must be a SELECT (or WITH ... SELECT); the collector adds the "
                          "watermark condition itself")
    primary_key = table.get("primary_key", ())
    if isinstance(primary_key, str):
        primary_key = (primary_key,)
    for name in (*primary_key, *([table["cursor"]] if "cursor" in table else [])):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where} column name {name!r} in 'cursor'/'primary_key' must be a plain identifier")
    cursor = table.get("cursor")
    if cursor and not primary_key:
        raise ConfigError(f"{where} key 'cursor' needs a 'primary_key' too: it breaks ties between rows that share "
                          "a cursor value, so none is lost or read twice")
    write = table.get("write", "append")
    if write not in ("append", "merge"):
        raise ConfigError(f"{where} key 'write' must be append or merge for a database source (got {write!r})")
    if write == "merge" and not primary_key:
        raise ConfigError(f"{where} write = \"merge\" needs a 'primary_key' to merge on")
    batch = table.get("batch_size", 5000)
    if not 1 <= batch <= 1_000_000:
        raise ConfigError(f"{where} key 'batch_size' must be between 1 and 1000000")
    lookback: timedelta | int | None = None
    if "lookback" in table:
        if not cursor:
            raise ConfigError(f"{where} key 'lookback' needs a 'cursor'")
        value = table["lookback"]
        if isinstance(value, int):
            lookback = value
        else:
            match = _LOOKBACK.match(value)
            if not match:
                raise ConfigError(f"{where} key 'lookback' must look like 10m, 1h or 1d (or a number for a "
                                  f"numeric cursor), got {value!r}")
            lookback = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    return DbConfig(url=url, dialect=dialect, query=query, sqlite_path=sqlite_path,
                    password_env=table.get("password_env"), cursor=cursor, primary_key=tuple(primary_key),
                    initial=table.get("initial"), lookback=lookback, batch_size=batch, write=write)
