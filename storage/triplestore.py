"""The triple store the semantic bridge writes to: embedded (pyoxigraph on disk) or a remote SPARQL server.

Both implementations answer the same small protocol (`TripleStore`), so a bridge
replaces a named graph, a query command queries, and neither knows where the
triples live. `open_store` picks one from the configured URL.

The embedded store lives under `<datastore>/triplestore/`:

    store/                 the primary RocksDB database, opened read-write by one writer at a time
    write.lock             flock held by that writer for as long as it has the store open
    state.json             the writer's journal: {"dirty": bool, "graphs": {iri: {"sha256", "triples"}}}
    snapshots/<seq>-<ts>/  checkpoints of the primary (RocksDB hard links: cheap), one per write
    current.json           {"snapshot": name, ...}: the checkpoint readers open, published atomically

Why snapshots: RocksDB lets one process open a database read-write, and
pyoxigraph documents that opening it read-only while another process writes it
is undefined behaviour. So readers never open the primary; they open the
published checkpoint, which nobody writes. A reader therefore sees the store as
of the last completed write - never a half-replaced graph - and writers need no
transactions for readers' sake, which lets them use the (non-transactional)
bulk loader, the fastest way in.

Why the journal: a write first marks state.json dirty, then changes the
primary, checkpoints, publishes, and marks it clean. A writer killed in between
leaves `dirty` behind; the next writer restores the primary from the published
checkpoint (the last complete state) before doing anything else, so a crash
never leaks a partial graph into a later checkpoint. The journal also keeps a
digest of the N-Triples each graph was last replaced with: re-bridging
unchanged data (the common idempotent re-run) costs a hash, not a reload.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyoxigraph as ox

from storage.atomic import read_json, write_json
from storage.errors import AbiError, StorageError
from storage.locks import SourceLock

# A snapshot that stopped being current this long ago is no reader's any more (readers are short-lived
# commands); the one before the current is kept regardless, for a reader that has just read the pointer.
SNAPSHOT_RETENTION_SECONDS = 600.0
# Replacing graph g when the rest of the store holds fewer than this many times g's old triples: dump the
# rest, clear the store and reload it (~13 µs a triple) instead of deleting g's triples (~23 µs a triple).
REBUILD_RATIO = 1.5

XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
RDF_LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
RESULT_FORMATS = ("json", "csv", "tsv")
GRAPH_FORMATS = ("ntriples", "turtle")
EXPORT_FORMATS = ("turtle", "ntriples", "nquads")


class TripleStoreError(AbiError):
    """The triple store cannot do what was asked; `str()` is one line, without credentials."""


# --------------------------------------------------------------------------- query results


@dataclass(frozen=True)
class QueryOutput:
    """A query's complete result, detached from the store (so the store can close before printing).

    `rows` is what a table shows; `terms` keeps each SELECT cell as a SPARQL JSON
    term (type, datatype, language) so that JSON and TSV output lose nothing.
    """

    kind: str
    variables: list[str]
    rows: list[list[str | None]]
    terms: list[list[dict[str, Any] | None]] = field(default_factory=list, repr=False)

    @classmethod
    def from_results_json(cls, data: bytes | dict[str, Any]) -> QueryOutput:
        """Build from a SPARQL 1.1 Query Results JSON document (SELECT or ASK)."""
        doc = json.loads(data) if isinstance(data, bytes | str) else data
        if "boolean" in doc:
            return cls.from_boolean(bool(doc["boolean"]))
        variables = list(doc.get("head", {}).get("vars", []))
        terms: list[list[dict[str, Any] | None]] = []
        for binding in doc.get("results", {}).get("bindings", []):
            terms.append([_normalize_term(binding.get(var)) for var in variables])
        rows = [[_term_text(t) for t in row] for row in terms]
        return cls("select", variables, rows, terms)

    @classmethod
    def from_boolean(cls, value: bool) -> QueryOutput:
        return cls("ask", [], [["true" if value else "false"]])

    @classmethod
    def from_ntriples(cls, data: bytes) -> QueryOutput:
        """Build a CONSTRUCT/DESCRIBE result from N-Triples (each row: s, p, o in N-Triples term syntax)."""
        rows: list[list[str | None]] = [
            [str(t.subject), str(t.predicate), str(t.object)]
            for t in ox.parse(data, format=ox.RdfFormat.N_TRIPLES)
        ]
        return cls("graph", ["subject", "predicate", "object"], rows)

    def serialize(self, fmt: str) -> bytes:
        """Standard encodings: SPARQL results JSON/CSV/TSV for SELECT and ASK; N-Triples/Turtle for graphs."""
        if self.kind == "graph":
            if fmt not in GRAPH_FORMATS:
                raise TripleStoreError(f"a CONSTRUCT/DESCRIBE result is written as {' or '.join(GRAPH_FORMATS)}, "
                                       f"not {fmt}")
            nt = "".join(f"{s} {p} {o} .\n" for s, p, o in self.rows).encode()
            if fmt == "ntriples":
                return nt
            return ox.serialize(ox.parse(nt, format=ox.RdfFormat.N_TRIPLES), format=ox.RdfFormat.TURTLE) or b""
        if fmt not in RESULT_FORMATS:
            raise TripleStoreError(f"a {self.kind.upper()} result is written as {', '.join(RESULT_FORMATS)}, "
                                   f"not {fmt}")
        if fmt == "json":
            return self._json()
        return self._csv() if fmt == "csv" else self._tsv()

    def _json(self) -> bytes:
        if self.kind == "ask":
            doc: dict[str, Any] = {"head": {}, "boolean": self.rows[0][0] == "true"}
        else:
            bindings = [{var: term for var, term in zip(self.variables, row, strict=True) if term is not None}
                        for row in self.terms]
            doc = {"head": {"vars": self.variables}, "results": {"bindings": bindings}}
        return json.dumps(doc, ensure_ascii=False).encode()

    def _csv(self) -> bytes:
        # W3C SPARQL 1.1 Query Results CSV: header of names, plain values, CRLF. ASK has no standard CSV form:
        # a one-column table named "boolean" keeps it parseable by any CSV reader.
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        if self.kind == "ask":
            writer.writerows([["boolean"], self.rows[0]])
        else:
            writer.writerow(self.variables)
            writer.writerows([["" if cell is None else cell for cell in row] for row in self.rows])
        return buf.getvalue().encode()

    def _tsv(self) -> bytes:
        # W3C TSV: header "?name", cells in Turtle/N-Triples term syntax, empty when unbound.
        if self.kind == "ask":
            return f"?boolean\n{self.rows[0][0]}\n".encode()
        lines = ["\t".join(f"?{v}" for v in self.variables)]
        lines += ["\t".join("" if t is None else _term_ntriples(t) for t in row) for row in self.terms]
        return ("\n".join(lines) + "\n").encode()


def _normalize_term(term: dict[str, Any] | None) -> dict[str, Any] | None:
    if term is None:
        return None
    if term.get("type") == "typed-literal":  # SPARQL 1.0-era JSON, still sent by some servers
        term = {**term, "type": "literal"}
    if term.get("type") == "literal" and term.get("datatype") in (XSD_STRING, RDF_LANG_STRING):
        term = {k: v for k, v in term.items() if k != "datatype"}
    return term


def _term_text(term: dict[str, Any] | None) -> str | None:
    """The cell as text: an IRI as is, a literal's lexical form, `_:id` for a blank node."""
    if term is None:
        return None
    kind = term.get("type")
    if kind == "bnode":
        return f"_:{term['value']}"
    if kind == "triple":
        return _term_ntriples(term)
    return str(term.get("value", ""))


def _escape_literal(value: str) -> str:
    return (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))


def _term_ntriples(term: dict[str, Any]) -> str:
    kind, value = term.get("type"), term.get("value")
    if kind == "uri":
        return f"<{value}>"
    if kind == "bnode":
        return f"_:{value}"
    if kind == "triple":
        inner = value if isinstance(value, dict) else {}
        parts = [_term_ntriples(inner.get(k) or {}) for k in ("subject", "predicate", "object")]
        return "<< " + " ".join(parts) + " >>"
    text = f'"{_escape_literal(str(value))}"'
    if term.get("xml:lang"):
        return f"{text}@{term['xml:lang']}"
    datatype = term.get("datatype")
    return f"{text}^^<{datatype}>" if datatype and datatype != XSD_STRING else text


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line, shortened: error bodies and parser messages can be pages long."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --------------------------------------------------------------------------- the protocol


class TripleStore(Protocol):
    """What bridges and query commands need from a triple store (embedded or remote)."""

    location: str

    def replace_graph(self, graph: str, ntriples: bytes) -> int: ...
    def add_triples(self, graph: str, ntriples: bytes) -> int: ...
    def drop_graph(self, graph: str) -> None: ...
    def count(self, graph: str | None = None) -> int: ...
    def graphs(self) -> list[str]: ...
    def query(self, sparql: str, *, graph: str | None = None) -> QueryOutput: ...
    def export(self, graph: str, fmt: str, out: BinaryIO) -> int: ...
    def close(self) -> None: ...


def open_store(*, url: str | None, datastore_root: Path, read_only: bool = False, timeout: float = 60.0,
               endpoints: dict[str, str] | None = None, user_env: str | None = "ABI_TRIPLESTORE_USER",
               password_env: str | None = "ABI_TRIPLESTORE_PASSWORD") -> TripleStore:
    """`None`/"embedded": the store under <datastore_root>/triplestore; an http(s) URL: a SPARQL server.

    `endpoints` overrides the remote query/update/store URLs (keys "query", "update", "store").
    A writer (read_only=False) of the embedded store waits for any other writer to finish.
    """
    if url is None or url.strip() in ("", "embedded"):
        return EmbeddedStore(datastore_root / "triplestore", read_only=read_only)
    if url.startswith(("http://", "https://")):
        from storage.sparql_remote import RemoteStore

        ends = dict(endpoints or {})
        unknown = set(ends) - {"query", "update", "store"}
        if unknown:
            raise TripleStoreError(f"unknown triple store endpoint(s) {', '.join(sorted(unknown))}: "
                                   "use query, update or store")
        return RemoteStore(url, query_url=ends.get("query"), update_url=ends.get("update"),
                           store_url=ends.get("store"), user_env=user_env, password_env=password_env,
                           timeout=timeout, read_only=read_only)
    from storage.redact import redact_url

    raise TripleStoreError(f"triple store {redact_url(url)!r} is neither 'embedded' nor an http(s):// SPARQL URL "
                           "(check ABI_TRIPLESTORE)")


def named_node(graph: str) -> ox.NamedNode:
    """The graph IRI as a pyoxigraph node, or a clear error (an IRI is what SPARQL and GSP need)."""
    try:
        return ox.NamedNode(graph)
    except ValueError as exc:
        raise TripleStoreError(f"graph name {graph!r} is not a valid IRI ({exc})") from None


# --------------------------------------------------------------------------- the embedded store


_RDF_FORMATS = {"turtle": ox.RdfFormat.TURTLE, "ntriples": ox.RdfFormat.N_TRIPLES}


class EmbeddedStore:
    """pyoxigraph on disk: one writer (flock-serialized) on the primary, readers on published checkpoints."""

    def __init__(self, base: Path, *, read_only: bool = False) -> None:
        self.base = base
        self.location = str(base)
        self.read_only = read_only
        self.primary = base / "store"
        self.snapshots = base / "snapshots"
        self.pointer = base / "current.json"
        self.state_path = base / "state.json"
        self._lock: SourceLock | None = None
        self._store: ox.Store | None = None
        self._broken = False
        self._state: dict[str, Any] = {}
        if read_only:
            self._open_reader()
        else:
            self._open_writer()

    # ---- opening

    def _open_reader(self) -> None:
        error: OSError | None = None
        for _ in range(3):  # the pointer may move between reading it and opening the checkpoint
            current = read_json(self.pointer)
            if not current or not current.get("snapshot"):
                raise TripleStoreError(f"the triple store at {self.location} is empty: run abi bridge first")
            try:
                self._store = ox.Store.read_only(str(self.snapshots / current["snapshot"]))
                return
            except OSError as exc:
                error = exc
            time.sleep(0.05)
        raise TripleStoreError(f"cannot open the triple store at {self.location}: {first_line(str(error))}")

    def _open_writer(self) -> None:
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            self._lock = SourceLock(self.base / "write.lock", wait=True)
            self._lock.acquire()
        except OSError as exc:
            raise StorageError(f"cannot create the triple store at {self.location}: {exc.strerror}") from None
        try:
            self._state = read_json(self.state_path) or {"dirty": False, "graphs": {}}
            if self._state.get("dirty"):
                self._restore_from_checkpoint()
            for leftover in ("rebuild.tmp", "store.restoring"):  # a killed writer's scratch folders
                shutil.rmtree(self.base / leftover, ignore_errors=True)
            self._store = ox.Store(str(self.primary))
            self._remove_old_snapshots()
        except BaseException:
            self.close()
            raise

    def _restore_from_checkpoint(self) -> None:
        """Undo a killed writer's partial change: the primary becomes the last published checkpoint again."""
        shutil.rmtree(self.primary, ignore_errors=True)
        current = read_json(self.pointer)
        if current and current.get("snapshot"):
            tmp = self.base / "store.restoring"
            shutil.rmtree(tmp, ignore_errors=True)
            snapshot = ox.Store.read_only(str(self.snapshots / current["snapshot"]))
            try:
                snapshot.backup(str(tmp))
            finally:
                del snapshot
            os.replace(tmp, self.primary)
        else:  # nothing was ever published: the primary starts empty
            self._state["graphs"] = {}
        self._state["dirty"] = False
        write_json(self.state_path, self._state)

    # ---- helpers

    def _db(self) -> ox.Store:
        if self._broken:
            self._repair_in_process()
        if self._store is None:
            raise TripleStoreError(f"the triple store at {self.location} is closed")
        return self._store

    def _repair_in_process(self) -> None:
        """After a failed write (bad N-Triples, full disk): the primary goes back to the last checkpoint."""
        self._store = None
        gc.collect()
        try:
            self._restore_from_checkpoint()
            self._store = ox.Store(str(self.primary))
        except OSError as exc:
            raise TripleStoreError(f"cannot reopen the triple store at {self.location} after a failed write: "
                                   f"{first_line(str(exc))} (the next run repairs it)") from None
        self._broken = False

    def _writable(self) -> ox.Store:
        if self.read_only:
            raise TripleStoreError(f"the triple store at {self.location} was opened read-only")
        return self._db()

    @contextlib.contextmanager
    def _write(self, graph: str) -> Iterator[None]:
        """Journal a change to the primary: dirty before, checkpoint + clean after, repair on any failure.

        The body reaches the database only through `self._db()`, never a local
        variable, so that dropping `self._store` here really closes RocksDB even
        while the failed call's frames are still alive in a traceback.
        """
        self._writable()
        self._state["graphs"].pop(graph, None)
        self._state["dirty"] = True
        write_json(self.state_path, self._state)
        try:
            yield
        except BaseException:
            self._store = None  # the primary may hold part of the change: back to the last checkpoint
            self._broken = True
            with contextlib.suppress(TripleStoreError):  # else retried on the next use, or by the next writer
                self._repair_in_process()
            raise
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Publish the primary's state: backup (hard links), pointer swap, journal clean, old snapshots out."""
        current = read_json(self.pointer) or {}
        seq = int(current.get("sequence", 0)) + 1
        name = f"{seq:08d}-{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}"
        self.snapshots.mkdir(parents=True, exist_ok=True)
        target = self.snapshots / name
        shutil.rmtree(target, ignore_errors=True)
        try:
            self._db().backup(str(target))
        except OSError as exc:
            raise StorageError(f"cannot checkpoint the triple store at {self.location}: {exc} "
                               "(readers keep the previous state)") from None
        write_json(self.pointer, {"snapshot": name, "sequence": seq,
                                  "written_at": datetime.now(UTC).isoformat(timespec="seconds")})
        self._state["dirty"] = False
        write_json(self.state_path, self._state)
        self._remove_old_snapshots()

    def _remove_old_snapshots(self) -> None:
        """Unpublished leftovers go at once; published ones once superseded for SNAPSHOT_RETENTION_SECONDS."""
        current = read_json(self.pointer) or {}
        seq = int(current.get("sequence", 0))
        try:
            names = sorted(p.name for p in self.snapshots.iterdir() if p.is_dir())
        except FileNotFoundError:
            return
        published = [n for n in names if 0 < _seq(n) <= seq]
        doomed = [n for n in names if not 0 < _seq(n) <= seq]
        now = time.time()
        for older, newer in itertools.pairwise(published[:-1]):  # current and previous are kept
            if now - _created(newer) > SNAPSHOT_RETENTION_SECONDS:
                doomed.append(older)
        for name in doomed:
            shutil.rmtree(self.snapshots / name, ignore_errors=True)

    def _graph_count(self, node: ox.NamedNode) -> int:
        result = self._db().query(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {node} {{ ?s ?p ?o }} }}")
        return int(next(iter(result))["n"].value)  # type: ignore[index,union-attr]

    def _bulk_load(self, ntriples: bytes, node: ox.NamedNode, graph: str) -> None:
        try:
            self._db().bulk_load(ntriples, format=ox.RdfFormat.N_TRIPLES, to_graph=node)
        except SyntaxError as exc:
            raise TripleStoreError(f"invalid N-Triples for graph {graph}: {first_line(str(exc))}") from None

    def _rebuild_without(self, node: ox.NamedNode) -> None:
        """Empty the store but keep every graph except `node`: dump them, clear() (instant), bulk-load back."""
        tmp = self.base / "rebuild.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            kept: list[tuple[Path, Any]] = []
            others: list[Any] = [g for g in self._db().named_graphs() if g != node]
            for i, other in enumerate([ox.DefaultGraph(), *others]):
                path = tmp / f"{i}.nt"
                self._db().dump(str(path), format=ox.RdfFormat.N_TRIPLES, from_graph=other)
                kept.append((path, other))
            self._db().clear()
            for path, other in kept:
                if not isinstance(other, ox.DefaultGraph):
                    self._db().add_graph(other)
                if path.stat().st_size:
                    self._db().bulk_load(path=str(path), format=ox.RdfFormat.N_TRIPLES, to_graph=other)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- the protocol

    def replace_graph(self, graph: str, ntriples: bytes) -> int:
        """Make `graph` hold exactly these triples; readers see the switch at the checkpoint, all at once."""
        node = named_node(graph)
        self._writable()
        digest = hashlib.sha256(ntriples).hexdigest()
        known = self._state["graphs"].get(graph)
        if (known and known.get("sha256") == digest and not self._state.get("dirty") and read_json(self.pointer)
                and self._graph_count(node) == known.get("triples")):
            return int(known["triples"])  # unchanged since the last (published) replace: nothing to do
        with self._write(graph):
            old = self._graph_count(node) if self._db().contains_named_graph(node) else 0
            others = len(self._db()) - old
            if old and not others:
                self._db().clear()  # instant, unlike deleting the triples one by one
            elif old and others < REBUILD_RATIO * old:
                self._rebuild_without(node)
            elif old:
                self._db().remove_graph(node)
            self._bulk_load(ntriples, node, graph)
            if not self._db().contains_named_graph(node):
                self._db().add_graph(node)
            triples = self._graph_count(node)
            self._state["graphs"][graph] = {"sha256": digest, "triples": triples}
        return triples

    def add_triples(self, graph: str, ntriples: bytes) -> int:
        """Add (set semantics: RocksDB keys are the triples); published in one checkpoint."""
        node = named_node(graph)
        if not ntriples.strip():
            self._writable()
            return self._graph_count(node)
        with self._write(graph):
            self._bulk_load(ntriples, node, graph)
            triples = self._graph_count(node)
        return triples

    def drop_graph(self, graph: str) -> None:
        node = named_node(graph)
        if not self._writable().contains_named_graph(node):
            return
        with self._write(graph):
            if len(self._db()) == self._graph_count(node):
                self._db().clear()
            else:
                self._db().remove_graph(node)

    def count(self, graph: str | None = None) -> int:
        if graph is None:
            return len(self._db())
        return self._graph_count(named_node(graph))

    def graphs(self) -> list[str]:
        return sorted(g.value for g in self._db().named_graphs() if isinstance(g, ox.NamedNode))

    def query(self, sparql: str, *, graph: str | None = None) -> QueryOutput:
        """SPARQL over the union of all graphs, or over `graph` alone as the default graph."""
        options: dict[str, Any] = {"default_graph": named_node(graph)} if graph else \
            {"use_default_graph_as_union": True}
        try:
            result = self._db().query(sparql, **options)
            if isinstance(result, ox.QueryBoolean):
                return QueryOutput.from_boolean(bool(result))
            if isinstance(result, ox.QuerySolutions):
                return QueryOutput.from_results_json(result.serialize(format=ox.QueryResultsFormat.JSON))
            return QueryOutput.from_ntriples(result.serialize(format=ox.RdfFormat.N_TRIPLES) or b"")
        except SyntaxError as exc:
            raise TripleStoreError(f"invalid SPARQL query: {first_line(str(exc))}") from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise TripleStoreError(f"the query failed: {first_line(str(exc))}") from None

    def export(self, graph: str, fmt: str, out: BinaryIO) -> int:
        """Write one graph as Turtle, N-Triples or N-Quads (the graph name on every line); return its size."""
        if fmt not in EXPORT_FORMATS:
            raise TripleStoreError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
        node = named_node(graph)
        store = self._db()
        if fmt == "nquads":
            suffix = f" {node} .\n".encode()
            nt = store.dump(format=ox.RdfFormat.N_TRIPLES, from_graph=node) or b""
            for line in nt.splitlines():
                if line.endswith(b" ."):
                    out.write(line[:-1] + suffix[1:])
        else:
            store.dump(out, format=_RDF_FORMATS[fmt], from_graph=node)
        return self._graph_count(node)

    def close(self) -> None:
        """Drop the RocksDB handle before the flock, so the next writer never finds the database locked."""
        self._store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _seq(name: str) -> int:
    """A snapshot's sequence number (0 for a folder that is not one of ours)."""
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _created(name: str) -> float:
    try:
        return datetime.strptime(name.split("-", 1)[1], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC).timestamp()
    except (IndexError, ValueError):
        return 0.0
