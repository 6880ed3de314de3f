"""The API job: page through a JSON API and store new and changed records, once.

Per run: check the credentials are in the environment (else exit 2), take the
source lock, replay an interrupted run if its journal says so, walk the pages
(incremental from the stored watermark), classify each record against the key
index (new / updated / unchanged), stream what must be written into a temp
file, then publish it, commit the index, save the watermark, write the run
record. A page that fails fails the run and nothing of that run is kept: the
next run starts again from the last saved watermark, so nothing is lost and,
thanks to the key index, nothing is stored twice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collectors.http import FetchResult, request
from collectors.pagination import PageError, Walk, iter_pages, prefetched
from collectors.ratelimit import HostThrottle
from storage.api_config import ApiConfig, resolve_secrets
from storage.atomic import read_json, remove_stale_temp_files, write_json
from storage.config import Config, SourceConfig
from storage.errors import AbiError, UsageError
from storage.jobs import run_job
from storage.keyindex import NEW, REPEATED, UNCHANGED, UPDATED, KeyIndex
from storage.paths import Datastore
from storage.records import JsonLinesWriter, read_lines, sidecar_path
from storage.redact import redact_url
from storage.runs import Run, iso
from storage.state import clear_journal, load_state, read_journal, save_state, write_files_journal

Progress = Callable[[str, dict[str, Any]], None]
API_MAX_BYTES = 2**31 - 1  # one response; above 8 MiB it is spooled to disk, not held in memory


class ApiError(AbiError):
    """The API answered something the job cannot use; the run failed and stored nothing."""


def collect_api(*, config: Config, source: str | None = None, module: str | None = None,
                full_refresh: bool = False, since: str | None = None, max_pages: int | None = None,
                wait: bool = False, command: list[str] | None = None,
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the API job for each selected source; return one run record per source."""
    sources = _select(config, source, module)
    credentials = {src.name: resolve_secrets(src.api.auth, src.name) for src in sources}  # exit 2 before work
    records = []
    for src in sources:
        def work(run: Run, src: SourceConfig = src) -> None:
            _collect_source(config.datastore, src, run, secrets=credentials[src.name], full_refresh=full_refresh,
                            since=since, max_pages=max_pages, progress=progress)

        records.append(run_job(ds=config.datastore, module=src.module, source=src.name, kind="api",
                               command=command or ["abi", "collect", "api"], work=work, wait=wait,
                               interval_s=src.interval_s, secrets=tuple(credentials[src.name].values())))
    return records


def preview_api(*, config: Config, source: str | None, since: str | None = None,
                full_refresh: bool = False) -> dict[str, Any]:
    """Fetch the first page and say what a run would write; nothing is stored or locked."""
    if source is None:
        raise UsageError("--dry-run needs --source NAME")
    (src,) = _select(config, source, None)
    api = src.api
    secrets = resolve_secrets(api.auth, src.name)
    state = load_state(config.datastore, src.module, src.name) if not full_refresh else {}
    start = _start_watermark(api, state.get("watermark"), since=since, full_refresh=full_refresh)
    walk = Walk()
    send = _sender(src, secrets, Counter(), spool_dir=None)
    try:
        (page,) = list(iter_pages(api, send=send, params=_base_params(api, start), max_pages=1, walk=walk,
                                  secrets=tuple(secrets.values())))
    except PageError as exc:
        raise ApiError(f"{src.name}: {exc}") from None
    index_path = _index_path(config.datastore, src)
    index = KeyIndex(index_path) if index_path.exists() else None
    would = Counter()
    for record in page.records:
        digest = _serialize(record)[1]
        key = _key(api, record, 1, digest)
        would[index.peek(key, digest) if index else NEW] += 1
    if index:
        index.close()
    return {"source": src.name, "url": redact_url(api.url), "watermark": start, "records_on_first_page":
            page.count, "would_write": dict(would), "write": api.write,
            "target": config.datastore.relative(_target(config.datastore, src, "<run id>")),
            "sample": list(itertools.islice(page.records, 3)), "more_pages": walk.truncated}


def _select(config: Config, source: str | None, module: str | None) -> list[SourceConfig]:
    sources = config.select(source=source, module=module, kind="api")
    if source is not None and not sources:
        raise UsageError(f"{config.path}: [sources.{source}] is kind = {config.sources[source].kind!r}, "
                         "not \"api\"; use abi collect " + config.sources[source].kind)
    if not sources:
        raise UsageError(f"{config.path}: no api source matches; see [sources.*] with kind = \"api\"")
    return sources


def _index_path(ds: Datastore, src: SourceConfig) -> Path:
    return ds.state_file(src.module, src.name).with_suffix(".keys.sqlite")


def _target(ds: Datastore, src: SourceConfig, run_id: str) -> Path:
    """append: one file per run, named by the run id (time first, so names sort by time)."""
    folder = ds.data_dir(src.module, src.name, src.path)
    if src.api.write == "append":
        return folder / f"{run_id}.jsonl"
    return folder / f"{src.name}.jsonl"


def _batched(items: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    """itertools.batched, which Python 3.11 lacks."""
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


def _serialize(record: Any) -> tuple[str, str]:
    """(stored line, content digest): one canonical serialisation (sorted keys) serves both."""
    line = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return line, hashlib.sha256(line.encode()).hexdigest()[:32]


def _key(api: ApiConfig, record: Any, page: int, digest: str) -> str:
    if not api.primary_key:
        return "sha:" + digest
    if not isinstance(record, dict):
        raise ApiError(f"page {page}: a record is a {type(record).__name__}, not an object with "
                       f"{', '.join(api.primary_key)}")
    values = []
    for field in api.primary_key:
        value = record.get(field)
        if value is None:
            raise ApiError(f"page {page}: a record has no {field!r} (the primary_key); "
                           f"its fields: {', '.join(sorted(record)[:10])}")
        values.append(value)
    if len(values) == 1 and type(values[0]) in (int, str):
        return f"{'i' if type(values[0]) is int else 's'}:{values[0]}"
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def _key_of_line(api: ApiConfig, line: str) -> str:
    record = json.loads(line)
    return _key(api, record, 0, _serialize(record)[1] if not api.primary_key else "")


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
        return _instant(str(a)) > _instant(str(b))
    except ValueError:
        return str(a) > str(b)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _instant(text: str) -> datetime:
    """ISO 8601 or an HTTP / RFC 822 date, as an aware datetime; ValueError otherwise."""
    from datetime import UTC
    from email.utils import parsedate_to_datetime

    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise ValueError(text) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _start_watermark(api: ApiConfig, stored: Any, *, since: str | None, full_refresh: bool) -> Any:
    if api.incremental is None:
        return None
    if since is not None:
        return since
    if full_refresh or stored is None:
        return api.incremental.initial
    return stored


def _base_params(api: ApiConfig, watermark: Any) -> dict[str, Any]:
    params = dict(api.params)
    if api.incremental and api.incremental.param and watermark is not None:
        params[api.incremental.param] = watermark
    return params


def _sender(src: SourceConfig, secrets: dict[str, str], statuses: Counter,
            spool_dir: Path | None) -> Callable[..., FetchResult]:
    api = src.api
    headers = {"Accept": "application/json", **api.headers}
    auth = api.auth
    if auth and auth.bearer_env:
        headers["Authorization"] = f"Bearer {secrets[auth.bearer_env]}"
    elif auth and auth.header:
        headers[auth.header] = secrets[auth.value_env]
    elif auth and auth.basic_user_env:
        import base64

        pair = f"{secrets[auth.basic_user_env]}:{secrets[auth.basic_password_env]}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    throttle = HostThrottle(api.rate_limit)
    hidden = tuple(secrets.values())

    def send(url: str, params: dict[str, Any] | None) -> FetchResult:
        host = urlsplit(url).netloc.lower()
        result = request(api.method, url, params=params or None, json_body=api.json, headers=headers,
                         timeout=src.timeout, retries=src.retries, retry_max_wait=src.retry_max_wait,
                         max_bytes=src.max_bytes or API_MAX_BYTES, spool_dir=spool_dir,
                         user_agent=src.user_agent, secrets=hidden, excerpt=True,
                         throttle=lambda: throttle.wait(host))
        statuses.update(str(s) for s in result.statuses)
        return result

    return send


def _collect_source(ds: Datastore, src: SourceConfig, run: Run, *, secrets: dict[str, str], full_refresh: bool,
                    since: str | None, max_pages: int | None, progress: Progress | None) -> None:
    api = src.api
    index = KeyIndex(_index_path(ds, src))
    try:
        state = load_state(ds, src.module, src.name)
        _replay(ds, src, index, state, run)
        folder = ds.data_dir(src.module, src.name, src.path)
        remove_stale_temp_files(folder)
        before = state.get("watermark")
        start = _start_watermark(api, before, since=since, full_refresh=full_refresh)
        for key in ("pages", "records", NEW, UPDATED, UNCHANGED, "requests", "retries"):
            run.counts.setdefault(key, 0)
        run.details.update(write=api.write, watermark_before=before, watermark_requested=start,
                           full_refresh=full_refresh, since=since)
        statuses: Counter = Counter()
        walk = Walk()
        index.begin(run.run_id)
        target = _target(ds, src, run.run_id)
        writer = JsonLinesWriter(target) if api.write == "append" else None
        mark = Mark()
        pages = None
        try:
            send = _sender(src, secrets, statuses, spool_dir=folder)
            pages = prefetched(iter_pages(api, send=send, params=_base_params(api, start), max_pages=max_pages,
                                          walk=walk, secrets=tuple(secrets.values())))
            for page in pages:
                run.count("pages")
                run.count("requests", page.result.attempts)
                run.count("retries", page.result.attempts - 1)
                for batch in _batched(page.records, 1000):
                    _consider(api, list(batch), page.number, index, writer, run, mark)
                if progress:
                    progress(f"page {page.number}", {"status": f"{run.counts['records']} records"})
            pages.close()  # joins the fetching thread: statuses and walk are final from here on
            if walk.truncated and api.write == "replace":
                raise PageError(f"the walk stopped early ({walk.stop_reason}) but write = \"replace\" needs the "
                                "full result; raise max_pages")
            published = _publish(ds, src, run, index, writer, target)
        except PageError as exc:
            raise ApiError(f"{exc}; nothing of this run was stored, the next run starts from "
                           f"watermark {before!r}") from None
        finally:
            if pages is not None:
                pages.close()
            if writer is not None:
                writer.abort()  # a no-op once published
            run.details["http_statuses"] = dict(sorted(statuses.items()))
            run.details["stop_reason"] = walk.stop_reason
            run.warnings += walk.warnings
            for spooled in walk.spooled:
                spooled.unlink(missing_ok=True)
        index.commit()
        highest = mark.highest
        if walk.truncated and not mark.ordered:
            run.warnings.append("the walk stopped early and the records were not in watermark order: the "
                                "watermark is kept, so the next run fetches them again (nothing is lost)")
            highest = None
        after = _next_watermark(before, highest, since=since, full_refresh=full_refresh)
        if api.incremental:
            state["watermark"] = after
        state["last_run_id"] = run.run_id
        save_state(ds, src.module, src.name, state)
        clear_journal(ds, src.module, src.name)
        run.details.update(watermark_after=after if api.incremental else None, truncated=walk.truncated,
                           published=published)
        if walk.truncated:
            run.warnings.append(f"stopped after {walk.pages} pages ({walk.stop_reason}); the rest comes next run")
    finally:
        index.close()


@dataclass
class Mark:
    """The watermark seen so far, and whether the records came in its order."""

    highest: Any = None
    last: Any = None
    ordered: bool = True


def _consider(api: ApiConfig, records: list[Any], page: int, index: KeyIndex, writer: JsonLinesWriter | None,
              run: Run, mark: Mark) -> None:
    """Classify a batch of records, write or stage what must be written, follow the watermark."""
    lines, pairs = [], []
    for record in records:
        line, digest = _serialize(record)
        lines.append(line)
        pairs.append((_key(api, record, page, digest), digest))
    verdicts = index.classify_many(pairs)
    cursor_field = api.incremental.cursor_field if api.incremental else None
    run.count("records", len(records))
    for record, line, (key, _), verdict in zip(records, lines, pairs, verdicts, strict=True):
        if verdict == REPEATED:
            run.count("repeated")
            continue
        run.count(verdict)
        if api.write == "replace" or (api.write == "merge" and verdict in (NEW, UPDATED)):
            index.stage_line(key, line)  # keyed: a record seen twice in one run is written once
        elif verdict in (NEW, UPDATED):
            writer.write_line(line)
        if cursor_field and isinstance(record, dict):
            value = record.get(cursor_field)
            if value is None:
                continue
            if mark.last is not None and newer(mark.last, value):
                mark.ordered = False
            mark.last = value
            if newer(value, mark.highest):
                mark.highest = value


def _next_watermark(before: Any, highest: Any, *, since: str | None, full_refresh: bool) -> Any:
    if full_refresh:
        return highest if highest is not None else before
    return highest if newer(highest, before) else before  # --since never saves a smaller one


def _publish(ds: Datastore, src: SourceConfig, run: Run, index: KeyIndex, writer: JsonLinesWriter | None,
             target: Path) -> bool:
    """Make this run's output visible (or decide there is nothing to publish)."""
    api = src.api
    changed = run.counts[NEW] + run.counts[UPDATED]
    if api.write == "append":
        if not changed:
            return False
    elif api.write == "merge":
        if not changed:
            return False
        writer = JsonLinesWriter(target)
        if target.exists():
            for line in read_lines(target):
                staged = index.take_staged(_key_of_line(api, line))
                writer.write_line(staged if staged is not None else line)
        for line in index.remaining_staged():
            writer.write_line(line)
    else:  # replace: exactly the records of this run
        run.count("removed", index.drop_unseen())
        if not changed and not run.counts["removed"] and target.exists():
            return False
        writer = JsonLinesWriter(target)
        for line in index.remaining_staged():
            writer.write_line(line)
    rel = str(target.relative_to(ds.module_dir(src.module)))
    write_files_journal(ds, src.module, src.name, run_id=run.run_id, files=[rel], write=api.write)
    try:
        writer.publish()
    finally:
        writer.abort()
    meta = {"run_id": run.run_id, "module": src.module, "source": src.name, "kind": "api",
            "fetched_at": iso(run.started), "records": writer.count, "sha256": writer.sha256,
            "write": api.write, "new": run.counts[NEW], "updated": run.counts[UPDATED],
            "url": redact_url(api.url), "watermark_before": run.details.get("watermark_before")}
    write_json(sidecar_path(target), meta)
    run.files += [ds.relative(target), ds.relative(sidecar_path(target))]
    return True


def _replay(ds: Datastore, src: SourceConfig, index: KeyIndex, state: dict[str, Any], run: Run) -> None:
    """Finish the bookkeeping of a run that died after publishing but before committing its index.

    The index takes in every record of the files the journal names (harmless if a
    file is still the previous version), and their sidecars are rebuilt.
    """
    journal = read_journal(ds, src.module, src.name)
    if not journal or "files" not in journal:
        return
    if not index.applied(journal["run_id"]):
        index.begin(journal["run_id"])
        folded = 0
        for rel in journal["files"]:
            path = ds.module_dir(src.module) / rel
            if not path.is_file():
                continue
            digest_of_file = hashlib.sha256()
            count = 0
            for line in read_lines(path):
                record = json.loads(line)
                digest = _serialize(record)[1]
                index.upsert(_key(src.api, record, 0, digest), digest)
                digest_of_file.update(line.encode() + b"\n")
                count += 1
            folded += count
            sidecar = read_json(sidecar_path(path)) or {}
            if sidecar.get("sha256") != digest_of_file.hexdigest():
                write_json(sidecar_path(path), {
                    "run_id": journal["run_id"], "module": src.module, "source": src.name, "kind": "api",
                    "records": count, "sha256": digest_of_file.hexdigest(), "write": journal.get("write"),
                    "url": redact_url(src.api.url), "recovered_by": run.run_id})
        index.commit()
        if folded:
            run.warnings.append(f"recovered run {journal['run_id']}: {folded} published records added to the index")
    clear_journal(ds, src.module, src.name)
