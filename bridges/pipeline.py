"""The pipeline interface, shaped like ABI's so ABI users can bring theirs.

In ABI a pipeline is built from a `PipelineConfiguration` (which carries the
triple store) and its `run(parameters)` returns an `rdflib.Graph`. The same
holds here; `abi bridge` builds the parameters from a batch of stored records
and writes what `run` returns into the bridge's named graph. A pipeline that
can also produce N-Triples text directly (`ntriples(parameters)`) lets the
bridge skip rdflib for volume, as the built-in news pipeline does.

A minimal pipeline (see the README for a complete module):

    from rdflib import Graph, Literal, URIRef
    from bridges.pipeline import Pipeline, PipelineParameters

    class TitlesPipeline(Pipeline):
        def run(self, parameters: PipelineParameters) -> Graph:
            graph = Graph()
            for record in parameters.records:
                graph.add((URIRef(record["url"]), URIRef("http://schema.org/headline"), Literal(record["title"])))
            return graph
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage.errors import ConfigError

if TYPE_CHECKING:
    from rdflib import Graph


@dataclass
class RunInfo:
    """The collection run that stored a record: what provenance points at."""

    run_id: str
    module: str
    source: str
    kind: str | None = None
    started_at: str | None = None
    ended_at: str | None = None


@dataclass
class PipelineConfiguration:
    """What a pipeline is built with: the store it writes to (read it for lookups, never write to it)."""

    triple_store: Any = None
    graph: str = ""  # the named graph the bridge replaces or extends
    bridge: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineParameters:
    """One batch of records, each with the run that stored it (`runs[i]` belongs to `records[i]`)."""

    records: list[dict[str, Any]]
    runs: list[RunInfo | None] = field(default_factory=list)
    input: str = ""

    @property
    def record(self) -> dict[str, Any]:
        """The record of a one-record batch (pipelines written for one record at a time)."""
        return self.records[0]


class Pipeline:
    """Records in, an rdflib.Graph out. Subclasses implement `run`."""

    def __init__(self, configuration: PipelineConfiguration) -> None:
        self._configuration = configuration

    @property
    def configuration(self) -> PipelineConfiguration:
        return self._configuration

    def run(self, parameters: PipelineParameters) -> Graph:
        raise NotImplementedError(f"{type(self).__name__}.run(parameters) must return an rdflib.Graph")


def load_pipeline(spec: str, configuration: PipelineConfiguration) -> Pipeline:
    """`builtin:news` or `package.module:ClassName`, instantiated with its configuration."""
    if spec.startswith("builtin:"):
        from bridges.news import NewsPipeline

        builtins = {"news": NewsPipeline}
        return builtins[spec[8:]](configuration)
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"pipeline {spec!r}: cannot import {module_name!r} ({exc}); is it installed or on "
                          "PYTHONPATH?") from None
    cls = getattr(module, class_name, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(f"pipeline {spec!r}: {module_name} has no class {class_name!r}")
    if not callable(getattr(cls, "run", None)):
        raise ConfigError(f"pipeline {spec!r}: {class_name} has no run(parameters) method")
    return cls(configuration)
