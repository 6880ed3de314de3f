"""`abi bridge`: stored records -> a pipeline -> triples in one named graph of a triple store.

Each bridge owns one named graph. A first run (or `--full`) writes the whole
graph as a unit: the store swaps the old graph for the new one in one step, so
readers never see half of it. Later runs read only what the input added since
(bridges.inputs) and, when every record is new, add their triples in one
transaction; writing the same triples again changes nothing (no blank nodes
in the built-in pipeline). When a record changed or disappeared upstream,
its old triples cannot be told apart from the others, so the run rebuilds
the graph in full and says why.

A key index (record key -> content hash) tells new records from changed ones.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from bridges.inputs import Chunk, describe, get_path, read_chunk, scan
from bridges.pipeline import PipelineConfiguration, PipelineParameters, RunInfo, load_pipeline
from storage.atomic import read_json
from storage.config import Config
from storage.errors import AbiError
from storage.jobs import run_job
from storage.keyindex import NEW, REPEATED, UNCHANGED, KeyIndex
from storage.pipeline_config import BridgeConfig, store_url_for
from storage.runs import RUN_ID_RE, Run
from storage.state import load_state, save_state

Progress = Callable[[str, dict[str, Any]], None]

log = logging.getLogger("abi.bridges.rdf")


class BridgeError(AbiError):
    """The pipeline failed or produced something the store cannot take."""


def store_url(config: Config, bridge: BridgeConfig | None = None) -> str | None:
    """The bridge's `store`, else $ABI_TRIPLESTORE, else [triplestore] url, else None (embedded)."""
    return store_url_for(config.triplestore, bridge)


def open_configured_store(config: Config, bridge: BridgeConfig | None = None, *, read_only: bool = False) -> Any:
    from storage.triplestore import open_store

    ts = config.triplestore
    url = store_url(config, bridge)
    kwargs: dict[str, Any] = {}
    if url is not None:
        kwargs = {"endpoints": dict(ts.endpoints) or None, "user_env": ts.user_env, "password_env": ts.password_env}
    return open_store(url=url, datastore_root=config.datastore.root, read_only=read_only, timeout=ts.timeout,
                      **{k: v for k, v in kwargs.items() if v is not None})


def bridge(*, config: Config, name: str, full: bool = False, wait: bool = False, command: list[str] | None = None,
           progress: Progress | None = None) -> dict[str, Any]:
    """Bring bridge `name`'s named graph up to date with its input; return the run record."""
    b = config.bridge(name)

    def work(run: Run) -> None:
        _bridge(config, b, run, full=full, progress=progress)

    return run_job(ds=config.datastore, module=b.module, source=name, kind="bridge",
                   command=command or ["abi", "bridge", "--name", name], work=work, wait=wait)


def bridge_all(*, config: Config, full: bool = False, wait: bool = False, command: list[str] | None = None,
               progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every configured bridge, one run record each (bridges do not read each other)."""
    if not config.bridges:
        from storage.errors import UsageError

        raise UsageError(f"{config.path}: no [bridges.NAME] configured; see the README's Configuration section")
    return [bridge(config=config, name=name, full=full, wait=wait, command=command, progress=progress)
            for name in config.bridges]


def _fingerprint(config: Config, b: BridgeConfig) -> str:
    basis = repr((b.input, b.pipeline, b.graph, b.key, store_url(config, b)))
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def _bridge(config: Config, b: BridgeConfig, run: Run, *, full: bool, progress: Progress | None) -> None:
    ds = config.datastore
    state = load_state(ds, b.module, b.name)
    info = describe(config, b.input)
    key_path = b.key or info.key
    reason = None
    if full:
        reason = "--full"
    elif not state.get("input"):
        reason = "first run"
    elif state.get("fingerprint") != _fingerprint(config, b):
        reason = "the bridge's definition changed"
    store = open_configured_store(config, b)
    run.counts["triples"] = store.count(b.graph)  # kept up to date below from what each write returns
    if reason is None and run.counts["triples"] != state.get("triples"):
        reason = "the graph in the store is not what the last run left (changed outside abi, or a new store)"
    found = scan(config, b.input, None if reason else state["input"])
    if reason is None and found.full_reason:
        reason = found.full_reason
        found = scan(config, b.input, None)
    try:
        index = KeyIndex(ds.state_file(b.module, b.name).with_suffix(".keys.sqlite"))
    except BaseException:
        store.close()
        raise
    run.details.update(graph=b.graph, store=store.location)
    try:
        index.begin(run.run_id)
        if reason is None:
            run.details["mode"] = "incremental"
            changed = _incremental(config, b, run, store, index, found.chunks, key_path, progress)
            if changed is not None:
                index.rollback()
                reason = changed
                found = scan(config, b.input, None)
                index.begin(run.run_id)
        if reason is not None:
            run.details.update(mode="full", full_reason=reason)  # set first: a failed run says what it tried
            _full(config, b, run, store, index, found.chunks, key_path, progress)
        log.info("bridge %s: %s%s into %s", b.name, run.details["mode"], f" ({reason})" if reason else "",
                 store.location)
        index.commit()
    finally:
        index.close()
        store.close()
    state.update(input=found.mark, fingerprint=_fingerprint(config, b), triples=run.counts["triples"])
    save_state(ds, b.module, b.name, state)


def _records(chunks: list[Chunk], key_path: str | None, run: Run) -> Iterator[tuple[Chunk, Any, str, int]]:
    """(chunk, record, key, content digest) in collection order."""
    import orjson

    run.counts["records_read"] = 0
    for chunk in sorted(chunks, key=lambda c: c.position):
        for record in read_chunk(chunk):
            run.counts["records_read"] += 1
            line = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
            digest = hashlib.sha256(line).digest()
            yield chunk, record, _key(record, key_path, digest), int.from_bytes(digest[:8], "big", signed=True)


def _classified(index: KeyIndex, items: Iterator[tuple[Chunk, Any, str, int]]) -> Iterator[tuple[Chunk, Any, str, str]]:
    """(chunk, record, key, verdict), a thousand records per index query."""
    while True:
        batch = [item for _, item in zip(range(1000), items, strict=False)]
        if not batch:
            return
        verdicts = index.classify_many([key for _, _, key, _ in batch], [digest for *_, digest in batch])
        for (chunk, record, key, _), verdict in zip(batch, verdicts, strict=True):
            yield chunk, record, key, verdict


def _key(record: Any, key_path: str | None, digest: bytes) -> str:
    value = get_path(record, key_path) if key_path else None
    if value is None or isinstance(value, (dict, list)):
        return "sha:" + digest[:16].hex()
    return f"{type(value).__name__}:{value}"


def _incremental(config: Config, b: BridgeConfig, run: Run, store: Any, index: KeyIndex, chunks: list[Chunk],
                 key_path: str | None, progress: Progress | None) -> str | None:
    """Add the triples of new records; return why a full rebuild is needed instead, if it is."""
    fresh: list[tuple[Chunk, Any]] = []
    for chunk, record, key, verdict in _classified(index, _records(chunks, key_path, run)):
        if verdict == NEW:
            fresh.append((chunk, record))
        elif verdict not in (UNCHANGED, REPEATED):
            return f"a record of {b.input} changed upstream (key {key[:60]})"
    run.count("records_new", len(fresh))
    if not fresh:
        run.count("triples_added", 0)
        return None
    data = _triples(config, b, run, store, fresh, progress)
    after = store.add_triples(b.graph, data)
    run.count("triples_added", after - run.counts["triples"])
    run.counts["triples"] = after
    return None


def _full(config: Config, b: BridgeConfig, run: Run, store: Any, index: KeyIndex, chunks: list[Chunk],
          key_path: str | None, progress: Progress | None) -> None:
    """The whole graph from every record (the latest version of each key), swapped in as a unit."""
    latest: dict[str, tuple[Chunk, Any]] = {}
    fresh = 0
    for chunk, record, key, verdict in _classified(index, _records(chunks, key_path, run)):
        latest.pop(key, None)  # keep collection order of the latest version
        latest[key] = (chunk, record)
        fresh += verdict == NEW
    run.count("records_removed", index.drop_unseen())
    data = _triples(config, b, run, store, list(latest.values()), progress)
    after = store.replace_graph(b.graph, data)
    run.count("triples_added", max(0, after - run.counts["triples"]))
    run.counts["triples"] = after
    run.count("records_new", fresh)  # records the graph did not have (the rebuild covers them all)


def _triples(config: Config, b: BridgeConfig, run: Run, store: Any, items: list[tuple[Chunk, Any]],
             progress: Progress | None) -> bytes:
    """Run the pipeline batch by batch; N-Triples bytes of everything it produced."""
    pipeline = load_pipeline(b.pipeline, PipelineConfiguration(triple_store=store, graph=b.graph, bridge=b.name))
    fast = getattr(pipeline, "ntriples", None)
    runs = _RunLookup(config)
    parts: list[bytes] = []
    run.counts.setdefault("records_mapped", 0)
    for start in range(0, len(items), b.batch_size):
        batch = items[start:start + b.batch_size]
        records = [record for _, record in batch]
        params = PipelineParameters(records=records, input=b.input,
                                    runs=[runs.get(_run_id_of(record, chunk)) for chunk, record in batch])
        try:
            if fast is not None:
                data, mapped = fast(params)
            else:
                graph = pipeline.run(params)
                data, mapped = graph.serialize(format="nt", encoding="utf-8"), len(records)
        except AbiError:
            raise
        except Exception as exc:
            raise BridgeError(f"pipeline {b.pipeline} failed on a batch of {b.input} records: "
                              f"{type(exc).__name__}: {exc}") from exc
        run.counts["records_mapped"] += mapped
        parts.append(data)
        log.debug("batch of %s records: %s mapped, %s bytes of N-Triples", len(batch), mapped, len(data))
        if progress:
            progress(b.name, {"status": f"{start + len(batch)}/{len(items)} records"})
    run.count("records_skipped", len(items) - run.counts["records_mapped"])
    # Shared nodes (a topic, a publisher, a collection run) come once per article that names them:
    # sending each line once halves what a SPARQL server has to parse (order kept: the bytes stay stable).
    lines = dict.fromkeys(line for part in parts for line in part.split(b"\n") if line)
    return b"\n".join(lines) + b"\n" if lines else b""


def _run_id_of(record: Any, chunk: Chunk) -> str:
    value = record.get("run_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) and RUN_ID_RE.match(value) else chunk.position


class _RunLookup:
    """Run records by id, read once each: the provenance of every record."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache: dict[str, RunInfo | None] = {}

    def get(self, run_id: str) -> RunInfo | None:
        if run_id in self.cache:
            return self.cache[run_id]
        match = RUN_ID_RE.match(run_id or "")
        info = None
        if match:
            source = match["source"]
            try:
                module = self.config.module_of(source)
            except KeyError:
                module = None
            record = read_json(self.config.datastore.runs_dir(module) / f"{run_id}.json") if module else None
            if record:
                info = RunInfo(run_id=run_id, module=record["module"], source=record["source"], kind=record["kind"],
                               started_at=record.get("started_at"), ended_at=record.get("ended_at"))
            elif module:
                info = RunInfo(run_id=run_id, module=module, source=source)
        self.cache[run_id] = info
        return info
