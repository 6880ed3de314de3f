"""Ordering of watermark values (the `updated_at` or id a source only moves forward on)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def newer(a: Any, b: Any) -> bool:
    """Is watermark value `a` after `b`? Numbers (or numeric strings) numerically, dates as instants.

    Falls back to text order only for values that are neither, which never loses
    data: the saved watermark is always a value actually seen.
    """
    if b is None:
        return a is not None
    if a is None:
        return False
    if isinstance(a, str) and isinstance(b, str) and len(a) == len(b) and _ISO_UTC.match(a) and _ISO_UTC.match(b):
        return a > b  # the same ISO-8601 UTC shape: text order is time order
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return x > y
    try:
        return _instant(a) > _instant(b)
    except ValueError:
        return str(a) > str(b)


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, datetime)):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _instant(value: Any) -> datetime:
    """A datetime, ISO 8601 text or an HTTP / RFC 822 date, as an aware datetime; ValueError otherwise."""
    from email.utils import parsedate_to_datetime

    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value)
        try:
            dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            try:
                dt = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                raise ValueError(text) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def next_watermark(before: Any, highest: Any, *, full_refresh: bool = False) -> Any:
    """The watermark to save: never smaller than the stored one, except after a full refresh."""
    if full_refresh:
        return highest if highest is not None else before
    return highest if newer(highest, before) else before
