"""Benchmark of the RSS collection path, measured on this machine (`make bench`).

Not a pytest test: run it as `.venv/bin/python tests/benchmarks/bench_rss.py [--repeat N] [--json PATH]`.

Measures
  1. `abi collect rss` wall time as a subprocess of the venv's console script, against 15 local
     feeds x 50 entries with 200 ms latency per response (collectors.sample_feeds.FeedServer):
     cold (fresh empty datastore each time) and re-run (every feed answers 304), plus the
     sequential baseline (the same 15 URLs fetched one after another with plain `requests`).
  2. `abi --help` wall time against `python -c "import typer"` (both subprocesses) and their ratio.
  3. Feed parsing throughput of collectors.feeds.parse_feed, in items/s, on the shared corpus
     (../shared/corpus/feeds, skipped when absent) and on a generated 50-item sample feed.
  4. The write path of a cold run: files written, and the time spent publishing (measured on an
     in-process library call, which also shows how much of the CLI time is interpreter start-up).

Every loop is bounded by --repeat or --passes. Uses only the standard library, `requests` (a project
dependency, for the sequential baseline) and the project's own modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from benchlib import check, machine  # noqa: E402  (tests/benchmarks is the script's folder)

from collectors.demo import demo_config_text  # noqa: E402
from collectors.feeds import FeedParseError, parse_feed  # noqa: E402
from collectors.sample_feeds import DEMO_QUERIES, demo_server, feed_path, sample_rss  # noqa: E402
from storage.config import SourceConfig  # noqa: E402
from storage.paths import Datastore  # noqa: E402

FEEDS = len(DEMO_QUERIES)  # 15
ITEMS = 50
LATENCY = 0.2
CORPUS = ROOT.parent / "shared" / "corpus" / "feeds"
CORPUS_SKIP = {".md", ".tsv"}  # README.md and MANIFEST.tsv describe the corpus; they are not feeds
SUBPROCESS_TIMEOUT = 120.0
BIN = Path(sys.executable).parent  # not resolved: the venv's bin folder, where `abi` lives
ABI = BIN / "abi"

GOALS = {
    "cold": ("< 1.5 s", lambda v: v < 1.5),
    "rerun": ("< 1 s", lambda v: v < 1.0),
    "sequential": ("≈ 3 s (reference)", None),
    "help_ratio": ("< 1.5× import typer", lambda v: v < 1.5),
}


# --------------------------------------------------------------------------- helpers


def per_host_setting() -> tuple[int, str]:
    """[sources.news] per_host of the repo's abi.toml, else SourceConfig's default."""
    default = next(f.default for f in fields(SourceConfig) if f.name == "per_host")
    try:
        raw = tomllib.loads((ROOT / "abi.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return int(default), "SourceConfig default (abi.toml unreadable)"
    value = raw.get("sources", {}).get("news", {}).get("per_host")
    if isinstance(value, int) and not isinstance(value, bool):
        return value, "abi.toml [sources.news]"
    return int(default), "SourceConfig default"


def bench_config_text(base_url: str, per_host: int) -> str:
    # the demo's [sources.news] only (not its sample API), with the per_host under test
    news = demo_config_text(base_url).split("[sources.sample_api]")[0]
    return news.replace('kind = "rss"\n', f'kind = "rss"\nper_host = {per_host}\n', 1)


def timed_run(cmd: list[str], *,
              env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, check=False)
    return time.perf_counter() - t0, proc


def stats(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "samples": samples}


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def last_run_record(ds_root: Path, module: str = "abi") -> dict[str, Any]:
    runs = sorted(Datastore(ds_root).runs_dir(module).glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    if not runs:
        raise SystemExit(f"bench: no run record under {ds_root}")
    return json.loads(runs[-1].read_text(encoding="utf-8"))


@contextmanager
def patched(module: Any, names: tuple[str, ...], totals: dict[str, float]) -> Iterator[None]:
    """Wrap module-level functions to add their wall time to `totals` (bench process only)."""
    originals = {name: getattr(module, name) for name in names}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - t0
        return inner

    for name, fn in originals.items():
        setattr(module, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


# --------------------------------------------------------------------------- 1 + 4: collection


def bench_collect(repeat: int, per_host: int) -> dict[str, Any]:
    import collectors.rss as rss
    import storage.jobs as jobs
    from storage.config import load_config

    cold, rerun, sequential, inproc, write_path = [], [], [], [], []
    files_cold = records_cold = requests_cold = requests_rerun = 0
    work = Path(tempfile.mkdtemp(prefix="abi-bench-"))
    try:
        with demo_server(items=ITEMS, latency=LATENCY) as server:
            config_path = work / "bench.toml"
            config_path.write_text(bench_config_text(server.base_url, per_host), encoding="utf-8")
            urls = [server.url(feed_path(q)) for q in DEMO_QUERIES]
            cmd = [str(ABI), "collect", "rss", "--config", str(config_path)]

            for i in range(repeat):
                ds_root = Path(tempfile.mkdtemp(prefix=f"ds-{i}-", dir=work))
                env = {k: v for k, v in os.environ.items() if k != "ABI_CONFIG"}
                env["ABI_DATASTORE"] = str(ds_root)

                before = server.count()
                seconds, proc = timed_run(cmd, env=env)
                check(proc.returncode == 0, f"cold run exited {proc.returncode}: {proc.stderr.strip()}")
                record = last_run_record(ds_root)
                check(record["counts"].get("new") == FEEDS * ITEMS,
                      f"cold run stored {record['counts'].get('new')} entries, expected {FEEDS * ITEMS}")
                cold.append(seconds)
                requests_cold = server.count() - before
                records_cold = len(record["files_written"])
                files_cold = count_files(ds_root)

                before = server.count()
                seconds, proc = timed_run(cmd, env=env)
                check(proc.returncode == 0, f"re-run exited {proc.returncode}: {proc.stderr.strip()}")
                record = last_run_record(ds_root)
                check(record["counts"].get("not_modified") == FEEDS and record["counts"].get("new") == 0,
                      f"re-run was not all 304s: {record['counts']}")
                rerun.append(seconds)
                requests_rerun = server.count() - before

                t0 = time.perf_counter()
                for url in urls:
                    response = requests.get(url, timeout=10)
                    check(response.status_code == 200, f"sequential GET {url}: {response.status_code}")
                sequential.append(time.perf_counter() - t0)

                # The same cold run as one library call in this process (no interpreter start-up,
                # imports already done), with the write path timed.
                ds_lib = Path(tempfile.mkdtemp(prefix=f"lib-{i}-", dir=work))
                os.environ["ABI_DATASTORE"] = str(ds_lib)
                try:
                    config = load_config(config_path)
                    totals: dict[str, float] = {}
                    with patched(rss, ("write_journal", "publish_records", "save_state"), totals), \
                            patched(jobs, ("write_run_record",), totals):
                        t0 = time.perf_counter()
                        records = rss.collect_rss(config=config, command=["bench"])
                        inproc.append(time.perf_counter() - t0)
                finally:
                    os.environ.pop("ABI_DATASTORE", None)
                check(records[0]["counts"].get("new") == FEEDS * ITEMS,
                      f"in-process cold run: {records[0]['counts']}")
                write_path.append(sum(totals.values()))
                shutil.rmtree(ds_root, ignore_errors=True)
                shutil.rmtree(ds_lib, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    return {
        "cold": stats(cold), "rerun": stats(rerun), "sequential": stats(sequential),
        "inprocess_cold": stats(inproc), "write_path": stats(write_path),
        "files_written_cold": files_cold, "entry_files_cold": records_cold,
        "requests_cold": requests_cold, "requests_rerun": requests_rerun,
    }


# --------------------------------------------------------------------------- 2: start-up


def bench_startup(repeat: int) -> dict[str, Any]:
    help_cmd = [str(ABI), "--help"]
    typer_cmd = [sys.executable, "-c", "import typer"]
    for cmd in (help_cmd, typer_cmd):  # one untimed run each: .pyc files and page cache warm
        timed_run(cmd)
    helps, typers = [], []
    for _ in range(repeat):
        seconds, proc = timed_run(help_cmd)
        check(proc.returncode == 0 and "collect" in proc.stdout, f"abi --help failed: {proc.stderr.strip()}")
        helps.append(seconds)
        seconds, proc = timed_run(typer_cmd)
        check(proc.returncode == 0, f"import typer failed: {proc.stderr.strip()}")
        typers.append(seconds)
    h, t = stats(helps), stats(typers)
    return {"help": h, "import_typer": t, "help_ratio": {"median": h["median"] / t["median"],
                                                         "min": h["min"] / t["min"]}}


# --------------------------------------------------------------------------- 3: parsing


def _parse_passes(docs: list[tuple[str, bytes]], passes: int) -> tuple[dict[str, Any], int, list[str]]:
    rates, entries, errors = [], 0, []
    for n in range(passes):
        count, t0 = 0, time.perf_counter()
        for name, body in docs:
            try:
                count += len(parse_feed(body).entries)
            except FeedParseError as exc:
                if n == 0:
                    errors.append(f"{name}: {exc}")
        seconds = time.perf_counter() - t0
        rates.append(count / seconds if seconds > 0 else float("inf"))
        entries = count
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "samples": rates}, entries, errors


def bench_parse(passes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if CORPUS.is_dir():
        docs = [(p.name, p.read_bytes()) for p in sorted(CORPUS.iterdir())
                if p.is_file() and p.suffix.lower() not in CORPUS_SKIP]
        rate, entries, errors = _parse_passes(docs, passes)
        out["corpus"] = {"rate": rate, "files": len(docs), "entries_per_pass": entries, "errors": errors,
                         "path": str(CORPUS)}
    else:
        out["corpus"] = None
        out["corpus_missing"] = str(CORPUS)
    body = sample_rss(DEMO_QUERIES[0], items=ITEMS)
    rate, entries, errors = _parse_passes([("sample", body)] * 4, passes)
    out["sample"] = {"rate": rate, "entries_per_pass": entries, "errors": errors, "bytes": len(body)}
    return out


# --------------------------------------------------------------------------- report


def verdict(key: str, value: float) -> str:
    goal, test = GOALS[key]
    if test is None:
        return goal
    return f"{goal} ({'met' if test(value) else 'MISSED'})"


def table(res: dict[str, Any]) -> str:
    c, s, p = res["collect"], res["startup"], res["parse"]

    def sec(v: float) -> str:
        return f"{v:.3f} s"

    def rate(v: float) -> str:
        return f"{v:,.0f} items/s"

    rows = [
        (f"`abi collect rss` cold ({FEEDS} feeds × {ITEMS}, {LATENCY * 1000:.0f} ms latency, "
         f"per_host={res['per_host']})", sec(c["cold"]["median"]), sec(c["cold"]["min"]),
         verdict("cold", c["cold"]["median"])),
        ("`abi collect rss` re-run (all 304)", sec(c["rerun"]["median"]), sec(c["rerun"]["min"]),
         verdict("rerun", c["rerun"]["median"])),
        (f"sequential baseline ({FEEDS} × `requests.get`)", sec(c["sequential"]["median"]),
         sec(c["sequential"]["min"]), verdict("sequential", 0.0)),
        ("cold, in-process `collect_rss` call (no start-up)", sec(c["inprocess_cold"]["median"]),
         sec(c["inprocess_cold"]["min"]), "-"),
        ("  of which write path (records, journal, state, run record)", sec(c["write_path"]["median"]),
         sec(c["write_path"]["min"]), "-"),
        ("files in the datastore after a cold run (listed in its run record)",
         f"{c['files_written_cold']} ({c['entry_files_cold']})", "-", "-"),
        ("`abi --help`", sec(s["help"]["median"]), sec(s["help"]["min"]), "-"),
        ('`python -c "import typer"`', sec(s["import_typer"]["median"]), sec(s["import_typer"]["min"]), "-"),
        ("`abi --help` / `import typer`", f"{s['help_ratio']['median']:.2f}×",
         f"{s['help_ratio']['min']:.2f}×", verdict("help_ratio", s["help_ratio"]["median"])),
    ]
    if p["corpus"]:
        cp = p["corpus"]
        rows.append((f"parse_feed, corpus ({cp['files']} files, {cp['entries_per_pass']} entries)",
                     rate(cp["rate"]["median"]), rate(cp["rate"]["max"]), "reference"))
    else:
        rows.append((f"parse_feed, corpus (absent: {p['corpus_missing']})", "skipped", "-", "-"))
    rows.append((f"parse_feed, generated {ITEMS}-item sample feed", rate(p["sample"]["rate"]["median"]),
                 rate(p["sample"]["rate"]["max"]), "reference"))
    lines = ["| measure | median | min | goal |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each timed command (default 5)")
    parser.add_argument("--passes", type=int, default=5,
                        help="parsing passes over each document set (default 5)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep stdout and the stderr progress lines in order
    if not 1 <= args.repeat <= 100 or not 1 <= args.passes <= 100:
        parser.error("--repeat and --passes must be between 1 and 100")
    if not ABI.is_file():
        parser.error(f"{ABI} not found: run `make install` and use the venv's python")

    per_host, per_host_from = per_host_setting()
    python = Path(sys.executable)
    python_arg = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    command = (f"cd {ROOT} && {python_arg} tests/benchmarks/bench_rss.py"
               f" --repeat {args.repeat} --passes {args.passes}")
    print(f"# abi-orchestration RSS benchmark (repeat={args.repeat}, passes={args.passes})", flush=True)
    res: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "passes": args.passes,
                           "per_host": per_host, "per_host_from": per_host_from, "command": command}
    print("collecting ...", file=sys.stderr, flush=True)
    res["collect"] = bench_collect(args.repeat, per_host)
    print("start-up ...", file=sys.stderr, flush=True)
    res["startup"] = bench_startup(args.repeat)
    print("parsing ...", file=sys.stderr, flush=True)
    res["parse"] = bench_parse(args.passes)

    m = res["machine"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['platform']})")
    print(f"per_host = {per_host} ({per_host_from}); "
          "min = best repeat (shortest time; for rates, the fastest pass)\n")
    print(table(res))
    c = res["collect"]
    print(f"\nRequests: cold {c['requests_cold']}, re-run {c['requests_rerun']}.")
    if res["parse"]["corpus"] is None:
        print(f"Corpus {res['parse']['corpus_missing']} absent: corpus parsing skipped.")
    elif res["parse"]["corpus"]["errors"]:
        print("Corpus documents rejected by parse_feed: " + "; ".join(res["parse"]["corpus"]["errors"]))
    print(f"\nReproduce: {command}   (or `make bench` for the default --repeat 5)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
