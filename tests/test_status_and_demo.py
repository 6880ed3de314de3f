"""`abi status`, `abi demo` and the CLI's help."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from collectors.sample_feeds import Reply
from storage.config import load_config
from storage.runs import utcnow
from storage.status import source_status
from tests.conftest import REPO, Env, run_abi_process, run_cli


def test_status_before_any_run_lists_configured_sources(env: Env) -> None:
    result = env.abi("status", "--json")
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)
    assert row["source"] == "news" and row["last_status"] == "never run" and row["stale"] is True


def test_status_after_runs_shows_last_run_new_items_and_failures(env: Env) -> None:
    env.collect()
    (row,) = json.loads(env.abi("status", "--json").stdout)
    assert (row["last_status"], row["new_items"], row["consecutive_failures"], row["stale"]) == (
        "success", 15, 0, False)
    env.server.stick("/ai.xml", Reply(status=500))
    env.collect()
    env.collect()
    (row,) = json.loads(env.abi("status", "--json").stdout)
    assert row["last_status"] == "partial" and row["consecutive_failures"] == 2
    assert "1 of 3 feeds failed" in row["last_reason"]
    table = env.abi("status").stdout
    assert re.search(r"news\s+abi\s+rss\s+\S+ \S+\s+partial\s+0\s+15\s+\S+\s+2\s+\S+\s+1 of 3 feeds failed",
                     table), table


def test_stale_when_last_success_is_older_than_twice_the_interval(env: Env) -> None:
    env.collect()
    config = load_config(env.config)
    (fresh,) = source_status(config=config, now=utcnow() + timedelta(seconds=59))
    (stale,) = source_status(config=config, now=utcnow() + timedelta(seconds=61))
    assert fresh["stale"] is False and stale["stale"] is True
    assert 60 < stale["age_s"] < 70


def test_skipped_runs_are_visible_in_status(env: Env) -> None:
    from storage.locks import SourceLock

    with SourceLock(env.module_dir / "orchestration" / "locks" / "news.lock"):
        result = env.collect()
    assert result.exit_code == 0 and "skipped: another run holds news.lock" in result.stdout
    (row,) = json.loads(env.abi("status", "--json").stdout)
    assert row["last_status"] == "skipped"


def test_demo_runs_offline_twice_and_shows_status(tmp_path: Path) -> None:
    result = run_cli("demo", "--datastore", str(tmp_path / "demo"), "--json")
    assert result.exit_code == 0, result.stderr
    demo = json.loads(result.stdout)
    first, api_first, second, api_second = demo["runs"]
    assert first["counts"]["new"] == 300 and first["status"] == "success"
    assert second["counts"]["new"] == 0 and second["counts"]["not_modified"] == 15
    assert api_first["counts"]["new"] == 120
    assert (api_second["counts"]["new"], api_second["counts"]["updated"]) == (2, 3)
    assert [(row["source"], row["last_status"]) for row in demo["status"]] == [
        ("news", "success"), ("sample_api", "success"), ("news_articles", "success"), ("news_graph", "success")]
    files = list((tmp_path / "demo" / "core/modules/abi/orchestration/rss_feed").glob("*.json"))
    assert len(files) == 300
    aggregate, bridge = demo["stages"]
    # every 5th story of each feed is a top story all 15 searches find: 15 x 16 + 4 distinct URLs
    assert (aggregate["status"], aggregate["counts"]["records_read"], aggregate["counts"]["records"]) == (
        "success", 300, 244)
    assert bridge["status"] == "success" and bridge["counts"]["records_mapped"] == 244
    assert demo["topics"][0] == {"topic": "AI", "articles": "20"}
    text = run_cli("demo", "--datastore", str(tmp_path / "demo2")).stdout
    assert "run 2: news: success: 15 feeds, 0 new" in text and "NAME" in text
    assert "run 2: sample_api: success: 1 pages, 6 records, 2 new, 3 updated" in text


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    commands = [["collect", "rss"], ["collect", "api"], ["collect", "db"], ["collect", "files"], ["tick"],
                ["schedule"], ["backfill"], ["aggregate"], ["bridge"], ["query"], ["export"], ["status"], ["runs"],
                ["logs"], ["lineage"], ["materialize"], ["check"], ["ui"], ["demo"],
                ["version"]]
    for cmd in commands:
        result = run_cli(*cmd, "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 4
        assert f"abi {' '.join(cmd)}" in readme, cmd


def test_help_of_the_real_console_script_is_quick_to_import() -> None:
    # No timing here (that is `make bench`): check that --help does not import the heavy libraries.
    code = ("import sys; from cli.main import app; sys.argv=['abi','--help'];\n"
            "try: app()\nexcept SystemExit: pass\n"
            "print('LOADED:' + ','.join(m for m in ('requests','feedparser','rdflib','tenacity','rich.progress') "
            "if m in sys.modules))")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "LOADED:"


def test_version_matches_the_package() -> None:
    proc = run_abi_process("version")
    assert proc.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+\S*\n", proc.stdout)


def test_demo_serve_keeps_the_sample_api_up_until_stopped(tmp_path: Path) -> None:
    import signal
    import subprocess
    import urllib.request

    from tests.conftest import ABI_BIN

    proc = subprocess.Popen([str(ABI_BIN), "demo", "--serve", "--port", "0", "--datastore", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for line in proc.stdout:  # bounded by the demo's own output
            if line.startswith("Serving the sample feeds and API on "):
                break
        base = line.split(" on ", 1)[1].split()[0]
        req = urllib.request.Request(base + "/api/articles/cursor", headers={"Authorization": "Bearer demo-token"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["data"][0]["id"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped" in out


def test_shipped_sample_api_source_matches_the_demo() -> None:
    import tomllib

    from collectors.demo import SERVE_PORT, api_source_text

    shipped = tomllib.loads((REPO / "abi.toml").read_text())["sources"]["sample_api"]
    demo = tomllib.loads(api_source_text(f"http://127.0.0.1:{SERVE_PORT}"))["sources"]["sample_api"]
    shipped.pop("description")
    assert shipped == demo


def test_shipped_news_aggregate_and_bridge_match_the_demo() -> None:
    import tomllib

    from collectors.demo import pipeline_text

    shipped = tomllib.loads((REPO / "abi.toml").read_text())
    demo = tomllib.loads(pipeline_text())
    for table in ("aggregates", "bridges"):
        for item in shipped[table].values():
            item.pop("description")
        assert shipped[table] == demo[table]
