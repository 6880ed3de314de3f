"""A real SPARQL server for the tests: `oxigraph serve` on a free port of 127.0.0.1.

The executable comes with the `oxigraph` package of the dev extras and lives
next to the interpreter (`.venv/bin/oxigraph`). When it is missing the tests
that need it are skipped on a developer's machine and fail in CI (CI=true),
the same policy as tests/pg.py, so a broken install is never mistaken for a pass.

The server runs with `--union-default-graph`, as the remote store expects (a
query without GRAPH sees every graph, like the embedded store).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT = 30.0


def oxigraph_executable() -> Path | None:
    """`oxigraph` beside sys.executable (the venv's), else on PATH, else None."""
    beside = Path(sys.executable).parent / "oxigraph"
    if beside.exists():
        return beside
    found = shutil.which("oxigraph")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_http(port: int) -> bool:
    """True once the server accepts a connection and answers an HTTP request (any status)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/")
    except OSError:
        return False


@contextlib.contextmanager
def start_oxigraph(tmp_path: Path | None = None) -> Iterator[str]:
    """Run `oxigraph serve` with its data under `tmp_path` (a fresh temp folder if None); yield its base URL."""
    exe = oxigraph_executable()
    if exe is None:
        message = "the oxigraph executable was not found (pip package `oxigraph`, in the dev extras)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    own_dir = tmp_path is None
    base = Path(tempfile.mkdtemp(prefix="abi-oxigraph-")) if tmp_path is None else tmp_path
    location, log_path = base / "oxigraph-data", base / "oxigraph.log"
    port = _free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(exe), "serve", "--location", str(location), "--bind", f"127.0.0.1:{port}",
                                 "--union-default-graph"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _answers_http(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-800:]
                pytest.fail(f"oxigraph serve did not start on port {port} (exit {proc.poll()}): {tail}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def oxigraph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server per test module (start-up is ~0.1 s, but data is shared: tests use their own graphs)."""
    with start_oxigraph(tmp_path_factory.mktemp("oxigraph")) as url:
        yield url
