"""A real PostgreSQL server for the tests: initdb in a temp folder, pg_ctl on a free port.

Uses Debian's server binaries (package `postgresql`, installed by .ci/run). When
they are missing the PostgreSQL tests are skipped on a developer's machine and
fail in CI (CI=true), so a broken install is never mistaken for a pass.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "pg-Secr3t-pass"


@dataclass
class Postgres:
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def connect(self):
        import psycopg

        return psycopg.connect(self.url, password=self.password, autocommit=True)


def _bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_postgres() -> Iterator[Postgres]:
    bindir = _bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found (Debian package postgresql; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="abi-pg-"))
    base.chmod(0o755)
    data, sock, log, pwfile = base / "data", base / "sock", base / "server.log", base / "pw"
    sock.mkdir()
    pwfile.write_text(PASSWORD + "\n")
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: use the postgres account
        subprocess.run(["chown", "-R", "postgres:postgres", str(base)], check=True)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "abi", f"--pwfile={pwfile}",
                        "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")[-800:]
        log_tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        pytest.fail(f"could not start PostgreSQL: {detail} {log_tail}")
    try:
        yield Postgres(port=port, user="abi", password=PASSWORD)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)
