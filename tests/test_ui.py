"""`abi ui` in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium), plus plain HTTP.

The datastore is made by real runs: `abi collect rss` over a local feed server
(one healthy source whose feed title and entries are hostile HTML, one source
whose only feed answers 500), then `abi aggregate` and `abi bridge`. The server
is the real `abi ui` console script on a free port, ready once it prints its URL.

The browser is found at /usr/bin/chromium and /usr/bin/chromedriver (Selenium
Manager is never asked to download one). When either is missing the browser
tests are skipped on a developer's machine and fail in CI (CI=true), as the
PostgreSQL tests do: .ci/run installs both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import pytest

from collectors.sample_feeds import FeedServer, Reply, sample_rss
from tests.conftest import ABI_BIN, REPO, run_cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "tests" / "artifacts"
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
PAGES = ("index.html", "catalog.html", "lineage.html", "runs.html", "sensors.html", "alerts.html")
NODES = {"news", "broken", "articles", "graph", "store:embedded"}


def _hostile_rss() -> bytes:
    text = escape(HOSTILE)
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{text}</title><link>https://evil.example.org/</link><description>{text}</description>"
            f"<item><title>{text}</title><link>https://evil.example.org/a</link><description>{text}</description>"
            "<pubDate>Mon, 05 Jan 2026 08:00:00 GMT</pubDate></item></channel></rss>").encode()


@dataclass
class Site:
    """A config and the datastore its runs left, with the run ids by source."""

    config: Path
    datastore: Path
    runs: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    tmp = tmp_path_factory.mktemp("ui")
    with FeedServer() as srv:
        srv.set_feed("/ai.xml", sample_rss("AI", items=5))
        srv.set_feed("/evil.xml", _hostile_rss())
        srv.set_feed("/down.xml", b"")
        srv.stick("/down.xml", Reply(status=500))
        feeds = [{"url": srv.url("/ai.xml"), "query": "AI"},
                 {"url": srv.url("/evil.xml"), "query": "evil", "name": HOSTILE}]
        down = [{"url": srv.url("/down.xml"), "query": "down", "name": HOSTILE}]
        cfg = tmp / "abi.toml"
        cfg.write_text(textwrap.dedent(f"""
            [sources.news]
            kind = "rss"
            module = "abi"
            interval = "30m"
            retries = 0
            feeds = {_toml(feeds)}

            [sources.broken]
            kind = "rss"
            module = "abi"
            interval = "1h"
            retries = 0
            feeds = {_toml(down)}

            [aggregates.articles]
            module = "abi"
            inputs = ["news"]
            key = "url"
            fields = {{ url = "url", title = "title", query = "feed.query", feed_title = "feed.title" }}
            combine = {{ query = "list" }}

            [bridges.graph]
            module = "abi"
            input = "articles"
            pipeline = "builtin:news"
            """))
        assert run_cli("collect", "rss", "--config", str(cfg)).exit_code == 1  # broken fails, news succeeds
        assert run_cli("aggregate", "--config", str(cfg)).exit_code == 0
        assert run_cli("bridge", "--config", str(cfg)).exit_code == 0
    listed = json.loads(run_cli("runs", "--json", "--config", str(cfg)).stdout)
    return Site(cfg, tmp / "storage" / "datastore", {r["source"]: r["run_id"] for r in listed})


def _toml(feeds: list[dict[str, str]]) -> str:
    return "[" + ", ".join("{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in f.items()) + " }"
                           for f in feeds) + "]"


class UiProcess:
    """`abi ui --port 0` as a real process; ready when it has printed its URL (no sleep, no fixed port)."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen([str(ABI_BIN), "ui", "--config", str(config), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        timer = threading.Timer(30, self.proc.kill)  # a server that never says where it listens
        timer.start()
        try:
            self.first_line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        assert "http://127.0.0.1:" in self.first_line, self.first_line + self.proc.stderr.read()
        self.url = self.first_line.split(" on ", 1)[1].split()[0]

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        """Ctrl-C (SIGINT) by default: what a person does."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


@pytest.fixture(scope="module")
def ui(site: Site) -> Iterator[UiProcess]:
    server = UiProcess(site.config)
    yield server
    code, _out, err = server.stop()
    assert code == 0 and err == "", err


def get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


# --- plain HTTP -------------------------------------------------------------------------------------------


def test_unknown_paths_are_a_404_page(ui: UiProcess, site: Site) -> None:
    for path in ("nope", "runs/nope.html", "runs/..%2F..%2Fabi.toml", "runs/20200101T000000.000Z-news-abcdef.html",
                 "index.html/x"):
        code, body = get(ui.url + path)
        assert code == 404, path
        assert "No page at" in body and "Traceback" not in body
    code, body = get(ui.url + "runs.html?source=nope")
    assert code == 400 and "no source, aggregate or bridge named &#x27;nope&#x27;" in body


def test_collected_text_is_escaped_everywhere(ui: UiProcess, site: Site) -> None:
    pages = [*PAGES, f"runs/{site.runs['news']}.html", f"runs/{site.runs['broken']}.html"]
    seen = 0
    for page in pages:
        code, body = get(ui.url + page)
        assert code == 200, page
        assert HOSTILE not in body and "<img" not in body, page
        assert body.count("<script>") == 1, page  # the page's own filter script, nothing else
        seen += escape(HOSTILE) in body
    assert seen >= 3  # catalog sample, the news run's items and log, the broken run's items and log


def test_requests_must_name_a_loopback_host(ui: UiProcess) -> None:
    assert get(ui.url, headers={"Host": "evil.example:80"})[0] == 421
    assert get(ui.url.replace("127.0.0.1", "localhost"))[0] == 200


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_the_ui_never_writes_to_the_datastore(ui: UiProcess, site: Site, tmp_path: Path) -> None:
    before = _listing(site.datastore)
    for page in (*PAGES, "", "runs.html?source=news&status=success&q=new&since=1d", "runs.html?limit=1",
                 *(f"runs/{rid}.html" for rid in site.runs.values()), "missing"):
        get(ui.url + page)
    assert run_cli("ui", "--build", str(tmp_path / "site"), "--config", str(site.config)).exit_code == 0
    assert _listing(site.datastore) == before
    inside = run_cli("ui", "--build", str(site.datastore / "site"), "--config", str(site.config))
    assert inside.exit_code == 2 and "never writes into the datastore" in inside.stderr
    assert _listing(site.datastore) == before


def test_a_page_that_fails_gives_500_and_one_line_not_a_traceback(site: Site, monkeypatch) -> None:
    from cli import ui_pages
    from cli.ui_server import make_server

    def broken(config: Any, **_: Any) -> str:
        raise RuntimeError("disk on fire <b>")

    monkeypatch.setitem(ui_pages.PAGES, "sensors.html", broken)
    lines: list[str] = []
    server = make_server(site.config, port=0, log=lines.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        code, body = get(server.url + "sensors.html")
        ok_code, _ = get(server.url + "index.html")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert code == 500 and ok_code == 200
    assert "Traceback" not in body and "disk on fire" not in body and "failed to render" in body
    assert lines == ["abi ui: error on GET /sensors.html: RuntimeError: disk on fire <b>"]


def test_ctrl_c_stops_cleanly_and_a_busy_port_is_one_line(site: Site) -> None:
    server = UiProcess(site.config)
    try:
        assert get(server.url)[0] == 200
        port = server.url.rsplit(":", 1)[1].strip("/")
        busy = run_cli("ui", "--port", port, "--config", str(site.config))
        assert busy.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    finally:
        code, out, err = server.stop(signal.SIGINT)
    assert code == 0 and "abi ui: stopped" in out and err == ""


# --- the browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        message = f"browser tests need {', '.join(missing)} (Debian chromium + chromium-driver; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="abi-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", "--window-size=1366,900"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def severe(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def no_alert(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    alert.dismiss()
    return False


def visible_rows(driver: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [row for row in driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr") if row.is_displayed()]


def test_every_page_loads_without_console_errors(browser: Any, ui: UiProcess, site: Site) -> None:
    severe(browser)  # start from an empty log
    pages = [*PAGES, f"runs/{site.runs['broken']}.html", f"runs/{site.runs['news']}.html"]
    titles = []
    for page in pages:
        browser.get(ui.url + page)
        assert no_alert(browser), page
        assert severe(browser) == [], page
        titles.append(browser.title)
        name = page.replace("/", "-").replace(".html", "").replace(site.runs["broken"], "broken-run") \
            .replace(site.runs["news"], "news-run")
        browser.save_screenshot(str(ARTIFACTS / f"ui-{name}.png"))
    assert titles[:6] == ["Overview · abi", "Asset catalog · abi", "Lineage · abi", "Runs · abi",
                          "Sensors & schedules · abi", "Open alerts · abi"]


def test_overview_puts_the_failing_source_first(browser: Any, ui: UiProcess) -> None:
    from selenium.webdriver.common.by import By

    browser.get(ui.url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#overview tbody tr")
    assert rows[0].get_attribute("data-node") == "broken"
    assert {r.get_attribute("data-node") for r in rows} == NODES - {"store:embedded"}
    assert "failed" in rows[0].text and "HTTP 500" in rows[0].text
    failing = browser.find_element(By.CSS_SELECTOR, '[data-count="failing"] b').text
    assert failing == "1"


def test_the_run_list_filters_as_you_choose_and_type(browser: Any, ui: UiProcess) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(ui.url + "runs.html")
    assert len(visible_rows(browser)) == 4
    Select(browser.find_element(By.NAME, "source")).select_by_value("broken")
    rows = visible_rows(browser)
    assert [r.get_attribute("data-source") for r in rows] == ["broken"]
    assert browser.find_element(By.ID, "shown").text == "1 of 4 runs shown"
    Select(browser.find_element(By.NAME, "source")).select_by_value("")
    Select(browser.find_element(By.NAME, "status")).select_by_value("success")
    assert {r.get_attribute("data-source") for r in visible_rows(browser)} == {"news", "articles", "graph"}
    browser.find_element(By.NAME, "q").send_keys("triples")
    assert [r.get_attribute("data-source") for r in visible_rows(browser)] == ["graph"]
    browser.save_screenshot(str(ARTIFACTS / "ui-runs-filtered.png"))
    browser.get(ui.url + "runs.html?status=failed")  # the server's filter, and the form shows it
    assert [r.get_attribute("data-source") for r in visible_rows(browser)] == ["broken"]
    assert Select(browser.find_element(By.NAME, "status")).first_selected_option.text == "failed"
    assert severe(browser) == []


def test_a_runs_log_opens_from_the_run_list(browser: Any, ui: UiProcess, site: Site) -> None:
    from selenium.webdriver.common.by import By

    browser.get(ui.url + "runs.html")
    row = next(r for r in visible_rows(browser) if r.get_attribute("data-source") == "broken")
    row.find_element(By.CSS_SELECTOR, "a.run-link").click()
    assert browser.current_url == ui.url + f"runs/{site.runs['broken']}.html"
    log = browser.find_element(By.ID, "log").text
    assert f"run {site.runs['broken']} started" in log and "HTTP 500" in log
    assert "AllFeedsFailed" in browser.find_element(By.ID, "run-error").text
    assert HOSTILE in browser.find_element(By.ID, "items").text  # the feed's name, shown as text
    assert no_alert(browser) and severe(browser) == []
    browser.find_element(By.LINK_TEXT, "Runs").click()  # the nav bar works from a nested page
    assert browser.current_url == ui.url + "runs.html"


def test_the_lineage_draws_every_node_and_links_it_to_its_runs(browser: Any, ui: UiProcess) -> None:
    from selenium.webdriver.common.by import By

    browser.get(ui.url + "lineage.html")
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg g.node")
    assert {n.get_attribute("data-node") for n in nodes} == NODES
    assert all(n.is_displayed() for n in nodes)
    next(n for n in nodes if n.get_attribute("data-node") == "articles").click()
    assert browser.current_url == ui.url + "runs.html?source=articles"
    assert [r.get_attribute("data-source") for r in visible_rows(browser)] == ["articles"]
    assert severe(browser) == []


def test_hostile_titles_are_shown_as_text_and_never_run(browser: Any, ui: UiProcess) -> None:
    from selenium.webdriver.common.by import By

    browser.get(ui.url + "catalog.html")
    assert no_alert(browser)
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-asset="articles"]')
    assert HOSTILE in row.text  # the aggregate's first record: the hostile entry's title, literally
    assert HOSTILE in browser.find_element(By.CSS_SELECTOR, 'tr[data-asset="news"]').text
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert browser.execute_script("return document.querySelectorAll('[onerror]').length") == 0
    assert severe(browser) == []


def test_the_static_build_opens_from_file_and_shows_the_same_overview(browser: Any, ui: UiProcess, site: Site,
                                                                      tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def overview() -> list[tuple[str, str]]:
        return [(r.get_attribute("data-node"), r.find_element(By.CSS_SELECTOR, ".badge").text)
                for r in browser.find_elements(By.CSS_SELECTOR, "#overview tbody tr")]

    browser.get(ui.url)
    served = overview()
    result = run_cli("ui", "--build", str(tmp_path / "site"), "--config", str(site.config))
    assert result.exit_code == 0 and "wrote 10 pages (4 runs)" in result.stdout
    severe(browser)
    browser.get((tmp_path / "site" / "index.html").as_uri())
    assert overview() == served
    browser.save_screenshot(str(ARTIFACTS / "ui-static-index.png"))
    browser.find_element(By.LINK_TEXT, "Runs").click()
    Select(browser.find_element(By.NAME, "source")).select_by_value("news")
    row = visible_rows(browser)
    assert [r.get_attribute("data-source") for r in row] == ["news"]
    row[0].find_element(By.CSS_SELECTOR, "a.run-link").click()
    assert "rss news: success" in browser.find_element(By.ID, "log").text
    browser.get((tmp_path / "site" / "runs.html").as_uri() + "?source=broken")  # overview links carry ?source=
    assert [r.get_attribute("data-source") for r in visible_rows(browser)] == ["broken"]
    for page in PAGES:
        browser.get((tmp_path / "site" / page).as_uri())
    assert no_alert(browser) and severe(browser) == []


def test_the_alerts_page_says_whether_and_when_each_alert_was_sent(site: Site) -> None:
    """With alert state (what `abi check` leaves after posting), each open finding shows when it went out."""
    from cli.ui_pages import alerts
    from storage.alert_state import write_state
    from storage.config import load_config

    config = load_config(site.config)
    assert "no webhook configured" in alerts(config)
    write_state(config.datastore, {"version": 1, "alerts": {"broken/stale": {
        "node": "broken", "module": "abi", "kind": "source", "rule": "stale", "message": "m",
        "opened_at": "2026-11-26T08:00:00.000000Z", "sent_at": "2026-11-26T08:01:00.000000Z", "sends": 2}}})
    page = alerts(config)
    assert "sent 2026-11-26 08:01:00Z (2x), open since 2026-11-26 08:00:00Z" in page


def test_new_runs_show_on_reload_without_a_restart(ui: UiProcess, site: Site) -> None:
    """Last in the file: it adds a run to the shared datastore."""
    from storage.paths import Datastore
    from storage.runs import Run, write_run_record

    run = Run(module="abi", source="news", kind="rss", command=["abi", "collect", "rss"], status="skipped",
              reason="a run added while the UI was up")
    write_run_record(Datastore(site.datastore), run.record(), interval_s=1800)
    code, body = get(ui.url + "runs.html")
    assert code == 200 and run.run_id in body and "a run added while the UI was up" in body
    code, body = get(ui.url + f"runs/{run.run_id}.html")
    assert code == 200 and "no log for this run" in body
