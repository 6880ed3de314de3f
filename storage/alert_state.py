"""Alert state: which findings the webhook has been told about, so each is sent once and resolved once.

`abi check` runs every few minutes from cron; without memory it would page on
every run while a source stays broken. The state (`<datastore>/alerts/state.json`,
keyed by node/rule) records when each open finding was sent. A finding whose
send failed stays "not yet sent" and is tried again by the next run; a finding
that clears gets one "resolved" message (only if its alert was ever sent: nobody
needs the resolution of an alert they never saw). The webhook URL is never
stored here: it is a secret and lives only in the environment.

Planning is a pure function of (state, findings, clock) so the rules can be read
and tested without a network; the caller sends and then marks each message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.atomic import read_json, write_json
from storage.checks import Finding
from storage.errors import AbiError
from storage.locks import SourceLock
from storage.paths import Datastore
from storage.runs import iso

STATE_VERSION = 1


@dataclass(frozen=True)
class Message:
    """One post to the webhook: a new alert, a reminder (repeat_after) or a resolution."""

    key: str
    action: str  # "alert", "repeat" or "resolved"
    text: str


def state_path(ds: Datastore) -> Path:
    return ds.root / "alerts" / "state.json"


def state_lock(ds: Datastore) -> SourceLock:
    """Held while a check plans and sends, so two overlapping `abi check` runs never send the same alert twice."""
    return SourceLock(ds.root / "alerts" / "state.lock")


_ENTRY_KEYS = ("node", "module", "rule", "opened_at")


def read_state(ds: Datastore) -> dict[str, Any]:
    """The alert state; entries damaged by hand edits are dropped (their alert is sent again if still open).

    A check must never go silent because of its own bookkeeping: the findings matter more than
    remembering that one was sent.
    """
    try:
        data = read_json(state_path(ds)) or {}
    except AbiError:
        data = {}
    raw = data.get("alerts") if isinstance(data, dict) and isinstance(data.get("alerts"), dict) else {}
    alerts = {key: entry for key, entry in raw.items() if _valid(entry)}
    return {"version": STATE_VERSION, "alerts": alerts}


def _valid(entry: Any) -> bool:
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in _ENTRY_KEYS):
        return False
    for key in ("opened_at", "sent_at"):
        value = entry.get(key)
        if value is not None:
            try:
                datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                return False
    return True


def write_state(ds: Datastore, state: dict[str, Any]) -> None:
    write_json(state_path(ds), state)


def plan(state: dict[str, Any], findings: list[Finding], *, now: datetime, repeat_after_s: int | None,
         cleared: Callable[[dict[str, Any]], str | None]) -> list[Message]:
    """Update `state` for this run's findings and return what to send, alerts first, then resolutions.

    `cleared(entry)` says why an open alert without a finding this run is over
    ("the check passes again", "checks disabled", ...), or None when this run did
    not look at its node (`--module` chose another module): such alerts are left alone.
    """
    alerts: dict[str, dict[str, Any]] = state["alerts"]
    out: list[Message] = []
    current = {f.key: f for f in findings}
    for key, finding in current.items():
        entry = alerts.get(key)
        if entry is None:
            entry = alerts[key] = {"node": finding.node, "module": finding.module, "kind": finding.kind,
                                   "rule": finding.rule, "message": finding.message, "opened_at": iso(now),
                                   "sent_at": None, "sends": 0}
        entry["status"] = "open"  # a finding back before its resolution went out: the receiver still sees it open
        entry.pop("resolved_reason", None)
        if entry.get("sent_at") is None:
            entry["message"] = finding.message  # not sent yet: send the latest numbers
            out.append(Message(key, "alert", alert_text(finding)))
        elif repeat_after_s is not None and _age(entry["sent_at"], now) >= repeat_after_s:
            out.append(Message(key, "repeat", alert_text(finding, since=entry["opened_at"])))
    for key, entry in list(alerts.items()):
        if key in current:
            continue
        reason = cleared(entry)
        if reason is None:
            continue
        if entry.get("sent_at") is None:
            del alerts[key]  # never seen by anyone: nothing to resolve
            continue
        entry["status"], entry["resolved_reason"] = "resolving", reason
        out.append(Message(key, "resolved", resolved_text(entry, reason)))
    return out


def mark_sent(state: dict[str, Any], message: Message, now: datetime) -> None:
    alerts = state["alerts"]
    if message.action == "resolved":
        alerts.pop(message.key, None)
        return
    entry = alerts[message.key]
    entry["sent_at"] = iso(now)
    entry["sends"] = entry.get("sends", 0) + 1
    entry.pop("last_error", None)


def mark_failed(state: dict[str, Any], message: Message, error: str, now: datetime) -> None:
    """Keep the message due: an alert stays "not yet sent", a resolution stays "resolving"."""
    entry = state["alerts"].get(message.key)
    if entry is not None:
        entry["last_error"] = {"at": iso(now), "message": error}


def alert_text(finding: Finding, *, since: str | None = None) -> str:
    prefix = f"[abi] still open since {since[:16]}Z: " if since else "[abi] "
    return f"{prefix}{finding.node} ({finding.kind}, module {finding.module}): {finding.rule}: {finding.message}"


def resolved_text(entry: dict[str, Any], reason: str) -> str:
    return (f"[abi] resolved: {entry['node']} ({entry.get('kind', 'node')}, module {entry['module']}): "
            f"{entry['rule']}: {reason} (open since {entry['opened_at'][:16]}Z; it was: {entry['message']})")


def _age(stamp: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()

