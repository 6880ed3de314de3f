"""The triple-store layer against real stores: pyoxigraph on disk in tmp_path and a real `oxigraph serve`.

The behavioural tests run on both (fixture `store`, parametrized); what only one
of them has (checkpoints, the crash journal, HTTP errors) is tested on its own.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pyoxigraph
import pytest
import rdflib
from rdflib.compare import isomorphic

from storage import triplestore
from storage.sparql_remote import RemoteStore
from storage.triplestore import EmbeddedStore, TripleStore, TripleStoreError, open_store
from tests.conftest import REPO
from tests.oxigraph_server import _free_port, oxigraph_server  # noqa: F401

G = "https://example.org/graph/news"
G2 = "https://example.org/graph/other"
EX = "https://example.org/"


def ntriples(n: int, *, tag: str = "v1", start: int = 0) -> bytes:
    """n triples (n a multiple of 3 or not), with a language literal, a typed literal and an IRI object."""
    lines = []
    for i in range(start, start + n):
        subject = f"<{EX}item/{i // 3}>"
        kind = i % 3
        if kind == 0:
            lines.append(f'{subject} <http://purl.org/dc/terms/title> "Title {tag} {i}, \\"quoted\\""@en .')
        elif kind == 1:
            lines.append(f'{subject} <{EX}score> "{i}"^^<http://www.w3.org/2001/XMLSchema#integer> .')
        else:
            lines.append(f"{subject} <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{EX}Class{i % 7}> .")
    return ("\n".join(lines) + "\n").encode() if lines else b""


def export_bytes(store: TripleStore, graph: str, fmt: str) -> tuple[int, bytes]:
    buf = io.BytesIO()
    n = store.export(graph, fmt, buf)
    return n, buf.getvalue()


@pytest.fixture(params=["embedded", "remote"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded store; the base URL of a real oxigraph server (emptied first) for remote."""
    if request.param == "embedded":
        return None
    url = request.getfixturevalue("oxigraph_server")
    with RemoteStore(url) as remote:
        for graph in remote.graphs():
            remote.drop_graph(graph)
    return url


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[TripleStore]:
    opened = open_store(url=store_url, datastore_root=tmp_path)
    try:
        yield opened
    finally:
        opened.close()


# --------------------------------------------------------------------------- behaviour, both stores


def test_replace_twice_with_the_same_data_changes_nothing(store: TripleStore) -> None:
    data = ntriples(300)
    assert store.replace_graph(G, data) == 300
    first = export_bytes(store, G, "ntriples")
    assert store.replace_graph(G, data) == 300
    assert store.count(G) == 300
    second = export_bytes(store, G, "ntriples")
    assert first[0] == second[0] == 300
    assert sorted(first[1].splitlines()) == sorted(second[1].splitlines())


def test_replace_with_different_data_removes_the_old_triples(store: TripleStore) -> None:
    store.replace_graph(G, ntriples(300, tag="old"))
    assert store.replace_graph(G, ntriples(30, tag="new")) == 30
    _, exported = export_bytes(store, G, "ntriples")
    assert b"Title old" not in exported and exported.count(b"Title new") == 10
    assert store.replace_graph(G, b"") == 0
    assert store.count(G) == 0


def test_add_triples_is_idempotent(store: TripleStore) -> None:
    store.replace_graph(G, ntriples(30))
    extra = ntriples(9, start=1000)
    assert store.add_triples(G, extra) == 39
    assert store.add_triples(G, extra) == 39
    assert store.add_triples(G, ntriples(30)) == 39
    assert store.add_triples(G, b"") == 39


def test_graphs_and_counts(store: TripleStore) -> None:
    assert store.graphs() == [] and store.count() == 0
    store.replace_graph(G, ntriples(30))
    store.replace_graph(G2, ntriples(12, tag="x", start=5000))
    assert store.graphs() == [G, G2]
    assert (store.count(G), store.count(G2), store.count()) == (30, 12, 42)
    assert store.count("https://example.org/graph/none") == 0
    store.drop_graph(G2)
    store.drop_graph(G2)  # dropping a missing graph is fine
    assert store.graphs() == [G] and store.count() == 30


def test_rebuild_and_remove_paths_keep_the_other_graphs(store: TripleStore) -> None:
    """Replacing a big graph beside a small one (rebuild) and the small one beside the big one (remove)."""
    store.replace_graph(G, ntriples(600))
    store.replace_graph(G2, ntriples(6, tag="small", start=9000))
    assert store.replace_graph(G, ntriples(300, tag="v2")) == 300
    assert store.count(G2) == 6
    assert store.replace_graph(G2, ntriples(9, tag="small2", start=9000)) == 9
    assert store.count(G) == 300 and store.count() == 309
    _, small = export_bytes(store, G2, "ntriples")
    assert b"small2" in small and b"Title small " not in small


def test_query_select_ask_construct_and_their_serializations(store: TripleStore) -> None:
    store.replace_graph(G, ntriples(6) + f'<{EX}item/9> <{EX}note> "tab\\there, comma" .\n'.encode())
    sel = store.query(f"SELECT ?s ?title ?score WHERE {{ ?s ?p ?o OPTIONAL {{ ?s <http://purl.org/dc/terms/title> "
                      f"?title }} OPTIONAL {{ ?s <{EX}score> ?score }} FILTER(?p = <{EX}note> || ?p = "
                      f"<{EX}score>) }} ORDER BY ?s")
    assert sel.kind == "select" and sel.variables == ["s", "title", "score"]
    assert sel.rows == [[f"{EX}item/0", 'Title v1 0, "quoted"', "1"],
                        [f"{EX}item/1", 'Title v1 3, "quoted"', "4"],
                        [f"{EX}item/9", None, None]]

    doc = json.loads(sel.serialize("json"))
    assert doc["head"]["vars"] == ["s", "title", "score"]
    first = doc["results"]["bindings"][0]
    assert first["s"] == {"type": "uri", "value": f"{EX}item/0"}
    assert first["title"] == {"type": "literal", "value": 'Title v1 0, "quoted"', "xml:lang": "en"}
    assert first["score"]["datatype"] == "http://www.w3.org/2001/XMLSchema#integer"
    assert doc["results"]["bindings"][2] == {"s": {"type": "uri", "value": f"{EX}item/9"}}

    table = list(csv.reader(io.StringIO(sel.serialize("csv").decode(), newline="")))
    assert table[0] == ["s", "title", "score"]
    assert table[1] == [f"{EX}item/0", 'Title v1 0, "quoted"', "1"] and table[3] == [f"{EX}item/9", "", ""]

    tsv = sel.serialize("tsv").decode().splitlines()
    assert tsv[0] == "?s\t?title\t?score"
    assert tsv[1].split("\t") == [f"<{EX}item/0>", '"Title v1 0, \\"quoted\\""@en',
                                  '"1"^^<http://www.w3.org/2001/XMLSchema#integer>']
    assert tsv[3].split("\t") == [f"<{EX}item/9>", "", ""]

    note = store.query(f"SELECT ?o WHERE {{ ?s <{EX}note> ?o }}")
    assert note.rows == [["tab\there, comma"]]
    assert note.serialize("tsv").decode().splitlines()[1] == '"tab\\there, comma"'
    assert list(csv.reader(io.StringIO(note.serialize("csv").decode(), newline="")))[1] == ["tab\there, comma"]

    ask = store.query(f"ASK {{ <{EX}item/1> ?p ?o }}")
    assert (ask.kind, ask.rows) == ("ask", [["true"]])
    assert json.loads(ask.serialize("json")) == {"head": {}, "boolean": True}
    assert store.query(f"ASK {{ <{EX}nothing> ?p ?o }}").rows == [["false"]]
    assert list(csv.reader(io.StringIO(ask.serialize("csv").decode()))) == [["boolean"], ["true"]]

    con = store.query(f"CONSTRUCT {{ ?s <{EX}score> ?o }} WHERE {{ ?s <{EX}score> ?o }}")
    assert con.kind == "graph" and len(con.rows) == 2
    assert [f"<{EX}item/0>", f"<{EX}score>", '"1"^^<http://www.w3.org/2001/XMLSchema#integer>'] in con.rows
    parsed = rdflib.Graph().parse(data=con.serialize("turtle").decode(), format="turtle")
    assert len(parsed) == 2 == len(rdflib.Graph().parse(data=con.serialize("ntriples").decode(), format="nt"))
    with pytest.raises(TripleStoreError, match="CONSTRUCT"):
        con.serialize("csv")
    with pytest.raises(TripleStoreError, match="SELECT"):
        sel.serialize("turtle")


def test_query_scoped_to_one_graph_and_union_by_default(store: TripleStore) -> None:
    store.replace_graph(G, ntriples(3))
    store.replace_graph(G2, ntriples(3, start=300))
    count = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    assert store.query(count).rows == [["6"]]
    assert store.query(count, graph=G2).rows == [["3"]]
    assert store.query("SELECT ?s WHERE { ?s ?p ?o } LIMIT 1", graph=G2).rows == [[f"{EX}item/100"]]


def test_a_malformed_query_is_one_line_with_its_position(store: TripleStore) -> None:
    with pytest.raises(TripleStoreError) as err:
        store.query("SELECT * WHERE { ?s ?p }")
    message = str(err.value)
    assert "\n" not in message and message.startswith("invalid SPARQL query: ")
    assert "1:" in message, message  # "error at 1:23: ..."


def test_invalid_ntriples_keep_the_previous_graph(store: TripleStore) -> None:
    store.replace_graph(G, ntriples(30))
    with pytest.raises(TripleStoreError) as err:
        store.replace_graph(G, ntriples(30, tag="v2") + b"<https://example.org/a> <https://example.org/b> bad .\n")
    assert "\n" not in str(err.value) and "line" in str(err.value).lower()
    assert store.count(G) == 30
    assert store.replace_graph(G, ntriples(9, tag="v3")) == 9


def test_export_formats(store: TripleStore) -> None:
    data = ntriples(60)
    store.replace_graph(G, data)
    expected = rdflib.Graph().parse(data=data.decode(), format="nt")
    n, turtle = export_bytes(store, G, "turtle")
    assert n == 60
    assert isomorphic(rdflib.Graph().parse(data=turtle.decode(), format="turtle"), expected)
    n, nquads = export_bytes(store, G, "nquads")
    quads = list(pyoxigraph.parse(nquads, format=pyoxigraph.RdfFormat.N_QUADS))
    assert n == 60 == len(quads) and {q.graph_name.value for q in quads} == {G}
    assert all(line.endswith(f"<{G}> .".encode()) for line in nquads.splitlines())
    assert export_bytes(store, "https://example.org/graph/none", "ntriples") == (0, b"")
    with pytest.raises(TripleStoreError, match="rdfxml"):
        store.export(G, "rdfxml", io.BytesIO())


# --------------------------------------------------------------------------- concurrency and crashes

_READER = """
import sys, time
from pathlib import Path
from storage.triplestore import open_store, TripleStoreError
url = sys.argv[1] or None
root, graph, stop = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
print("ready", flush=True)
while not stop.exists():
    store = open_store(url=url, datastore_root=root, read_only=True)
    try:
        n = store.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH <{graph}> {{ ?s ?p ?o }} }}").rows[0][0]
    finally:
        store.close()
    print(n, flush=True)
"""


def test_a_reader_sees_the_old_graph_or_the_new_one_never_a_mix(store_url: str | None, tmp_path: Path) -> None:
    old, new = ntriples(20_000, tag="old"), ntriples(21_000, tag="new")
    with closing(open_store(url=store_url, datastore_root=tmp_path)) as writer:
        writer.replace_graph(G, old)
        stop = tmp_path / "stop"
        reader = subprocess.Popen([sys.executable, "-c", _READER, store_url or "", str(tmp_path), G, str(stop)],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert reader.stdout is not None and reader.stdout.readline() == "ready\n"
            time.sleep(0.3)
            for i in range(4):
                writer.replace_graph(G, new if i % 2 == 0 else old)
                time.sleep(0.1)
        finally:
            stop.touch()
            out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    counts = [int(line) for line in out.split()]
    assert len(counts) >= 5, (out, err)
    assert set(counts) == {20_000, 21_000}, sorted(set(counts))  # both seen: the reader read during the writes


_KILLED_WRITER = """
import sys
from pathlib import Path
from storage import triplestore
from storage.triplestore import open_store
url = sys.argv[1] or None
original = triplestore.EmbeddedStore._bulk_load
def announcing(self, *args):
    print("loading", flush=True)
    return original(self, *args)
triplestore.EmbeddedStore._bulk_load = announcing
store = open_store(url=url, datastore_root=Path(sys.argv[2]))
print("sending", flush=True)
store.replace_graph(sys.argv[3], Path(sys.argv[4]).read_bytes())
print("done", flush=True)
"""


def test_a_killed_writer_leaves_the_last_state_and_the_next_writer_repairs(store_url: str | None,
                                                                          tmp_path: Path) -> None:
    before = ntriples(300)
    with closing(open_store(url=store_url, datastore_root=tmp_path)) as writer:
        writer.replace_graph(G, before)
        writer.replace_graph(G2, ntriples(3, start=9000))
    big = tmp_path / "big.nt"
    big.write_bytes(ntriples(150_000, tag="big"))
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, store_url or "", str(tmp_path), G, str(big)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        expected = "sending\n" if store_url else "loading\n"
        line = child.stdout.readline()
        while line and line != expected:
            line = child.stdout.readline()
        assert line == expected, child.stderr.read() if child.stderr else ""
        time.sleep(0.15)
        child.send_signal(signal.SIGKILL)
    finally:
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL

    if store_url is None:
        state = json.loads((tmp_path / "triplestore" / "state.json").read_text())
        assert state["dirty"] is True  # the kill landed inside the write: the repair below is exercised
    reader = open_store(url=store_url, datastore_root=tmp_path, read_only=True)
    try:
        # embedded: readers keep the last checkpoint; remote: the server applied the PUT whole or not at all
        assert reader.count(G) in ({300} if store_url is None else {300, 150_000})
        assert reader.count(G2) == 3
    finally:
        reader.close()
    with closing(open_store(url=store_url, datastore_root=tmp_path)) as writer:
        assert writer.graphs() == [G, G2]
        assert writer.count(G) in ({300} if store_url is None else {300, 150_000})
        assert writer.replace_graph(G, ntriples(30, tag="after")) == 30
        assert writer.count() == 33
    if store_url is None:
        assert json.loads((tmp_path / "triplestore" / "state.json").read_text())["dirty"] is False
        assert [p.name for p in (tmp_path / "triplestore").iterdir() if "tmp" in p.name or "restor" in p.name] == []


# --------------------------------------------------------------------------- embedded only


def test_a_reader_of_an_empty_embedded_store_is_told_to_bridge_first(tmp_path: Path) -> None:
    with pytest.raises(TripleStoreError, match="empty: run abi bridge first"):
        open_store(url="embedded", datastore_root=tmp_path, read_only=True)
    with closing(open_store(url=None, datastore_root=tmp_path)) as writer:
        writer.replace_graph(G, ntriples(3))
    reader = open_store(url=None, datastore_root=tmp_path, read_only=True)
    try:
        assert reader.count(G) == 3
        with pytest.raises(TripleStoreError, match="read-only"):
            reader.replace_graph(G, b"")
    finally:
        reader.close()


def test_readers_see_only_published_checkpoints_and_old_ones_are_removed(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "triplestore"
    with EmbeddedStore(base) as writer:
        writer.replace_graph(G, ntriples(3))
        reader = EmbeddedStore(base, read_only=True)
        writer.replace_graph(G, ntriples(6))
        assert reader.count(G) == 3  # a reader keeps the checkpoint it opened
        reader.close()
        seq = json.loads((base / "current.json").read_text())["sequence"]
        writer.replace_graph(G, ntriples(6))  # unchanged: no new checkpoint
        assert json.loads((base / "current.json").read_text())["sequence"] == seq
        monkeypatch.setattr(triplestore, "SNAPSHOT_RETENTION_SECONDS", 0.0)
        for n in (9, 12, 15):
            writer.add_triples(G, ntriples(n))
        snapshots = sorted(p.name for p in (base / "snapshots").iterdir())
        assert len(snapshots) == 2  # the current one and the one before
        assert json.loads((base / "current.json").read_text())["snapshot"] == snapshots[-1]
    (base / "snapshots" / "99999999-20990101T000000.000000Z").mkdir()  # a crashed writer's unpublished backup
    with EmbeddedStore(base) as writer:
        assert len(list((base / "snapshots").iterdir())) == 2
    assert EmbeddedStore(base, read_only=True).count(G) == 15


def test_a_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    first = open_store(url=None, datastore_root=tmp_path)
    opened = threading.Event()

    def second() -> None:
        other = open_store(url=None, datastore_root=tmp_path)
        opened.set()
        other.close()

    thread = threading.Thread(target=second)
    thread.start()
    assert not opened.wait(0.3)
    first.close()
    assert opened.wait(10)
    thread.join()


def test_open_store_rejects_what_is_neither_embedded_nor_http(tmp_path: Path) -> None:
    with pytest.raises(TripleStoreError, match="neither 'embedded'") as err:
        open_store(url="bolt://user:hunter22@db:7687", datastore_root=tmp_path)
    assert "hunter22" not in str(err.value)


# --------------------------------------------------------------------------- remote only


def test_an_unreachable_server_is_one_clear_line_without_credentials() -> None:
    url = f"http://abi:s3cr3t-pw@127.0.0.1:{_free_port()}"
    with RemoteStore(url, retry_wait=0.01) as remote:
        started = time.monotonic()
        with pytest.raises(TripleStoreError) as err:
            remote.count()
    message = str(err.value)
    assert message.startswith(f"cannot reach the triple store at http://127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert "is the SPARQL server running? set ABI_TRIPLESTORE" in message
    assert "\n" not in message and "s3cr3t" not in message and "abi:" not in message
    assert time.monotonic() - started < 5


def test_remote_credentials_and_endpoints(oxigraph_server: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("ABI_TRIPLESTORE_USER", "reader")
    monkeypatch.setenv("ABI_TRIPLESTORE_PASSWORD", "pw-from-env")
    remote = open_store(url=oxigraph_server + "/", datastore_root=tmp_path,
                        endpoints={"query": oxigraph_server + "/query"})
    try:
        assert isinstance(remote, RemoteStore)
        assert remote._session is not None and remote._session.auth == ("reader", "pw-from-env")
        assert remote.location == oxigraph_server and remote.query_url == oxigraph_server + "/query"
        assert remote.query("ASK { }").rows == [["true"]]  # oxigraph ignores the credentials
    finally:
        remote.close()
    with pytest.raises(TripleStoreError, match="unknown triple store endpoint"):
        open_store(url=oxigraph_server, datastore_root=tmp_path, endpoints={"sparql": "x"})
    with RemoteStore(oxigraph_server, store_url=oxigraph_server + "/nowhere") as broken, \
            pytest.raises(TripleStoreError, match=r"rejected the graph upload \(HTTP 404\)"):
        broken.replace_graph(G, ntriples(3))
