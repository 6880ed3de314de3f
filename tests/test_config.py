"""Invalid configuration: exit 2, one line naming file, source and key, no traceback, nothing done."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ABI_BIN, run_abi_process, run_cli

GOOD_FEED = 'feeds = [{ url = "http://127.0.0.1:9/a.xml", query = "AI" }]'


def _cfg(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "abi.toml"
    path.write_text(body)
    return path


CASES = [
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nfeedz = []\n' + GOOD_FEED, "[sources.news] unknown key 'feedz'"),
    ('[sources.news]\nkind = "rss"\n' + GOOD_FEED, "[sources.news] missing required key 'module'"),
    ('[sources.news]\nkind = "rsss"\nmodule = "abi"\n' + GOOD_FEED, "[sources.news] key 'kind' must be one of"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nfeeds = []', "[sources.news] key 'feeds' must list"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nfeeds = [{ url = "ftp://x/y" }]', "feeds[0] key 'url'"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nfeeds = [{ url = "http://a/b", qeury = "x" }]',
     "feeds[0] unknown key 'qeury'"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\ninterval = "often"\n' + GOOD_FEED,
     "[sources.news] key 'interval' must look like 30s"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\ntimeout = "5"\n' + GOOD_FEED,
     "[sources.news] key 'timeout' must be a number, not str"),
    ('[sources.news]\nkind = "rss"\nmodule = "../etc"\n' + GOOD_FEED, "[sources.news] key 'module'"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\npath = "../../outside"\n' + GOOD_FEED,
     "[sources.news] key 'path' must be a relative path"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nschedule = "every minute"\n' + GOOD_FEED,
     "[sources.news] key 'schedule' must be a 5-field cron"),
    ('[sourcez.news]\nkind = "rss"\n', "unknown top-level key 'sourcez'"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\ntimeout = nan\n' + GOOD_FEED, "key 'timeout' must be between"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nretries = 1000\n' + GOOD_FEED, "key 'retries' must be between"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nuser_agent = "a\\nb"\n' + GOOD_FEED, "key 'user_agent'"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nschedule = "* * * * ;rm"\n' + GOOD_FEED, "key 'schedule'"),
    ('datastore = ""\n', "key 'datastore' must be a non-empty path"),
    ('[sources.news]\nkind = "rss"\nmodule = "abi"\nfeeds = [{ url = "http://a/1", query = "AI" }, '
     '{ url = "http://b/2", query = "AI" }]', "feeds[1] is the same feed as an earlier one ('AI')"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\nheaders = { Authorization = "Bearer x" }',
     "headers.Authorization would put a secret in the file"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\nauth = { bearer = "abc" }',
     "[sources.api] auth must be one of"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\npagination = { type = "pages" }',
     "[sources.api] pagination key 'type' must be one of: page, offset, cursor, next_url, link_header"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\npagination = { type = "cursor" }',
     "type = \"cursor\" needs cursor_path"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\n'
     'pagination = { type = "page", cursor_path = "x" }', "unknown key 'cursor_path' for type = 'page'"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\nwrite = "replace"\n'
     'incremental = { cursor_field = "t" }', "write = \"replace\" keeps the latest full result"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\nwrite = "merge"',
     "write = \"merge\" needs a 'primary_key'"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\njson = { q = 1 }',
     "key 'json' (a request body) needs method = \"POST\""),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\nincremental = { param = "since" }',
     "incremental needs cursor_field"),
    ('[sources.api]\nkind = "api"\nmodule = "m"\nurl = "https://x.org/a"\nretries = { count = 3, wait = 1 }',
     "key 'retries' must be a count or"),
    ('[sources.a]\nkind = "rss"\nmodule = "abi"\npath = "x"\n' + GOOD_FEED +
     '\n[sources.b]\nkind = "rss"\nmodule = "abi"\npath = "x"\n' + GOOD_FEED,
     "[sources.b] writes to the same folder as [sources.a]"),
    ('[sources.news\nkind = "rss"', "not valid TOML"),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_invalid_config_is_one_line_exit_2_and_nothing_done(tmp_path: Path, body: str, expected: str) -> None:
    cfg = _cfg(tmp_path, body)
    result = run_cli("collect", "rss", "--config", str(cfg))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {cfg}")
    assert expected in lines[0]
    assert not (tmp_path / "storage").exists()  # no work done, no datastore created


def test_bad_config_through_the_real_console_script_has_no_traceback(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, '[sources.news]\nkind = "rss"\nmodule = "abi"\nfeedz = []\n' + GOOD_FEED)
    proc = run_abi_process("collect", "rss", "--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    result = run_cli("collect", "rss", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "nope.toml: configuration file not found" in result.stderr


def test_no_config_anywhere_explains_how_to_pass_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("status")
    assert result.exit_code == 2
    assert "no abi.toml" in result.stderr and "--config" in result.stderr


def test_unknown_source_lists_the_configured_ones(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, '[sources.news]\nkind = "rss"\nmodule = "abi"\n' + GOOD_FEED)
    result = run_cli("collect", "rss", "--config", str(cfg), "--source", "nope")
    assert result.exit_code == 2
    assert "no source named 'nope' (configured: news)" in result.stderr


def test_abi_config_env_and_nearest_file_are_found(tmp_path: Path, monkeypatch) -> None:
    cfg = _cfg(tmp_path, '[sources.news]\nkind = "rss"\nmodule = "abi"\n' + GOOD_FEED)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert run_cli("status").exit_code == 0  # found in a parent folder
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("ABI_CONFIG", str(cfg))
    result = run_cli("status", "--json")
    assert result.exit_code == 0 and '"source": "news"' in result.stdout


def test_abi_datastore_overrides_the_default(tmp_path: Path, monkeypatch) -> None:
    from storage.config import load_config

    cfg = _cfg(tmp_path, '[sources.news]\nkind = "rss"\nmodule = "abi"\n' + GOOD_FEED)
    assert load_config(cfg).datastore.root == tmp_path / "storage" / "datastore"
    monkeypatch.setenv("ABI_DATASTORE", str(tmp_path / "elsewhere"))
    assert load_config(cfg).datastore.root == tmp_path / "elsewhere"


def test_shipped_config_is_the_abi_demo() -> None:
    from storage.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "abi.toml")
    news = config.sources["news"]
    assert (news.kind, news.module, news.path, news.interval_s) == ("rss", "abi", "orchestration/rss_feed", 30)
    queries = [f.query for f in news.feeds]
    assert queries == ["Ontology", "AI", "Palantir", "LLM", "Elon Musk", "OpenAI", "Google", "Meta",
                       "Microsoft", "Apple", "Amazon", "Tesla", "SpaceX", "NASA", "Donald Trump"]
    assert all(f.url.startswith("https://www.bing.com/news/search?format=RSS&q=") for f in news.feeds)


def test_console_script_is_installed() -> None:
    assert ABI_BIN.exists()


def test_config_errors_do_not_echo_secrets(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, '[sources.news]\nkind = "rss"\nmodule = "abi"\n'
                         'feeds = [{ url = "htps://user:hunter22@x.org/f?token=tok3n" }]')
    result = run_cli("collect", "rss", "--config", str(cfg))
    assert result.exit_code == 2 and "feeds[0] key 'url'" in result.stderr
    assert "hunter22" not in result.stderr and "tok3n" not in result.stderr
