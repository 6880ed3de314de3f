"""HTTP fetching shared by the collectors: conditional GET, retries, size cap.

Retries use tenacity with exponential back-off and jitter, and honour a
server's Retry-After (seconds or HTTP-date) up to `retry_max_wait`, so a
flaky or rate-limiting source is retried politely and reported, not hammered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from storage.redact import redact_text, redact_url
from storage.runs import utcnow

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504}) | frozenset(range(520, 530))
PERMANENT_REDIRECTS = (301, 308)
_local = threading.local()


def default_user_agent() -> str:
    from storage.runs import tool_version

    return f"abi-orchestration/{tool_version()} (+feed collector; python-requests)"


class RetryableError(Exception):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class FetchError(Exception):
    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class FetchResult:
    url: str
    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    final_url: str | None = None
    permanent_redirect: str | None = None  # unredacted: redact before showing
    attempts: int = 0
    statuses: list[int] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0
    body_path: Path | None = None  # set instead of `body` when a large response was spooled to disk

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def gone(self) -> bool:
        return self.status == 410


def session() -> requests.Session:
    """One keep-alive session per worker thread (requests.Session is not thread-safe)."""
    sess = getattr(_local, "session", None)
    if sess is None:
        sess = requests.Session()
        _local.session = sess
    return sess


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())


def _wait(retry_max_wait: float):
    initial = min(0.5, retry_max_wait / 4)

    def wait(state: RetryCallState) -> float:
        import random

        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, retry_max_wait)
        backoff = initial * (2 ** (state.attempt_number - 1))
        return min(retry_max_wait, backoff + random.uniform(0, initial))

    return wait


def fetch(url: str, *, etag: str | None = None, last_modified: str | None = None,
          accept: str = "*/*", **options: Any) -> FetchResult:
    """Conditional GET of `url` (feeds): see `request` for the options."""
    headers = {"Accept": accept}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return request("GET", url, headers=headers, **options)


def request(method: str, url: str, *, params: dict[str, Any] | None = None, json_body: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 20.0, retries: int = 4,
            retry_max_wait: float = 60.0, max_bytes: int = 10 * 1024 * 1024, user_agent: str | None = None,
            secrets: tuple[str, ...] = (), excerpt: bool = False,
            throttle: Callable[[], None] | None = None, spool_dir: Path | None = None,
            spool_over: int = 8 * 1024 * 1024) -> FetchResult:
    """Send one HTTP request with retries; never raises for HTTP or network trouble, reports it instead.

    `secrets` are masked in every message; `excerpt` adds the start of an error
    response's body to a 4xx failure; `throttle` is called before each attempt
    (rate limits). With `spool_dir`, a body larger than `spool_over` bytes goes
    to a hidden file there (`body_path`) instead of memory; the caller deletes it.
    """
    result = FetchResult(url=url)
    sent = {"User-Agent": user_agent or default_user_agent(), "Accept": "*/*",
            "Accept-Encoding": "gzip, deflate", **(headers or {})}
    call = _Call(method=method, url=url, params=params, json_body=json_body, headers=sent, timeout=timeout,
                 max_bytes=max_bytes, retry_max_wait=retry_max_wait, excerpt=excerpt, spool_dir=spool_dir,
                 spool_over=spool_over)
    t0 = time.monotonic()

    def attempt() -> None:
        result.attempts += 1
        if throttle is not None:
            throttle()
        _send_once(call, result)

    try:
        for try_ in Retrying(stop=stop_after_attempt(retries + 1), wait=_wait(retry_max_wait),
                             retry=retry_if_exception_type(RetryableError), reraise=True):
            with try_:
                attempt()
    except (RetryableError, FetchError) as exc:
        result.error = redact_text(str(exc), secrets)
        if exc.status is not None:
            result.status = exc.status
        if result.attempts > 1:
            result.error += f" (after {result.attempts} attempts)"
    result.elapsed_s = round(time.monotonic() - t0, 3)
    return result


@dataclass
class _Call:
    method: str
    url: str
    params: dict[str, Any] | None
    json_body: Any
    headers: dict[str, str]
    timeout: float
    max_bytes: int
    retry_max_wait: float
    excerpt: bool
    spool_dir: Path | None = None
    spool_over: int = 8 * 1024 * 1024


def _send_once(call: _Call, result: FetchResult) -> None:
    timeout = call.timeout
    deadline = time.monotonic() + 3 * timeout  # a server dripping bytes must not hold the lock forever
    try:
        resp = session().request(call.method, call.url, params=call.params, json=call.json_body,
                                 headers=call.headers, timeout=(min(timeout, 10.0), timeout), stream=True)
    except requests.exceptions.Timeout:
        raise RetryableError(f"timed out after {timeout:g}s") from None
    except requests.exceptions.ConnectionError as exc:
        raise RetryableError(f"connection failed: {_reason(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise FetchError(f"request failed: {_reason(exc)}") from None
    with resp:
        result.statuses.append(resp.status_code)
        result.permanent_redirect = _permanent_target(resp) or result.permanent_redirect
        status = resp.status_code
        if status in RETRY_STATUSES:
            message = f"HTTP {status} {resp.reason or ''}".strip()
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if retry_after is not None and retry_after > call.retry_max_wait:
                raise FetchError(f"{message}: the server asks to wait {retry_after:.0f}s, more than "
                                 f"retry_max_wait={call.retry_max_wait:g}s; it will be tried on the next run",
                                 status=status)
            raise RetryableError(message, status=status, retry_after=retry_after)
        result.status = status
        result.headers = {k.lower(): v for k, v in resp.headers.items()}
        result.final_url = resp.url
        if status == 304 or status == 410:
            return
        if status >= 400:
            detail = _excerpt(resp) if call.excerpt else ""
            raise FetchError(f"HTTP {status} {resp.reason or ''}".strip() + detail, status=status)
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > call.max_bytes:
            raise FetchError(f"response of {declared} bytes exceeds max_bytes={call.max_bytes}", status=status)
        chunks: list[bytes] = []
        size = 0
        spool = None
        try:
            for chunk in resp.iter_content(65536):
                if time.monotonic() > deadline:
                    raise RetryableError(f"download too slow: not finished after {3 * timeout:g}s")
                size += len(chunk)
                if size > call.max_bytes:
                    raise FetchError(f"response exceeds max_bytes={call.max_bytes}", status=status)
                if spool is None and call.spool_dir is not None and size > call.spool_over:
                    spool = _open_spool(call.spool_dir)
                    spool.writelines(chunks)
                    chunks = []
                if spool is not None:
                    spool.write(chunk)
                else:
                    chunks.append(chunk)
        except requests.exceptions.RequestException as exc:
            _discard(spool)
            raise RetryableError(f"connection broken while reading: {_reason(exc)}") from None
        except BaseException:
            _discard(spool)
            raise
        if spool is not None:
            spool.close()
            result.body, result.body_path = b"", Path(spool.name)
        else:
            result.body = b"".join(chunks)


def _open_spool(folder: Path):
    """A hidden temp file named like storage's temp files, so a killed run's leftovers get cleaned."""
    import os
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.NamedTemporaryFile(
        dir=folder, prefix=".spool-", suffix=f".{os.getpid()}-{threading.get_native_id()}.tmp", delete=False)


def _discard(spool) -> None:
    if spool is not None:
        spool.close()
        Path(spool.name).unlink(missing_ok=True)


def _excerpt(resp: requests.Response, limit: int = 160) -> str:
    """The start of an error body, on one line: APIs explain a 4xx there."""
    try:
        raw = next(resp.iter_content(limit * 4), b"")
    except requests.exceptions.RequestException:
        return ""
    text = " ".join(raw.decode("utf-8", "replace").split())[:limit]
    return f": {text}" if text else ""


def _permanent_target(resp: requests.Response) -> str | None:
    """Where an unbroken chain of 301/308 hops from the requested URL ends, if there was one."""
    target = None
    for i, hop in enumerate(resp.history):
        if hop.status_code not in PERMANENT_REDIRECTS:
            break
        target = resp.history[i + 1].url if i + 1 < len(resp.history) else resp.url
    return target


def _reason(exc: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 error, without the URL repeated."""
    inner: Any = exc
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    text = str(getattr(inner, "reason", None) or inner)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "Failed to resolve" in text:
        return "host name not found"
    if "IncompleteRead" in text or "incomplete" in text.lower():
        return "incomplete read (the server closed the connection early)"
    return redact_url(text.split(": ", 1)[-1] if "Max retries" in text else text)[:200]
