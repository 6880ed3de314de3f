"""`make demo`: the whole collection loop, offline, in a few seconds.

Serves generated sample feeds and a sample JSON API from 127.0.0.1, points a
demo configuration at them (the 15 news queries of the ABI demo, and an
articles API behind a bearer token), collects twice and returns what
`abi status` shows. Between the two runs a few articles change: the second RSS
run gets 304s and writes nothing, the second API run merges just the changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collectors.api import collect_api
from collectors.rss import Progress, collect_rss
from collectors.sample_api import SampleAPI
from collectors.sample_feeds import DEMO_QUERIES, FeedServer, feed_path, sample_rss
from storage.atomic import write_bytes
from storage.config import Config, parse_config
from storage.paths import Datastore
from storage.status import source_status

TOKEN_ENV = "ABI_SAMPLE_API_TOKEN"
DEMO_TOKEN = "demo-token"
SERVE_PORT = 8765
API_PREFIX = "/api/articles"


def demo_config_text(base_url: str, *, interval: str = "30s") -> str:
    feeds = "\n".join(
        f'  {{ url = "{base_url}{feed_path(q)}", query = "{q}" }},' for q in DEMO_QUERIES)
    return (
        "# Written by `abi demo`: the ABI news demo pointed at a local sample server\n"
        "# (gone when the demo ends). The datastore is this file's folder.\n"
        'datastore = "."\n\n'
        "[sources.news]\n"
        'kind = "rss"\nmodule = "abi"\npath = "orchestration/rss_feed"\n'
        f'interval = "{interval}"\nretries = 1\nretry_max_wait = 1\n'
        f"feeds = [\n{feeds}\n]\n\n"
        f"{api_source_text(base_url)}\n{pipeline_text()}")


def pipeline_text() -> str:
    """The news aggregate and bridge (also shipped in abi.toml): collection -> dataset -> knowledge graph."""
    return (
        "[aggregates.news_articles]\n"
        'module = "abi"\ninputs = ["news"]\nkey = "url"\n'
        'combine = { query = "list", title = "latest" }\n\n'
        "[aggregates.news_articles.fields]\n"
        'title = "title"\npublished = "published"\nsummary = "summary"\nquery = "feed.query"\n'
        'publisher = "raw.news_source"\nsource = "source"\nrun_id = "run_id"\n\n'
        "[bridges.news_graph]\n"
        'module = "abi"\ninput = "news_articles"\npipeline = "builtin:news"\n')


TOPICS_QUERY = ("PREFIX schema: <http://schema.org/> PREFIX skos: <http://www.w3.org/2004/02/skos/core#> "
                "SELECT ?topic (COUNT(?a) AS ?articles) WHERE { ?a schema:about/skos:prefLabel ?topic } "
                "GROUP BY ?topic ORDER BY DESC(?articles) ?topic")


def api_source_text(base_url: str) -> str:
    """The sample API source (also shipped in abi.toml, pointing at `abi demo --serve`)."""
    return (
        "[sources.sample_api]\n"
        'kind = "api"\nmodule = "abi"\n'
        f'url = "{base_url}{API_PREFIX}/cursor"\n'
        "params = { per_page = 50 }\n"
        f'auth = {{ bearer_env = "{TOKEN_ENV}" }}\n'
        'records = "data"\nprimary_key = "id"\nwrite = "merge"\ninterval = "5m"\n'
        'pagination = { type = "cursor", cursor_path = "meta.next", param = "cursor" }\n'
        'incremental = { cursor_field = "updated_at", param = "since", initial = "2024-01-01T00:00:00Z" }\n')


def run_demo(*, root: Path, rounds: int = 2, items: int = 20, progress: Progress | None = None,
             serve: Callable[[dict[str, Any]], None] | None = None, port: int = 0) -> dict[str, Any]:
    """Collect `rounds` times from local samples into the datastore at `root`.

    With `serve`, the server stays up afterwards while `serve(result)` runs (it
    returns when the user stops it), so the shipped `sample_api` source can be
    collected from another terminal.
    """
    import tomllib

    os.environ.setdefault(TOKEN_ENV, DEMO_TOKEN)
    ds = Datastore(root.absolute())
    api = SampleAPI(records=120, token=os.environ[TOKEN_ENV])
    with FeedServer(port=port) as server:
        for query in DEMO_QUERIES:
            server.set_feed(feed_path(query), sample_rss(query, items=items, shared=5))
        api.mount(server, API_PREFIX)
        text = demo_config_text(server.base_url)
        config_path = write_bytes(ds.root / "demo.toml", text.encode())
        parsed = parse_config(tomllib.loads(text), file=config_path)
        config = Config(path=config_path, datastore=ds, sources=parsed.sources, aggregates=parsed.aggregates,
                        bridges=parsed.bridges)
        runs = []
        for n in range(rounds):
            if n:
                api.touch([2, 3, 5])  # three articles edited between runs
                api.add(2)
            runs.append(collect_rss(config=config, command=["abi", "demo"], progress=progress)[0])
            runs.append(collect_api(config=config, command=["abi", "demo"], progress=progress)[0])
        from bridges.aggregate import aggregate
        from bridges.query import run_query
        from bridges.rdf import bridge

        stages = [aggregate(config=config, name="news_articles", command=["abi", "demo"]),
                  bridge(config=config, name="news_graph", command=["abi", "demo"])]
        topics = run_query(config=config, sparql=TOPICS_QUERY)
        result = {"config": str(config_path), "datastore": str(ds.root), "runs": runs, "stages": stages,
                  "topics": [dict(zip(topics.variables, row, strict=True)) for row in topics.rows[:5]],
                  "requests": server.count(), "status": source_status(config=config),
                  "server": server.base_url}
        if serve is not None:
            serve(result)
    return result
