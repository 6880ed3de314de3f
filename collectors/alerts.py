"""`abi check` end to end: evaluate the checks, then tell a Slack-compatible webhook what changed.

The webhook URL is a credential (whoever has it can post to the channel), so it
is read from the environment variable named by `[alerts] webhook_env` at run
time and never written anywhere: not in messages, the alert state, or logs.
Errors are described by status or cause only, and every message still goes
through redaction with the URL as a secret in case a server echoes it.

Sending follows the collectors' HTTP conventions: tenacity with exponential
back-off on connection errors, timeouts, 429 (honouring Retry-After) and 5xx.
A webhook that still fails leaves the alert "not yet sent" in the state, so the
next run tries again, and the check exits 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from storage.alert_state import Message, mark_failed, mark_sent, plan, read_state, state_lock, write_state
from storage.checks import Finding, Node, run_checks, select_nodes
from storage.checks_config import AlertsConfig
from storage.config import Config
from storage.config_checks import is_http_url
from storage.errors import AbiError, ConfigError, SourceBusy
from storage.redact import redact_text
from storage.runs import utcnow

BACKOFF_S = 0.5  # first wait between attempts, doubled each time (tests make it tiny)
MAX_WAIT_S = 30.0  # no single wait (back-off or Retry-After) is longer than this
RETRY_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
Sender = Callable[[str, dict[str, Any], AlertsConfig], None]


class WebhookError(Exception):
    """The webhook did not take the message; `str()` is safe to print (no URL)."""


class _Retryable(WebhookError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class CheckReport:
    """What `abi check` found and what it told the webhook."""

    nodes: list[Node]
    findings: list[Finding]
    alerts: dict[str, Any] | None = None  # None: no [alerts] configured
    warnings: list[str] = field(default_factory=list)

    @property
    def checked(self) -> list[Node]:
        return [n for n in self.nodes if n.checks.enabled]

    @property
    def exit_code(self) -> int:
        """1 when something is wrong, or when the webhook could not be told (it is tried again next run)."""
        return 1 if self.findings or (self.alerts or {}).get("error") else 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.exit_code == 0, "nodes": len(self.checked),
                "disabled": [n.name for n in self.nodes if not n.checks.enabled],
                "findings": [f.as_dict() for f in self.findings], "alerts": self.alerts, "warnings": self.warnings}


LOCK_WAIT_S = 60.0


def webhook_url(alerts: AlertsConfig, environ: Mapping[str, str] | None = None) -> str:
    """The URL from the environment; a missing or malformed one is a config error that never echoes the value."""
    env = os.environ if environ is None else environ
    url = (env.get(alerts.webhook_env) or "").strip()
    if not url:
        raise ConfigError(f"[alerts] webhook_env: the environment variable {alerts.webhook_env} is not set; "
                          f"export it with the webhook's URL (e.g. https://hooks.slack.com/services/...)")
    if not is_http_url(url):
        raise ConfigError(f"[alerts] webhook_env: the environment variable {alerts.webhook_env} must hold an "
                          f"http(s) URL (its value is not shown: it is a secret)")
    return url


def check_and_alert(*, config: Config, module: str | None = None, now: datetime | None = None,
                    environ: Mapping[str, str] | None = None, send: Sender | None = None) -> CheckReport:
    """Run the checks; with [alerts], post new findings and resolutions once each and save the state.

    The webhook variable is read first, so a missing one fails (exit 2) before any work.
    """
    now = now or utcnow()
    url = webhook_url(config.alerts, environ) if config.alerts is not None else None
    nodes = select_nodes(config, module)
    report = CheckReport(nodes=nodes, findings=run_checks(config=config, module=module, now=now))
    if url is not None:
        try:
            report.alerts = _notify(config, module, report, url, now, send or post_webhook)
        except AbiError as exc:  # e.g. the alert state cannot be written: the findings still get printed
            report.alerts = {"sent": [], "resolved": [], "pending": [], "error": str(exc)}
            report.warnings.append(f"alerts: {exc}")
    return report


def _notify(config: Config, module: str | None, report: CheckReport, url: str, now: datetime,
            send: Sender) -> dict[str, Any]:
    ds, alerts = config.datastore, config.alerts
    assert alerts is not None
    done: dict[str, Any] = {"sent": [], "resolved": [], "pending": [], "error": None}
    lock = state_lock(ds)
    deadline = time.monotonic() + LOCK_WAIT_S  # an overlapping check (another module's cron line) is short
    while True:
        try:
            lock.acquire()
            break
        except SourceBusy:
            if time.monotonic() >= deadline:
                report.warnings.append("alerts: another abi check has been sending alerts for over a minute; "
                                       "this run sent none (they go out next run)")
                done["skipped"] = "busy"
                return done
            time.sleep(0.2)
    try:
        state = read_state(ds)
        before = repr(state)
        messages = plan(state, report.findings, now=now, repeat_after_s=alerts.repeat_after_s,
                        cleared=_cleared_reason(config, module, report.nodes))
        for i, message in enumerate(messages):
            try:
                send(url, payload(message), alerts)
            except WebhookError as exc:
                error = redact_text(str(exc), _secrets(url))
                mark_failed(state, message, error, now)
                left = len(messages) - i
                done["error"], done["pending"] = error, [m.key for m in messages[i:]]
                report.warnings.append(f"alerts: the webhook failed: {error}; {left} message{'s' if left > 1 else ''}"
                                       " kept for the next run")
                break
            mark_sent(state, message, now)
            done["resolved" if message.action == "resolved" else "sent"].append(message.key)
            write_state(ds, state)  # after each send: a crash right after must not send this one again
        if repr(state) != before:
            write_state(ds, state)
    finally:
        lock.release()
    done["open"] = sorted(state["alerts"])
    return done


def _cleared_reason(config: Config, module: str | None, nodes: list[Node]) -> Callable[[dict[str, Any]], str | None]:
    """Why an alert with no finding this run is over, or None when this run did not look at its node."""
    by_name = {n.name: n for n in nodes}
    configured = {n.name for n in select_nodes(config)}

    def reason(entry: dict[str, Any]) -> str | None:
        node = by_name.get(entry["node"])
        if node is not None:
            return "the check passes again" if node.checks.enabled else "its checks were disabled"
        if entry["node"] not in configured and (module is None or entry.get("module") == module):
            return "no longer in the configuration"
        return None

    return reason


def payload(message: Message) -> dict[str, Any]:
    """Slack's incoming-webhook body: `text` is all a Slack, Mattermost or Rocket.Chat hook needs."""
    return {"text": message.text}


def post_webhook(url: str, body: dict[str, Any], alerts: AlertsConfig) -> None:
    """POST `body` as JSON with retries; raise WebhookError (no URL in it) when it still fails."""
    from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_WAIT_S)
        return min(MAX_WAIT_S, BACKOFF_S * 2 ** (state.attempt_number - 1))

    attempts = 0

    def once() -> None:
        nonlocal attempts
        attempts += 1
        _post_once(url, body, alerts.timeout)

    try:
        for attempt in Retrying(stop=stop_after_attempt(alerts.retries + 1), wait=wait,
                                retry=retry_if_exception_type(_Retryable), reraise=True):
            with attempt:
                once()
    except WebhookError as exc:
        suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
        raise WebhookError(redact_text(f"{exc}{suffix}", _secrets(url))) from None


def _post_once(url: str, body: dict[str, Any], timeout: float) -> None:
    import requests

    from collectors.http import default_user_agent, parse_retry_after

    try:
        # No redirects: a redirected POST means a wrong URL, and following it could carry the body elsewhere.
        # stream=True: the body of a 2xx is never read, and a 4xx's only in part, so a receiver that
        # trickles or sends a huge answer cannot hold the check (and the alert lock) for ever
        resp = requests.post(url, json=body, timeout=(min(timeout, 10.0), timeout), allow_redirects=False,
                             headers={"User-Agent": default_user_agent()}, stream=True)
    except requests.exceptions.Timeout:
        raise _Retryable(f"timed out after {timeout:g}s") from None
    except requests.exceptions.ConnectionError as exc:
        refused = "refused" in str(exc).lower()
        raise _Retryable("connection refused" if refused else "connection failed") from None
    except Exception as exc:  # invalid URLs surface from urllib3 as other exceptions: the URL is never echoed
        raise WebhookError(f"request failed ({type(exc).__name__})") from None
    with resp:
        status = resp.status_code
        if 200 <= status < 300:
            return
        text = f"HTTP {status} {resp.reason or ''}".strip()
        detail = ""
        if status < 500:
            try:
                detail = " ".join(resp.raw.read(400, decode_content=True).decode("utf-8", "replace")[:120].split())
            except Exception:
                detail = ""
        if detail:
            text += f": {detail}"  # Slack explains a 4xx in the body: invalid_token, channel_is_archived, ...
        if status in RETRY_STATUSES:
            raise _Retryable(text, parse_retry_after(resp.headers.get("Retry-After")))
        raise WebhookError(text)


def _secrets(url: str) -> tuple[str, ...]:
    """The URL and its path and query (the token part of a Slack hook) are masked in any message."""
    parts = urlsplit(url)
    pieces = [url, parts.path, parts.query, *[p for p in parts.path.split("/") if len(p) >= 6]]
    return tuple(p for p in pieces if p and p != "/")
