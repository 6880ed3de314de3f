"""The table checks every part of the configuration shares: known keys, right types, required keys."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from storage.errors import ConfigError


def check_keys(table: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], bool]], where: str) -> None:
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(f"{where} unknown key {key!r} (allowed: {', '.join(sorted(schema))})")
        types, _ = schema[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ConfigError(f"{where} key {key!r} must be {_type_names(types)}, not {type(value).__name__}")
    for key, (_, required) in schema.items():
        if required and key not in table:
            raise ConfigError(f"{where} missing required key {key!r}")


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host (and a valid port): what every configured URL must be."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # e.g. an unclosed [ipv6 or a port out of range
        return False


def _type_names(types: tuple[type, ...]) -> str:
    if set(types) == {int, float}:
        return "a number"
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table",
             bool: "true or false"}
    return " or ".join(names.get(t, t.__name__) for t in types)
