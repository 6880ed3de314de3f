"""`builtin:news`: news entries as schema.org NewsArticles with PROV-O provenance.

Each article's IRI is a hash of its canonical URL, so the same story always
gets the same IRI whichever feed or run found it. Dates are typed
`xsd:dateTime` only when they are valid ISO 8601 (the collectors normalise
RFC 822 feed dates; anything else is left out rather than stored invalid).
No blank nodes: every node has an IRI, so writing the same records twice
yields the same triples.

It reads RSS entries as stored by `abi collect rss` and aggregate records
(`url`, `title`, `published`, `query` as a list, `source`, `run_id`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from bridges.pipeline import Pipeline, PipelineParameters, RunInfo

if TYPE_CHECKING:
    from rdflib import Graph

BASE = "http://ontology.naas.ai/abi/"
SCHEMA = "http://schema.org/"
DCT = "http://purl.org/dc/terms/"
PROV = "http://www.w3.org/ns/prov#"
SKOS = "http://www.w3.org/2004/02/skos/core#"
RDF_TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
RDFS_LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"
XSD_DATETIME = "http://www.w3.org/2001/XMLSchema#dateTime"
_DATETIME_RE = re.compile(r"^-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_IRI_UNSAFE = re.compile(r'[\x00-\x20<>"{}|^`\\\x7f]')


_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def iri(value: str) -> str:
    """An IRI term; characters N-Triples forbids in IRIs, and a `%` that starts no escape, are percent-encoded."""
    value = _BAD_PERCENT.sub("%25", value)
    return "<" + _IRI_UNSAFE.sub(lambda m: quote(m.group(0), safe=""), value) + ">"


def valid_iri(term: str) -> bool:
    """Whether a store will take this IRI term: one bad URL must not fail the batch it is in."""
    import pyoxigraph

    try:
        pyoxigraph.NamedNode(term[1:-1])
    except ValueError:
        return False
    return True


def literal(value: str, datatype: str | None = None) -> str:
    text = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r"))
    return f'"{text}"' + (f"^^<{datatype}>" if datatype else "")


def date_time(value: Any) -> str | None:
    """A valid xsd:dateTime literal, or None (never an RFC 822 string typed as a date)."""
    if not isinstance(value, str) or not _DATETIME_RE.match(value):
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return literal(value, XSD_DATETIME)


def article_iri(url: str) -> str:
    return iri(f"{BASE}news/article/{hashlib.sha256(url.encode()).hexdigest()[:32]}")


def _node(kind: str, name: str) -> str:
    return iri(f"{BASE}news/{kind}/{hashlib.sha256(name.encode()).hexdigest()[:16]}")


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items if v not in (None, "")]


def article_triples(record: dict[str, Any], run: RunInfo | None, out: list[str]) -> bool:
    """Append the N-Triples lines of one article to `out`; False when it has no URL or no title."""
    url = record.get("url")
    title = record.get("title") or record.get("headline")
    if not isinstance(url, str) or not _SCHEME.match(url) or not isinstance(title, str) or not title.strip():
        return False
    page = iri(url)
    if not valid_iri(page):
        return False  # counted as skipped by the bridge
    s = article_iri(url)
    add = out.append
    add(f"{s} {RDF_TYPE} <{SCHEMA}NewsArticle> .")
    add(f"{s} <{SCHEMA}headline> {literal(title)} .")
    add(f"{s} <{DCT}title> {literal(title)} .")
    add(f"{s} <{SCHEMA}url> {page} .")
    add(f"{s} <{DCT}identifier> {literal(hashlib.sha256(url.encode()).hexdigest()[:32])} .")
    published = date_time(record.get("published"))
    if published:
        add(f"{s} <{SCHEMA}datePublished> {published} .")
        add(f"{s} <{DCT}issued> {published} .")
    summary = record.get("summary")
    if isinstance(summary, str) and summary.strip():
        add(f"{s} <{SCHEMA}description> {literal(summary)} .")
    for author in _values(record.get("authors")):
        add(f"{s} <{DCT}creator> {literal(author)} .")
    for tag in _values(record.get("tags")):
        add(f"{s} <{SCHEMA}keywords> {literal(tag)} .")
    publisher = _publisher(record, url)
    if publisher:
        org = _node("organization", publisher)
        add(f"{s} <{SCHEMA}publisher> {org} .")
        add(f"{org} {RDF_TYPE} <{SCHEMA}Organization> .")
        add(f"{org} <{SCHEMA}name> {literal(publisher)} .")
    feed = record.get("feed") if isinstance(record.get("feed"), dict) else {}
    for topic in _values(record.get("query", feed.get("query"))):
        concept = _node("topic", topic)
        add(f"{s} <{SCHEMA}about> {concept} .")
        add(f"{s} <{DCT}subject> {literal(topic)} .")
        add(f"{concept} {RDF_TYPE} <{SKOS}Concept> .")
        add(f"{concept} <{SKOS}prefLabel> {literal(topic)} .")
    if run is not None:
        activity = iri(f"{BASE}run/{run.run_id}")
        source = iri(f"{BASE}source/{run.module}/{run.source}")
        add(f"{s} {RDF_TYPE} <{PROV}Entity> .")
        add(f"{s} <{PROV}wasGeneratedBy> {activity} .")
        add(f"{activity} {RDF_TYPE} <{PROV}Activity> .")
        label = f"{run.kind or 'collect'} {run.source} {run.run_id}"
        add(f"{activity} {RDFS_LABEL} {literal(label)} .")
        add(f"{activity} <{PROV}used> {source} .")
        for prop, value in (("startedAtTime", run.started_at), ("endedAtTime", run.ended_at)):
            typed = date_time(value)
            if typed:
                add(f"{activity} <{PROV}{prop}> {typed} .")
        add(f"{source} {RDF_TYPE} <{PROV}Entity> .")
        add(f"{source} {RDFS_LABEL} {literal(run.source)} .")
    return True


def _publisher(record: dict[str, Any], url: str) -> str | None:
    raw = record.get("raw") if isinstance(record.get("raw"), dict) else {}
    for value in (record.get("publisher"), raw.get("news_source"), raw.get("source", {}).get("title")
                  if isinstance(raw.get("source"), dict) else None):
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    host = urlsplit(url).hostname
    return host.removeprefix("www.") if host else None


class NewsPipeline(Pipeline):
    """schema.org NewsArticle + Dublin Core + PROV-O for news records."""

    def ntriples(self, parameters: PipelineParameters) -> tuple[bytes, int]:
        """(N-Triples bytes, records mapped): the fast path the bridge uses for volume."""
        lines: list[str] = []
        runs = parameters.runs or [None] * len(parameters.records)
        mapped = sum(article_triples(record, run, lines) for record, run in zip(parameters.records, runs,
                                                                                  strict=True))
        return ("\n".join(lines) + "\n").encode() if lines else b"", mapped

    def run(self, parameters: PipelineParameters) -> Graph:
        """The same triples as an rdflib.Graph (the ABI pipeline contract)."""
        from rdflib import Graph

        data, _ = self.ntriples(parameters)
        return Graph().parse(data=data.decode(), format="nt")
