"""`abi ui`: the web UI (its own module so that cli/main.py only gains one import line).

Only typer and cli.main are imported here at module level: `abi --help` imports
this module and must stay fast; the pages and the server load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.main import ConfigOpt, _guard, app


@app.command("ui")
def ui_cmd(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free port).")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind; the default keeps the UI on this machine.")]
    = "127.0.0.1",
    build: Annotated[Path | None, typer.Option("--build", help="Write the pages as static files into this folder "
                                                               "instead of serving them (a CI artifact).",
                                               show_default=False)] = None,
    config: ConfigOpt = None,
) -> None:
    """The web UI: overview, asset catalog, lineage, run history and logs, sensors, open alerts.

    Serves on http://127.0.0.1:3000/ until Ctrl-C; every page reads the datastore afresh,
    so new runs show on reload. It only reads: nothing in the datastore is written.
    With --build DIR, writes the same pages as files that open from file:// or any web server.
    """
    if build is not None:
        from cli.ui_server import build_static
        from storage.config import load_config

        cfg = _guard(lambda: load_config(config))
        result = _guard(lambda: build_static(cfg, build))
        typer.echo(f"abi ui: wrote {result['pages']} pages ({result['runs']} runs) to {result['folder']}; "
                   f"open {result['index']}")
        return
    from cli.ui_server import serve

    _guard(lambda: serve(config, host=host, port=port, say=typer.echo))
