"""`make demo`: the whole collection loop, offline, in a few seconds.

Serves generated sample feeds from 127.0.0.1, points a demo configuration at
them (the 15 queries of the ABI demo), collects twice (the second run gets
304s and writes nothing) and returns what `abi status` shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collectors.rss import Progress, collect_rss
from collectors.sample_feeds import DEMO_QUERIES, demo_server, feed_path
from storage.atomic import write_bytes
from storage.config import Config, parse_config
from storage.paths import Datastore
from storage.status import source_status


def demo_config_text(base_url: str, *, interval: str = "30s") -> str:
    feeds = "\n".join(
        f'  {{ url = "{base_url}{feed_path(q)}", query = "{q}" }},' for q in DEMO_QUERIES)
    return (
        "# Written by `abi demo`: the ABI news demo pointed at a local sample-feed server\n"
        "# (gone when the demo ends). The datastore is this file's folder.\n"
        'datastore = "."\n\n'
        "[sources.news]\n"
        'kind = "rss"\nmodule = "abi"\npath = "orchestration/rss_feed"\n'
        f'interval = "{interval}"\nretries = 1\nretry_max_wait = 1\n'
        f"feeds = [\n{feeds}\n]\n")


def run_demo(*, root: Path, rounds: int = 2, items: int = 20,
             progress: Progress | None = None) -> dict[str, Any]:
    """Collect `rounds` times from local sample feeds into the datastore at `root`."""
    import tomllib

    ds = Datastore(root.absolute())
    with demo_server(items=items) as server:
        text = demo_config_text(server.base_url)
        config_path = write_bytes(ds.root / "demo.toml", text.encode())
        parsed = parse_config(tomllib.loads(text), file=config_path)
        config = Config(path=config_path, datastore=ds, sources=parsed.sources)
        runs = [collect_rss(config=config, command=["abi", "demo"], progress=progress)[0]
                for _ in range(rounds)]
        requests = server.count()
    return {"config": str(config_path), "datastore": str(ds.root), "runs": runs, "requests": requests,
            "status": source_status(config=config)}
