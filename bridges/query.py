"""`abi query` and `abi export`: read the configured triple store, never write it.

The embedded store is opened read-only on its last published snapshot, so a
query runs while a bridge writes and sees the graph before or after that
write, never half of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from storage.config import Config
from storage.errors import UsageError


def resolve_graph(config: Config, graph: str | None) -> str | None:
    """A bridge name stands for its graph; anything else is taken as the graph IRI."""
    if graph is None:
        return None
    if graph in config.bridges:
        return config.bridges[graph].graph
    if ":" not in graph:
        known = ", ".join(sorted(config.bridges)) or "none"
        raise UsageError(f"--graph {graph!r} is neither a bridge name (configured: {known}) nor an IRI")
    return graph


def read_query(*, text: str | None, file: Path | None) -> str:
    if (text is None) == (file is None):
        raise UsageError("give the query as an argument or with --file q.rq (one of the two)")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the query file {file}: {exc}") from None
    return text or ""


def run_query(*, config: Config, sparql: str, graph: str | None = None) -> Any:
    """The query's results (storage.triplestore.QueryOutput)."""
    from bridges.rdf import open_configured_store

    store = open_configured_store(config, read_only=True)
    try:
        return store.query(sparql, graph=resolve_graph(config, graph))
    finally:
        store.close()


def export_graph(*, config: Config, graph: str, fmt: str, out: BinaryIO) -> int:
    """Write one named graph to `out`; return the number of triples."""
    from bridges.rdf import open_configured_store

    iri = resolve_graph(config, graph)
    store = open_configured_store(config, read_only=True)
    try:
        return store.export(iri, fmt, out)
    finally:
        store.close()
