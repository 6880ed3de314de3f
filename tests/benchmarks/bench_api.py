"""Benchmark of the JSON API collection path, measured on this machine (`make bench`).

Not a pytest test: run it as `.venv/bin/python tests/benchmarks/bench_api.py [--repeat N] [--json PATH]`.

Measures (the issue's benchmark: "Collect 100,000 records in 1,000 pages from the local server: report
records/s and peak memory, and the re-run cost with nothing changed. Goal: within 2x of the time a bare
requests.Session loop spends fetching the same pages, with flat memory.")
  1. `abi collect api --json` as a subprocess of the venv's console script, cold (fresh empty datastore):
     100,000 records of ~1 KB (~100 MB of JSON) in 1,000 cursor pages of 100; wall time, records/s and
     the peak RSS of the abi process.
  2. The re-run on the same datastore with nothing changed: the request carries the stored watermark
     (`since`), the API answers one page with the boundary record, nothing is written.
  3. The same cold collection at 10,000 records (100 pages, same record size), for its peak RSS:
     memory is flat when the 100k peak is not ~10x the 10k peak.
  4. The baseline: a bare `requests.Session()` loop in a subprocess fetching the same 1,000 pages
     (same cursor pagination, same headers, `resp.json()` per page, records discarded).

The server (collectors.sample_api.SampleAPI on collectors.sample_feeds.FeedServer) runs in a separate
process started by this script (`--serve`, an internal mode), so the measured client never shares a GIL
with it; the abi runs and the baseline talk to the same server process. Peak RSS comes from
`os.wait4(pid)`, the kernel's rusage of exactly that child (ru_maxrss, the high-water mark of its
resident set, which the kernel keeps up to the moment the process exits).

Every loop is bounded by --repeat (and the baseline by the page count). Uses only the standard library,
`requests` (a project dependency) and the project's own modules.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import check, machine, run_measured, stats  # tests/benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent  # not resolved: the venv's bin folder, where `abi` lives
ABI = BIN / "abi"

RECORDS = 100_000
SMALL = 10_000
PER_PAGE = 100
RECORD_BYTES = 1_000  # target size of one record as JSON
STYLE = "cursor"
TOKEN = "bench-tok-5ecret"
TOKEN_ENV = "ABI_BENCH_API_TOKEN"
INITIAL = "2000-01-01T00:00:00Z"
RUN_TIMEOUT = 900.0
SERVER_START_TIMEOUT = 120.0

GOALS = {
    "ratio": ("≤ 2× baseline", lambda v: v <= 2.0),
    "flat": ("flat: ≪ 10× the 10k peak", lambda v: v < 3.0),
}


# --------------------------------------------------------------------------- the server process


def _body_size(records: int) -> int:
    """body_size that makes the largest record about RECORD_BYTES of JSON."""
    from collectors.sample_api import SampleAPI

    probe = SampleAPI(records=1, body_size=0)._make(records, minutes=records)
    return RECORD_BYTES - len(json.dumps(probe))


def serve(records: list[int]) -> int:
    """Internal mode: one FeedServer with a SampleAPI per size at /api<N>; answers on stdin/stdout.

    Prints `READY <json>` ({records: {"url": ..., "bytes": ...}}), then answers `count` lines with the
    number of requests seen so far, and stops at end of input (the bench closed the pipe or died).
    """
    from collectors.sample_api import SampleAPI
    from collectors.sample_feeds import FeedServer

    class IndexedAPI(SampleAPI):
        """SampleAPI whose data never changes here: sort once, find `since` by bisection.

        SampleAPI sorts every record on every request (fine for tests); at 100,000 records that is
        server CPU that a real API (an indexed database) would not spend, and it would be charged
        equally to abi and to the baseline, diluting their ratio. The answers are the same.
        """

        def _select(self, since: str | None) -> list[dict[str, Any]]:
            if not hasattr(self, "_rows"):
                self._rows = super()._select(None)
                self._keys = [r["updated_at"] for r in self._rows]
            if since is None:
                return self._rows
            return self._rows[bisect.bisect_left(self._keys, since):]

    body = _body_size(max(records))
    info: dict[str, Any] = {"body_size": body}
    with FeedServer() as server:
        for n in records:
            api = IndexedAPI(records=n, token=TOKEN, body_size=body)
            url = api.mount(server, prefix=f"/api{n}")[STYLE]
            api._select(None)
            info[str(n)] = {"url": url, "bytes": sum(len(json.dumps(r)) for r in api.records.values())}
        print("READY " + json.dumps(info), flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                print(server.count(), flush=True)
    return 0


class ServerProcess:
    def __init__(self, records: list[int]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve",
                                      ",".join(map(str, records))], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        timer = threading.Timer(SERVER_START_TIMEOUT, self.proc.kill)
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line.startswith("READY "):
            self.close()
            raise SystemExit(f"bench: the server process did not start (said {line!r})")
        self.info = json.loads(line[6:])

    def count(self) -> int:
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- measured children


  # KiB on Linux


def config_text(url: str, per_page: int = PER_PAGE) -> str:
    return "\n".join([
        "[sources.articles]", 'kind = "api"', 'module = "bench"', f'url = "{url}"', 'records = "data"',
        'primary_key = "id"', 'write = "append"', f'auth = {{ bearer_env = "{TOKEN_ENV}" }}',
        "retries = { count = 2, max_wait = 1 }", "timeout = 60",
        'pagination = { type = "cursor", cursor_path = "meta.next", param = "cursor" }',
        f"params = {{ per_page = {per_page} }}",
        f'incremental = {{ cursor_field = "updated_at", param = "since", initial = "{INITIAL}" }}',
    ]) + "\n"


BASELINE = r"""
import json, sys, time
import requests
url, token, per_page, since, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
t0 = time.perf_counter()
session = requests.Session()
session.headers.update({"Accept": "application/json", "Authorization": "Bearer " + token})
params = {"per_page": per_page, "since": since}
pages = records = 0
while pages < limit:
    resp = session.get(url, params=params, timeout=60)
    resp.raise_for_status()
    body = resp.json()
    pages += 1
    records += len(body["data"])
    cursor = (body.get("meta") or {}).get("next")
    if not body["data"] or not cursor:
        break
    params["cursor"] = cursor
print(json.dumps({"pages": pages, "records": records, "loop_s": time.perf_counter() - t0}))
"""


def abi_run(config: Path, ds_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "ABI_CONFIG"}
    env.update({"ABI_DATASTORE": str(ds_root), TOKEN_ENV: TOKEN})
    res = run_measured([str(ABI), "collect", "api", "--config", str(config), "--json"], env)
    check(res["code"] == 0, f"abi collect api exited {res['code']}: {res['stderr'].strip()[-2000:]}")
    try:
        record = json.loads(res["stdout"])
    except ValueError:
        raise SystemExit(f"bench: abi --json printed no JSON: {res['stdout'][:500]!r}") from None
    if isinstance(record, list):
        (record,) = record
    return res, record


def bench(repeat: int) -> dict[str, Any]:
    server = ServerProcess([RECORDS, SMALL])
    work = Path(tempfile.mkdtemp(prefix="abi-bench-api-"))
    samples: dict[str, list[float]] = {k: [] for k in (
        "cold", "cold_rss", "rerun", "rerun_rss", "small", "small_rss", "baseline", "baseline_loop",
        "baseline_rss", "one_page", "one_page_rss")}
    requests_seen: dict[str, int] = {}
    try:
        big, small = server.info[str(RECORDS)], server.info[str(SMALL)]
        cfg_big, cfg_small = work / "big.toml", work / "small.toml"
        cfg_big.write_text(config_text(big["url"]), encoding="utf-8")
        cfg_small.write_text(config_text(small["url"]), encoding="utf-8")
        pages = -(-RECORDS // PER_PAGE)
        for i in range(repeat):
            # the small run first: it also warms the page cache and .pyc files for the big ones
            ds = work / f"small-{i}"
            res, rec = abi_run(cfg_small, ds)
            check(rec["counts"].get("new") == SMALL, f"10k cold run: {rec['counts']}")
            samples["small"].append(res["seconds"])
            samples["small_rss"].append(res["maxrss_mb"])
            shutil.rmtree(ds, ignore_errors=True)

            print(f"  repeat {i + 1}: baseline ...", file=sys.stderr, flush=True)
            before = server.count()
            env = {k: v for k, v in os.environ.items() if k != "ABI_CONFIG"}
            res = run_measured([sys.executable, "-c", BASELINE, big["url"], TOKEN, str(PER_PAGE), INITIAL,
                                str(pages + 1)], env)
            check(res["code"] == 0, f"baseline exited {res['code']}: {res['stderr'].strip()[-2000:]}")
            out = json.loads(res["stdout"])
            check(out["records"] == RECORDS and out["pages"] == pages, f"baseline fetched {out}")
            requests_seen["baseline"] = server.count() - before
            samples["baseline"].append(res["seconds"])
            samples["baseline_loop"].append(out["loop_s"])
            samples["baseline_rss"].append(res["maxrss_mb"])

            print(f"  repeat {i + 1}: abi cold ...", file=sys.stderr, flush=True)
            ds = work / f"big-{i}"
            before = server.count()
            res, rec = abi_run(cfg_big, ds)
            check(rec["counts"].get("new") == RECORDS and rec["counts"].get("pages") == pages,
                  f"cold run: {rec['counts']}")
            requests_seen["cold"] = server.count() - before
            samples["cold"].append(res["seconds"])
            samples["cold_rss"].append(res["maxrss_mb"])
            stored = sum(p.stat().st_size for p in ds.rglob("*.jsonl"))

            print(f"  repeat {i + 1}: abi re-run ...", file=sys.stderr, flush=True)
            before = server.count()
            res, rec = abi_run(cfg_big, ds)
            c = rec["counts"]
            check(c.get("pages") == 1 and c.get("records") == 1 and c.get("new") == 0 and c.get("updated") == 0,
                  f"re-run was not one boundary record: {c}")
            requests_seen["rerun"] = server.count() - before
            samples["rerun"].append(res["seconds"])
            samples["rerun_rss"].append(res["maxrss_mb"])
            shutil.rmtree(ds, ignore_errors=True)

            print(f"  repeat {i + 1}: abi, the whole result as one response ...", file=sys.stderr, flush=True)
            cfg_one = work / "one-page.toml"
            cfg_one.write_text(config_text(big["url"], per_page=RECORDS), encoding="utf-8")
            ds = work / f"one-{i}"
            res, rec = abi_run(cfg_one, ds)
            check(rec["counts"].get("new") == RECORDS and rec["counts"].get("pages") == 1,
                  f"one-page run: {rec['counts']}")
            samples["one_page"].append(res["seconds"])
            samples["one_page_rss"].append(res["maxrss_mb"])
            shutil.rmtree(ds, ignore_errors=True)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)

    out: dict[str, Any] = {k: stats(v) for k, v in samples.items()}
    out["ratio"] = {"median": out["cold"]["median"] / out["baseline"]["median"],
                    "min": out["cold"]["min"] / out["baseline"]["min"]}
    out["ratio_loop"] = {"median": out["cold"]["median"] / out["baseline_loop"]["median"],
                         "min": out["cold"]["min"] / out["baseline_loop"]["min"]}
    out["rss_growth"] = {"median": out["cold_rss"]["median"] / out["small_rss"]["median"],
                         "min": out["cold_rss"]["min"] / out["small_rss"]["min"]}
    out.update(requests=requests_seen, result_bytes=big["bytes"], small_bytes=small["bytes"],
               body_size=server.info["body_size"], stored_bytes=stored, url=big["url"])
    return out


# --------------------------------------------------------------------------- profile


def profile(top: int) -> str:
    """cProfile of one in-process cold `collect_api` call against a separate server process."""
    import cProfile
    import io
    import pstats

    from collectors.api import collect_api
    from storage.config import load_config

    server = ServerProcess([RECORDS])
    work = Path(tempfile.mkdtemp(prefix="abi-bench-api-prof-"))
    saved = {k: os.environ.get(k) for k in ("ABI_DATASTORE", TOKEN_ENV)}
    try:
        cfg = work / "big.toml"
        cfg.write_text(config_text(server.info[str(RECORDS)]["url"]), encoding="utf-8")
        os.environ.update({"ABI_DATASTORE": str(work / "ds"), TOKEN_ENV: TOKEN})
        config = load_config(cfg)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        records = prof.runcall(collect_api, config=config, command=["bench"])
        seconds = time.perf_counter() - t0
        check(records[0]["counts"].get("new") == RECORDS, f"profiled run: {records[0]['counts']}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    text = io.StringIO()
    stats_ = pstats.Stats(prof, stream=text).strip_dirs()
    text.write(f"in-process cold collect_api under cProfile: {seconds:.2f} s\n")
    stats_.sort_stats("tottime").print_stats(top)
    stats_.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


# --------------------------------------------------------------------------- report


def verdict(key: str, value: float) -> str:
    goal, test = GOALS[key]
    return f"{goal} ({'met' if test(value) else 'MISSED'})"


def table(r: dict[str, Any]) -> str:
    def sec(v: float) -> str:
        return f"{v:.2f} s"

    def mb(v: float) -> str:
        return f"{v:.0f} MB"

    def rate(s: float, n: int = RECORDS) -> str:
        return f"{n / s:,.0f} rec/s"

    pages, spages = RECORDS // PER_PAGE, SMALL // PER_PAGE
    rows = [
        (f"`abi collect api` cold ({RECORDS:,} records, {pages:,} pages, {r['result_bytes'] / 1e6:.0f} MB JSON)",
         sec(r["cold"]["median"]), sec(r["cold"]["min"]), "-"),
        ("  records/s", rate(r["cold"]["median"]), rate(r["cold"]["min"]), "-"),
        ("  peak RSS of the abi process", mb(r["cold_rss"]["median"]), mb(r["cold_rss"]["min"]), "-"),
        (f"bare `requests.Session` loop, same {pages:,} pages (subprocess)", sec(r["baseline"]["median"]),
         sec(r["baseline"]["min"]), "reference"),
        ("  of which the fetch loop (no start-up)", sec(r["baseline_loop"]["median"]),
         sec(r["baseline_loop"]["min"]), "-"),
        ("  peak RSS of the baseline process", mb(r["baseline_rss"]["median"]), mb(r["baseline_rss"]["min"]), "-"),
        ("abi cold / baseline", f"{r['ratio']['median']:.2f}×", f"{r['ratio']['min']:.2f}×",
         verdict("ratio", r["ratio"]["median"])),
        ("abi cold / baseline fetch loop only", f"{r['ratio_loop']['median']:.2f}×",
         f"{r['ratio_loop']['min']:.2f}×", "-"),
        ("`abi collect api` re-run, nothing changed (1 page, boundary record)", sec(r["rerun"]["median"]),
         sec(r["rerun"]["min"]), "-"),
        ("  peak RSS", mb(r["rerun_rss"]["median"]), mb(r["rerun_rss"]["min"]), "-"),
        (f"`abi collect api` cold, {SMALL:,} records ({spages} pages)", sec(r["small"]["median"]),
         sec(r["small"]["min"]), "-"),
        ("  peak RSS", mb(r["small_rss"]["median"]), mb(r["small_rss"]["min"]), "-"),
        (f"`abi collect api` cold, the {RECORDS:,} records in one {r['result_bytes'] / 1e6:.0f} MB response",
         sec(r["one_page"]["median"]), sec(r["one_page"]["min"]), "-"),
        ("  peak RSS (spooled to disk, read with ijson)", mb(r["one_page_rss"]["median"]),
         mb(r["one_page_rss"]["min"]), "-"),
        (f"peak RSS {RECORDS // 1000}k / {SMALL // 1000}k (10× the records)", f"{r['rss_growth']['median']:.2f}×",
         f"{r['rss_growth']['min']:.2f}×", verdict("flat", r["rss_growth"]["median"])),
    ]
    lines = ["| measure | median | min | goal |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=1,
                        help="repetitions of each timed run (default 1: the runs are large)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--profile", type=int, metavar="TOP", default=0,
                        help="also profile an in-process cold collect_api call and print the TOP entries")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: the server process
    args = parser.parse_args(argv)
    if args.serve:
        return serve([int(n) for n in args.serve.split(",")])
    sys.stdout.reconfigure(line_buffering=True)
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    if not 0 <= args.profile <= 200:
        parser.error("--profile must be between 0 and 200")
    if not ABI.is_file():
        parser.error(f"{ABI} not found: run `make install` and use the venv's python")

    python = Path(sys.executable)
    python_arg = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    command = f"cd {ROOT} && {python_arg} tests/benchmarks/bench_api.py --repeat {args.repeat}"
    print(f"# abi-orchestration API benchmark (repeat={args.repeat})")
    res: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "records": RECORDS, "small": SMALL,
                           "per_page": PER_PAGE, "style": STYLE, "command": command}
    print("collecting ...", file=sys.stderr, flush=True)
    res["api"] = r = bench(args.repeat)

    m = res["machine"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['platform']})")
    print(f"Server: SampleAPI in a separate process, `{STYLE}` pagination, per_page={PER_PAGE}, "
          f"body_size={r['body_size']} (≈{r['result_bytes'] / RECORDS:.0f} B a record); "
          "incremental on updated_at, write = \"append\".")
    print("min = best repeat (shortest time, smallest RSS)\n")
    print(table(r))
    print(f"\nRequests: baseline {r['requests']['baseline']}, cold {r['requests']['cold']}, "
          f"re-run {r['requests']['rerun']}. Stored by the cold run: {r['stored_bytes'] / 1e6:.0f} MB of JSON Lines.")
    print(f"\nReproduce: {command}   (or `make bench`)")
    if args.profile:
        print("profiling ...", file=sys.stderr, flush=True)
        res["profile"] = profile(args.profile)
        print("\n" + res["profile"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
