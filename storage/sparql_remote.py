"""A triple store behind standard HTTP protocols: SPARQL 1.1 Query/Update and the Graph Store Protocol.

Only the W3C protocols are used, so the same client talks to `oxigraph serve`,
Apache Jena Fuseki, GraphDB or Amazon Neptune; the defaults are oxigraph's
endpoint paths (`/query`, `/update`, `/store`) and each can be overridden.

Graph replacement is one Graph Store `PUT`, which the server applies as one
transaction (readers see the old graph or the new one). Queries without a
`graph` rely on the server treating the default graph as the union of all
graphs: run `oxigraph serve --union-default-graph` (Fuseki: `tdb:unionDefaultGraph`),
or write `GRAPH ?g { ... }` in queries.

Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried
three times with exponential backoff; every other failure becomes one
TripleStoreError line. Credentials come from the URL or from environment
variables and are never part of a message.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import pyoxigraph as ox
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from storage.redact import redact_text, redact_url
from storage.triplestore import EXPORT_FORMATS, QueryOutput, TripleStoreError, first_line, named_node

RESULTS_JSON = "application/sparql-results+json"
N_TRIPLES = "application/n-triples"
CONNECT_TIMEOUT = 10.0
ATTEMPTS = 3
_ACCEPT_ANY_RESULT = f"{RESULTS_JSON}, {N_TRIPLES};q=0.9, text/plain;q=0.1"


class _Transient(Exception):
    """A failure worth retrying; carries the final message if the retries run out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RemoteStore:
    """The TripleStore protocol over HTTP (see the module docstring for the server requirements)."""

    def __init__(self, url: str, *, query_url: str | None = None, update_url: str | None = None,
                 store_url: str | None = None, user_env: str | None = None, password_env: str | None = None,
                 timeout: float = 60.0, read_only: bool = False, retry_wait: float = 0.5) -> None:
        base, auth = _split_credentials(url.rstrip("/"))
        env_user = os.environ.get(user_env) if user_env else None
        env_password = os.environ.get(password_env) if password_env else None
        if env_user:
            auth = (env_user, env_password or "")
        self.location = redact_url(base)
        self.query_url = _split_credentials(query_url)[0] if query_url else f"{base}/query"
        self.update_url = _split_credentials(update_url)[0] if update_url else f"{base}/update"
        self.store_url = _split_credentials(store_url)[0] if store_url else f"{base}/store"
        self.timeout = timeout
        self.read_only = read_only
        self.retry_wait = retry_wait
        self._secrets = tuple(s for s in (auth[1] if auth else "",) if s)
        self._session: requests.Session | None = requests.Session()
        self._session.auth = auth
        self._session.headers["User-Agent"] = "abi-orchestration triple store client"

    # ---- HTTP

    def _request(self, method: str, url: str, *, expect: tuple[int, ...] = (200,), stream: bool = False,
                 what: str = "request", **kwargs: Any) -> requests.Response:
        """One call with retries on transient failures; anything else is a TripleStoreError line."""
        if self._session is None:
            raise TripleStoreError(f"the triple store client for {self.location} is closed")
        session = self._session

        def attempt() -> requests.Response:
            try:
                resp = session.request(method, url, timeout=(CONNECT_TIMEOUT, self.timeout), stream=stream,
                                       **kwargs)
            except requests.ConnectionError as exc:
                reason = "connection refused" if "refused" in str(exc).lower() else "connection failed"
                raise _Transient(f"cannot reach the triple store at {self.location}: {reason} "
                                 "(is the SPARQL server running? set ABI_TRIPLESTORE)") from None
            except requests.Timeout:
                raise _Transient(f"the triple store at {self.location} did not answer within "
                                 f"{self.timeout:g}s ({what})") from None
            if resp.status_code in expect:
                return resp
            body = first_line(self._redact(resp.text)) if not stream or resp.status_code >= 300 else ""
            resp.close()
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Transient(f"the triple store at {self.location} answered HTTP {resp.status_code} "
                                 f"to the {what}: {body}")
            raise TripleStoreError(self._client_error(resp.status_code, what, body))

        try:
            for retry in Retrying(stop=stop_after_attempt(ATTEMPTS), reraise=True,
                                  wait=wait_exponential(multiplier=self.retry_wait, max=8),
                                  retry=retry_if_exception_type(_Transient)):
                with retry:
                    return attempt()
        except _Transient as exc:
            raise TripleStoreError(exc.message) from None
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def _client_error(self, status: int, what: str, body: str) -> str:
        if status in (401, 403):
            return (f"the triple store at {self.location} refused access (HTTP {status}): "
                    "check the user and password (ABI_TRIPLESTORE_USER/ABI_TRIPLESTORE_PASSWORD or the URL)")
        if status == 400 and what == "query":
            return f"invalid SPARQL query: {body}"
        return f"the triple store at {self.location} rejected the {what} (HTTP {status}): {body}"

    def _redact(self, text: str) -> str:
        return redact_text(text, self._secrets)

    def _writable(self) -> None:
        if self.read_only:
            raise TripleStoreError(f"the triple store at {self.location} was opened read-only")

    def _select(self, sparql: str) -> QueryOutput:
        resp = self._request("POST", self.query_url, data=sparql.encode(), what="query",
                             headers={"Content-Type": "application/sparql-query", "Accept": RESULTS_JSON})
        return QueryOutput.from_results_json(resp.content)

    # ---- the protocol

    def replace_graph(self, graph: str, ntriples: bytes) -> int:
        """One Graph Store request the server applies in one transaction.

        PUT replaces the graph; into an empty graph a POST does the same at about half
        the cost on Oxigraph (no old graph to drop inside the transaction).
        """
        self._writable()
        node = named_node(graph)
        method = "POST" if self.count(node.value) == 0 else "PUT"
        self._request(method, self.store_url, params={"graph": graph}, data=ntriples, what="graph upload",
                      expect=(200, 201, 204), headers={"Content-Type": N_TRIPLES})
        return self.count(node.value)

    def add_triples(self, graph: str, ntriples: bytes) -> int:
        """Graph Store POST: merged into the graph in one request (set semantics on the server)."""
        self._writable()
        node = named_node(graph)
        if ntriples.strip():
            self._request("POST", self.store_url, params={"graph": graph}, data=ntriples, what="graph upload",
                          expect=(200, 201, 204), headers={"Content-Type": N_TRIPLES})
        return self.count(node.value)

    def drop_graph(self, graph: str) -> None:
        self._writable()
        named_node(graph)
        self._request("DELETE", self.store_url, params={"graph": graph}, what="graph removal",
                      expect=(200, 202, 204, 404))

    def count(self, graph: str | None = None) -> int:
        """Triples in one graph, or in all named graphs (the bridge writes only named graphs).

        The default graph is left out for `None`: with a union default graph it
        would count every triple twice, and SPARQL has no portable way to name
        the "real" default graph.
        """
        pattern = f"GRAPH {named_node(graph)} {{ ?s ?p ?o }}" if graph else "GRAPH ?g { ?s ?p ?o }"
        out = self._select(f"SELECT (COUNT(*) AS ?n) WHERE {{ {pattern} }}")
        return int(out.rows[0][0] or 0) if out.rows else 0

    def graphs(self) -> list[str]:
        out = self._select("SELECT DISTINCT ?g WHERE { GRAPH ?g { } }")
        return sorted(row[0] for row in out.rows if row[0] and not row[0].startswith("_:"))

    def query(self, sparql: str, *, graph: str | None = None) -> QueryOutput:
        """SPARQL protocol POST; `graph` becomes the query's default graph (`default-graph-uri`)."""
        params = {"default-graph-uri": named_node(graph).value} if graph else None
        resp = self._request("POST", self.query_url, params=params, data=sparql.encode("utf-8"), what="query",
                             headers={"Content-Type": "application/sparql-query", "Accept": _ACCEPT_ANY_RESULT})
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            if content_type in (RESULTS_JSON, "application/json"):
                return QueryOutput.from_results_json(resp.content)
            if content_type in (N_TRIPLES, "text/plain"):
                return QueryOutput.from_ntriples(resp.content)
        except (ValueError, SyntaxError) as exc:
            raise TripleStoreError(f"the triple store at {self.location} sent an unreadable {content_type} "
                                   f"result: {first_line(str(exc))}") from None
        raise TripleStoreError(f"the triple store at {self.location} answered the query with {content_type!r}, "
                               f"not SPARQL results JSON or N-Triples")

    def export(self, graph: str, fmt: str, out: BinaryIO) -> int:
        """Graph Store GET as N-Triples, streamed through the parser into the requested format."""
        if fmt not in EXPORT_FORMATS:
            raise TripleStoreError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
        node = named_node(graph)
        resp = self._request("GET", self.store_url, params={"graph": graph}, what="graph download", stream=True,
                             expect=(200, 404), headers={"Accept": N_TRIPLES})
        written = 0

        def counted(items: Any) -> Any:
            nonlocal written
            for item in items:
                written += 1
                yield item

        try:
            if resp.status_code == 404:  # no such graph: an empty export
                triples: Any = iter(())
            else:
                resp.raw.decode_content = True
                triples = ox.parse(resp.raw, format=ox.RdfFormat.N_TRIPLES)
            if fmt == "nquads":
                quads = (ox.Quad(t.subject, t.predicate, t.object, node) for t in triples)
                ox.serialize(counted(quads), out, format=ox.RdfFormat.N_QUADS)
            else:
                target = ox.RdfFormat.TURTLE if fmt == "turtle" else ox.RdfFormat.N_TRIPLES
                ox.serialize(counted(triples), out, format=target)
        except (SyntaxError, requests.RequestException, OSError) as exc:
            raise TripleStoreError(f"cannot download graph {graph} from {self.location}: "
                                   f"{first_line(self._redact(str(exc)))}") from None
        finally:
            resp.close()
        return written

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without user:password@ (so it can be shown and logged), and those credentials for basic auth."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return (urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
            (unquote(parts.username), unquote(parts.password or "")))
