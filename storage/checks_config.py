"""`[sources.X.checks]` (also on aggregates and bridges) and `[alerts]`: what `abi check` watches.

Every node gets sane defaults, so `abi check` is useful with no configuration:
a node with an `interval` is overdue past twice that interval, three failures
in a row are an alert, and the other rules are off until configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from storage.config_checks import check_keys
from storage.errors import ConfigError

CHECK_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "max_age": ((str, int), False),
    "max_consecutive_failures": ((int,), False),
    "min_new_items": ((int,), False),
    "window": ((str, int), False),
    "max_drop": ((int, float), False),
    "drop_runs": ((int,), False),
    "enabled": ((bool,), False),
}
ALERT_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "webhook_env": ((str,), True),
    "repeat_after": ((str, int), False),
    "timeout": ((int, float), False),
    "retries": ((int,), False),
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class ChecksConfig:
    """Rules for one node; None switches a rule off."""

    max_age_s: int | None = None  # default: 2 x interval when the node has one
    max_consecutive_failures: int | None = 3
    min_new_items: int | None = None  # fewer new items than this over `window` = a silent source
    window_s: int = 86400
    max_drop: float | None = None  # e.g. 0.5: the last run's records < 50% of the recent median
    drop_runs: int = 10  # how many recent successful runs make the median
    enabled: bool = True


@dataclass(frozen=True)
class AlertsConfig:
    """Where alerts go: a Slack-compatible webhook whose URL is in an environment variable."""

    webhook_env: str
    repeat_after_s: int | None = None  # None: an open alert is sent once, then its resolution once
    timeout: float = 10.0
    retries: int = 3


def parse_duration(value: Any, where: str, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ConfigError(f"{where} key {key!r} must look like 30m, 6h, 1d or a number of seconds "
                              f"(got {value!r})")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{where} key {key!r} must be positive")
    return seconds


def parse_checks(table: Any, where: str) -> ChecksConfig:
    where = f"{where} checks:"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table like {{ max_age = \"1h\" }}")
    check_keys(table, CHECK_KEYS, where)
    for key in ("max_consecutive_failures", "min_new_items"):
        if key in table and table[key] < 1:
            raise ConfigError(f"{where} key {key!r} must be at least 1 (got {table[key]})")
    if "drop_runs" in table and table["drop_runs"] < 3:  # a drop is only judged against at least 3 earlier runs
        raise ConfigError(f"{where} key 'drop_runs' must be at least 3 (got {table['drop_runs']})")
    if "max_drop" in table and not 0 < table["max_drop"] < 1:
        raise ConfigError(f"{where} key 'max_drop' must be a fraction between 0 and 1, e.g. 0.5 "
                          f"(got {table['max_drop']})")
    return ChecksConfig(
        max_age_s=parse_duration(table["max_age"], where, "max_age") if "max_age" in table else None,
        max_consecutive_failures=table.get("max_consecutive_failures", 3),
        min_new_items=table.get("min_new_items"),
        window_s=parse_duration(table["window"], where, "window") if "window" in table else 86400,
        max_drop=float(table["max_drop"]) if "max_drop" in table else None,
        drop_runs=table.get("drop_runs", 10),
        enabled=table.get("enabled", True),
    )


def parse_alerts(table: Any, file: Any) -> AlertsConfig:
    where = f"{file}: [alerts]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table with webhook_env = \"NAME_OF_VARIABLE\"")
    check_keys(table, ALERT_KEYS, where)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", table["webhook_env"]):
        raise ConfigError(f"{where} key 'webhook_env' is the name of an environment variable holding the URL, "
                          f"like SLACK_WEBHOOK_URL (never the URL itself)")
    repeat = parse_duration(table["repeat_after"], where, "repeat_after") if "repeat_after" in table else None
    for key, low, high in (("timeout", 0.1, 600), ("retries", 0, 20)):  # 0 or -1 would break every send
        if key in table and not low <= table[key] <= high:
            raise ConfigError(f"{where} key {key!r} must be between {low:g} and {high:g} (got {table[key]!r})")
    return AlertsConfig(webhook_env=table["webhook_env"], repeat_after_s=repeat,
                        timeout=float(table.get("timeout", 10.0)), retries=table.get("retries", 3))
