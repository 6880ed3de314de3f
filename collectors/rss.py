"""The RSS job: fetch every feed of a source concurrently, store each new entry once.

Per run: take the source lock, read state (validators, seen ids), fetch feeds
in parallel (bounded overall and per host), parse only what changed, publish
new entries as one JSON file each, then save state, then the run record.
A feed that fails is reported and the others still land (run `partial`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from collectors.feeds import FeedParseError, ParsedFeed, parse_feed
from collectors.http import FetchResult, fetch
from collectors.urls import slug
from storage.atomic import remove_stale_temp_files
from storage.config import Config, FeedConfig, SourceConfig
from storage.jobs import run_job
from storage.paths import Datastore
from storage.records import plan_names, publish_records, refresh_folder_sidecar
from storage.redact import redact_text, redact_url
from storage.runs import Run, iso, utcnow
from storage.state import load_state, save_state, take_recovered, write_journal

FEED_ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
               "application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5")

Progress = Callable[[str, dict[str, Any]], None]
FEED_MAX_BYTES = 10 * 1024 * 1024


@dataclass
class FeedOutcome:
    feed: FeedConfig
    fetched: FetchResult | None = None
    parsed: ParsedFeed | None = None
    body_sha256: str | None = None
    status: str = "ok"
    error: str | None = None
    item: dict[str, Any] = field(default_factory=dict)

log = logging.getLogger("abi.collectors.rss")


def collect_rss(*, config: Config, source: str | None = None, module: str | None = None,
                force: bool = False, wait: bool = False, command: list[str] | None = None,
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the RSS job for each selected source; return one run record per source."""
    sources = config.select_kind("rss", source=source, module=module)
    records = []
    for src in sources:
        def work(run: Run, src: SourceConfig = src) -> None:
            _collect_source(config.datastore, src, run, force=force, progress=progress)

        records.append(run_job(ds=config.datastore, module=src.module, source=src.name, kind="rss",
                               command=command or ["abi", "collect", "rss"], work=work, wait=wait,
                               interval_s=src.interval_s))
    return records


def _collect_source(ds: Datastore, src: SourceConfig, run: Run, *, force: bool,
                    progress: Progress | None) -> None:
    state = load_state(ds, src.module, src.name)
    feed_state: dict[str, dict[str, Any]] = state.setdefault("feeds", {})
    seen: dict[str, list[str]] = state.setdefault("seen", {})
    folder = ds.data_dir(src.module, src.name, src.path)
    remove_stale_temp_files(folder)
    # The run records are the ledger aggregates and bridges read. Entries published by a run that died
    # before its record was written are listed in this run's record: those found through the journal
    # (died before saving the state), and those the last run saved as `unrecorded` (died after).
    module_dir = ds.module_dir(src.module)
    for recovered in take_recovered(state):
        run.files += [ds.relative(module_dir / rel) for rel in recovered.get("files", [])]
        run.warnings.append(f"recovered {len(recovered.get('files', []))} entries published by run "
                            f"{recovered.get('run_id')}, which was interrupted")
    last = state.pop("unrecorded", None) or {}
    if last.get("run_id") and last.get("files") and not (ds.runs_dir(src.module) / f"{last['run_id']}.json").exists():
        run.files += [ds.relative(module_dir / rel) for rel in last["files"]]
        run.warnings.append(f"listed {len(last['files'])} entries of run {last['run_id']}, which stopped before "
                            "writing its run record")

    for key in ("feeds", "new", "already_stored", "errors"):
        run.counts.setdefault(key, 0)
    todo, outcomes = [], []
    for feed in src.feeds:
        gone = feed_state.get(feed_key(feed), {}).get("gone")
        if gone and not force:
            outcomes.append(FeedOutcome(feed, status="skipped",
                                        error=f"gone (HTTP 410) since {gone}; run with --force to retry"))
        else:
            todo.append(feed)
    outcomes += _fetch_all(src, todo, feed_state, progress)

    collected_at = utcnow()
    pending: list[tuple[str, str, dict[str, Any]]] = []  # (feed key, file stem, record)
    fresh_keys: dict[str, list[str]] = {}
    for outcome in outcomes:
        _account(outcome, run)
        if outcome.parsed is None:
            continue
        known = set(seen.get(feed_key(outcome.feed), []))
        fresh = []
        for entry in outcome.parsed.entries:
            if entry["key"] not in known:
                known.add(entry["key"])
                fresh.append(entry)
        outcome.item["new"] = len(fresh)
        run.count("new", len(fresh))
        run.count("already_stored", len(outcome.parsed.entries) - len(fresh))
        fresh_keys[feed_key(outcome.feed)] = [e["key"] for e in fresh]
        query = slug(outcome.feed.query or outcome.feed.name, max_len=40, fallback="feed")
        for entry in fresh:
            stamp = _stamp(entry["published"] or iso(collected_at))
            pending.append((feed_key(outcome.feed), f"{stamp}_{query}_{slug(entry['title'], max_len=80)}",
                            _record(entry, outcome, src, run, collected_at)))

    if pending:
        names = plan_names(folder, [(stem, record["key"]) for _, stem, record in pending])
        rel_folder = folder.relative_to(ds.module_dir(src.module))
        journal: dict[str, list[tuple[str, str]]] = {}
        for (key, _, record), name in zip(pending, names, strict=True):
            journal.setdefault(key, []).append((record["key"], str(rel_folder / name)))
        write_journal(ds, src.module, src.name, run_id=run.run_id, seen=journal)
        publish_records(folder, [(name, record) for name, (_, _, record) in zip(names, pending, strict=True)])
        run.files += [ds.relative(folder / name) for name in names]
    sidecar = refresh_folder_sidecar(folder, provenance={
        "dataset": ds.relative(folder), "module": src.module, "source": src.name, "kind": "rss",
        "run_id": run.run_id, "fetched_at": iso(collected_at), "new_records": len(pending)})
    if sidecar is not None:
        run.files.append(ds.relative(folder) + ".meta.json")

    for outcome in outcomes:
        _update_feed_state(outcome, feed_state, seen, fresh_keys)
    prefix = ds.relative(module_dir) + "/"
    state["unrecorded"] = {"run_id": run.run_id, "files": [f.removeprefix(prefix) for f in run.files
                                                            if f.endswith(".json") and not f.endswith(".meta.json")]}
    save_state(ds, src.module, src.name, state)

    failed = sum(1 for o in outcomes if o.status == "failed")
    if failed and failed == len(outcomes):
        run.status = "failed"
        run.error = {"type": "AllFeedsFailed", "message": f"all {failed} feeds failed; first error: "
                     f"{next(o.error for o in outcomes if o.status == 'failed')}; check the network and the feed URLs"}
    elif failed:
        run.status = "partial"
        run.reason = f"{failed} of {len(outcomes)} feeds failed"


def _fetch_all(src: SourceConfig, feeds: list[FeedConfig], feed_state: dict[str, dict[str, Any]],
               progress: Progress | None) -> list[FeedOutcome]:
    if not feeds:
        return []
    limits: dict[str, threading.Semaphore] = {}
    for feed in feeds:
        host = urlsplit(_fetch_url(feed, feed_state)).netloc.lower()
        limits.setdefault(host, threading.Semaphore(src.per_host))

    def one(feed: FeedConfig) -> FeedOutcome:
        url = _fetch_url(feed, feed_state)
        previous = feed_state.get(feed_key(feed), {})
        try:
            with limits[urlsplit(url).netloc.lower()]:
                result = fetch(url, etag=previous.get("etag"), last_modified=previous.get("last_modified"),
                               timeout=src.timeout, retries=src.retries, retry_max_wait=src.retry_max_wait,
                               max_bytes=src.max_bytes or FEED_MAX_BYTES, user_agent=src.user_agent, accept=FEED_ACCEPT)
            return _interpret(feed, result, previous)
        except Exception as exc:  # one feed's surprise must not cost the other feeds their entries
            outcome = FeedOutcome(feed, status="failed", error=one_line(f"unexpected {type(exc).__name__}: {exc}"))
            outcome.item = _item(outcome)
            return outcome

    outcomes = []
    with ThreadPoolExecutor(max_workers=min(src.concurrency, len(feeds)),
                            thread_name_prefix=f"rss-{src.name}") as pool:
        futures = {pool.submit(one, feed): feed for feed in feeds}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            item = outcome.item
            log.info("feed %s: %s%s%s", item["feed"], item["status"],
                     f" (HTTP {item['http_status']})" if item.get("http_status") else "",
                     f": {item['error']}" if item.get("error") else "")
            if progress:
                progress(outcome.item["feed"], outcome.item)
    order = {feed.url: i for i, feed in enumerate(feeds)}
    return sorted(outcomes, key=lambda o: order[o.feed.url])


def feed_key(feed: FeedConfig) -> str:
    """State key of a feed: a hash of its identity, so no token in a URL reaches the state file."""
    return hashlib.sha256(feed.identity.encode()).hexdigest()[:16]


def one_line(text: str, limit: int = 300) -> str:
    return redact_text(" ".join(text.split()))[:limit]


def _fetch_url(feed: FeedConfig, feed_state: dict[str, dict[str, Any]]) -> str:
    return feed_state.get(feed_key(feed), {}).get("moved_to") or feed.url


def _interpret(feed: FeedConfig, result: FetchResult, previous: dict[str, Any]) -> FeedOutcome:
    outcome = FeedOutcome(feed, fetched=result)
    if result.error:
        outcome.status, outcome.error = "failed", redact_text(result.error)
    elif result.gone:
        outcome.status = "gone"
        outcome.error = "HTTP 410 Gone: the feed was removed; it is skipped from now on (--force retries it)"
    elif result.not_modified:
        outcome.status = "not_modified"
    else:
        outcome.body_sha256 = hashlib.sha256(result.body).hexdigest()
        if outcome.body_sha256 == previous.get("sha256"):
            outcome.status = "unchanged"
        else:
            try:
                outcome.parsed = parse_feed(result.body, headers=result.headers,
                                            base_url=redact_url(result.final_url or feed.url))
            except FeedParseError as exc:
                outcome.status, outcome.error = "failed", one_line(str(exc))
    outcome.item = _item(outcome)
    return outcome


def _item(outcome: FeedOutcome) -> dict[str, Any]:
    result = outcome.fetched
    item: dict[str, Any] = {"feed": redact_text(outcome.feed.label), "url": redact_url(outcome.feed.url),
                            "query": outcome.feed.query, "status": outcome.status}
    if result is not None:
        item.update(http_status=result.status, attempts=result.attempts, elapsed_s=result.elapsed_s)
        if result.attempts > 1:
            item["statuses"] = result.statuses
        if result.permanent_redirect:
            item["permanent_redirect"] = redact_url(result.permanent_redirect)
    if outcome.parsed is not None:
        item.update(format=outcome.parsed.format, entries=len(outcome.parsed.entries))
        if outcome.parsed.warning:
            item["warning"] = outcome.parsed.warning
    if outcome.error:
        item["error"] = outcome.error
    return item


def _account(outcome: FeedOutcome, run: Run) -> None:
    if not outcome.item:
        outcome.item = _item(outcome)
    run.count("feeds")
    run.count(outcome.status)
    if outcome.fetched is not None:
        run.count("fetched", 1 if outcome.fetched.status == 200 and not outcome.error else 0)
        run.count("requests", outcome.fetched.attempts)
        run.count("retries", max(0, outcome.fetched.attempts - 1))
    if outcome.parsed is not None:
        run.count("entries", len(outcome.parsed.entries))
        if outcome.parsed.warning:
            run.warnings.append(f"{outcome.item['feed']}: {outcome.parsed.warning}")
    if outcome.status == "failed":
        run.count("errors")
    if outcome.status == "gone":
        run.warnings.append(f"{outcome.item['feed']}: {outcome.error}")
    if outcome.fetched is not None and outcome.fetched.permanent_redirect:
        run.warnings.append(f"{outcome.item['feed']}: permanently moved to {outcome.item['permanent_redirect']}; "
                            "update the url in the configuration")
    run.items.append(outcome.item)


def _update_feed_state(outcome: FeedOutcome, feed_state: dict[str, dict[str, Any]],
                       seen: dict[str, list[str]], fresh_keys: dict[str, list[str]]) -> None:
    """Advance a feed's state only for what was safely handled; a failed feed keeps its old state."""
    key = feed_key(outcome.feed)
    entry = feed_state.setdefault(key, {})
    entry["url"] = redact_url(outcome.feed.url)
    result = outcome.fetched
    if result is None:
        return
    entry["last_status"] = outcome.status
    entry["last_checked"] = iso(utcnow())
    if outcome.status == "gone":
        entry["gone"] = entry["last_checked"]
        return
    if outcome.status == "failed":
        return
    entry.pop("gone", None)
    moved = result.permanent_redirect
    if moved and redact_url(moved) == moved:  # a target carrying a secret is not stored: followed each time
        entry["moved_to"] = moved
    if outcome.status in ("ok", "unchanged"):
        entry["etag"] = result.headers.get("etag")
        entry["last_modified"] = result.headers.get("last-modified")
        entry["sha256"] = outcome.body_sha256
    if fresh_keys.get(key):
        seen[key] = sorted(set(seen.get(key, [])) | set(fresh_keys[key]))


def _record(entry: dict[str, Any], outcome: FeedOutcome, src: SourceConfig, run: Run,
            collected_at: Any) -> dict[str, Any]:
    feed = outcome.feed
    record = {k: entry[k] for k in ("key", "id", "title", "link", "url", "published", "updated", "summary",
                                     "authors", "tags")}
    fetched = outcome.fetched.final_url if outcome.fetched and outcome.fetched.final_url else feed.url
    record["feed"] = {"url": redact_url(fetched), "name": feed.name, "query": feed.query,
                      "title": outcome.parsed.title if outcome.parsed else None}
    record.update(source=src.name, module=src.module, run_id=run.run_id, collected_at=iso(collected_at),
                  raw=entry["raw"])
    return record


def _stamp(iso_time: str) -> str:
    """'2024-05-01T12:30:00Z' -> '20240501T123000Z' (the file name prefix)."""
    return iso_time.replace("-", "").replace(":", "")[:15] + "Z"
