"""Benchmark of `abi tick` with nothing due and of `abi collect files` on a big folder, on this machine.

Not a pytest test: run it as `.venv/bin/python tests/benchmarks/bench_schedule.py [--repeat N] [--json PATH]`.

Measures (the issue's benchmarks: "Schedules: `abi tick` with nothing due over 50 configured sources
within 2x of `abi --help` measured in the same run" and "Folders: 10,000 small files (~1 KB) in one
folder, files/s against a bare Python copy loop in the same run, and a re-run with nothing new"):
  1. `abi tick` as a subprocess of the venv's console script (what the `* * * * *` cron line runs),
     over 50 configured sources that need no server: 40 `files` sources and 10 SQLite `db` sources
     in 5 modules, all with `interval = "1h"`, after one priming tick that ran each of them once.
     Every timed tick must print "nothing due (50 sources)"; one `--json` tick afterwards checks that
     every row is `wait`. Against `abi --help`, interleaved with it (goal: within 2x).
  2. `abi collect files --json` cold (fresh datastore) on 10,000 files of ~1 KB in one folder,
     `process = "copy"`: wall time, files/s and peak RSS of the abi process.
  3. The baseline: a `python -c` subprocess that lists the same folder and `shutil.copyfile`s every
     file into a fresh folder (no hash, no sidecar, no state, no fsync): what a bare copy loop does.
  4. The re-run of `abi collect files` with nothing new (every file unchanged by its stats).

Every child's wall time includes interpreter start-up. Peak RSS comes from `os.wait4(pid)`, the
kernel's rusage of exactly that child (ru_maxrss). When the tick goal is missed (or with
--always-profile), an in-process `load_config` + `collectors.scheduler.tick` call is profiled and
`python -X importtime` of `abi tick` is compared with that of `abi --help`.

Every loop is bounded by --repeat. Uses only the standard library and the project's own modules.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import check, machine, run_measured, stats  # tests/benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent  # not resolved: the venv's bin folder, where `abi` lives
ABI = BIN / "abi"

FILES_SOURCES = 40
DB_SOURCES = 10
SOURCES = FILES_SOURCES + DB_SOURCES
MODULES = 5
FILES_PER_SOURCE = 3  # small files in each watched folder of the tick configuration
DB_ROWS = 100  # rows in each SQLite table of the tick configuration
INTERVAL = "1h"
TICK_RUNS = 3  # timed ticks and `abi --help` runs per repeat: both are short, so a few samples each

FOLDER_FILES = 10_000
FILE_SIZE = 1024
RUN_TIMEOUT = 900.0

GOALS = {
    "tick_ratio": ("≤ 2× `abi --help`", lambda v: v <= 2.0),
}


# --------------------------------------------------------------------------- measured children


  # KiB on Linux


PYCACHE: list[Path] = []  # with --cache-bytecode: the children's PYTHONPYCACHEPREFIX (a temporary folder)


def child_env(ds_root: Path | None = None) -> dict[str, str]:
    drop = ("ABI_CONFIG", "ABI_DATASTORE", "ABI_DEBUG") + (("PYTHONDONTWRITEBYTECODE",) if PYCACHE else ())
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE[0])
    if ds_root is not None:
        env["ABI_DATASTORE"] = str(ds_root)
    return env


def help_run() -> dict[str, Any]:
    res = run_measured([str(ABI), "--help"], child_env())
    check(res["code"] == 0 and "tick" in res["stdout"], f"abi --help failed: {res['stderr'].strip()}")
    return res


def settle() -> None:
    """Flush every pending write (untimed), so that no run pays for the previous one's writeback."""
    os.sync()


def _age(path: Path, seconds: float = 120) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


# --------------------------------------------------------------------------- 1. tick over 50 sources


def make_tick_setup(work: Path) -> Path:
    """50 sources (40 folders, 10 SQLite files) in 5 modules, each with interval = INTERVAL."""
    lines: list[str] = []
    for i in range(FILES_SOURCES):
        inbox = work / "inboxes" / f"in{i:02d}"
        inbox.mkdir(parents=True)
        for j in range(FILES_PER_SOURCE):
            path = inbox / f"f{j}.txt"
            path.write_bytes(f"source {i} file {j}\n".encode() * 20)
            _age(path)
        lines += [f"[sources.folder{i:02d}]", 'kind = "files"', f'module = "m{i % MODULES}"',
                  f'path = "inboxes/in{i:02d}"', f'interval = "{INTERVAL}"', "settle_seconds = 0", ""]
    (work / "dbs").mkdir()
    for i in range(DB_SOURCES):
        with sqlite3.connect(work / "dbs" / f"app{i:02d}.db") as conn:
            conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at TEXT NOT NULL)")
            conn.executemany("INSERT INTO items VALUES (?, ?, ?)",
                             [(n, f"item {n}", f"2024-05-01T10:{n // 60:02d}:{n % 60:02d}Z")
                              for n in range(1, DB_ROWS + 1)])
            conn.execute("CREATE INDEX items_updated ON items (updated_at, id)")
        conn.close()
        lines += [f"[sources.table{i:02d}]", 'kind = "db"', f'module = "m{i % MODULES}"',
                  f'url = "sqlite:///dbs/app{i:02d}.db"', 'query = "SELECT id, name, updated_at FROM items"',
                  'cursor = "updated_at"', 'primary_key = "id"', 'write = "append"', f'interval = "{INTERVAL}"', ""]
    config = work / "tick.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


def tick_json(config: Path, ds: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    res = run_measured([str(ABI), "tick", "--config", str(config), "--json"], child_env(ds))
    check(res["code"] == 0, f"abi tick --json exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    try:
        return res, json.loads(res["stdout"])
    except ValueError:
        raise SystemExit(f"bench: abi tick --json printed no JSON: {res['stdout'][:500]!r}") from None


def tick_plain(config: Path, ds: Path) -> dict[str, Any]:
    res = run_measured([str(ABI), "tick", "--config", str(config)], child_env(ds))
    check(res["code"] == 0, f"abi tick exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    check(f"nothing due ({SOURCES} sources)" in res["stdout"], f"abi tick ran something: {res['stdout'][-2000:]!r}")
    return res


def bench_tick(repeat: int, work: Path) -> dict[str, Any]:
    config = make_tick_setup(work)
    ds = work / "tick-ds"
    print(f"  priming tick: {SOURCES} sources run once ...", file=sys.stderr, flush=True)
    prime, rows = tick_json(config, ds)
    check(len(rows) == SOURCES, f"the priming tick listed {len(rows)} sources, not {SOURCES}")
    bad = [r for r in rows if r["action"] != "ran" or r.get("status") != "success"]
    check(not bad, f"the priming tick did not run every source: {bad[:3]}")
    help_run()  # untimed: .pyc files and page cache warm
    tick_plain(config, ds)  # untimed: the first tick after priming
    samples: dict[str, list[float]] = {k: [] for k in ("tick", "tick_rss", "help", "help_rss")}
    for i in range(repeat):
        print(f"  repeat {i + 1}: abi tick, nothing due, and abi --help ({TICK_RUNS} each) ...",
              file=sys.stderr, flush=True)
        for _ in range(TICK_RUNS):
            res = tick_plain(config, ds)
            samples["tick"].append(res["seconds"])
            samples["tick_rss"].append(res["maxrss_mb"])
            res = help_run()
            samples["help"].append(res["seconds"])
            samples["help_rss"].append(res["maxrss_mb"])
    res, rows = tick_json(config, ds)
    waiting = [r for r in rows if r["action"] == "wait" and r["reason"] == "not due yet"]
    check(len(waiting) == SOURCES, f"after the timed ticks, {SOURCES - len(waiting)} sources were not waiting")
    out: dict[str, Any] = {k: stats(v) for k, v in samples.items()}
    out["tick_json"] = res["seconds"]
    out["tick_ratio"] = {"median": out["tick"]["median"] / out["help"]["median"],
                         "min": out["tick"]["min"] / out["help"]["min"]}
    out["prime"] = {"seconds": prime["seconds"], "maxrss_mb": prime["maxrss_mb"]}
    out["config"] = str(config)
    return out


# --------------------------------------------------------------------------- 2. a folder of 10,000 files


def make_folder(inbox: Path) -> int:
    inbox.mkdir(parents=True)
    total = 0
    for i in range(FOLDER_FILES):
        head = f"file {i:05d}\n".encode()
        data = head + bytes(97 + (i * 7 + j) % 26 for j in range(FILE_SIZE - len(head) - 1)) + b"\n"
        path = inbox / f"n{i:05d}.txt"
        path.write_bytes(data)
        _age(path)
        total += len(data)
    return total


def files_config(work: Path) -> Path:
    config = work / "files.toml"
    config.write_text("\n".join(["[sources.drop]", 'kind = "files"', 'module = "ingest"', 'path = "inbox"',
                                 "settle_seconds = 0"]) + "\n", encoding="utf-8")
    return config


def files_run(config: Path, ds: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    res = run_measured([str(ABI), "collect", "files", "--config", str(config), "--json"], child_env(ds))
    check(res["code"] == 0, f"abi collect files exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    try:
        record = json.loads(res["stdout"])
    except ValueError:
        raise SystemExit(f"bench: abi --json printed no JSON: {res['stdout'][:500]!r}") from None
    if isinstance(record, list):
        (record,) = record
    return res, record


BASELINE = r"""
import json, os, shutil, sys, time
src, dst = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
os.makedirs(dst)
n = 0
for name in sorted(os.listdir(src)):
    shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    n += 1
print(json.dumps({"files": n, "loop_s": time.perf_counter() - t0}))
"""


def baseline_run(inbox: Path, target: Path) -> dict[str, Any]:
    res = run_measured([sys.executable, "-c", BASELINE, str(inbox), str(target)], child_env())
    check(res["code"] == 0, f"baseline exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    res.update(json.loads(res["stdout"]))
    check(res["files"] == FOLDER_FILES, f"baseline copied {res['files']} files, not {FOLDER_FILES}")
    return res


def bench_files(repeat: int, work: Path) -> dict[str, Any]:
    print(f"  generating {FOLDER_FILES:,} files of {FILE_SIZE} bytes ...", file=sys.stderr, flush=True)
    total = make_folder(work / "inbox")
    config = files_config(work)
    samples: dict[str, list[float]] = {k: [] for k in (
        "cold", "cold_rss", "baseline", "baseline_loop", "baseline_rss", "rerun", "rerun_rss")}
    stored = 0
    help_run()
    for i in range(repeat):
        print(f"  repeat {i + 1}: bare copy loop ...", file=sys.stderr, flush=True)
        target = work / f"copy-{i}"
        settle()
        res = baseline_run(work / "inbox", target)
        samples["baseline"].append(res["seconds"])
        samples["baseline_loop"].append(res["loop_s"])
        samples["baseline_rss"].append(res["maxrss_mb"])
        shutil.rmtree(target, ignore_errors=True)

        print(f"  repeat {i + 1}: abi collect files cold ...", file=sys.stderr, flush=True)
        ds = work / f"files-ds-{i}"
        settle()
        res, rec = files_run(config, ds)
        c = rec["counts"]
        check(c.get("new_files") == FOLDER_FILES and c.get("processed") == FOLDER_FILES,
              f"cold run: {c}")
        samples["cold"].append(res["seconds"])
        samples["cold_rss"].append(res["maxrss_mb"])
        stored = sum(p.stat().st_size for p in ds.rglob("*") if p.is_file())

        print(f"  repeat {i + 1}: abi collect files re-run ...", file=sys.stderr, flush=True)
        settle()
        res, rec = files_run(config, ds)
        c = rec["counts"]
        check(c.get("unchanged_files") == FOLDER_FILES and c.get("processed") == 0 and not rec.get("files_written"),
              f"re-run processed files: {c}")
        samples["rerun"].append(res["seconds"])
        samples["rerun_rss"].append(res["maxrss_mb"])
        shutil.rmtree(ds, ignore_errors=True)

    out: dict[str, Any] = {k: stats(v) for k, v in samples.items()}

    def ratio(a: str, b: str) -> dict[str, float]:
        return {"median": out[a]["median"] / out[b]["median"], "min": out[a]["min"] / out[b]["min"]}

    out.update(ratio=ratio("cold", "baseline"), ratio_loop=ratio("cold", "baseline_loop"),
               rerun_cold=ratio("rerun", "cold"), rerun_baseline=ratio("rerun", "baseline"))
    out.update(input_bytes=total, stored_bytes=stored)
    return out


# --------------------------------------------------------------------------- profile


def profile_tick(config: Path, ds: Path, top: int, calls: int = 20) -> dict[str, Any]:
    """cProfile of `load_config` + `tick` in this process: the first call (cold) and `calls` warm ones."""
    import cProfile
    import io
    import pstats

    from collectors.scheduler import tick
    from storage.config import load_config

    def once() -> list[dict[str, Any]]:
        return tick(config=load_config(config), command=["bench"])

    saved = os.environ.get("ABI_DATASTORE")
    os.environ["ABI_DATASTORE"] = str(ds)
    try:
        text = io.StringIO()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        rows = prof.runcall(once)
        first = time.perf_counter() - t0
        check(all(r["action"] == "wait" for r in rows), "the profiled tick ran something")
        text.write(f"--- first in-process load_config + tick (cold, lazy imports included) under cProfile: "
                   f"{first * 1000:.1f} ms\n")
        pstats.Stats(prof, stream=text).strip_dirs().sort_stats("cumulative").print_stats(top)
        plain = []
        for _ in range(calls):
            t0 = time.perf_counter()
            once()
            plain.append(time.perf_counter() - t0)
        prof = cProfile.Profile()
        for _ in range(calls):
            prof.runcall(once)
        text.write(f"--- {calls} warm in-process load_config + tick calls: median {statistics.median(plain) * 1000:.1f}"
                   f" ms each without the profiler\n")
        st = pstats.Stats(prof, stream=text).strip_dirs()
        st.sort_stats("tottime").print_stats(top)
        st.sort_stats("cumulative").print_stats(top)
    finally:
        if saved is None:
            os.environ.pop("ABI_DATASTORE", None)
        else:
            os.environ["ABI_DATASTORE"] = saved
    return {"first_ms": first * 1000, "warm_ms": statistics.median(plain) * 1000, "text": text.getvalue()}


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_tree(cmd: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    """`python -X importtime` of `cmd`: the import tree, each node {name, us (cumulative), children}."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, check=False)
    pending: dict[int, list[dict[str, Any]]] = {}
    for line in proc.stderr.splitlines():  # post-order: a module's line follows its children's, one level deeper
        m = IMPORT_LINE.match(line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            node = {"name": m.group(4), "us": int(m.group(2)), "children": pending.pop(depth + 1, [])}
            pending.setdefault(depth, []).append(node)
    return pending.get(0, [])


def _names(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["name"] for n in nodes} | {x for n in nodes for x in _names(n["children"])}


def _outermost(nodes: list[dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
    """The imports not in `known` whose importers are all in `known` (their cumulative time counts once)."""
    out = []
    for n in nodes:
        out += [n] if n["name"] not in known else _outermost(n["children"], known)
    return out


def profile_imports(config: Path, ds: Path, top: int, runs: int = 3) -> dict[str, Any]:
    """Imports `abi tick` pays that `abi --help` does not (best of `runs` of each), by cumulative time."""
    ticks = [import_tree([str(ABI), "tick", "--config", str(config)], child_env(ds)) for _ in range(runs)]
    helps = [import_tree([str(ABI), "--help"], child_env()) for _ in range(runs)]
    tick = min(ticks, key=lambda t: sum(n["us"] for n in t))
    helped = min(helps, key=lambda t: sum(n["us"] for n in t))
    extra = sorted(_outermost(tick, _names(helped)), key=lambda n: -n["us"])
    tick_ms, help_ms = sum(n["us"] for n in tick) / 1000, sum(n["us"] for n in helped) / 1000
    lines = [f"imports (python -X importtime, best of {runs}): abi tick {tick_ms:.0f} ms, abi --help {help_ms:.0f} ms; "
             f"imported by abi tick only: {sum(n['us'] for n in extra) / 1000:.0f} ms, the outermost of them:"]
    for n in extra[:top]:
        inner = sorted(n["children"], key=lambda c: -c["us"])[:4]
        lines.append(f"  {n['us'] / 1000:6.1f} ms  {n['name']}" + (
            "  (" + ", ".join(f"{c['name']} {c['us'] / 1000:.1f}" for c in inner) + ")" if inner else ""))
    return {"tick_ms": tick_ms, "help_ms": help_ms, "extra": {n["name"]: n["us"] / 1000 for n in extra[:top]},
            "text": "\n".join(lines)}


def profile_cli(config: Path, ds: Path, top: int) -> dict[str, Any]:
    """cProfile of a whole `abi tick` process (`python -m cProfile`): imports, typer's parsing, the tick."""
    import pstats

    out = config.parent / "cli.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), str(ABI), "tick", "--config", str(config)]
    res = run_measured(cmd, child_env(ds))
    check(res["code"] == 0, f"profiled abi tick exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    st = pstats.Stats(str(out))
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    lines = [f"--- the whole `abi tick` process under cProfile ({res['seconds'] * 1000:.0f} ms wall), by cumulative "
             "time, the import machinery's own frames left out:", "   cum ms  own ms  function"]
    kept: list[tuple[str, float, float]] = []
    for (file, line, func), (_cc, _nc, tt, ct, _callers) in rows:
        if "importlib" in file or func.startswith("<") or file == "~":
            continue
        if "site-packages/" in file:
            where = file.split("site-packages/", 1)[1]
        else:
            where = file[len(str(ROOT)) + 1:] if file.startswith(str(ROOT) + "/") else Path(file).name
        kept.append((f"{where}:{line}({func})", ct * 1000, tt * 1000))
        if len(kept) >= top:
            break
    lines += [f"  {ct:7.1f} {tt:7.1f}  {name}" for name, ct, tt in kept]
    return {"seconds": res["seconds"], "top": kept, "text": "\n".join(lines)}


# --------------------------------------------------------------------------- report


def verdict(key: str, value: float) -> str:
    goal, test = GOALS[key]
    return f"{goal} ({'met' if test(value) else 'MISSED'})"


def table(t: dict[str, Any], f: dict[str, Any]) -> str:
    def sec(v: float) -> str:
        return f"{v:.3f} s" if v < 1 else f"{v:.2f} s"

    def mb(v: float) -> str:
        return f"{v:.0f} MB"

    def rate(s: float) -> str:
        return f"{FOLDER_FILES / s:,.0f} files/s"

    def x(r: dict[str, Any], key: str) -> tuple[str, str]:
        return f"{r[key]['median']:.2f}×", f"{r[key]['min']:.2f}×"

    def pair(r: dict[str, Any], key: str, fmt: Any = sec) -> tuple[str, str]:
        return fmt(r[key]["median"]), fmt(r[key]["min"])

    rows = [
        (f"`abi tick`, nothing due, {SOURCES} sources ({FILES_SOURCES} files + {DB_SOURCES} SQLite db)",
         *pair(t, "tick"), "-"),
        ("  peak RSS", *pair(t, "tick_rss", mb), "-"),
        ("`abi --help`", *pair(t, "help"), "-"),
        ("  peak RSS", *pair(t, "help_rss", mb), "-"),
        ("tick / `abi --help`", *x(t, "tick_ratio"), verdict("tick_ratio", t["tick_ratio"]["median"])),
        (f"`abi collect files` cold ({FOLDER_FILES:,} files of {FILE_SIZE} B, copy)", *pair(f, "cold"), "-"),
        ("  files/s", rate(f["cold"]["median"]), rate(f["cold"]["min"]), "-"),
        ("  peak RSS", *pair(f, "cold_rss", mb), "-"),
        ("bare copy loop: `listdir` + `shutil.copyfile` (subprocess)", *pair(f, "baseline"), "reference"),
        ("  files/s", rate(f["baseline"]["median"]), rate(f["baseline"]["min"]), "-"),
        ("  of which the loop (no start-up)", *pair(f, "baseline_loop"), "-"),
        ("abi cold / bare copy loop", *x(f, "ratio"), "reported (no goal)"),
        ("abi cold / bare copy loop, loop only", *x(f, "ratio_loop"), "-"),
        (f"`abi collect files` re-run, nothing new ({FOLDER_FILES:,} unchanged)", *pair(f, "rerun"), "-"),
        ("  peak RSS", *pair(f, "rerun_rss", mb), "-"),
        ("re-run / cold", *x(f, "rerun_cold"), "-"),
        ("re-run / bare copy loop", *x(f, "rerun_baseline"), "-"),
    ]
    lines = ["| measure | median | min | goal |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5,
                        help=f"repetitions (default 5); `abi tick` and `abi --help` run {TICK_RUNS}× per repetition")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--profile", type=int, metavar="TOP", default=20,
                        help="when the tick goal is missed, profile it and print the TOP entries (default 20; "
                             "0: never)")
    parser.add_argument("--cache-bytecode", action="store_true",
                        help="let the children cache bytecode (PYTHONPYCACHEPREFIX in a temporary folder, "
                             "PYTHONDONTWRITEBYTECODE dropped), as a normal install does; default: the inherited "
                             "environment, as the other benchmarks")
    parser.add_argument("--always-profile", action="store_true", help="profile the tick even when the goal is met")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    if not 0 <= args.profile <= 200:
        parser.error("--profile must be between 0 and 200")
    if not ABI.is_file():
        parser.error(f"{ABI} not found: run `make install` and use the venv's python")

    python = Path(sys.executable)
    python_arg = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    command = (f"cd {ROOT} && {python_arg} tests/benchmarks/bench_schedule.py --repeat {args.repeat}"
               + (" --cache-bytecode" if args.cache_bytecode else ""))
    print(f"# abi-orchestration schedule and folder benchmark (repeat={args.repeat})")
    res: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "sources": SOURCES,
                           "files": FOLDER_FILES, "command": command}
    work = Path(tempfile.mkdtemp(prefix="abi-bench-schedule-"))
    if args.cache_bytecode:
        PYCACHE.append(work / "pycache")
    bytecode = ("cached (PYTHONPYCACHEPREFIX)" if PYCACHE else
                "compiled from source at every start (PYTHONDONTWRITEBYTECODE is set)"
                if os.environ.get("PYTHONDONTWRITEBYTECODE") else "as the environment caches it")
    res["bytecode"] = bytecode
    try:
        (work / "tick").mkdir()
        (work / "files").mkdir()
        res["tick"] = t = bench_tick(args.repeat, work / "tick")
        res["folder"] = f = bench_files(args.repeat, work / "files")
        missed = not GOALS["tick_ratio"][1](t["tick_ratio"]["median"])
        if args.profile and (missed or args.always_profile):
            print("profiling the tick ...", file=sys.stderr, flush=True)
            cfg, ds = Path(t["config"]), work / "tick" / "tick-ds"
            res["profile"] = {"tick": profile_tick(cfg, ds, args.profile),
                              "imports": profile_imports(cfg, ds, args.profile),
                              "cli": profile_cli(cfg, ds, args.profile)}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    m = res["machine"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['platform']})")
    print(f"Tick: {SOURCES} sources ({FILES_SOURCES} files sources on folders of {FILES_PER_SOURCE} files, "
          f"{DB_SOURCES} db sources on SQLite files of {DB_ROWS} rows) in {MODULES} modules, interval = "
          f"\"{INTERVAL}\"; the priming tick that ran them all took {t['prime']['seconds']:.2f} s; "
          f"`abi tick --json` afterwards: {t['tick_json']:.3f} s.")
    print(f"Folder: {FOLDER_FILES:,} files, {f['input_bytes'] / 1e6:.1f} MB; the cold run stored "
          f"{f['stored_bytes'] / 1e6:.1f} MB (copies, sidecars, state, run records).")
    print(f"Bytecode of the children: {bytecode}.")
    print(f"min = best repeat; tick and `abi --help`: {TICK_RUNS} samples a repeat\n")
    print(table(t, f))
    print(f"\nReproduce: {command}")
    if "profile" in res:
        p = res["profile"]
        print("\n" + p["imports"]["text"])
        print(f"\nin-process load_config + tick: first call {p['tick']['first_ms']:.1f} ms, warm "
              f"{p['tick']['warm_ms']:.1f} ms\n")
        print(p["tick"]["text"])
        print(p["cli"]["text"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
