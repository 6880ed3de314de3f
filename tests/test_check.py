"""`abi check`: freshness, failures, silence and drops from real run histories; alerts to a real local webhook.

Histories are written by the real job machinery (`storage.jobs.run_job`, so run
records, the run index and the per-source summaries are the ones collectors
leave) with `storage.runs.utcnow` moved by an injected clock; checks are then
evaluated at that clock's time, through the library and through the CLI.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import collectors.alerts
import storage.runs
from storage.alert_state import read_state, state_lock, state_path
from storage.config import Config, load_config
from storage.errors import AbiError
from storage.jobs import run_job
from storage.runs import Run
from tests.conftest import Result, run_cli

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
HOOK_VAR = "ABI_TEST_ALERT_WEBHOOK"
TOKEN = "T0SECRET/B0SECRET/xoxb-fake-secret-token-4f9a2c"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def arg(self) -> str:
        """The clock as `abi check --now`, so the CLI judges at the same moment."""
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(T0)
    monkeypatch.setattr(storage.runs, "utcnow", c)
    return c


class Receiver:
    """A Slack-like incoming webhook on 127.0.0.1: records every JSON body, answers from a script."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.replies: list[int] = []  # statuses to answer next, then `default`
        self.default = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.bodies.append({"path": self.path, "json": json.loads(body)})
                    status = receiver.replies.pop(0) if receiver.replies else receiver.default
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"server trouble")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"

    def texts(self) -> list[str]:
        return [b["json"]["text"] for b in self.bodies]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    rec = Receiver()
    thread = threading.Thread(target=rec.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    monkeypatch.setenv(HOOK_VAR, rec.url)
    monkeypatch.setattr(collectors.alerts, "BACKOFF_S", 0.01)  # real retries, without the real waits
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


def write_config(tmp_path: Path, *, news_checks: str = "", alerts: bool = False, extra: str = "") -> Path:
    """`news` (interval 30m) in module abi, `other` (no interval) in module ops; never fetched over the network."""
    text = f"""
[sources.news]
kind = "rss"
module = "abi"
interval = "30m"
feeds = [{{ url = "http://127.0.0.1:9/news.xml" }}]
{f"checks = {{ {news_checks} }}" if news_checks else ""}

[sources.other]
kind = "rss"
module = "ops"
feeds = [{{ url = "http://127.0.0.1:9/other.xml" }}]
{extra}
"""
    if alerts:
        text += f'\n[alerts]\nwebhook_env = "{HOOK_VAR}"\nretries = 2\ntimeout = 5\n'
    path = tmp_path / "abi.toml"
    path.write_text(text)
    return path


def run(cfg: Config, name: str, *, status: str = "success", new: int = 0, records: int | None = None,
        kind: str = "rss", **counts: int) -> dict[str, Any]:
    """One run of `name` through the real job machinery, ending as asked, at the clock's time."""
    module = cfg.module_of(name)
    interval = cfg.sources[name].interval_s if name in cfg.sources else None

    def work(r: Run) -> None:
        if status == "failed":
            raise AbiError("HTTP 500 from http://127.0.0.1:9/news.xml")
        if not counts:
            r.count("new", new)
        r.counts.update(counts)
        if records is not None:
            r.counts["records"] = records
        if status == "partial":
            r.status, r.reason = "partial", "1 of 3 feeds failed"

    return run_job(ds=cfg.datastore, module=module, source=name, kind=kind, command=["test"], work=work,
                   interval_s=interval)


def check(config: Path, clock: Clock, *args: str) -> Result:
    return run_cli("check", "--config", str(config), "--now", clock.arg(), *args)


def rules(findings: list[Any]) -> list[tuple[str, str]]:
    return [(f.node, f.rule) for f in findings]


# -- rules ----------------------------------------------------------------------------------------------------------


def test_fresh_nodes_are_ok(tmp_path: Path, clock: Clock) -> None:
    path = write_config(tmp_path)
    cfg = load_config(path)
    run(cfg, "news", new=5)
    clock.advance(minutes=59)  # within 2 x interval
    result = check(path, clock)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "all 2 nodes OK\n", "")
    data = json.loads(check(path, clock, "--json").stdout)
    assert (data["ok"], data["nodes"], data["findings"], data["alerts"]) == (True, 2, [], None)


def test_stale_when_the_last_success_is_older_than_max_age(tmp_path: Path, clock: Clock) -> None:
    from storage.checks import run_checks

    path = write_config(tmp_path)
    cfg = load_config(path)
    (never,) = run_checks(config=cfg, now=clock())
    assert (never.node, never.rule) == ("news", "stale") and never.message.startswith("never ran")
    run(cfg, "news", new=5)
    clock.advance(minutes=30)
    run(cfg, "news", status="failed")
    assert run_checks(config=cfg, now=clock.advance(minutes=29)) == []  # 59 minutes since the success
    (stale,) = run_checks(config=cfg, now=clock.advance(minutes=2))
    assert stale.values["age_s"] == 61 * 60 and stale.values["max_age_s"] == 3600
    assert stale.message == ("last success 1h 1m ago (2026-03-02T09:00:00Z), more than max_age 1h = 2 x interval "
                             "30m; last run failed: HTTP 500 from http://127.0.0.1:9/news.xml")
    result = check(path, clock)
    assert result.exit_code == 1 and result.stderr == ""
    assert result.stdout == f"news  stale    {stale.message}\n"


def test_configured_max_age_overrides_the_interval_and_other_nodes_need_one(tmp_path: Path, clock: Clock) -> None:
    from storage.checks import run_checks

    extra = """
[aggregates.digest]
module = "abi"
inputs = ["news"]
key = "url"
checks = { max_age = "2h" }

[bridges.graph]
module = "abi"
input = "digest"
pipeline = "builtin:news"
"""
    path = write_config(tmp_path, news_checks='max_age = "10m"', extra=extra)
    cfg = load_config(path)
    for name, kind in (("news", "rss"), ("other", "rss"), ("digest", "aggregate"), ("graph", "bridge")):
        run(cfg, name, new=1, kind=kind)
    clock.advance(hours=1)
    assert rules(run_checks(config=cfg, now=clock())) == [("news", "stale")]  # other, graph: no age rule
    assert rules(run_checks(config=cfg, now=clock.advance(hours=2))) == [("news", "stale"), ("digest", "stale")]
    assert json.loads(check(path, clock, "--json").stdout)["nodes"] == 4


def test_a_bridge_counts_its_new_records_as_new_items(tmp_path: Path, clock: Clock) -> None:
    from storage.checks import run_checks

    extra = """
[bridges.graph]
module = "abi"
input = "news"
pipeline = "builtin:news"
checks = { min_new_items = 5, window = "1h" }
"""
    cfg = load_config(write_config(tmp_path, news_checks='max_age = "30d"', extra=extra))
    run(cfg, "news", new=9)
    run(cfg, "graph", kind="bridge", records_read=9, records_new=3, triples_added=40)
    (silent,) = run_checks(config=cfg, now=clock())
    assert (silent.node, silent.rule, silent.values["new"]) == ("graph", "silent", 3)
    run(cfg, "graph", kind="bridge", records_read=2, records_new=2, triples_added=10)
    assert run_checks(config=cfg, now=clock()) == []


def test_failing_after_three_failures_in_a_row(tmp_path: Path, clock: Clock) -> None:
    from storage.checks import run_checks

    path = write_config(tmp_path, news_checks='max_age = "30d"')
    cfg = load_config(path)
    run(cfg, "news", new=5)
    run(cfg, "news", status="failed")
    run(cfg, "news", status="partial")
    assert run_checks(config=cfg, now=clock()) == []
    run(cfg, "news", status="failed")
    (failing,) = run_checks(config=cfg, now=clock())
    assert (failing.rule, failing.values["consecutive_failures"]) == ("failing", 3)
    assert failing.message == ("3 failed runs in a row (max_consecutive_failures 3); "
                               "last run failed: HTTP 500 from http://127.0.0.1:9/news.xml")
    result = check(path, clock, "--module", "abi")
    assert result.exit_code == 1 and result.stdout == f"news  failing  {failing.message}\n"


def test_silent_when_too_few_new_items_over_the_window(tmp_path: Path, clock: Clock) -> None:
    from storage.checks import run_checks

    path = write_config(tmp_path, news_checks='min_new_items = 10, window = "6h", max_age = "1d"')
    cfg = load_config(path)
    run(cfg, "news", new=50)  # outside the window by the time we look
    clock.advance(hours=5)
    run(cfg, "news", new=3)
    clock.advance(minutes=30)
    run(cfg, "news", new=4)
    run(cfg, "news", status="failed")
    run(cfg, "news", status="success")
    (silent,) = run_checks(config=cfg, now=clock.advance(hours=1, minutes=1))
    assert silent.rule == "silent" and (silent.values["new"], silent.values["runs"]) == (7, 4)
    assert silent.message == "7 new items in the last 6h over 4 runs (min_new_items 10)"
    run(cfg, "news", new=3)
    assert run_checks(config=cfg, now=clock()) == []  # 10 within the window


def test_drop_in_the_record_count_against_the_median_of_recent_runs(tmp_path: Path, clock: Clock) -> None:
    from storage.checks import run_checks

    path = write_config(tmp_path, news_checks='max_drop = 0.5, drop_runs = 4')
    cfg = load_config(path)
    run(cfg, "news", records=1000)  # older than the 4 runs the median is taken of
    for count in (100, 110, 90):
        clock.advance(minutes=10)
        run(cfg, "news", records=count)
    clock.advance(minutes=10)
    run(cfg, "news", records=10)
    # 4 previous runs (1000, 100, 110, 90: median 105): the drop is measured
    (drop,) = run_checks(config=cfg, now=clock())
    assert (drop.values["records"], drop.values["median"], drop.values["previous_runs"]) == (10, 105, 4)
    assert drop.message == ("last successful run had 10 records, below 50% of the median 105 of the 4 successful "
                            "runs before it (max_drop 0.5)")
    clock.advance(minutes=10)
    run(cfg, "news", status="failed")  # failures are not in the series: the last success still dropped
    assert rules(run_checks(config=cfg, now=clock())) == [("news", "drop")]
    clock.advance(minutes=10)
    run(cfg, "news", records=80)  # median of 10, 90, 110, 100 is 95: 80 is not below 47.5
    assert run_checks(config=cfg, now=clock()) == []


def test_no_drop_without_three_previous_runs_and_new_counts_when_there_are_no_records(tmp_path: Path,
                                                                                      clock: Clock) -> None:
    from storage.checks import run_checks

    path = write_config(tmp_path, news_checks="max_drop = 0.5")
    cfg = load_config(path)
    run(cfg, "news", new=100)
    run(cfg, "news", new=100)
    run(cfg, "news", new=1)
    assert run_checks(config=cfg, now=clock()) == []  # only 2 runs before the last
    run(cfg, "news", new=100)
    run(cfg, "news", new=1)
    (drop,) = run_checks(config=cfg, now=clock())
    assert (drop.values["records"], drop.values["median"]) == (1, 100)


def test_recovered_node_clears_its_findings(tmp_path: Path, clock: Clock) -> None:
    path = write_config(tmp_path)
    cfg = load_config(path)
    run(cfg, "news", new=5)
    clock.advance(hours=2)
    for _ in range(3):
        run(cfg, "news", status="failed")
    result = check(path, clock)
    assert result.exit_code == 1
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["news", "stale"], ["news", "failing"]]
    run(cfg, "news", new=2)
    result = check(path, clock)
    assert (result.exit_code, result.stdout) == (0, "all 2 nodes OK\n")


def test_disabled_nodes_and_module_selection(tmp_path: Path, clock: Clock) -> None:
    path = write_config(tmp_path, news_checks="enabled = false", extra='interval = "1h"')  # `other` gets an interval
    result = check(path, clock)
    assert result.exit_code == 1
    assert result.stdout == "other  stale    never ran (max_age 2h = 2 x interval 1h)\n"
    assert check(path, clock, "--module", "abi").stdout == "all 0 nodes OK (1 disabled: news)\n"
    result = check(path, clock, "--module", "nope")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "no source, aggregate or bridge in module 'nope'" in result.stderr


# -- configuration errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("checks", "message"), [
    ("max_agee = \"1h\"", "unknown key 'max_agee'"),
    ("max_age = \"soon\"", "key 'max_age' must look like 30m, 6h, 1d"),
    ("max_drop = 1.5", "key 'max_drop' must be a fraction between 0 and 1"),
    ("max_consecutive_failures = 0", "key 'max_consecutive_failures' must be at least 1"),
    ("enabled = \"yes\"", "key 'enabled' must be true or false"),
    ("max_drop = 0.5, drop_runs = 2", "key 'drop_runs' must be at least 3"),
])
def test_bad_check_keys_are_one_line_exit_2(tmp_path: Path, clock: Clock, checks: str, message: str) -> None:
    result = check(write_config(tmp_path, news_checks=checks), clock)
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "[sources.news] checks:" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(("alerts", "message"), [
    ('webhook_env = "https://hooks.slack.com/services/T/B/x"', "key 'webhook_env' is the name of an environment "
                                                                "variable"),
    ('webhook_env = "OK_NAME"\nwebhook = "x"', "unknown key 'webhook'"),
    ("retries = 2", "missing required key 'webhook_env'"),
    ('webhook_env = "OK_NAME"\ntimeout = 0', "key 'timeout' must be between 0.1 and 600"),
])
def test_bad_alerts_table_is_one_line_exit_2(tmp_path: Path, clock: Clock, alerts: str, message: str) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + f"\n[alerts]\n{alerts}\n")
    result = check(path, clock)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert "hooks.slack.com" not in result.stderr


def test_missing_or_malformed_webhook_variable_is_one_line_exit_2(tmp_path: Path, clock: Clock,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, alerts=True)
    monkeypatch.delenv(HOOK_VAR, raising=False)
    result = check(path, clock)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (f"error: [alerts] webhook_env: the environment variable {HOOK_VAR} is not set; export "
                             "it with the webhook's URL (e.g. https://hooks.slack.com/services/...)\n")
    monkeypatch.setenv(HOOK_VAR, "not-a-url-but-secret-ish")
    result = check(path, clock)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "must hold an http(s) URL" in result.stderr and "secret-ish" not in result.stderr
    assert not (tmp_path / "storage" / "datastore" / "alerts").exists()


# -- alerts -------------------------------------------------------------------------------------------------------


def test_an_alert_is_sent_once_and_its_resolution_once(tmp_path: Path, clock: Clock, receiver: Receiver) -> None:
    path = write_config(tmp_path, alerts=True)
    cfg = load_config(path)
    run(cfg, "news", new=5)
    for _ in range(3):
        run(cfg, "news", status="failed")
    first = check(path, clock)
    assert first.exit_code == 1 and first.stderr == "alerts: sent 1 alert(s), 0 resolution(s)\n"
    (sent,) = receiver.texts()
    assert sent == ("[abi] news (source, module abi): failing: 3 failed runs in a row (max_consecutive_failures 3); "
                    "last run failed: HTTP 500 from http://127.0.0.1:9/news.xml")
    clock.advance(minutes=5)
    run(cfg, "news", status="failed")
    second = check(path, clock)
    assert second.exit_code == 1 and second.stderr == "" and len(receiver.bodies) == 1  # still open: not again
    assert "4 failed runs in a row" in second.stdout
    clock.advance(minutes=5)
    run(cfg, "news", new=1)
    third = check(path, clock)
    assert (third.exit_code, third.stdout) == (0, "all 2 nodes OK\n")
    assert third.stderr == "alerts: sent 0 alert(s), 1 resolution(s)\n"
    assert receiver.texts()[1].startswith("[abi] resolved: news (source, module abi): failing: the check passes "
                                          "again (open since 2026-03-02T09:00Z; it was: 3 failed runs in a row")
    assert check(path, clock).stderr == "" and len(receiver.bodies) == 2  # resolved once
    assert read_state(cfg.datastore)["alerts"] == {}
    assert all(b["json"].keys() == {"text"} and b["path"] == f"/services/{TOKEN}" for b in receiver.bodies)
    _assert_no_secret(tmp_path, first, second, third)


@pytest.mark.parametrize("status", [500, 429])
def test_a_500_or_429_is_retried_and_the_alert_goes_through(tmp_path: Path, clock: Clock, receiver: Receiver,
                                                            status: int) -> None:
    path = write_config(tmp_path, alerts=True)
    receiver.replies = [status]
    result = check(path, clock)  # news never ran: stale
    assert result.exit_code == 1 and result.stderr == "alerts: sent 1 alert(s), 0 resolution(s)\n"
    first, retried = receiver.bodies
    assert first == retried and "news (source, module abi): stale: never ran" in first["json"]["text"]
    entry = read_state(load_config(path).datastore)["alerts"]["news/stale"]
    assert entry["sent_at"] == clock.arg() and entry["sends"] == 1 and "last_error" not in entry


def test_a_webhook_that_keeps_failing_leaves_the_alert_for_the_next_run(tmp_path: Path, clock: Clock,
                                                                        receiver: Receiver) -> None:
    path = write_config(tmp_path, alerts=True)
    receiver.default = 503
    result = check(path, clock, "--json")
    assert result.exit_code == 1 and len(receiver.bodies) == 3  # retries = 2
    assert result.stderr == ("warning: alerts: the webhook failed: HTTP 503 Service Unavailable (after 3 attempts); "
                             "1 message kept for the next run\n")
    data = json.loads(result.stdout)
    assert data["alerts"]["error"] == "HTTP 503 Service Unavailable (after 3 attempts)"
    assert data["alerts"]["pending"] == ["news/stale"] and data["alerts"]["sent"] == []
    entry = read_state(load_config(path).datastore)["alerts"]["news/stale"]
    assert entry["sent_at"] is None and entry["last_error"]["message"].startswith("HTTP 503")
    receiver.default = 200
    clock.advance(minutes=5)
    again = check(path, clock)
    assert again.exit_code == 1 and again.stderr == "alerts: sent 1 alert(s), 0 resolution(s)\n"
    assert len(receiver.bodies) == 4 and check(path, clock).stderr == ""  # sent now, and only now
    _assert_no_secret(tmp_path, result, again)


def test_a_failed_resolution_is_sent_next_time_and_exits_1(tmp_path: Path, clock: Clock, receiver: Receiver) -> None:
    path = write_config(tmp_path, alerts=True)
    cfg = load_config(path)
    check(path, clock)
    run(cfg, "news", new=1)
    receiver.default = 500
    result = check(path, clock)
    assert result.exit_code == 1 and result.stdout == "all 2 nodes OK\n" and "webhook failed" in result.stderr
    assert read_state(cfg.datastore)["alerts"]["news/stale"]["status"] == "resolving"
    receiver.default = 200
    assert check(path, clock).exit_code == 0 and receiver.texts()[-1].startswith("[abi] resolved: news")
    assert read_state(cfg.datastore)["alerts"] == {}


def test_an_unreachable_webhook_is_one_warning_without_the_url(tmp_path: Path, clock: Clock, receiver: Receiver,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.server.server_close()  # nothing listens on its port any more
    path = write_config(tmp_path, alerts=True)
    result = check(path, clock)
    assert result.exit_code == 1 and result.stderr == ("warning: alerts: the webhook failed: connection refused "
                                                       "(after 3 attempts); 1 message kept for the next run\n")
    _assert_no_secret(tmp_path, result)


def test_repeat_after_sends_an_open_alert_again(tmp_path: Path, clock: Clock, receiver: Receiver) -> None:
    path = write_config(tmp_path, alerts=True)
    path.write_text(path.read_text() + 'repeat_after = "1h"\n')
    check(path, clock)
    clock.advance(minutes=59)
    check(path, clock)
    assert len(receiver.bodies) == 1
    clock.advance(minutes=1)
    check(path, clock)
    assert receiver.texts()[1].startswith("[abi] still open since 2026-03-02T09:00Z: news (source, module abi): stale")
    check(path, clock)
    assert len(receiver.bodies) == 2


def test_module_selection_leaves_the_alerts_of_other_modules_alone(tmp_path: Path, clock: Clock,
                                                                    receiver: Receiver) -> None:
    path = write_config(tmp_path, alerts=True, extra='interval = "1h"')
    cfg = load_config(path)
    check(path, clock)
    assert sorted(receiver.texts()) == [t for t in sorted(receiver.texts()) if "stale: never ran" in t]
    assert sorted(read_state(cfg.datastore)["alerts"]) == ["news/stale", "other/stale"]
    run(cfg, "news", new=1)
    assert check(path, clock, "--module", "ops").exit_code == 1  # other is still stale; news was not looked at
    assert len(receiver.bodies) == 2
    assert check(path, clock, "--module", "abi").exit_code == 0
    assert receiver.texts()[2].startswith("[abi] resolved: news") and len(receiver.bodies) == 3
    path.write_text(path.read_text().replace("[sources.other]", "[sources.renamed]"))  # other leaves the config
    check(path, clock, "--module", "abi")
    assert len(receiver.bodies) == 3  # not this module's alert
    check(path, clock)
    assert "other (source, module ops): stale: no longer in the configuration" in receiver.texts()[-1]


def test_an_overlapping_check_sends_nothing(tmp_path: Path, clock: Clock, receiver: Receiver,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import collectors.alerts

    monkeypatch.setattr(collectors.alerts, "LOCK_WAIT_S", 0.5)  # it waits this long for the other check
    path = write_config(tmp_path, alerts=True)
    cfg = load_config(path)
    with state_lock(cfg.datastore):
        result = check(path, clock)
    assert result.exit_code == 1 and receiver.bodies == []
    assert result.stderr.startswith("warning: alerts: another abi check has been sending alerts for over a minute")
    assert not state_path(cfg.datastore).exists()
    check(path, clock)
    assert len(receiver.bodies) == 1


def test_library_call_with_an_injected_environment_and_sender(tmp_path: Path, clock: Clock) -> None:
    from collectors.alerts import check_and_alert

    cfg = load_config(write_config(tmp_path, alerts=True))
    posted: list[tuple[str, dict[str, Any]]] = []
    report = check_and_alert(config=cfg, now=clock(), environ={HOOK_VAR: "https://hooks.example/x"},
                             send=lambda url, body, alerts: posted.append((url, body)))
    assert report.exit_code == 1 and [f.key for f in report.findings] == ["news/stale"]
    assert report.alerts["sent"] == ["news/stale"] and posted[0][0] == "https://hooks.example/x"


def test_check_module_is_light_to_import() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys; import cli.check_cmd; "
            "print(','.join(m for m in ('requests', 'tenacity', 'rich', 'collectors.alerts', 'storage.checks') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def _assert_no_secret(tmp_path: Path, *results: Result) -> None:
    """The webhook URL (a credential) is in no output and no file under the datastore or the config folder."""
    for result in results:
        assert "fake-secret" not in result.stdout + result.stderr and "/services/" not in result.stdout
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "state.json" for p in files)
    for file in files:
        data = file.read_bytes()
        assert b"fake-secret" not in data and b"T0SECRET" not in data, file


@pytest.mark.parametrize("content", ['[1, 2]', '{"alerts": {"news/stale": null}}',
                                     '{"alerts": {"gone/stale": {"sent_at": "2026-01-01T00:00:00Z"}}}',
                                     '{"alerts": {"x/stale": {"sent_at": "yesterday", "node": "news", '
                                     '"module": "abi", "rule": "stale", "opened_at": "2026-01-01T00:00:00Z"}}}',
                                     '{bad'])
def test_a_damaged_alert_state_never_silences_the_check(tmp_path: Path, clock: Clock, receiver: Receiver,
                                                         content: str) -> None:
    path = write_config(tmp_path, alerts=True)
    cfg = load_config(path)
    state_path(cfg.datastore).parent.mkdir(parents=True, exist_ok=True)
    state_path(cfg.datastore).write_text(content)
    result = check(path, clock)
    assert result.exit_code == 1
    assert "news" in result.stdout and "stale" in result.stdout  # the finding is printed
    assert len(receiver.bodies) == 1  # and its alert sent (the damaged entry is forgotten)


def test_a_malformed_webhook_url_is_a_config_error(tmp_path: Path, clock: Clock,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, alerts=True)
    for url in ("http://[::1/x", "http://host:99999/x"):
        monkeypatch.setenv(HOOK_VAR, url)
        result = run_cli("check", "--config", str(path), "--now", clock().isoformat())
        assert result.exit_code == 2 and "must hold an http(s) URL" in result.stderr
        assert url not in result.stderr and url not in result.stdout
