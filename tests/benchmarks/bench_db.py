"""Benchmark of the database collection path (SQLite), measured on this machine.

Not a pytest test: run it as `.venv/bin/python tests/benchmarks/bench_db.py [--repeat N] [--json PATH]`.

Measures (the issue's benchmark: "DB: 1,000,000 rows from SQLite, rows/s and peak memory (flat), against
a bare sqlite3 cursor loop reading the same rows in the same run (goal: within 2x of it); a re-run with
nothing new within 2x of `abi --help` measured in the same run (the work must cost less than the
start-up).")
  1. `abi collect db --json` as a subprocess of the venv's console script, cold (fresh empty datastore):
     1,000,000 rows of ~100 bytes read in batches and stored as JSON Lines; wall time, rows/s and the
     peak RSS of the abi process. Checked afterwards: 1,000,000 new, and as many keys in the key index.
  2. The same cold run on a 100,000-row table of the same shape, for its peak RSS: memory is flat
     when the 1M peak is not ~10x the 100k peak.
  3. The re-run on the 1M datastore with nothing new (the query carries the stored (cursor, key)
     watermark and returns no row), against `abi --help` measured in the same session.
  4. The baseline: a `python -c` subprocess that opens the same file read-only and runs the very
     query the collector runs cold (`collectors.db.build_query` on the same configuration, no
     watermark), iterating with `fetchmany(batch_size)` and turning each row into a dict, rows
     discarded: what a careful hand-written loop does.
  5. The same bare loop that also writes each row with `json.dumps` into a file (no fsync), to show
     what writing costs.

The SQLite file is generated in a temporary folder: table `orders` (1,000,000 rows) and `orders_small`
(100,000 rows), `id INTEGER PRIMARY KEY`, six data columns (~100 bytes a row), `updated_at` ISO-8601
text shared by 10 rows each and not in id order, and an index on (updated_at, id). Peak RSS comes from
`os.wait4(pid)`, the kernel's rusage of exactly that child (ru_maxrss).

Every loop is bounded by --repeat. Uses only the standard library and the project's own modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
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

ROWS = 1_000_000
SMALL = 100_000
ROWS_PER_TIMESTAMP = 10
BASE_EPOCH = 1_714_557_600  # 2024-05-01T10:00:00Z
QUICK_RUNS = 5  # re-runs and `abi --help` per repeat: both are short, so a few samples each
RUN_TIMEOUT = 1800.0

GOALS = {
    "ratio": ("≤ 2× baseline", lambda v: v <= 2.0),
    "rerun_ratio": ("≤ 2× `abi --help`", lambda v: v <= 2.0),
    "flat": ("flat: ≪ 10× the 100k peak", lambda v: v < 3.0),
}

STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")
WORDS = ("express", "gift wrap", "leave at door", "fragile", "call on arrival", "second floor",
         "no invoice", "priority", "back entrance", "weekend delivery")


# --------------------------------------------------------------------------- the database


def _rows(count: int) -> Any:
    """`count` deterministic rows; each timestamp is shared by ROWS_PER_TIMESTAMP rows, out of id order."""
    stamps = count // ROWS_PER_TIMESTAMP
    for i in range(1, count + 1):
        second = (i * 7919) % stamps  # 7919 is prime and coprime with 10^k: every stamp exactly 10 times
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE_EPOCH + second))
        yield (i, f"customer-{(i * 31) % 250_000:06d}", f"user{(i * 17) % 500_000}@example.com",
               STATUSES[i % len(STATUSES)], round(((i * 2654435761) % 1_000_000) / 100, 2),
               CURRENCIES[i % len(CURRENCIES)], f"{WORDS[i % len(WORDS)]}; ref {i:08d}", ts)


def make_database(path: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # generation only; the bench reads the file afterwards
        for table, count in (("orders", ROWS), ("orders_small", SMALL)):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, email TEXT NOT NULL, "
                         "status TEXT NOT NULL, amount REAL NOT NULL, currency TEXT NOT NULL, note TEXT, "
                         "updated_at TEXT NOT NULL)")
            conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(count))
            conn.execute(f"CREATE INDEX {table}_updated ON {table} (updated_at, id)")
        row_bytes = conn.execute("SELECT avg(length(customer) + length(email) + length(status) + 8 + "
                                 "length(currency) + length(note) + length(updated_at) + 8) FROM orders").fetchone()[0]
    conn.close()
    return {"seconds": time.perf_counter() - t0, "bytes": path.stat().st_size, "row_bytes": row_bytes}


def config_text(table: str) -> str:
    return "\n".join([
        f"[sources.{table}]", 'kind = "db"', 'module = "bench"', 'url = "sqlite:///app.db"',
        f'query = "SELECT id, customer, email, status, amount, currency, note, updated_at FROM {table}"',
        'cursor = "updated_at"', 'primary_key = "id"', 'write = "append"',
    ]) + "\n"


def query_for(config: Path, mark: dict[str, Any] | None = None) -> tuple[str, list[Any], int, Any]:
    """The SQL the collector runs for this configuration (cold: no watermark), its batch size and DbConfig."""
    from collectors.db import build_query
    from storage.config import load_config

    (src,) = load_config(config).sources.values()
    sql, params = build_query(src.db, mark)
    return sql, params, src.db.batch_size, src.db


def query_plan(db: Path, sql: str, params: list[Any]) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    conn.close()
    return "; ".join(row[-1] for row in plan)


# --------------------------------------------------------------------------- measured children


  # KiB on Linux


BASELINE = r"""
import json, sqlite3, sys, time
path, sql, params, batch_size, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t0 = time.perf_counter()
conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
cur = conn.execute(sql, params)
columns = [d[0] for d in cur.description]
rows = 0
if out:
    with open(out, "w", encoding="utf-8") as sink:
        while batch := cur.fetchmany(batch_size):
            for record in [dict(zip(columns, row)) for row in batch]:
                sink.write(json.dumps(record) + "\n")
            rows += len(batch)
else:
    while batch := cur.fetchmany(batch_size):
        records = [dict(zip(columns, row)) for row in batch]
        rows += len(records)
conn.close()
print(json.dumps({"rows": rows, "loop_s": time.perf_counter() - t0}))
"""


def child_env(ds_root: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ABI_CONFIG", "ABI_DATASTORE")}
    if ds_root is not None:
        env["ABI_DATASTORE"] = str(ds_root)
    return env


def abi_run(config: Path, ds_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    res = run_measured([str(ABI), "collect", "db", "--config", str(config), "--json"], child_env(ds_root))
    check(res["code"] == 0, f"abi collect db exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    try:
        record = json.loads(res["stdout"])
    except ValueError:
        raise SystemExit(f"bench: abi --json printed no JSON: {res['stdout'][:500]!r}") from None
    if isinstance(record, list):
        (record,) = record
    return res, record


def baseline_run(db: Path, sql: str, params: list[Any], batch_size: int, out: Path | None,
                 expected: int) -> dict[str, Any]:
    res = run_measured([sys.executable, "-c", BASELINE, str(db), sql, json.dumps(params), str(batch_size),
                        str(out or "")], child_env())
    check(res["code"] == 0, f"baseline exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    res.update(json.loads(res["stdout"]))
    check(res["rows"] == expected, f"baseline read {res['rows']} rows, not {expected}")
    return res


def index_keys(ds_root: Path, source: str) -> int:
    """Keys in the source's key index: a first run must leave all of them there (later runs classify by it)."""
    from storage.paths import Datastore

    path = Datastore(ds_root).state_file("bench", source).with_suffix(".keys.sqlite")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        count = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    conn.close()
    return count


def help_run() -> dict[str, Any]:
    res = run_measured([str(ABI), "--help"], child_env())
    check(res["code"] == 0 and "collect" in res["stdout"], f"abi --help failed: {res['stderr'].strip()}")
    return res


def bench(repeat: int, work: Path) -> dict[str, Any]:
    db = work / "app.db"
    print(f"  generating {ROWS:,} + {SMALL:,} rows ...", file=sys.stderr, flush=True)
    made = make_database(db)
    cfg_big, cfg_small = work / "big.toml", work / "small.toml"
    cfg_big.write_text(config_text("orders"), encoding="utf-8")
    cfg_small.write_text(config_text("orders_small"), encoding="utf-8")
    sql, params, batch_size, dbcfg = query_for(cfg_big)
    plans = {"cold": query_plan(db, sql, params)}

    samples: dict[str, list[float]] = {k: [] for k in (
        "cold", "cold_rss", "small", "small_rss", "baseline", "baseline_loop", "baseline_rss",
        "dump", "dump_loop", "dump_rss", "rerun", "rerun_rss", "help", "help_rss")}
    stored = dump_bytes = 0
    help_run()  # one untimed run: .pyc files and page cache warm
    for i in range(repeat):
        # the small run first: it also warms the .pyc files of the collector and storage modules
        print(f"  repeat {i + 1}: abi cold, {SMALL:,} rows ...", file=sys.stderr, flush=True)
        ds = work / f"small-{i}"
        res, rec = abi_run(cfg_small, ds)
        check(rec["counts"].get("new") == SMALL, f"100k cold run: {rec['counts']}")
        samples["small"].append(res["seconds"])
        samples["small_rss"].append(res["maxrss_mb"])
        shutil.rmtree(ds, ignore_errors=True)

        print(f"  repeat {i + 1}: bare sqlite3 loop ...", file=sys.stderr, flush=True)
        res = baseline_run(db, sql, params, batch_size, None, ROWS)
        samples["baseline"].append(res["seconds"])
        samples["baseline_loop"].append(res["loop_s"])
        samples["baseline_rss"].append(res["maxrss_mb"])

        print(f"  repeat {i + 1}: bare sqlite3 loop + json.dumps to a file ...", file=sys.stderr, flush=True)
        dump = work / "dump.jsonl"
        res = baseline_run(db, sql, params, batch_size, dump, ROWS)
        dump_bytes = dump.stat().st_size
        dump.unlink()
        samples["dump"].append(res["seconds"])
        samples["dump_loop"].append(res["loop_s"])
        samples["dump_rss"].append(res["maxrss_mb"])

        print(f"  repeat {i + 1}: abi cold, {ROWS:,} rows ...", file=sys.stderr, flush=True)
        ds = work / f"big-{i}"
        res, rec = abi_run(cfg_big, ds)
        check(rec["counts"].get("new") == ROWS, f"cold run: {rec['counts']}")
        samples["cold"].append(res["seconds"])
        samples["cold_rss"].append(res["maxrss_mb"])
        stored = sum(p.stat().st_size for p in ds.rglob("*.jsonl"))
        check(index_keys(ds, "orders") == ROWS, "the key index does not hold every key after the cold run")
        batches = rec["counts"].get("batches")
        mark = rec["details"]["watermark_after"]
        if "rerun" not in plans:
            plans["rerun"] = query_plan(db, *query_for(cfg_big, mark)[:2])

        print(f"  repeat {i + 1}: abi re-run, nothing new, and abi --help ({QUICK_RUNS} each) ...",
              file=sys.stderr, flush=True)
        for _ in range(QUICK_RUNS):
            res, rec = abi_run(cfg_big, ds)
            c = rec["counts"]
            check(c.get("records") == 0 and c.get("new") == 0 and not rec.get("files_written"),
                  f"re-run read or wrote rows: {c}")
            samples["rerun"].append(res["seconds"])
            samples["rerun_rss"].append(res["maxrss_mb"])
            res = help_run()
            samples["help"].append(res["seconds"])
            samples["help_rss"].append(res["maxrss_mb"])
        shutil.rmtree(ds, ignore_errors=True)

    out: dict[str, Any] = {k: stats(v) for k, v in samples.items()}

    def ratio(a: str, b: str) -> dict[str, float]:
        return {"median": out[a]["median"] / out[b]["median"], "min": out[a]["min"] / out[b]["min"]}

    out.update(ratio=ratio("cold", "baseline"), ratio_loop=ratio("cold", "baseline_loop"),
               ratio_dump=ratio("cold", "dump"), rerun_ratio=ratio("rerun", "help"),
               rss_growth=ratio("cold_rss", "small_rss"))
    out.update(database=made, stored_bytes=stored, dump_bytes=dump_bytes, batch_size=batch_size,
               batches=batches, sql=sql, plans=plans, lookback=dbcfg.lookback)
    return out


# --------------------------------------------------------------------------- profile


def profile(work: Path, top: int) -> str:
    """cProfile of one in-process cold `collect_db` call on the 1M-row table."""
    import cProfile
    import io
    import pstats

    from collectors.db import collect_db
    from storage.config import load_config

    saved = os.environ.get("ABI_DATASTORE")
    try:
        os.environ["ABI_DATASTORE"] = str(work / "prof-ds")
        config = load_config(work / "big.toml")
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        records = prof.runcall(collect_db, config=config, command=["bench"])
        seconds = time.perf_counter() - t0
        check(records[0]["counts"].get("new") == ROWS, f"profiled run: {records[0]['counts']}")
    finally:
        if saved is None:
            os.environ.pop("ABI_DATASTORE", None)
        else:
            os.environ["ABI_DATASTORE"] = saved
        shutil.rmtree(work / "prof-ds", ignore_errors=True)
    text = io.StringIO()
    stats_ = pstats.Stats(prof, stream=text).strip_dirs()
    text.write(f"in-process cold collect_db under cProfile: {seconds:.2f} s\n")
    stats_.sort_stats("tottime").print_stats(top)
    stats_.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


# --------------------------------------------------------------------------- report


def verdict(key: str, value: float) -> str:
    goal, test = GOALS[key]
    return f"{goal} ({'met' if test(value) else 'MISSED'})"


def table(r: dict[str, Any]) -> str:
    def sec(v: float) -> str:
        return f"{v:.3f} s" if v < 1 else f"{v:.2f} s"

    def mb(v: float) -> str:
        return f"{v:.0f} MB"

    def rate(s: float, n: int = ROWS) -> str:
        return f"{n / s:,.0f} rows/s"

    def x(key: str) -> tuple[str, str]:
        return f"{r[key]['median']:.2f}×", f"{r[key]['min']:.2f}×"

    def pair(key: str, fmt: Any = sec) -> tuple[str, str]:
        return fmt(r[key]["median"]), fmt(r[key]["min"])

    rows = [
        (f"`abi collect db` cold ({ROWS:,} rows, {r['batches']} batches of {r['batch_size']:,})", *pair("cold"), "-"),
        ("  rows/s", rate(r["cold"]["median"]), rate(r["cold"]["min"]), "-"),
        ("  peak RSS of the abi process", *pair("cold_rss", mb), "-"),
        ("bare sqlite3 loop: same query, `fetchmany`, dict per row (subprocess)", *pair("baseline"), "reference"),
        ("  rows/s", rate(r["baseline"]["median"]), rate(r["baseline"]["min"]), "-"),
        ("  of which the loop (no start-up)", *pair("baseline_loop"), "-"),
        ("  peak RSS", *pair("baseline_rss", mb), "-"),
        ("bare loop + `json.dumps` of each row into a file (subprocess)", *pair("dump"), "-"),
        ("  peak RSS", *pair("dump_rss", mb), "-"),
        ("abi cold / bare loop", *x("ratio"), verdict("ratio", r["ratio"]["median"])),
        ("abi cold / bare loop, loop only", *x("ratio_loop"), "-"),
        ("abi cold / bare loop + json.dumps", *x("ratio_dump"), "-"),
        (f"`abi collect db` cold, {SMALL:,} rows", *pair("small"), "-"),
        ("  peak RSS", *pair("small_rss", mb), "-"),
        (f"peak RSS {ROWS // 1000:,}k / {SMALL // 1000}k (10× the rows)", *x("rss_growth"),
         verdict("flat", r["rss_growth"]["median"])),
        ("`abi collect db` re-run, nothing new (1M-row table)", *pair("rerun"), "-"),
        ("  peak RSS", *pair("rerun_rss", mb), "-"),
        ("`abi --help`", *pair("help"), "-"),
        ("re-run / `abi --help`", *x("rerun_ratio"), verdict("rerun_ratio", r["rerun_ratio"]["median"])),
    ]
    lines = ["| measure | median | min | goal |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=1,
                        help="repetitions of each large timed run (default 1: the runs are large); the re-run "
                             f"and `abi --help` run {QUICK_RUNS}× per repetition")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--profile", type=int, metavar="TOP", default=0,
                        help="also profile an in-process cold collect_db call and print the TOP entries")
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
    command = f"cd {ROOT} && {python_arg} tests/benchmarks/bench_db.py --repeat {args.repeat}"
    print(f"# abi-orchestration database benchmark (repeat={args.repeat})")
    res: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "rows": ROWS, "small": SMALL,
                           "command": command}
    work = Path(tempfile.mkdtemp(prefix="abi-bench-db-"))
    try:
        res["db"] = r = bench(args.repeat, work)
        if args.profile:
            print("profiling ...", file=sys.stderr, flush=True)
            res["profile"] = profile(work, args.profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    m, d = res["machine"], r["database"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['platform']})")
    print(f"Database: SQLite file of {d['bytes'] / 1e6:.0f} MB (generated in {d['seconds']:.1f} s), table of "
          f"{ROWS:,} rows (+ {SMALL:,}), ≈{d['row_bytes']:.0f} B of data a row, {ROWS_PER_TIMESTAMP} rows per "
          "updated_at, index on (updated_at, id); write = \"append\".")
    print(f"Cold query: {r['sql']}\n  plan: {r['plans']['cold']}\n  re-run plan: {r['plans'].get('rerun')}")
    print(f"min = best repeat (shortest time, smallest RSS); re-run and `abi --help`: {QUICK_RUNS} samples a "
          "repeat\n")
    print(table(r))
    print(f"\nStored by the cold run: {r['stored_bytes'] / 1e6:.0f} MB of JSON Lines "
          f"(the bare loop's json.dumps file: {r['dump_bytes'] / 1e6:.0f} MB).")
    print(f"\nReproduce: {command}")
    if args.profile:
        print("\n" + res["profile"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
