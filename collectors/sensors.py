"""Sensors: the cheap check a scheduled tick runs before a job (Dagster's sensors).

Each answers "is there anything to do?" with a reason either way: new or
changed files in a watched folder, rows after the database watermark, a feed
that no longer answers 304, an API response that changed since the last check.
A sensor never writes data or moves a watermark.
"""

from __future__ import annotations

import hashlib
from typing import Any

from storage.config import Config, SourceConfig


def sense(config: Config, src: SourceConfig, sensor_state: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """(fired, reason, state to remember for the next check)."""
    ds = config.datastore
    if src.kind == "files":
        from collectors.files import pending_files

        n = pending_files(ds, src)
        return (n > 0, f"{n} new or changed file(s)" if n else f"no new files in {src.files.watch}", {})
    if src.kind == "db":
        from collectors.db import rows_pending

        fired = rows_pending(ds, src)
        return fired, "new rows after the watermark" if fired else "no rows after the watermark", {}
    if src.kind == "rss":
        return _feeds_changed(config, src)
    return _api_changed(config, src, sensor_state)


def _feeds_changed(config: Config, src: SourceConfig) -> tuple[bool, str, dict[str, Any]]:
    from collectors.http import fetch
    from collectors.rss import FEED_ACCEPT, FEED_MAX_BYTES, feed_key
    from storage.state import load_state

    feeds_state = load_state(config.datastore, src.module, src.name, recover=False).get("feeds", {})
    for feed in src.feeds:
        prev = feeds_state.get(feed_key(feed), {})
        if prev.get("gone"):
            continue
        result = fetch(prev.get("moved_to") or feed.url, etag=prev.get("etag"), last_modified=prev.get("last_modified"),
                       accept=FEED_ACCEPT, timeout=min(src.timeout, 10), retries=0,
                       max_bytes=src.max_bytes or FEED_MAX_BYTES, user_agent=src.user_agent)
        if result.error or result.not_modified:
            continue  # an error is the job's to report; 304 means nothing new
        if hashlib.sha256(result.body).hexdigest() != prev.get("sha256"):
            return True, f"feed {feed.label} changed", {}
    return False, f"all {len(src.feeds)} feeds unchanged", {}


def _api_changed(config: Config, src: SourceConfig,
                 sensor_state: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    from collections import Counter

    from collectors.api import _base_params, _sender
    from storage.api_config import resolve_secrets
    from storage.state import load_state

    api = src.api
    watermark = load_state(config.datastore, src.module, src.name, recover=False).get("watermark")
    send = _sender(src, resolve_secrets(api.auth, src.name), Counter(), spool_dir=None)
    result = send(api.url, _base_params(api, watermark) or None)
    if result.error:
        return True, f"the API check failed ({result.error}): let the job report it", {}
    digest = hashlib.sha256(result.body).hexdigest()
    if digest == sensor_state.get("last_body_sha256"):
        return False, "the API's first page is unchanged", {"last_body_sha256": digest}
    return True, "the API's first page changed", {"last_body_sha256": digest}
