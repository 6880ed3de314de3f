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

import itertools
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collectors.http import FetchResult, request
from collectors.pagination import PageError, Walk, iter_pages, prefetched
from collectors.ratelimit import HostThrottle
from storage.api_config import ApiConfig, resolve_secrets
from storage.config import Config, SourceConfig
from storage.datasets import DatasetSpec, RecordSink, batched
from storage.errors import AbiError, UsageError
from storage.jobs import run_job
from storage.partitions import record_partition
from storage.paths import Datastore
from storage.redact import redact_url
from storage.runs import Run
from storage.state import load_state, save_state
from storage.watermarks import next_watermark

Progress = Callable[[str, dict[str, Any]], None]
API_MAX_BYTES = 2**31 - 1  # one response; above 8 MiB it is spooled to disk, not held in memory

log = logging.getLogger("abi.collectors.api")


class ApiError(AbiError):
    """The API answered something the job cannot use; the run failed and stored nothing."""


def collect_api(*, config: Config, source: str | None = None, module: str | None = None,
                full_refresh: bool = False, since: str | None = None, max_pages: int | None = None,
                partition: str | None = None, wait: bool = False, command: list[str] | None = None,
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the API job for each selected source (or one partition of one); one run record per source."""
    sources = config.select_kind("api", source=source, module=module)
    if partition is not None:
        if source is None:
            raise UsageError("--partition needs --source NAME")
        _partition_params(sources[0], partition)  # a bad key or a source without partitions: exit 2, no work
    credentials = {src.name: resolve_secrets(src.api.auth, src.name) for src in sources}  # exit 2 before work
    records = []
    for src in sources:
        def work(run: Run, src: SourceConfig = src) -> None:
            _collect_source(config.datastore, src, run, secrets=credentials[src.name], full_refresh=full_refresh,
                            since=since, max_pages=max_pages, progress=progress, partition=partition)

        record = run_job(ds=config.datastore, module=src.module, source=src.name, kind="api",
                         command=command or ["abi", "collect", "api"], work=work, wait=wait,
                         interval_s=src.interval_s, secrets=tuple(credentials[src.name].values()),
                         partition=partition)
        if partition is not None and record["status"] != "skipped":
            record_partition(config.datastore, src.module, src.name, partition, record)
        records.append(record)
    return records


def _partition_params(src: SourceConfig, key: str) -> dict[str, Any]:
    """The source's params with {partition_start} / {partition_end} filled in (UTC, ISO 8601)."""
    if src.partitions is None:
        raise UsageError(f"--partition needs a source with partitions = \"daily\" (or hourly, monthly); "
                         f"{src.name} has none")
    start, end = src.partitions.window(key)
    values = {"partition_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "partition_end": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    params = {k: v.format(**values) if isinstance(v, str) else v for k, v in src.api.params.items()}
    if params == src.api.params:
        raise UsageError(f"[sources.{src.name}] params use neither {{partition_start}} nor {{partition_end}}: "
                         "a partition run would fetch the same thing as any other")
    return params


def preview_api(*, config: Config, source: str | None, since: str | None = None,
                full_refresh: bool = False) -> dict[str, Any]:
    """Fetch the first page and say what a run would write; nothing is stored or locked."""
    if source is None:
        raise UsageError("--dry-run needs --source NAME")
    (src,) = config.select_kind("api", source=source)
    api = src.api
    secrets = resolve_secrets(api.auth, src.name)
    state = load_state(config.datastore, src.module, src.name, recover=False) if not full_refresh else {}
    start = _start_watermark(api, state.get("watermark"), since=since, full_refresh=full_refresh)
    walk = Walk()
    send = _sender(src, secrets, Counter(), spool_dir=None)
    try:
        (page,) = list(iter_pages(api, send=send, params=_base_params(api, start), max_pages=1, walk=walk,
                                  secrets=tuple(secrets.values())))
    except PageError as exc:
        raise ApiError(f"{src.name}: {exc}") from None
    sink = RecordSink(config.datastore, _spec(config.datastore, src), Run(src.module, src.name, "api", []))
    try:
        would = sink.peek(list(page.records), "page 1")
    finally:
        sink.close()
    return {"source": src.name, "url": redact_url(api.url), "watermark": start, "records_on_first_page":
            page.count, "would_write": dict(would), "write": api.write,
            "target": config.datastore.relative(_spec(config.datastore, src).target("<run id>")),
            "sample": list(itertools.islice(page.records, 3)), "more_pages": walk.truncated}


def _spec(ds: Datastore, src: SourceConfig, partition: str | None = None) -> DatasetSpec:
    api = src.api
    return DatasetSpec(module=src.module, source=src.name, kind="api",
                       folder=ds.data_dir(src.module, src.name, src.path),
                       write=api.write if partition is None else "replace", partition=partition,
                       primary_key=api.primary_key,
                       cursor_field=api.incremental.cursor_field if api.incremental else None,
                       provenance={"url": redact_url(api.url)})


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
                    since: str | None, max_pages: int | None, progress: Progress | None,
                    partition: str | None = None) -> None:
    api = src.api
    spec = _spec(ds, src, partition)
    sink = RecordSink(ds, spec, run)
    try:
        # a partition run reads its own window and never touches the watermark
        state = load_state(ds, src.module, src.name) if partition is None else {}
        sink.open()
        before = state.get("watermark")
        start = _start_watermark(api, before, since=since, full_refresh=full_refresh) if partition is None else None
        base = _base_params(api, start) if partition is None else _partition_params(src, partition)
        for key in ("pages", "requests", "retries"):
            run.counts.setdefault(key, 0)
        run.details.update(write=api.write, watermark_before=before, watermark_requested=start,
                           full_refresh=full_refresh, since=since)
        statuses: Counter = Counter()
        walk = Walk()
        pages = None
        try:
            send = _sender(src, secrets, statuses, spool_dir=spec.folder)
            pages = prefetched(iter_pages(api, send=send, params=base, max_pages=max_pages,
                                          walk=walk, secrets=tuple(secrets.values())))
            for page in pages:
                run.count("pages")
                run.count("requests", page.result.attempts)
                run.count("retries", page.result.attempts - 1)
                for batch in batched(page.records, 1000):
                    sink.add(list(batch), f"page {page.number}")
                log.info("page %s: HTTP %s, %s records so far", page.number, page.result.status,
                         run.counts["records"])
                if progress:
                    progress(f"page {page.number}", {"status": f"{run.counts['records']} records"})
            pages.close()  # joins the fetching thread: statuses and walk are final from here on
            if walk.truncated and api.write == "replace":
                raise PageError(f"the walk stopped early ({walk.stop_reason}) but write = \"replace\" needs the "
                                "full result; raise max_pages")
            published = sink.publish()
        except PageError as exc:
            raise ApiError(f"{exc}; nothing of this run was stored, the next run starts from "
                           f"watermark {before!r}") from None
        finally:
            if pages is not None:
                pages.close()
            run.details["http_statuses"] = dict(sorted(statuses.items()))
            run.details["stop_reason"] = walk.stop_reason
            run.warnings += walk.warnings
            for spooled in walk.spooled:
                spooled.unlink(missing_ok=True)
        sink.commit()
        highest = sink.mark.highest
        if walk.truncated and not sink.mark.ordered:
            run.warnings.append("the walk stopped early and the records were not in watermark order: the "
                                "watermark is kept, so the next run fetches them again (nothing is lost)")
            highest = None
        after = next_watermark(before, highest, full_refresh=full_refresh)
        if partition is None:
            if api.incremental:
                state["watermark"] = after
            state["last_run_id"] = run.run_id
            save_state(ds, src.module, src.name, state)
        else:
            after = None
        sink.finish()
        run.details.update(watermark_after=after if api.incremental else None, truncated=walk.truncated,
                           published=published)
        if walk.truncated:
            run.warnings.append(f"stopped after {walk.pages} pages ({walk.stop_reason}); the rest comes next run")
    finally:
        sink.close()
