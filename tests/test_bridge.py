"""`abi bridge`, `abi query`, `abi export` end to end on the embedded store (and a real oxigraph server)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from collectors.sample_feeds import sample_rss
from tests.conftest import Env, run_cli, write_config
from tests.oxigraph_server import oxigraph_server  # noqa: F401 - the real SPARQL server fixture

QUERIES = ("AI", "OpenAI", "NASA")
SHAPES = Path(__file__).parent / "shapes" / "news.ttl"
ARTICLES = "PREFIX schema: <http://schema.org/> SELECT (COUNT(DISTINCT ?a) AS ?n) WHERE { ?a a schema:NewsArticle }"


def _set_feeds(server, items: int) -> None:
    for q in QUERIES:
        server.set_feed(f"/{q.lower()}.xml", sample_rss(q, items=items, shared=5))


def _config(tmp_path: Path, server, extra: str = "") -> Path:
    feeds = [{"url": server.url(f"/{q.lower()}.xml"), "query": q} for q in QUERIES]
    cfg = write_config(tmp_path, feeds)
    cfg.write_text(cfg.read_text() + textwrap.dedent("""
        [aggregates.articles]
        module = "abi"
        inputs = ["news"]
        key = "url"
        combine = { query = "list" }

        [aggregates.articles.fields]
        title = "title"
        published = "published"
        summary = "summary"
        query = "feed.query"
        publisher = "raw.news_source"
        source = "source"
        run_id = "run_id"

        [bridges.raw_graph]
        module = "abi"
        input = "news"
        pipeline = "builtin:news"

        [bridges.news_graph]
        module = "abi"
        input = "articles"
        pipeline = "builtin:news"
        graph = "http://example.org/graph/news"
        """) + extra)
    return cfg


@pytest.fixture
def kg(tmp_path: Path, server) -> Env:
    _set_feeds(server, items=6)
    env = Env(tmp_path, server, _config(tmp_path, server))
    assert env.collect().exit_code == 0
    return env


def _bridge(env: Env, name: str, *args: str) -> dict:
    result = env.abi("bridge", "--name", name, "--json", *args)
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def _select(env: Env, query: str, *args: str) -> list[dict]:
    result = env.abi("query", query, "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    return [{k: v["value"] for k, v in b.items()} for b in doc["results"]["bindings"]]


def _export(env: Env, graph: str) -> bytes:
    result = env.abi("export", "--graph", graph, "--format", "ntriples")
    assert result.exit_code == 0, result.stderr
    return result.stdout.encode()


def _when(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _graph_hash(nt: bytes) -> str:
    return hashlib.sha256(b"\n".join(sorted(nt.splitlines()))).hexdigest()


def test_builtin_news_graph_conforms_to_the_shapes(kg: Env) -> None:
    from pyshacl import validate
    from rdflib import Graph

    record = _bridge(kg, "raw_graph")
    assert record["status"] == "success", record["error"]
    assert record["counts"]["records_read"] == 18 and record["counts"]["records_mapped"] == 18
    data = Graph().parse(data=_export(kg, "raw_graph").decode(), format="nt")
    conforms, _, report = validate(data, shacl_graph=Graph().parse(SHAPES, format="turtle"))
    assert conforms, report
    # entries are stored once per feed: the two shared top stories appear in 3 feeds each, same IRI
    assert _select(kg, ARTICLES, "--graph", "raw_graph") == [{"n": "14"}]


def test_every_article_has_one_headline_url_and_valid_typed_date(kg: Env) -> None:
    _bridge(kg, "raw_graph")
    rows = _select(kg, """PREFIX schema: <http://schema.org/>
        SELECT ?a (COUNT(DISTINCT ?h) AS ?hs) (COUNT(DISTINCT ?u) AS ?us) (SAMPLE(DATATYPE(?d)) AS ?t)
        WHERE { ?a a schema:NewsArticle ; schema:headline ?h ; schema:url ?u ; schema:datePublished ?d }
        GROUP BY ?a""")
    assert len(rows) == 14
    assert {(r["hs"], r["us"], r["t"]) for r in rows} == {("1", "1", "http://www.w3.org/2001/XMLSchema#dateTime")}


def test_an_rfc822_date_is_never_typed_as_a_datetime() -> None:
    from bridges.news import NewsPipeline
    from bridges.pipeline import PipelineConfiguration, PipelineParameters

    pipeline = NewsPipeline(PipelineConfiguration())
    data, mapped = pipeline.ntriples(PipelineParameters(records=[
        {"url": "https://example.org/a", "title": "A", "published": "Mon, 05 Jan 2026 08:00:00 GMT"},
        {"url": "https://example.org/b", "title": "B", "published": "2026-02-30T00:00:00Z"},
        {"url": "https://example.org/c", "title": "C", "published": "2026-01-05T08:00:00Z"},
        {"url": "https://example.org/d", "title": ""},
    ]))
    assert mapped == 3
    assert data.count(b"datePublished") == 1 and b'"2026-01-05T08:00:00Z"^^' in data
    graph = pipeline.run(PipelineParameters(records=[{"url": "https://example.org/c", "title": "C"}]))
    assert len(graph) == 8  # the ABI contract: run() returns an rdflib.Graph of the same triples


def test_second_run_changes_nothing_and_full_gives_the_same_graph(kg: Env) -> None:
    first = _bridge(kg, "news_graph")
    assert first["details"]["mode"] == "full"
    before = _export(kg, "news_graph")
    second = _bridge(kg, "news_graph")
    assert second["details"]["mode"] == "incremental" and second["counts"]["records_read"] == 0
    assert second["counts"]["triples_added"] == 0
    assert _export(kg, "news_graph") == before
    third = _bridge(kg, "news_graph", "--full")
    assert third["counts"]["triples"] == first["counts"]["triples"]
    assert _graph_hash(_export(kg, "news_graph")) == _graph_hash(before)


def test_new_records_are_added_and_equal_a_full_rebuild(kg: Env) -> None:
    _bridge(kg, "raw_graph")
    _set_feeds(kg.server, items=9)
    assert kg.collect().exit_code == 0
    record = _bridge(kg, "raw_graph")
    assert record["details"]["mode"] == "incremental"
    assert record["counts"]["records_read"] == 9 and record["counts"]["triples_added"] > 0
    incremental = _export(kg, "raw_graph")
    _bridge(kg, "raw_graph", "--full")
    assert _graph_hash(_export(kg, "raw_graph")) == _graph_hash(incremental)
    assert _select(kg, ARTICLES, "--graph", "raw_graph") == [{"n": "23"}]


def test_a_changed_upstream_record_rebuilds_and_a_removed_one_disappears_on_full(kg: Env) -> None:
    assert kg.abi("aggregate", "--name", "articles").exit_code == 0
    _bridge(kg, "news_graph")
    # a new feed finds an existing story: its aggregate record changes (one more topic)
    kg.server.set_feed("/nasa.xml", sample_rss("NASA", items=6, shared=5).replace(
        b"nasa%2Fstory-1%3F", b"ai%2Fstory-1%3F"))
    assert kg.collect().exit_code == 0
    assert kg.abi("aggregate", "--name", "articles").exit_code == 0
    record = _bridge(kg, "news_graph")
    assert record["details"]["mode"] == "full"
    assert "rewritten in place" in record["details"]["full_reason"]
    topics = _select(kg, """PREFIX schema: <http://schema.org/> PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
        SELECT ?t WHERE { ?a schema:url <https://news.example.org/ai/story-1> ; schema:about/skos:prefLabel ?t }
        ORDER BY ?t""")
    assert [r["t"] for r in topics] == ["AI", "NASA"]

    # a record removed upstream: gone after --full
    _bridge(kg, "raw_graph")
    victim = next(p for p in kg.entry_files() if "OpenAI-story-3" in p.name)
    victim.unlink()
    _bridge(kg, "raw_graph", "--full")
    gone = _select(kg, "ASK { ?a <http://schema.org/url> <https://news.example.org/openai/story-3> }".replace(
        "ASK", "SELECT ?a WHERE"), "--graph", "raw_graph")
    assert gone == []


def test_provenance_points_at_the_collection_run_and_is_stable(kg: Env) -> None:
    _bridge(kg, "raw_graph")
    run = next(r for r in kg.runs() if r["source"] == "news")
    rows = _select(kg, """PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT DISTINCT ?run ?start ?src WHERE { ?a prov:wasGeneratedBy ?run . ?run prov:startedAtTime ?start ;
        prov:used ?src }""")
    assert len(rows) == 1
    assert (rows[0]["run"], rows[0]["src"]) == (f"http://ontology.naas.ai/abi/run/{run['run_id']}",
                                                "http://ontology.naas.ai/abi/source/abi/news")
    # the store keeps xsd:dateTime as a value: "...53.518170Z" may come back as "...53.51817Z"
    assert _when(rows[0]["start"]) == _when(run["started_at"])
    before = _export(kg, "raw_graph")
    _bridge(kg, "raw_graph", "--full")
    assert _graph_hash(_export(kg, "raw_graph")) == _graph_hash(before)


def test_a_custom_pipeline_from_an_import_path(tmp_path: Path, server, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "mypipes"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "titles.py").write_text(textwrap.dedent("""
        from rdflib import Graph, Literal, URIRef
        from bridges.pipeline import Pipeline, PipelineParameters

        class TitlesPipeline(Pipeline):
            def run(self, parameters: PipelineParameters) -> Graph:
                graph = Graph()
                for record, run in zip(parameters.records, parameters.runs):
                    subject = URIRef(record["url"])
                    graph.add((subject, URIRef("http://purl.org/dc/terms/title"), Literal(record["title"])))
                    graph.add((subject, URIRef("http://example.org/collectedBy"), Literal(run.source)))
                return graph
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    _set_feeds(server, items=4)
    env = Env(tmp_path, server, _config(tmp_path, server, extra=textwrap.dedent("""
        [bridges.titles]
        module = "abi"
        input = "news"
        pipeline = "mypipes.titles:TitlesPipeline"
        batch_size = 5
        """)))
    assert env.collect().exit_code == 0
    record = _bridge(env, "titles")
    assert record["status"] == "success", record["error"]
    rows = _select(env, "SELECT (COUNT(*) AS ?n) WHERE { ?s <http://example.org/collectedBy> \"news\" }",
                   "--graph", "titles")
    assert rows == [{"n": "10"}]  # 12 entries, 10 distinct URLs


def test_a_failing_pipeline_is_one_line_and_leaves_the_graph(tmp_path: Path, server,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "badpipe.py").write_text(textwrap.dedent("""
        from bridges.pipeline import Pipeline

        class Broken(Pipeline):
            def run(self, parameters):
                raise KeyError("headline")
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    _set_feeds(server, items=3)
    env = Env(tmp_path, server, _config(tmp_path, server, extra=textwrap.dedent("""
        [bridges.broken]
        module = "abi"
        input = "news"
        pipeline = "badpipe:Broken"
        """)))
    assert env.collect().exit_code == 0
    result = env.abi("bridge", "--name", "broken")
    assert result.exit_code == 1
    assert "pipeline badpipe:Broken failed on a batch of news records: KeyError: 'headline'" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error")]) == 1
    missing = env.abi("bridge", "--name", "nope")
    assert missing.exit_code == 2 and "no bridge named 'nope'" in missing.stderr


@pytest.mark.parametrize(("extra", "message"), [
    ('[bridges.b]\nmodule = "abi"\ninput = "nope"\npipeline = "builtin:news"\n', "input 'nope' is neither"),
    ('[bridges.b]\nmodule = "abi"\ninput = "news"\npipeline = "builtin:films"\n', "no built-in pipeline 'films'"),
    ('[bridges.b]\nmodule = "abi"\ninput = "news"\npipeline = "not a path"\n', "must be builtin:NAME or an import"),
    ('[bridges.b]\nmodule = "abi"\ninput = "news"\npipeline = "builtin:news"\ngraph = "no iri"\n',
     "key 'graph' must be an absolute IRI"),
    ('[bridges.b]\nmodule = "abi"\ninput = "news"\npipeline = "builtin:news"\nstore = "ftp://x"\n',
     "must be \"embedded\" or the http(s) URL"),
])
def test_a_wrong_bridge_definition_is_one_line_and_exit_2(tmp_path: Path, server, extra: str, message: str) -> None:
    cfg = _config(tmp_path, server, extra=extra)
    result = run_cli("bridge", "--name", "b", "--config", str(cfg))
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_malformed_query_names_the_position(kg: Env) -> None:
    _bridge(kg, "raw_graph")
    result = kg.abi("query", "SELECT ?a WHERE { ?a ?b }")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "1:" in result.stderr, result.stderr
    both = kg.abi("query")
    assert both.exit_code == 2 and "--file" in both.stderr


def test_query_formats_and_file(kg: Env, tmp_path: Path) -> None:
    _bridge(kg, "raw_graph")
    query = tmp_path / "topics.rq"
    query.write_text("PREFIX skos: <http://www.w3.org/2004/02/skos/core#>\n"
                     "SELECT ?label WHERE { ?c a skos:Concept ; skos:prefLabel ?label } ORDER BY ?label")
    csv_out = kg.abi("query", "--file", str(query), "--format", "csv")
    assert csv_out.stdout.splitlines() == ["label", "AI", "NASA", "OpenAI"]
    tsv_out = kg.abi("query", "--file", str(query), "--format", "tsv")
    assert tsv_out.stdout.splitlines() == ["?label", '"AI"', '"NASA"', '"OpenAI"']
    plain = kg.abi("query", "--file", str(query))  # not a terminal: tab-separated text
    assert plain.stdout.splitlines() == ["label", "AI", "NASA", "OpenAI"]
    turtle = kg.abi("export", "--graph", "raw_graph", "--format", "turtle")
    from rdflib import Graph

    assert len(Graph().parse(data=turtle.stdout, format="turtle")) == len(
        Graph().parse(data=_export(kg, "raw_graph").decode(), format="nt"))


def test_bridge_into_a_remote_sparql_server(kg: Env, oxigraph_server: str,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABI_TRIPLESTORE", oxigraph_server)
    first = _bridge(kg, "raw_graph")
    assert first["status"] == "success", first["error"]
    assert first["details"]["store"].startswith("http://127.0.0.1:")
    assert _select(kg, ARTICLES, "--graph", "raw_graph") == [{"n": "14"}]
    before = _export(kg, "raw_graph")
    again = _bridge(kg, "raw_graph", "--full")
    assert again["counts"]["triples"] == first["counts"]["triples"]
    assert _graph_hash(_export(kg, "raw_graph")) == _graph_hash(before)
    # nothing went to the embedded store
    assert not (kg.datastore / "triplestore" / "current.json").exists()


def test_a_query_runs_while_a_bridge_writes(kg: Env) -> None:
    import subprocess

    _set_feeds(kg.server, items=200)
    assert kg.collect().exit_code == 0
    first = _bridge(kg, "raw_graph")
    total = first["counts"]["triples"]
    writer = subprocess.Popen([sys.executable, "-m", "cli.main", "bridge", "--name", "raw_graph", "--full",
                               "--config", str(kg.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              cwd=Path(__file__).parent.parent)
    seen = set()
    try:
        while writer.poll() is None:
            rows = _select(kg, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", "--graph", "raw_graph")
            seen.add(int(rows[0]["n"]))
    finally:
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert seen == {total}, seen  # before or after the write, never a half-written graph


def test_a_graph_changed_outside_abi_is_rebuilt(kg: Env) -> None:
    first = _bridge(kg, "raw_graph")
    from storage.triplestore import open_store

    store = open_store(url=None, datastore_root=kg.datastore)
    try:
        store.drop_graph("urn:abi:graph:abi:raw_graph")
    finally:
        store.close()
    record = _bridge(kg, "raw_graph")
    assert record["details"]["mode"] == "full" and "not what the last run left" in record["details"]["full_reason"]
    assert record["counts"]["triples"] == first["counts"]["triples"]


def _bulk_env(tmp_path: Path, server, records: int) -> Env:
    """A files source of `records` news-like records, an aggregate over it and a bridge of that."""
    drop = tmp_path / "bulk"
    drop.mkdir()
    lines = (json.dumps({"url": f"https://news.example.org/bulk/{i}", "title": f"Bulk story {i}",
                         "published": f"2026-01-{1 + i % 28:02d}T08:00:00Z", "query": f"topic {i % 7}",
                         "summary": "x" * 200}) for i in range(records))
    (drop / "bulk.jsonl").write_text("\n".join(lines) + "\n")
    old = time.time() - 60
    os.utime(drop / "bulk.jsonl", (old, old))
    env = Env(tmp_path, server, _config(tmp_path, server, extra=textwrap.dedent(f"""
        [sources.bulk]
        kind = "files"
        module = "abi"
        path = "{drop}"
        pattern = "*.jsonl"
        process = "jsonl"
        settle_seconds = 0

        [aggregates.bulk_agg]
        module = "abi"
        inputs = ["bulk"]
        key = "url"
        fields = ["title", "published", "summary", "query"]
        combine = {{ query = "list" }}

        [bridges.bulk_graph]
        module = "abi"
        input = "bulk_agg"
        pipeline = "builtin:news"
        """)))
    assert env.abi("collect", "files").exit_code == 0
    return env


@pytest.mark.parametrize("command", ["aggregate", "bridge"])
def test_killed_while_writing_the_next_run_completes_the_same_result(tmp_path: Path, server, command: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL at the moment the output is being written (the aggregate's temp file, the store's dirty mark)."""
    import signal
    import subprocess

    _set_feeds(server, items=1)
    env = _bulk_env(tmp_path, server, records=12_000)
    assert env.abi("aggregate", "--name", "bulk_agg").exit_code == 0
    name = "bulk_agg" if command == "aggregate" else "bulk_graph"
    target = env.module_dir / "processed_data" / "bulk_agg"
    store_state = env.datastore / "triplestore" / "state.json"

    def output() -> bytes:
        if command == "aggregate":
            return (target / "bulk_agg.jsonl").read_bytes()
        return _graph_hash(_export(env, "bulk_graph")).encode()

    def writing() -> bool:
        if command == "aggregate":
            return any(p.name.endswith(".tmp") for p in target.iterdir())
        try:
            return json.loads(store_state.read_text()).get("dirty") is True
        except (OSError, ValueError):
            return False

    if command == "bridge":
        import shutil

        assert env.abi("bridge", "--name", name).exit_code == 0
        # new data, so that the killed run has a graph to write; the reference is the same bridge
        # run to completion on a copy of the datastore
        (env.tmp_path / "bulk" / "more.jsonl").write_text(json.dumps(
            {"url": "https://news.example.org/bulk/new", "title": "New", "query": "topic 1"}) + "\n")
        os.utime(env.tmp_path / "bulk" / "more.jsonl", (time.time() - 60, time.time() - 60))
        assert env.abi("collect", "files").exit_code == 0
        assert env.abi("aggregate", "--name", "bulk_agg").exit_code == 0
        copy = env.tmp_path / "copy"
        shutil.copytree(env.datastore, copy)
        monkeypatch.setenv("ABI_DATASTORE", str(copy))
        assert env.abi("bridge", "--name", name).exit_code == 0
        reference = output()
        monkeypatch.delenv("ABI_DATASTORE")
    else:
        reference = output()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", command, "--name", name, "--full",
                             "--config", str(env.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).parent.parent)
    caught = False
    while proc.poll() is None:
        if writing():
            proc.send_signal(signal.SIGKILL)
            caught = True
            break
    proc.wait(timeout=60)
    assert caught, "the run ended before it was seen writing"
    assert not [r for r in env.runs() if r["source"] == name and "--full" in r["command"]]  # it left no record
    result = env.abi(command, "--name", name, "--json")
    assert result.exit_code == 0, result.stderr
    assert output() == reference


def test_two_bridges_at_once_are_serialized_and_both_complete(kg: Env) -> None:
    import subprocess

    assert kg.abi("aggregate", "--name", "articles").exit_code == 0
    procs = [subprocess.Popen([sys.executable, "-m", "cli.main", "bridge", "--name", name, "--json",
                               "--config", str(kg.config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=Path(__file__).parent.parent) for name in ("raw_graph", "news_graph")]
    records = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        records.append(json.loads(out))
    assert [r["status"] for r in records] == ["success", "success"]
    assert _select(kg, ARTICLES, "--graph", "raw_graph") == [{"n": "14"}]
    assert _select(kg, ARTICLES, "--graph", "news_graph") == [{"n": "14"}]


def test_one_bad_url_is_skipped_not_the_batch(tmp_path: Path, server) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    records = [{"url": "https://example.org/ok", "title": "Fine"},
               {"url": "https://example.org/100%free", "title": "Percent sign"},
               {"url": "https://exa mple.org/sp ace", "title": "Spaces"},
               {"url": "not a url", "title": "No scheme"},
               {"url": "http://[::1/broken", "title": "Broken host"}]
    (drop / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    os.utime(drop / "r.jsonl", (time.time() - 60, time.time() - 60))
    _set_feeds(server, items=1)
    env = Env(tmp_path, server, _config(tmp_path, server, extra=textwrap.dedent(f"""
        [sources.links]
        kind = "files"
        module = "abi"
        path = "{drop}"
        pattern = "*.jsonl"
        process = "jsonl"
        settle_seconds = 0

        [bridges.links_graph]
        module = "abi"
        input = "links"
        pipeline = "builtin:news"
        """)))
    assert env.abi("collect", "files").exit_code == 0
    record = _bridge(env, "links_graph")
    assert record["status"] == "success", record["error"]
    assert (record["counts"]["records_mapped"], record["counts"]["records_skipped"]) == (3, 2)
    urls = {r["u"] for r in _select(env, "SELECT ?u WHERE { ?a <http://schema.org/url> ?u }", "--graph",
                                     "links_graph")}
    assert urls == {"https://example.org/ok", "https://example.org/100%25free", "https://exa%20mple.org/sp%20ace"}
