"""Benchmark of `abi status` and the `abi ui` pages with a long history against a short one (`make bench`).

Not a pytest test: run it as `.venv/bin/python tests/benchmarks/bench_ui.py [--repeat N] [--json PATH]`.

Measures (issue 6: "1,000x more history costs less than 1.5x the time"):
  Two datastores under one configuration of 50 RSS sources in 5 modules (no feed is ever fetched):
  SMALL holds 10 runs, BIG holds 10,000 runs (200 per source, one in ten failed). Both are built
  through the storage layer the collectors use (`storage.runs.Run(...).record()` +
  `write_run_record`, which also appends the history index and folds each run into its source's
  summary), with fsync turned off in this setup process only: the build is setup, not a measure.
  Then, for each datastore, in the same run and interleaved:
  1. `abi status` as a process of the venv's console script (what a person types), beside
     `abi --help` (the floor: interpreter start-up and imports).
  2. One `abi ui --port 0` server per datastore, started once; the overview (`/`) and the run
     history fetched over HTTP with urllib: the first request (the page's imports load lazily) and
     the median of the next ones. The default run page shows the newest 200 runs, so over SMALL it
     has 10 rows and over BIG 200: its ratio is reported but is a page-size ratio. The goal is judged
     on `/runs.html?limit=10`, the same 10 rows over both histories.
  Goal: BIG / SMALL < 1.5 for each. When a ratio misses (or with --profile), the page is rendered
  in-process under cProfile over BIG and the top functions are printed.

Every loop is bounded by --repeat. Uses only the standard library and the project's own modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import check, machine, run_measured, stats  # tests/benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent  # not resolved: the venv's bin folder, where `abi` lives
ABI = BIN / "abi"

SOURCES = 50
MODULES = 5
BIG_RUNS = 10_000
SMALL_RUNS = 10
PROCESS_RUNS = 5  # `abi status` and `abi --help` samples per datastore and repeat
HTTP_RUNS = 30  # page fetches per page, datastore and repeat (after the first)
GOAL = 1.5


def write_config(work: Path) -> Path:
    lines = []
    for i in range(SOURCES):
        lines += [f"[sources.src{i:02d}]", 'kind = "rss"', f'module = "m{i % MODULES}"', 'interval = "1h"',
                  f'feeds = [{{ url = "http://127.0.0.1:9/src{i:02d}.xml", query = "q{i}" }}]', ""]
    path = work / "abi.toml"
    path.write_text("\n".join(lines))
    return path


def build_history(root: Path, runs: int) -> None:
    """`runs` run records spread over 50 sources and the last ~10 days, oldest first, as collectors write them."""
    from storage.paths import Datastore
    from storage.runs import Run, iso, write_run_record

    ds = Datastore(root)
    start = datetime.now(UTC) - timedelta(days=10)
    step = timedelta(days=10) / max(runs, 1)
    real_fsync = os.fsync
    os.fsync = lambda fd: None  # setup only: 40,000 fsyncs would measure the disk, not the UI
    try:
        for n in range(runs):
            i = n % SOURCES
            started = start + n * step
            run = Run(module=f"m{i % MODULES}", source=f"src{i:02d}", kind="rss",
                      command=["abi", "collect", "rss"], started=started)
            run.counts.update(feeds=1, fetched=1, new=n % 7, already_stored=20 - n % 7, requests=1, retries=0)
            run.items.append({"feed": f"q{i}", "status": "ok", "http_status": 200, "entries": 20, "new": n % 7})
            if n % 10 == 9:
                run.fail(RuntimeError("all 1 feeds failed; first error: HTTP 500 Internal Server Error"))
            record = run.record()
            record["ended_at"] = iso(started + timedelta(seconds=1))
            record["duration_s"] = 1.0
            write_run_record(ds, record, interval_s=3600)
    finally:
        os.fsync = real_fsync


def child_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABI_")}
    env["ABI_CONFIG"] = str(config)
    return env


def process_time(cmd: list[str], env: dict[str, str], expect: str) -> float:
    res = run_measured(cmd, env)
    check(res["code"] == 0 and expect in res["stdout"], f"{' '.join(cmd)} failed: {res['stderr'].strip()[-300:]}")
    return res["seconds"]


class Server:
    """`abi ui --port 0` over one datastore; ready once it prints its URL."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([str(ABI), "ui", "--port", "0"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:  # not check(): its message would read stderr until the server exits
            self.proc.kill()
            check(False, f"abi ui did not start: {line}{self.proc.communicate()[1][-300:]}")
        self.url = line.split(" on ", 1)[1].split()[0]

    def fetch(self, path: str) -> float:
        t0 = time.perf_counter()
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            body = response.read()
        seconds = time.perf_counter() - t0
        check(response.status == 200 and b"</html>" in body, f"GET {path}: {response.status}")
        return seconds

    def close(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=15)


def profile_page(config: Path, page: str, top: int) -> None:
    import cProfile
    import pstats

    from cli import ui_pages
    from storage.config import load_config

    cfg = load_config(config)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        ui_pages.PAGES[page](cfg, params={})
    prof.disable()
    print(f"\nprofile of 5 renders of {page} over BIG (cumulative):")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=1, help="measure everything this many times (medians)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--profile", type=int, metavar="TOP", default=0,
                        help="profile the pages in-process over BIG and print the TOP functions")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="abi-bench-ui-"))
    try:
        sizes = {"small": SMALL_RUNS, "big": BIG_RUNS}
        configs: dict[str, Path] = {}
        build_s: dict[str, float] = {}
        for name, runs in sizes.items():
            folder = work / name
            folder.mkdir()
            configs[name] = write_config(folder)
            t0 = time.perf_counter()
            build_history(folder / "storage" / "datastore", runs)
            build_s[name] = time.perf_counter() - t0
        samples: dict[str, list[float]] = {}

        def add(key: str, value: float) -> None:
            samples.setdefault(key, []).append(value)

        servers = {name: Server(child_env(cfg)) for name, cfg in configs.items()}
        try:
            for name, server in servers.items():  # the first request of each page: its imports load now
                add(f"{name}.overview_first", server.fetch(""))
                add(f"{name}.runs_first", server.fetch("runs.html"))
            for _ in range(args.repeat):
                for _ in range(PROCESS_RUNS):
                    for name, cfg in configs.items():
                        env = child_env(cfg)
                        add(f"{name}.help", process_time([str(ABI), "--help"], env, "status"))
                        add(f"{name}.status", process_time([str(ABI), "status"], env, "src49"))
                for _ in range(HTTP_RUNS):
                    for name, server in servers.items():
                        add(f"{name}.overview", server.fetch(""))
                        add(f"{name}.runs", server.fetch("runs.html"))
                        add(f"{name}.runs10", server.fetch("runs.html?limit=10"))
        finally:
            for server in servers.values():
                server.close()

        med = {k: stats(v)["median"] for k, v in samples.items()}
        ratios = {what: med[f"big.{what}"] / med[f"small.{what}"]
                  for what in ("status", "overview", "runs", "runs10", "overview_first", "runs_first", "help")}
        result: dict[str, Any] = {
            "machine": machine(), "sources": SOURCES, "modules": MODULES, "runs": sizes,
            "build_s": build_s, "repeat": args.repeat, "samples": samples, "median_s": med, "ratios": ratios,
            "goal": f"big/small < {GOAL}", "met": {k: v < GOAL for k, v in ratios.items() if k != "help"},
        }
        print(f"machine: {result['machine']}")
        print(f"history: {SOURCES} sources in {MODULES} modules; SMALL {SMALL_RUNS} runs, BIG {BIG_RUNS} runs "
              f"(built in {build_s['small']:.2f}s and {build_s['big']:.1f}s)")
        print(f"{'measure':<34}{'SMALL':>10}{'BIG':>10}{'BIG/SMALL':>11}")
        labels = {"help": "abi --help (process)", "status": "abi status (process)",
                  "overview": "GET / (overview), median", "runs": "GET /runs.html (200 rows), median",
                  "runs10": "GET /runs.html?limit=10, median",
                  "overview_first": "GET / first request", "runs_first": "GET /runs.html first request"}
        for key, label in labels.items():
            print(f"{label:<34}{med[f'small.{key}'] * 1000:>8.1f}ms{med[f'big.{key}'] * 1000:>8.1f}ms"
                  f"{ratios[key]:>10.2f}x")
        print("status vs --help: SMALL {:.2f}x, BIG {:.2f}x".format(med["small.status"] / med["small.help"],
                                                                    med["big.status"] / med["big.help"]))
        # The default runs page shows min(200, history) rows: 10 rows over SMALL, 200 over BIG. That ratio
        # measures the page's size, not the history's; runs10 shows the same 10 rows over both.
        missed = [k for k, ok in result["met"].items() if not ok and k not in ("runs", "runs_first")]
        print(f"goal BIG/SMALL < {GOAL}: " + ("met for every measure" if not missed else f"MISSED: {missed}"))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        if missed or args.profile:
            for page in ("index.html", "runs.html"):
                profile_page(configs["big"], page, args.profile or 25)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
