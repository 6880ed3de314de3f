"""Shared fixtures: a real feed server on 127.0.0.1, configs in tmp_path, CLI runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from collectors.sample_feeds import FeedServer, sample_rss

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "feeds"
ABI_BIN = Path(sys.executable).parent / "abi"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ABI_DATASTORE", "ABI_CONFIG", "ABI_DEBUG", "ABI_SAMPLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def write_config(tmp_path: Path, feeds: list[dict[str, str]], *, name: str = "news", module: str = "abi",
                 extra: str = "", path: str | None = "orchestration/rss_feed") -> Path:
    """A config in tmp_path (its datastore is tmp_path/storage/datastore); fast retries for tests."""
    lines = [f"[sources.{name}]", 'kind = "rss"', f'module = "{module}"']
    if path:
        lines.append(f'path = "{path}"')
    lines += ['interval = "30s"', "retries = 2", "retry_max_wait = 0.2", "timeout = 5"]
    if extra:
        lines.append(extra)
    lines.append("feeds = [")
    for feed in feeds:
        inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in feed.items())
        lines.append(f"  {{ {inner} }},")
    lines.append("]")
    cfg = tmp_path / "abi.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


@dataclass
class Env:
    """A config pointing at the server, and helpers to run the CLI and inspect the datastore."""

    tmp_path: Path
    server: FeedServer
    config: Path

    @property
    def datastore(self) -> Path:
        return self.tmp_path / "storage" / "datastore"

    @property
    def module_dir(self) -> Path:
        return self.datastore / "core" / "modules" / "abi"

    @property
    def data_dir(self) -> Path:
        return self.module_dir / "orchestration" / "rss_feed"

    def entry_files(self) -> list[Path]:
        return sorted(p for p in self.data_dir.glob("*.json")) if self.data_dir.exists() else []

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self.entry_files()]

    def state(self, source: str = "news") -> dict[str, Any]:
        return json.loads((self.module_dir / "orchestration" / "state" / f"{source}.json").read_text())

    def runs(self) -> list[dict[str, Any]]:
        folder = self.module_dir / "orchestration" / "history" / "runs"
        runs = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []
        return sorted(runs, key=lambda r: r["started_at"])

    def abi(self, *args: str) -> Result:
        return run_cli(*args, "--config", str(self.config))

    def collect(self, *args: str) -> Result:
        return run_cli("collect", "rss", "--config", str(self.config), *args)

    def collect_json(self, *args: str) -> tuple[Result, dict[str, Any]]:
        result = self.collect("--json", *args)
        return result, json.loads(result.stdout)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Result:
    """Run the typer app in-process (fast, same code path as the console script)."""
    from cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, list(args), catch_exceptions=False)
    return Result(res.exit_code, res.stdout, res.stderr)


def run_abi_process(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the installed `abi` console script as a real process."""
    return subprocess.run([str(ABI_BIN), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def news_feeds(server: FeedServer, queries: tuple[str, ...] = ("AI", "OpenAI", "NASA"), items: int = 5,
               **route: Any) -> list[dict[str, str]]:
    feeds = []
    for q in queries:
        path = f"/{q.lower()}.xml"
        server.set_feed(path, sample_rss(q, items=items), **route)
        feeds.append({"url": server.url(path), "query": q})
    return feeds


@pytest.fixture
def env(tmp_path: Path, server: FeedServer) -> Env:
    return Env(tmp_path, server, write_config(tmp_path, news_feeds(server)))
