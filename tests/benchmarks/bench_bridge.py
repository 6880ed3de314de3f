"""Benchmark of `abi bridge`, `abi query` and `abi aggregate` at volume, on this machine (`make bench`).

Not a pytest test: run it as `.venv/bin/python tests/benchmarks/bench_bridge.py [--repeat N] [--json PATH]`.

Measures (the issue's performance goals for the aggregate and the semantic bridge):
  1. `bridges.rdf.bridge` with `builtin:news` over 10,000 news records (about 150,000 triples) of an
     append JSON Lines source (`abi collect files`, process = "jsonl"), first run into
     (a) the embedded store and (b) a local `oxigraph serve`: triples/s of each against the floor,
     pyoxigraph's own `Store(path).bulk_load(...)` of the same N-Triples (the bridge's graph as
     `abi export` writes it) into a fresh on-disk store, measured in the same run (goal: within 2x).
     (c) a raw Graph Store PUT of those N-Triples with `requests`: what the server itself costs (and, to
     explain the gap, a POST, a POST with Oxigraph's non-standard `no_transaction`, and PUTs of the
     pipeline's own output with and without its duplicate lines).
     The same first run once through the CLI process (`abi bridge`) shows the start-up share.
  2. The re-run of `abi bridge` with nothing new, against `abi --help`.
  3. A SPARQL query counting articles per topic over ~1,000,000 triples in the embedded store (the
     same graph after a later collection of 60,000 more records and an incremental bridge run),
     through `abi query` (a process) and through `bridges.query.run_query` (median of 5 each).
  4. `bridges.aggregate.aggregate` over a 100,000-record history, full rebuild against an incremental
     run after one new collection run of 100 records (goal: incremental under 5% of full), for both
     input styles: `folder` (one JSON file per RSS entry, listed in the run records: generated through
     the storage layer the way collectors/rss.py writes them) and `runs` (one JSON Lines file per
     collection run of an append source, collected by `abi collect files`).

Every measured call runs in a child process of its own (this script's --child mode, or the `abi`
console script), timed inside the child for library calls; peak RSS is the child's ru_maxrss from
os.wait4. The library bridge runs with light timers on the bridge's own functions, which give the
breakdown of where its time goes (reading, digest, key index, pipeline, store load, checkpoint).
Every loop is bounded by --repeat. Uses the standard library, `requests`, pyoxigraph, the project's
own modules and tests/oxigraph_server.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import check, machine, own_peak_rss_mb, run_measured, stats  # tests/benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[2]
for _extra in (ROOT, ROOT / "tests"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

BIN = Path(sys.executable).parent  # not resolved: the venv's bin folder, where `abi` lives
ABI = BIN / "abi"

MODULE = "abi"
BRIDGE = "news_graph"
GRAPH = f"urn:abi:graph:{MODULE}:{BRIDGE}"
RECORDS = 10_000  # the bridge benchmark's input
GROW = 60_000  # records collected later, for the ~1,000,000-triple query store
RECORDS_PER_RUN = 250  # records per synthetic RSS collection run (the provenance of the bridge's input)
HISTORY = 100_000  # the aggregate benchmark's history
HISTORY_RUNS = 100  # collection runs in that history
INCREMENT = 100  # records of the new run the incremental aggregate folds in
INCREMENT_RUNS = 3  # incremental runs measured (each after a new collection run)
QUICK = 5  # samples of the short measures (re-run, --help, queries)
RUN_TIMEOUT = 900.0

TOPICS = ("Ontology", "AI", "Palantir", "LLM", "Elon Musk", "OpenAI", "Google", "Meta", "Microsoft", "Apple",
          "Amazon", "Tesla", "SpaceX", "NASA", "Donald Trump")  # the ABI demo's 15 searches
PUBLISHERS = [f"{name} {kind}" for name in ("Daily", "Global", "Tech", "Market", "Science", "Metro", "World",
                                           "Capital") for kind in ("News", "Times", "Wire", "Post", "Review")]
WORDS = ("launch", "deal", "policy", "model", "chips", "earnings", "report", "lawsuit", "rocket", "update")

QUERY = ("PREFIX schema: <http://schema.org/> PREFIX skos: <http://www.w3.org/2004/02/skos/core#> "
         "SELECT ?topic (COUNT(?a) AS ?articles) WHERE { ?a schema:about/skos:prefLabel ?topic } "
         "GROUP BY ?topic ORDER BY DESC(?articles)")

GOALS: dict[str, tuple[str, Callable[[float], bool] | None]] = {
    "embedded_ratio": ("≤ 2× floor time (≥ ½ the floor's triples/s)", lambda v: v <= 2.0),
    "server_ratio": ("≤ 2× floor time (≥ ½ the floor's triples/s)", lambda v: v <= 2.0),
    "agg_folder": ("< 5% of full", lambda v: v < 0.05),
    "agg_runs": ("< 5% of full", lambda v: v < 0.05),
}


# --------------------------------------------------------------------------- generated data


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def topics_of(i: int) -> list[str]:
    """1 to 3 distinct topics (2 on average), spread over the 15."""
    count, start, step = 1 + (i * 7) % 3, i % 15, 1 + (i // 15) % 7
    return [TOPICS[(start + j * step) % 15] for j in range(count)]


def article(i: int, run_id: str | None, when: datetime) -> dict[str, Any]:
    """An aggregate-shaped news record (url, title, published, summary, query list, publisher, source, run_id)."""
    topics = topics_of(i)
    word = WORDS[i % len(WORDS)]
    record: dict[str, Any] = {
        "url": f"https://news{i % 40}.example.org/{when:%Y/%m}/{topics[0].lower().replace(' ', '-')}-{word}-{i}",
        "title": f"{topics[0]} {word} {i}: what changed this week",
        "published": iso(when),
        "summary": f"Story {i} about {', '.join(topics)}: the {word} announced on {when:%d %B} and what it "
                   "means for the companies, the markets and the people who follow them.",
        "query": topics,
        "publisher": PUBLISHERS[i % len(PUBLISHERS)],
        "source": "news",
        "authors": [f"Reporter {i % 300}"] if i % 3 == 0 else [],
    }
    if run_id is not None:
        record["run_id"] = run_id
    return record


def synthetic_runs(ds_root: Path, count: int, start: datetime, *, source: str = "news",
                   files: list[list[str]] | None = None) -> list[str]:
    """Run records of `count` past RSS collection runs (what the bridge's provenance points at)."""
    from storage.paths import Datastore
    from storage.runs import Run, write_run_record

    ds = Datastore(ds_root)
    ids = []
    for k in range(count):
        began = start + timedelta(minutes=30 * k)
        run = Run(module=MODULE, source=source, kind="rss", command=["abi", "collect", "rss"], started=began)
        if files is not None:
            run.files = files[k]
        record = run.record()
        record["ended_at"] = (began + timedelta(seconds=2, milliseconds=k % 1000)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ")
        record["counts"] = {"new": len(files[k]) if files is not None else RECORDS_PER_RUN}
        write_run_record(ds, record, summarize=False)
        ids.append(run.run_id)
    return ids


def write_articles(path: Path, first: int, count: int, run_ids: list[str], start: datetime) -> None:
    """`count` article records as one JSON Lines file (what a files source with process = "jsonl" reads)."""
    import orjson

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for i in range(first, first + count):
            k = i // RECORDS_PER_RUN
            fh.write(orjson.dumps(article(i, run_ids[k], start + timedelta(minutes=30 * k, seconds=i % 1800)))
                     + b"\n")


def entry(i: int, story: int, topic: str, run_id: str, when: datetime, collected: datetime) -> dict[str, Any]:
    """An RSS entry record as collectors/rss.py stores it (normalised fields, feed, provenance and `raw`)."""
    word = WORDS[story % len(WORDS)]
    url = f"https://news{story % 40}.example.org/{when:%Y/%m}/{word}-{story}"
    title = f"{topic} {word} {story}: what changed (seen {i})"
    publisher = PUBLISHERS[story % len(PUBLISHERS)]
    link = (f"http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=bench&url={url.replace(':', '%3A')}"
            "&c=123&mkt=en-us")
    summary = f"Story {story} about {topic}: the {word} and what it means for the people who follow it."
    return {
        "key": f"{story:016x}{i:016x}", "id": None, "title": title, "link": link, "url": url,
        "published": iso(when), "updated": None, "summary": summary, "authors": [], "tags": [],
        "feed": {"name": None, "query": topic, "title": f"{topic} - Bing News",
                 "url": f"https://www.bing.com/news/search?format=RSS&q={topic.replace(' ', '+')}"},
        "source": "news", "module": MODULE, "run_id": run_id, "collected_at": collected.strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"),
        "raw": {"title": title, "link": link, "published": when.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                "summary": summary, "news_source": publisher, "news_image_size": "sm",
                "news_image_url": f"https://www.bing.com/th?id=OVFT.{story:x}&pid=News"},
    }


class History:
    """The aggregate benchmark's input: the same entries as RSS folder runs and as JSON Lines runs.

    Entry i tells story i - 3 again (found by another search) when i % 5 == 4, else a story of its
    own: 100,000 entries, 80,000 distinct URLs. A later run of 100 adds 80 new stories and 20 that
    were seen before, spread over the whole history (so their keys land all over the sorted output).
    """

    def __init__(self, ds_root: Path, inbox: Path, start: datetime, next_entry: int = 0) -> None:
        self.ds_root, self.inbox, self.start, self.next = ds_root, inbox, start, next_entry

    def batch(self, count: int, *, spread: bool = False) -> list[tuple[int, int, str]]:
        out = []
        for n in range(count):
            i = self.next + n
            if spread and n % 5 == 4:
                story = (i * 7919) % max(1, self.next)  # somewhere in the history
                story -= story % 5  # a story of its own (i % 5 != 4)
            else:
                story = i - 3 if i % 5 == 4 else i
            out.append((i, story, TOPICS[(i // 3) % 15]))
        self.next += count
        return out

    def folder_run(self, items: list[tuple[int, int, str]], began: datetime | None) -> str:
        """Publish one RSS run's entry files and its run record, as collectors/rss.py does."""
        from collectors.urls import slug
        from storage.paths import Datastore
        from storage.records import plan_names, publish_records
        from storage.runs import Run, write_run_record

        ds = Datastore(self.ds_root)
        folder = ds.data_dir(MODULE, "news", "orchestration/rss_feed")
        folder.mkdir(parents=True, exist_ok=True)
        run = Run(module=MODULE, source="news", kind="rss", command=["abi", "collect", "rss"],
                  **({"started": began} if began is not None else {}))
        collected = run.started
        records, stems = [], []
        for i, story, topic in items:
            when = self.start + timedelta(minutes=20 * story // 10)
            record = entry(i, story, topic, run.run_id, when, collected)
            records.append(record)
            stems.append((f"{when:%Y%m%dT%H%M%S}Z_{slug(topic, max_len=40)}_{slug(record['title'], max_len=80)}",
                          record["key"]))
        names = plan_names(folder, stems)
        publish_records(folder, list(zip(names, records, strict=True)))
        run.files = [ds.relative(folder / name) for name in names]
        run.count("new", len(names))
        write_run_record(ds, run.record())
        return run.run_id

    def jsonl_file(self, items: list[tuple[int, int, str]], name: str) -> Path:
        """The same entries as one JSON Lines file for the `files` source (no run id: the collection sets it)."""
        import orjson

        self.inbox.mkdir(parents=True, exist_ok=True)
        path = self.inbox / name
        with open(path, "wb") as fh:
            for i, story, topic in items:
                when = self.start + timedelta(minutes=20 * story // 10)
                record = entry(i, story, topic, "", when, datetime.now(UTC))
                del record["run_id"], record["collected_at"]
                fh.write(orjson.dumps(record) + b"\n")
        return path


def config_text(*, inbox: Path, runs_inbox: Path) -> str:
    fields = ('title = "title"\npublished = "published"\nsummary = "summary"\nquery = "feed.query"\n'
              'publisher = "raw.news_source"\nsource = "source"\nrun_id = "run_id"\n')
    parts = [
        '[sources.news]\nkind = "rss"\nmodule = "abi"\npath = "orchestration/rss_feed"\n'
        'feeds = [{ url = "http://127.0.0.1:9/news.xml", query = "AI" }]\n',
        f'[sources.news_files]\nkind = "files"\nmodule = "abi"\npath = "{inbox}"\npattern = "*.jsonl"\n'
        'settle_seconds = 0\nprocess = "jsonl"\nprimary_key = "url"\n',
        f'[sources.news_runs]\nkind = "files"\nmodule = "abi"\npath = "{runs_inbox}"\npattern = "*.jsonl"\n'
        'settle_seconds = 0\nprocess = "jsonl"\n',
        f'[bridges.{BRIDGE}]\nmodule = "abi"\ninput = "news_files"\npipeline = "builtin:news"\n',
    ]
    for name, source in (("articles_folder", "news"), ("articles_runs", "news_runs")):
        parts.append(f'[aggregates.{name}]\nmodule = "abi"\ninputs = ["{source}"]\nkey = "url"\n'
                     f'combine = {{ query = "list", title = "latest" }}\n\n[aggregates.{name}.fields]\n{fields}')
    return "\n".join(parts)


# --------------------------------------------------------------------------- the child process


class Timers:
    """Wall time of wrapped functions, each exclusive of the wrapped functions it calls (a tiny profiler)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[list[float]] = []  # per open frame: [time spent in wrapped callees]

    def _enter(self) -> float:
        self.stack.append([0.0])
        return time.perf_counter()

    def _leave(self, label: str, t0: float) -> None:
        elapsed = time.perf_counter() - t0
        (inner,) = self.stack.pop()
        self.totals[label] = self.totals.get(label, 0.0) + elapsed - inner
        self.calls[label] = self.calls.get(label, 0) + 1
        if self.stack:
            self.stack[-1][0] += elapsed

    def wrap(self, owner: Any, attr: str, label: str | Callable[..., str], *, generator: bool = False) -> None:
        fn = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if fn is None:  # renamed since: that part is reported under "other"
            return
        timers = self

        def name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            return label(*args, **kwargs) if callable(label) else label

        if generator:
            def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
                it = fn(*args, **kwargs)
                tag = name(args, kwargs)
                while True:
                    t0 = timers._enter()
                    try:
                        item = next(it)
                    except StopIteration:
                        timers._leave(tag, t0)
                        return
                    except BaseException:
                        timers._leave(tag, t0)
                        raise
                    timers._leave(tag, t0)
                    yield item
            setattr(owner, attr, gen)
            return

        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = timers._enter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers._leave(name(args, kwargs), t0)
        setattr(owner, attr, call)


def instrument_bridge() -> Timers:
    import bridges.news as news
    import bridges.rdf as rdf
    import storage.jobs as jobs
    from storage.keyindex import KeyIndex
    from storage.sparql_remote import RemoteStore
    from storage.triplestore import EmbeddedStore

    t = Timers()
    t.wrap(rdf, "read_chunk", "read: input records (orjson.loads)", generator=True)
    t.wrap(rdf, "_records", "digest: canonical orjson + SHA-256 + key", generator=True)
    t.wrap(rdf, "scan", "input scan (chunks, run records)")
    for attr in ("__init__", "begin", "classify_many", "drop_unseen", "commit", "close"):
        t.wrap(KeyIndex, attr, "key index (SQLite)")
    t.wrap(news.NewsPipeline, "ntriples", "pipeline: builtin:news N-Triples")
    t.wrap(rdf, "_triples", "pipeline glue: batches, run lookup, join")
    t.wrap(EmbeddedStore, "__init__", "store open (flock, RocksDB)")
    t.wrap(EmbeddedStore, "_bulk_load", "store load: pyoxigraph bulk_load")
    t.wrap(EmbeddedStore, "_checkpoint", "store checkpoint: backup + publish")
    t.wrap(EmbeddedStore, "_graph_count", "store COUNT queries")
    for attr in ("replace_graph", "add_triples"):
        t.wrap(EmbeddedStore, attr, "store rest: N-Triples SHA-256, journal")
    t.wrap(EmbeddedStore, "close", "store close")
    t.wrap(RemoteStore, "__init__", "store open (HTTP session)")

    def remote(self: Any, method: str, url: str, **kwargs: Any) -> str:
        return "server: Graph Store upload" if method in ("PUT", "POST") and url == self.store_url \
            else "server: COUNT queries"
    t.wrap(RemoteStore, "_request", remote)
    for attr in ("replace_graph", "add_triples"):
        t.wrap(RemoteStore, attr, "store rest: N-Triples SHA-256, journal")
    t.wrap(rdf, "save_state", "state, run record")
    t.wrap(jobs, "write_run_record", "state, run record")
    return t


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured operation, in this (child) process; prints its result as JSON."""
    op = spec["op"]
    if op == "floor":
        import pyoxigraph as ox

        data = Path(spec["nt"]).read_bytes()
        t0 = time.perf_counter()
        store = ox.Store(spec["store"])
        store.bulk_load(data, format=ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode(GRAPH))
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "triples": len(store), "lines": data.count(b"\n"), "bytes": len(data),
                "hwm_mb": own_peak_rss_mb()}

    if op == "put":  # a fresh `oxigraph serve`, started by this child (the measuring process stays small)
        from oxigraph_server import start_oxigraph

        with start_oxigraph(Path(spec["server_dir"])) as url:
            return raw_put(Path(spec["nt"]), url, spec["triples"], spec.get("method", "PUT"), spec.get("params", {}))

    from storage.config import load_config

    config = load_config(spec["config"])
    ds_root = Path(os.environ["ABI_DATASTORE"])
    if op == "setup":  # the bridge's input: synthetic collection runs, then a JSON Lines file collected
        start = datetime.fromisoformat(spec["start"])
        runs = synthetic_runs(ds_root, (RECORDS + GROW) // RECORDS_PER_RUN, start) if spec["first"] else \
            sorted(json.loads(Path(spec["runs"]).read_text()))
        Path(spec["runs"]).write_text(json.dumps(runs))
        write_articles(Path(spec["file"]), spec["from"], spec["count"], runs, start)
        rec = collect_files(config, "news_files")
        check(rec["counts"].get("new") == spec["count"], f"collect files: {rec['counts']}")
        return {"hwm_mb": own_peak_rss_mb()}
    if op == "history":  # the aggregate's input: RSS folder runs and JSON Lines runs of the same entries
        history = History(ds_root, Path(spec["inbox"]), datetime.fromisoformat(spec["start"]), spec["next"])
        gen = {"folder": 0.0, "runs": 0.0}
        for k in range(spec["runs"]):
            items = history.batch(spec["count"], spread=spec["spread"])
            t1 = time.perf_counter()
            history.folder_run(items, None if spec["spread"] else history.start + timedelta(hours=k))
            t2 = time.perf_counter()
            history.jsonl_file(items, f"run-{history.next:07d}.jsonl")
            collect_files(config, "news_runs")
            gen["folder"] += t2 - t1
            gen["runs"] += time.perf_counter() - t2
        return {"generate": gen}
    if op in ("bridge", "capture", "profile"):
        from bridges.rdf import bridge

        if op == "capture":  # the pipeline's N-Triples as the bridge hands them to the store (untimed)
            import bridges.rdf as rdf

            class Capture:
                location = "capture"

                def replace_graph(self, graph: str, data: bytes) -> int:
                    Path(spec["out"]).write_bytes(data)
                    return 0

                def count(self, graph: str | None = None) -> int:
                    return 0

                def close(self) -> None:
                    pass

            rdf.open_configured_store = lambda *a, **k: Capture()  # type: ignore[assignment]
            record = bridge(config=config, name=BRIDGE, full=True)
            data = Path(spec["out"]).read_bytes()
            lines = data.splitlines()
            unique = list(dict.fromkeys(lines))
            t0 = time.perf_counter()
            list(dict.fromkeys(lines))
            dedup_s = time.perf_counter() - t0
            Path(spec["dedup"]).write_bytes(b"\n".join(unique) + b"\n")
            return {"status": record["status"], "lines": len(lines), "distinct": len(unique), "bytes": len(data),
                    "dedup_s": dedup_s}
        if op == "profile":
            import cProfile
            import io
            import pstats

            prof = cProfile.Profile()
            t0 = time.perf_counter()
            record = prof.runcall(bridge, config=config, name=BRIDGE)
            seconds = time.perf_counter() - t0
            text = io.StringIO()
            st = pstats.Stats(prof, stream=text).strip_dirs()
            text.write(f"in-process bridge under cProfile: {seconds:.2f} s ({record['status']})\n")
            st.sort_stats("tottime").print_stats(spec["top"])
            st.sort_stats("cumulative").print_stats(spec["top"])
            return {"text": text.getvalue()}
        timers = instrument_bridge() if spec.get("timers") else None
        with contextlib.ExitStack() as stack:
            if spec.get("server_dir"):  # a fresh `oxigraph serve` for this run: ABI_TRIPLESTORE names it
                from oxigraph_server import start_oxigraph

                os.environ["ABI_TRIPLESTORE"] = stack.enter_context(start_oxigraph(Path(spec["server_dir"])))
            t0 = time.perf_counter()
            record = bridge(config=config, name=BRIDGE, full=bool(spec.get("full")))
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "record": _brief(record), "timers": timers.totals if timers else {},
                "hwm_mb": own_peak_rss_mb()}
    if op == "aggregate":
        from bridges.aggregate import aggregate

        t0 = time.perf_counter()
        record = aggregate(config=config, name=spec["name"], full=bool(spec.get("full")))
        return {"seconds": time.perf_counter() - t0, "record": _brief(record), "hwm_mb": own_peak_rss_mb()}
    if op == "query":
        from bridges.query import run_query

        samples, rows = [], None
        for _ in range(spec["times"]):
            t0 = time.perf_counter()
            out = run_query(config=config, sparql=spec["sparql"])
            samples.append(time.perf_counter() - t0)
            rows = out.rows
        # the same query straight on the published snapshot with pyoxigraph (results iterated, not serialised)
        import pyoxigraph as ox

        snapshot = ds_root / "triplestore" / "snapshots" / json.loads(
            (ds_root / "triplestore" / "current.json").read_text())["snapshot"]
        raw = []
        for _ in range(spec["times"]):
            t0 = time.perf_counter()
            store = ox.Store.read_only(str(snapshot))
            n = sum(1 for _ in store.query(spec["sparql"], use_default_graph_as_union=True))  # type: ignore[union-attr]
            raw.append(time.perf_counter() - t0)
            del store
        check(n == len(rows or []), f"raw pyoxigraph query: {n} rows")
        return {"samples": samples, "rows": rows, "raw": raw, "hwm_mb": own_peak_rss_mb()}
    raise SystemExit(f"unknown child op {op!r}")


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("status", "counts", "details", "error", "run_id")}


# --------------------------------------------------------------------------- the parent's helpers


def child_env(ds_root: Path | None = None, store: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ABI_CONFIG", "ABI_DATASTORE", "ABI_TRIPLESTORE")}
    if ds_root is not None:
        env["ABI_DATASTORE"] = str(ds_root)
    if store is not None:
        env["ABI_TRIPLESTORE"] = store
    return env


def run_child(spec: dict[str, Any], ds_root: Path | None = None, store: str | None = None) -> dict[str, Any]:
    res = run_measured([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                       child_env(ds_root, store), timeout=RUN_TIMEOUT)
    check(res["code"] == 0, f"child {spec['op']} exited {res['code']}: {res['stderr'].strip()[-3000:]}")
    out = json.loads(res["stdout"].strip().splitlines()[-1])
    # the child's own VmHWM: ru_maxrss from wait4 is never below the parent's peak (see benchlib)
    out["wall"], out["maxrss_mb"] = res["seconds"], out.get("hwm_mb", res["maxrss_mb"])
    return out


def abi(args: list[str], ds_root: Path | None = None, store: str | None = None) -> dict[str, Any]:
    res = run_measured([str(ABI), *args], child_env(ds_root, store), timeout=RUN_TIMEOUT)
    check(res["code"] == 0, f"abi {' '.join(args[:2])} exited {res['code']}: {res['stderr'].strip()[-3000:]}")
    return res


def ok_record(out: dict[str, Any], what: str) -> dict[str, Any]:
    record = out["record"]
    check(record["status"] == "success", f"{what}: {record['status']}: {record.get('error')}")
    return record


def collect_files(config: Any, source: str) -> dict[str, Any]:
    """One `abi collect files` run, in the child process (data preparation, not measured)."""
    from collectors.files import collect_files as collect

    (record,) = collect(config=config, source=source)
    check(record["status"] == "success", f"collect files {source}: {record.get('error')}")
    return record


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- 1-3: bridge and query


def bench_bridge(work: Path, config: Path, repeat: int, server: bool, top: int) -> dict[str, Any]:
    base = work / "bridge-base"
    inbox = work / "inbox"
    start = (datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)).isoformat()
    progress(f"generating {RECORDS:,} news records and collecting them (abi collect files) ...")
    setup = {"op": "setup", "config": str(config), "start": start, "runs": str(work / "run-ids.json")}
    run_child({**setup, "first": True, "file": str(inbox / "news-0001.jsonl"), "from": 0, "count": RECORDS}, base)

    s: dict[str, list[float]] = {k: [] for k in (
        "embedded", "embedded_rss", "floor", "floor_rss", "floor_raw", "cli", "cli_rss", "server", "server_rss",
        "put", "post", "post_notx", "put_raw", "put_dedup", "rerun", "rerun_rss", "rerun_lib", "help", "help_rss",
        "rerun_big", "query_cli", "query_cli_rss", "query_lib", "query_lib_rss", "query_raw")}
    timers: list[dict[str, float]] = []
    server_timers: list[dict[str, float]] = []
    out: dict[str, Any] = {}
    ds = base
    for i in range(repeat):
        # (a) the library call, first run into a fresh embedded store
        ds = work / f"ds-{i}"
        shutil.copytree(base, ds)
        progress(f"repeat {i + 1}: bridge, embedded store (library call) ...")
        r = run_child({"op": "bridge", "config": str(config), "timers": True}, ds)
        record = ok_record(r, "embedded bridge")
        check(record["counts"]["records_read"] == RECORDS and record["details"]["mode"] == "full",
              f"embedded bridge: {record['counts']} {record['details']}")
        out["triples"] = record["counts"]["triples"]
        s["embedded"].append(r["seconds"])
        s["embedded_rss"].append(r["maxrss_mb"])
        timers.append(r["timers"])

        # the floor: the bridge's graph as N-Triples (abi export), bulk-loaded into a fresh store
        nt = work / "graph.nt"
        abi(["export", "--graph", BRIDGE, "--format", "ntriples", "--output", str(nt), "--config", str(config)],
            ds)
        progress(f"repeat {i + 1}: floor, pyoxigraph bulk_load of the exported N-Triples ...")
        r = run_child({"op": "floor", "nt": str(nt), "store": str(work / f"floor-{i}")})
        check(r["triples"] == out["triples"], f"floor loaded {r['triples']} triples, the bridge {out['triples']}")
        out["nt_bytes"], out["nt_lines"] = r["bytes"], r["lines"]
        s["floor"].append(r["seconds"])
        s["floor_rss"].append(r["maxrss_mb"])
        shutil.rmtree(work / f"floor-{i}", ignore_errors=True)

        if i == 0:  # what the pipeline hands to the store: every article repeats the shared nodes' triples
            shutil.copytree(base, work / "ds-capture")
            cap = run_child({"op": "capture", "config": str(config), "out": str(work / "pipeline.nt"),
                             "dedup": str(work / "pipeline-dedup.nt")}, work / "ds-capture")
            out["pipeline"] = {k: cap[k] for k in ("lines", "distinct", "bytes", "dedup_s")}
            shutil.rmtree(work / "ds-capture", ignore_errors=True)
        r = run_child({"op": "floor", "nt": str(work / "pipeline.nt"), "store": str(work / f"floor-raw-{i}")})
        check(r["triples"] == out["triples"], f"bulk_load of the pipeline's output: {r['triples']} triples")
        s["floor_raw"].append(r["seconds"])
        shutil.rmtree(work / f"floor-raw-{i}", ignore_errors=True)

        # the same first run through the CLI process
        cli_ds = work / f"cli-{i}"
        shutil.copytree(base, cli_ds)
        progress(f"repeat {i + 1}: bridge, embedded store (abi bridge process) ...")
        res = abi(["bridge", "--name", BRIDGE, "--config", str(config), "--json"], cli_ds)
        rec = json.loads(res["stdout"])
        rec = rec[0] if isinstance(rec, list) else rec
        check(rec["status"] == "success" and rec["counts"]["triples"] == out["triples"], f"abi bridge: {rec}")
        s["cli"].append(res["seconds"])
        s["cli_rss"].append(res["maxrss_mb"])
        shutil.rmtree(cli_ds, ignore_errors=True)

        if server:
            # (b) the same first run into a fresh `oxigraph serve`; (c) raw Graph Store PUTs into fresh servers
            srv_ds = work / f"srv-ds-{i}"
            shutil.copytree(base, srv_ds)
            progress(f"repeat {i + 1}: bridge, oxigraph serve (library call) ...")
            (work / f"srv-{i}").mkdir()
            r = run_child({"op": "bridge", "config": str(config), "timers": True, "server_dir": str(work / f"srv-{i}")},
                          srv_ds)
            record = ok_record(r, "server bridge")
            check(record["counts"]["triples"] == out["triples"] and record["details"]["store"].startswith("http"),
                  f"server bridge: {record['counts']} {record['details']}")
            s["server"].append(r["seconds"])
            s["server_rss"].append(r["maxrss_mb"])
            server_timers.append(r["timers"])
            shutil.rmtree(work / f"srv-{i}", ignore_errors=True)
            shutil.rmtree(srv_ds, ignore_errors=True)
            puts = (("put", nt, "PUT", {}), ("post", nt, "POST", {}), ("post_notx", nt, "POST", {"no_transaction": ""}),
                    ("put_raw", work / "pipeline.nt", "PUT", {}), ("put_dedup", work / "pipeline-dedup.nt", "PUT", {}))
            for key, path, method, params in puts:
                progress(f"repeat {i + 1}: raw Graph Store PUT ({key}) ...")
                folder = work / f"put-{key}-{i}"
                folder.mkdir()
                r = run_child({"op": "put", "nt": str(path), "server_dir": str(folder), "triples": out["triples"],
                               "method": method, "params": params})
                s[key].append(r["seconds"])
                shutil.rmtree(folder, ignore_errors=True)
        if i < repeat - 1:
            shutil.rmtree(ds, ignore_errors=True)

    # 2: the re-run with nothing new, against `abi --help`
    progress("re-run with nothing new, and abi --help ...")
    abi(["--help"])  # untimed: .pyc files and page cache warm
    for _ in range(QUICK):
        res = rerun(config, ds)
        s["rerun"].append(res["seconds"])
        s["rerun_rss"].append(res["maxrss_mb"])
        res = abi(["--help"])
        s["help"].append(res["seconds"])
        s["help_rss"].append(res["maxrss_mb"])
    r = run_child({"op": "bridge", "config": str(config), "timers": True}, ds)
    check(ok_record(r, "library re-run")["counts"].get("records_read") == 0, f"library re-run: {r['record']}")
    s["rerun_lib"].append(r["seconds"])
    out["rerun_timers"] = r["timers"]

    # 3: grow the graph to ~1,000,000 triples (a later collection, an incremental bridge run), then query it
    progress(f"collecting {GROW:,} more records, incremental bridge to ~1M triples ...")
    run_child({**setup, "first": False, "file": str(inbox / "news-0002.jsonl"), "from": RECORDS, "count": GROW}, ds)
    r = run_child({"op": "bridge", "config": str(config), "timers": True}, ds)
    record = ok_record(r, "incremental bridge")
    check(record["details"]["mode"] == "incremental" and record["counts"]["records_new"] == GROW,
          f"growing bridge run: {record['counts']} {record['details']}")
    out["grow"] = {"seconds": r["seconds"], "maxrss_mb": r["maxrss_mb"], "timers": r["timers"],
                   "added": record["counts"]["triples_added"], "triples": record["counts"]["triples"]}
    out["query_triples"] = record["counts"]["triples"]
    for _ in range(QUICK):
        s["rerun_big"].append(rerun(config, ds)["seconds"])
    progress(f"query over {out['query_triples']:,} triples: abi query ({QUICK}x) and run_query ({QUICK}x) ...")
    for _ in range(QUICK):
        res = abi(["query", QUERY, "--format", "tsv", "--config", str(config)], ds)
        lines = res["stdout"].strip().splitlines()
        check(len(lines) == len(TOPICS) + 1, f"abi query printed {len(lines)} lines: {res['stdout'][:300]!r}")
        s["query_cli"].append(res["seconds"])
        s["query_cli_rss"].append(res["maxrss_mb"])
    r = run_child({"op": "query", "config": str(config), "sparql": QUERY, "times": QUICK}, ds)
    check(len(r["rows"]) == len(TOPICS), f"run_query: {r['rows']}")
    out["topic_counts"] = {row[0]: int(row[1]) for row in r["rows"]}
    s["query_lib"], s["query_raw"], s["query_lib_rss"] = r["samples"], r["raw"], [r["maxrss_mb"]]

    if top:
        progress("profiling a first embedded bridge run (cProfile) ...")
        prof_ds = work / "prof-ds"
        shutil.copytree(base, prof_ds)
        out["profile"] = run_child({"op": "profile", "config": str(config), "top": top}, prof_ds)["text"]
        shutil.rmtree(prof_ds, ignore_errors=True)
    shutil.rmtree(ds, ignore_errors=True)

    out.update({k: stats(v) for k, v in s.items() if v})
    out["timers"] = {k: stats([t.get(k, 0.0) for t in timers]) for k in sorted({k for t in timers for k in t})}
    out["server_timers"] = {k: stats([t.get(k, 0.0) for t in server_timers])
                            for k in sorted({k for t in server_timers for k in t})}

    def ratio(a: str, b: str) -> dict[str, float]:
        return {"median": out[a]["median"] / out[b]["median"], "min": out[a]["min"] / out[b]["min"]}

    out["embedded_ratio"] = ratio("embedded", "floor")
    out["cli_ratio"] = ratio("cli", "floor")
    out["rerun_ratio"] = ratio("rerun", "help")
    out["rerun_big_ratio"] = ratio("rerun_big", "help")
    if server:
        out["server_ratio"] = ratio("server", "floor")
        out["server_put_ratio"] = ratio("server", "put")
        out["put_ratio"] = ratio("put", "floor")
    return out


def rerun(config: Path, ds: Path) -> dict[str, Any]:
    """`abi bridge` with nothing new: it must read and add nothing."""
    res = abi(["bridge", "--name", BRIDGE, "--config", str(config), "--json"], ds)
    rec = json.loads(res["stdout"])
    rec = rec[0] if isinstance(rec, list) else rec
    check(rec["status"] == "success" and rec["counts"].get("records_read") == 0
          and rec["counts"].get("triples_added") == 0, f"re-run did work: {rec['counts']}")
    return res


def raw_put(nt: Path, url: str, triples: int, method: str, params: dict[str, str]) -> dict[str, Any]:
    """One Graph Store PUT (or POST) of `nt` with plain `requests` (in a child): what the server itself costs."""
    import requests

    data = nt.read_bytes()
    with requests.Session() as session:
        t0 = time.perf_counter()
        resp = session.request(method, f"{url}/store", params={"graph": GRAPH, **params}, data=data,
                               headers={"Content-Type": "application/n-triples"}, timeout=RUN_TIMEOUT)
        seconds = time.perf_counter() - t0
        check(resp.status_code in (200, 201, 204), f"raw PUT: HTTP {resp.status_code} {resp.text[:200]}")
        resp = session.post(f"{url}/query", data=f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH <{GRAPH}> {{ ?s ?p ?o }} }}",
                            headers={"Content-Type": "application/sparql-query",
                                     "Accept": "application/sparql-results+json"}, timeout=60)
        loaded = int(resp.json()["results"]["bindings"][0]["n"]["value"])
        check(loaded == triples, f"raw PUT loaded {loaded} triples, not {triples}")
    return {"seconds": seconds}


# --------------------------------------------------------------------------- 4: aggregate


def bench_aggregate(work: Path, config: Path, repeat: int) -> dict[str, Any]:
    ds = work / "agg-ds"
    spec = {"op": "history", "config": str(config), "inbox": str(work / "runs-inbox"),
            "start": (datetime.now(UTC).replace(microsecond=0) - timedelta(days=120)).isoformat()}
    progress(f"generating {HISTORY:,} entries in {HISTORY_RUNS} runs: folder style (entry files + run "
             "records) and runs style (abi collect files, one .jsonl per run) ...")
    t0 = time.perf_counter()
    gen = run_child({**spec, "next": 0, "runs": HISTORY_RUNS, "count": HISTORY // HISTORY_RUNS, "spread": False},
                    ds)["generate"]
    out: dict[str, Any] = {"generate": gen, "generate_total": time.perf_counter() - t0}

    for style, name in (("folder", "articles_folder"), ("runs", "articles_runs")):
        progress(f"aggregate, {style} style: first run, then {repeat} full rebuild(s) ...")
        first = run_child({"op": "aggregate", "config": str(config), "name": name}, ds)
        ok_record(first, f"{style} first run")
        fulls, rss = [], []
        for _ in range(repeat):
            r = run_child({"op": "aggregate", "config": str(config), "name": name, "full": True}, ds)
            rec = ok_record(r, f"{style} full")
            check(rec["details"]["mode"] == "full" and rec["counts"]["records_read"] >= HISTORY,
                  f"{style} full: {rec['counts']} {rec['details']}")
            fulls.append(r["seconds"])
            rss.append(r["maxrss_mb"])
        out[style] = {"first": first["seconds"], "full": stats(fulls), "full_rss": stats(rss),
                      "keys": rec["counts"]["records"], "read": rec["counts"]["records_read"]}
    incs: dict[str, list[float]] = {"folder": [], "runs": []}
    inc_rss: dict[str, list[float]] = {"folder": [], "runs": []}
    counts: dict[str, Any] = {}
    for k in range(INCREMENT_RUNS):
        progress(f"new run of {INCREMENT} records ({k + 1}/{INCREMENT_RUNS}), incremental aggregates ...")
        run_child({**spec, "next": HISTORY + k * INCREMENT, "runs": 1, "count": INCREMENT, "spread": True}, ds)
        for style, name in (("folder", "articles_folder"), ("runs", "articles_runs")):
            r = run_child({"op": "aggregate", "config": str(config), "name": name}, ds)
            rec = ok_record(r, f"{style} incremental")
            check(rec["details"]["mode"] == "incremental" and rec["counts"]["records_read"] == INCREMENT,
                  f"{style} incremental: {rec['counts']} {rec['details']}")
            incs[style].append(r["seconds"])
            inc_rss[style].append(r["maxrss_mb"])
            counts[style] = rec["counts"]
    for style in ("folder", "runs"):
        o = out[style]
        o["incremental"], o["incremental_rss"], o["incremental_counts"] = stats(incs[style]), stats(
            inc_rss[style]), counts[style]
        o["ratio"] = {"median": o["incremental"]["median"] / o["full"]["median"],
                      "min": o["incremental"]["min"] / o["full"]["min"]}
    out["files"] = sum(1 for _ in (ds / "core" / "modules" / MODULE / "orchestration" / "rss_feed").iterdir())
    shutil.rmtree(ds, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- report


def verdict(key: str, value: float) -> str:
    goal, test = GOALS[key]
    if test is None:
        return goal
    return f"{goal} ({'met' if test(value) else 'MISSED'})"


def table(res: dict[str, Any]) -> str:
    b, a = res["bridge"], res["aggregate"]
    n = b["triples"]

    def sec(v: float) -> str:
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"

    def mb(v: float) -> str:
        return f"{v:.0f} MB"

    def rate(key: str) -> tuple[str, str]:
        return f"{n / b[key]['median']:,.0f} triples/s", f"{n / b[key]['min']:,.0f} triples/s"

    def pair(d: dict[str, Any], key: str, fmt: Callable[[float], str] = sec) -> tuple[str, str]:
        return fmt(d[key]["median"]), fmt(d[key]["min"])

    def x(d: dict[str, Any], key: str) -> tuple[str, str]:
        return f"{d[key]['median']:.2f}×", f"{d[key]['min']:.2f}×"

    def pct(d: dict[str, Any]) -> tuple[str, str]:
        return f"{d['ratio']['median'] * 100:.1f}%", f"{d['ratio']['min'] * 100:.1f}%"

    rows = [
        (f"floor: pyoxigraph `Store(path).bulk_load` of the exported graph ({n:,} triples, fresh store)",
         *pair(b, "floor"), "reference"),
        ("  triples/s", *rate("floor"), "-"),
        ("  peak RSS of the process", *pair(b, "floor_rss", mb), "-"),
        (f"`bridge()` {RECORDS:,} records → embedded store (library call, first run)", *pair(b, "embedded"), "-"),
        ("  triples/s", *rate("embedded"), "-"),
        ("  peak RSS of the process", *pair(b, "embedded_rss", mb), "-"),
        ("  embedded / floor", *x(b, "embedded_ratio"), verdict("embedded_ratio", b["embedded_ratio"]["median"])),
        ("`abi bridge` → embedded store (CLI process, first run)", *pair(b, "cli"), "-"),
        ("  CLI / floor", *x(b, "cli_ratio"), "-"),
        (f"bulk_load of the pipeline's own output ({b['pipeline']['lines']:,} lines, duplicates included)",
         *pair(b, "floor_raw"), "-"),
    ]
    if "server" in b:
        rows += [
            ("`bridge()` → `oxigraph serve` (library call, first run)", *pair(b, "server"), "-"),
            ("  triples/s", *rate("server"), "-"),
            ("  server / floor", *x(b, "server_ratio"), verdict("server_ratio", b["server_ratio"]["median"])),
            ("  server / raw PUT of the export", *x(b, "server_put_ratio"), "-"),
            ("raw Graph Store PUT of the exported graph (`requests`, fresh server)", *pair(b, "put"), "-"),
            ("  raw PUT / floor", *x(b, "put_ratio"), "-"),
            ("raw Graph Store POST of the same into the empty graph (also one transaction)", *pair(b, "post"), "-"),
            ("raw POST with Oxigraph's `?no_transaction` (bulk loader: not atomic, not standard)",
             *pair(b, "post_notx"), "reference"),
            (f"raw PUT of the pipeline's own output ({b['pipeline']['lines']:,} lines)", *pair(b, "put_raw"), "-"),
            (f"raw PUT of that output, duplicate lines dropped ({b['pipeline']['distinct']:,} lines)",
             *pair(b, "put_dedup"), "-"),
        ]
    rows += [
        ("`abi bridge` re-run, nothing new (CLI process)", *pair(b, "rerun"), "-"),
        ("  peak RSS", *pair(b, "rerun_rss", mb), "-"),
        ("`abi --help`", *pair(b, "help"), "-"),
        ("  re-run / `abi --help`", *x(b, "rerun_ratio"), "reported"),
        ("  the same re-run as a library call (no start-up)", *pair(b, "rerun_lib"), "-"),
        (f"`abi bridge` re-run, nothing new, {b['query_triples']:,}-triple graph", *pair(b, "rerun_big"), "-"),
        ("  re-run / `abi --help`", *x(b, "rerun_big_ratio"), "reported"),
        (f"incremental `bridge()`: {GROW:,} new records, {b['grow']['added']:,} triples added",
         sec(b["grow"]["seconds"]), "-", "-"),
        ("  peak RSS", mb(b["grow"]["maxrss_mb"]), "-", "-"),
        (f"`abi query` articles per topic, {b['query_triples']:,} triples (CLI process)", *pair(b, "query_cli"),
         "reported"),
        ("  peak RSS", *pair(b, "query_cli_rss", mb), "-"),
        ("`run_query` (library call, opens the snapshot each time)", *pair(b, "query_lib"), "reported"),
        ("  peak RSS", *pair(b, "query_lib_rss", mb), "-"),
        ("pyoxigraph alone: `Store.read_only(snapshot).query(...)`, rows iterated", *pair(b, "query_raw"),
         "reference"),
    ]
    labels = {"folder": f"folder style ({a['files']:,} entry files)", "runs": "runs style (JSON Lines per run)"}
    for style in ("folder", "runs"):
        d = a[style]
        rows += [
            (f"aggregate full rebuild, {labels[style]}, {d['read']:,} records → {d['keys']:,} keys",
             *pair(d, "full"), "-"),
            ("  peak RSS", *pair(d, "full_rss", mb), "-"),
            (f"aggregate incremental, +{INCREMENT} records (1 new run)", *pair(d, "incremental"), "-"),
            ("  incremental / full", *pct(d), verdict(f"agg_{style}", d["ratio"]["median"])),
        ]
    lines = ["| measure | median | min | goal |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def breakdown(timers: dict[str, Any], total: float) -> str:
    rows = sorted(timers.items(), key=lambda kv: -kv[1]["median"])
    known = sum(v["median"] for _, v in rows)
    lines = ["| step (exclusive wall time, median) | time | share |", "| --- | ---: | ---: |"]
    for label, v in rows:
        if v["median"] >= 0.0005:
            lines.append(f"| {label} | {v['median']:.3f} s | {v['median'] / total * 100:.0f}% |")
    lines.append(f"| other (run job, lock, imports on first use) | {max(0.0, total - known):.3f} s | "
                 f"{max(0.0, total - known) / total * 100:.0f}% |")
    return "\n".join(lines)


def goals_lines(res: dict[str, Any]) -> list[str]:
    b, a = res["bridge"], res["aggregate"]
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"{'PASS' if ok else 'MISS'} {text}")

    line(b["embedded_ratio"]["median"] <= 2, f"bridge → embedded store within 2× of the bulk_load floor "
         f"({b['embedded_ratio']['median']:.2f}×)")
    if "server_ratio" in b:
        line(b["server_ratio"]["median"] <= 2, f"bridge → oxigraph serve within 2× of the bulk_load floor "
             f"({b['server_ratio']['median']:.2f}×; the raw PUT alone is {b['put_ratio']['median']:.2f}×)")
    for style in ("folder", "runs"):
        r = a[style]["ratio"]["median"]
        line(r < 0.05, f"aggregate incremental under 5% of full, {style} style ({r * 100:.1f}%)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=1,
                        help="repetitions of each large measured run (default 1: the runs are large); the re-run, "
                             f"`abi --help` and the queries run {QUICK}×, the incremental aggregate {INCREMENT_RUNS}×")
    parser.add_argument("--no-server", action="store_true", help="skip the `oxigraph serve` measures")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--profile", type=int, metavar="TOP", default=0,
                        help="also run one first embedded bridge under cProfile and print the TOP entries")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    sys.stdout.reconfigure(line_buffering=True)
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat must be between 1 and 10")
    if not 0 <= args.profile <= 200:
        parser.error("--profile must be between 0 and 200")
    if not ABI.is_file():
        parser.error(f"{ABI} not found: run `make install` and use the venv's python")
    server = not args.no_server
    if server:  # tests/oxigraph_server.py looks there too (imported by the children only: it imports pytest)
        check((BIN / "oxigraph").exists() or shutil.which("oxigraph") is not None,
              "the oxigraph executable was not found (pip package `oxigraph`, in the dev extras; or --no-server)")

    python = Path(sys.executable)
    python_arg = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    command = f"cd {ROOT} && {python_arg} tests/benchmarks/bench_bridge.py --repeat {args.repeat}" + \
        (" --no-server" if not server else "")
    print(f"# abi-orchestration aggregate and bridge benchmark (repeat={args.repeat})")
    res: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "command": command}
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="abi-bench-bridge-"))
    try:
        config = work / "abi.toml"
        config.write_text(config_text(inbox=work / "inbox", runs_inbox=work / "runs-inbox"), encoding="utf-8")
        res["bridge"] = bench_bridge(work, config, args.repeat, server, args.profile)
        res["aggregate"] = bench_aggregate(work, config, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["seconds"] = time.perf_counter() - t0

    m, b, a = res["machine"], res["bridge"], res["aggregate"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['platform']})")
    p = b["pipeline"]
    print(f"Input: {RECORDS:,} news records (1-3 topics, publisher, 1 in 3 with an author, {RECORDS_PER_RUN} per "
          f"collection run) → {b['triples']:,} triples ({b['triples'] / RECORDS:.1f} per record); the export is "
          f"{b['nt_bytes'] / 1e6:.1f} MB of N-Triples. The pipeline hands the store {p['lines']:,} lines "
          f"({p['bytes'] / 1e6:.1f} MB): {p['lines'] - p['distinct']:,} repeat the shared nodes' triples "
          f"(dropping them in the client takes {p['dedup_s'] * 1000:.0f} ms).")
    print(f"min = best repeat (shortest time, smallest RSS); {QUICK} samples for the re-run, --help and queries\n")
    print(table(res))
    total = b["embedded"]["median"]
    print(f"\nWhere the library bridge's time goes, embedded store ({total:.2f} s):\n")
    print(breakdown(b["timers"], total))
    if b.get("server_timers"):
        total = b["server"]["median"]
        print(f"\nThe same, `oxigraph serve` ({total:.2f} s):\n")
        print(breakdown(b["server_timers"], total))
    total = b["rerun_lib"]["median"]
    print(f"\nThe re-run with nothing new as a library call ({total * 1000:.0f} ms, {b['triples']:,} triples):\n")
    print(breakdown({k: {"median": v} for k, v in b["rerun_timers"].items()}, total))
    g = b["grow"]
    print(f"\nIncremental bridge run of {GROW:,} new records into the {b['triples']:,}-triple graph "
          f"({g['seconds']:.2f} s, {g['added'] / g['seconds']:,.0f} triples/s, peak RSS {g['maxrss_mb']:.0f} MB):\n")
    print(breakdown({k: {"median": v} for k, v in g["timers"].items()}, g["seconds"]))
    print("\nArticles per topic: " + ", ".join(f"{k} {v:,}" for k, v in b["topic_counts"].items()))
    gen = a["generate"]
    print(f"Aggregate history generated in {a['generate_total']:.1f} s (folder style {gen['folder']:.1f} s through "
          f"storage.records.publish_records + run records; runs style {gen['runs']:.1f} s through "
          f"{HISTORY_RUNS} `abi collect files` runs). Incremental counts: folder {a['folder']['incremental_counts']}; "
          f"runs {a['runs']['incremental_counts']}.")
    print()
    for line in goals_lines(res):
        print(line)
    print(f"\nWhole run: {res['seconds']:.0f} s; this process's own peak RSS {own_peak_rss_mb():.0f} MB (the floor "
          "under the CLI processes' RSS readings, see benchlib.own_peak_rss_mb).")
    print(f"Reproduce: {command}")
    if b.get("profile"):
        print("\n" + b["profile"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
