"""What the benchmark scripts share: a description of the machine they ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


ROOT = Path(__file__).resolve().parents[2]


def run_measured(cmd: list[str], env: dict[str, str], *, timeout: float = 1800.0) -> dict[str, Any]:
    """Run `cmd`; return wall seconds, exit code, output and the child's own peak RSS (os.wait4)."""
    import subprocess
    import tempfile
    import threading
    import time

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        return {"seconds": seconds, "code": proc.returncode, "stdout": out.read().decode(),
                "stderr": err.read().decode(), "maxrss_mb": usage.ru_maxrss / 1024}


def own_peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM of /proc/self/status; ru_maxrss where there is no /proc), in MB.

    Linux carries a parent's peak RSS into its children (fork copies the RSS counters, and exec keeps
    the high-water mark of the memory it replaces), so `run_measured`'s maxrss_mb is never below the
    peak of the process that spawned the child: keep the measuring process small, or have the child
    report this value itself.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check(ok: bool, message: str) -> None:
    if not ok:
        raise SystemExit(f"bench: {message}")


def stats(samples: list[float]) -> dict[str, Any]:
    import statistics

    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "samples": samples}
