"""`abi`: the typer app.

Each command turns its options into one library call and maps typed errors to
one line on stderr and an exit code (0 ok or skipped, 1 a run failed or was
partial, 2 bad usage or configuration). Heavy libraries are imported inside
the commands so that `abi --help` stays fast.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    name="abi",
    help="Collect, process and aggregate data for the ABI knowledge graph with small, idempotent jobs.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)
collect_app = typer.Typer(help="Fetch from sources into the datastore.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(collect_app, name="collect")

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Configuration file (default: $ABI_CONFIG, else the nearest abi.toml).",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
T = TypeVar("T")


def _guard(fn: Callable[[], T]) -> T:
    """Run a library call; typed errors become one line on stderr and an exit code."""
    from storage.errors import AbiError
    from storage.redact import redact_text

    try:
        return fn()
    except AbiError as exc:
        typer.echo(f"error: {redact_text(' '.join(str(exc).split()))}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `abi query ... | head`: the reader has all it wants
        _stdout_closed()
    except Exception as exc:
        if os.environ.get("ABI_DEBUG"):
            raise
        message = redact_text(" ".join(str(exc).split()))
        typer.echo(f"error: unexpected {type(exc).__name__}: {message} (set ABI_DEBUG=1 for the traceback)",
                   err=True)
        raise typer.Exit(1) from None


def parse_now(text: str) -> Any:
    """The hidden --now of tick and check (tests, replays): an ISO time, UTC unless it says otherwise."""
    from datetime import UTC, datetime

    from storage.errors import UsageError

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--now {text!r}: use an ISO date and time like 2026-03-02T09:00:00Z") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stdout_closed() -> None:
    """The reader of our output went away (`| head`): stop quietly, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not complain again
    raise typer.Exit(0)


def _exit_code(records: list[dict[str, Any]]) -> int:
    return 1 if any(r["status"] in ("failed", "partial") for r in records) else 0


@collect_app.command("rss")
def collect_rss_cmd(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only sources of this module.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Also retry feeds marked gone (HTTP 410).")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a running collection of the same source "
                                                      "instead of recording this run as skipped.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetch every feed of the RSS sources and store each new entry once, as one JSON file.

    Feeds are fetched concurrently with conditional GET and retries; a feed that still
    fails is reported and the others are stored (exit 1). Re-running writes nothing new.
    """
    from cli import render
    from collectors.rss import collect_rss
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    with render.feed_progress(enabled=not json_out) as progress:
        records = _guard(lambda: collect_rss(config=cfg, source=source, module=module, force=force,
                                             wait=wait, command=sys.argv[:], progress=progress))
    render.run_records(records, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@collect_app.command("api")
def collect_api_cmd(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only sources of this module.")] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Ignore the stored watermark, fetch "
                                                                      "everything, and reset the watermark.")] = False,
    since: Annotated[str | None, typer.Option(help="Use this watermark for one run (a smaller one is not "
                                                   "saved).")] = None,
    max_pages: Annotated[int | None, typer.Option(min=1, help="Stop after this many pages.")] = None,
    partition: Annotated[str | None, typer.Option(help="Collect one partition (e.g. 2024-01-31) into its own "
                                                       "file; the watermark is not touched.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fetch the first page and print what would be "
                                                            "written; store nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a running collection of the same source "
                                                      "instead of recording this run as skipped.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Page through JSON APIs and store new and changed records once (JSON Lines + sidecar).

    Incremental from the last watermark; retried on 429/5xx/timeouts. A failed page fails
    the run and stores nothing of it (exit 1); the next run starts from the saved watermark.
    """
    from cli import render
    from collectors.api import collect_api, preview_api
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    if dry_run:
        preview = _guard(lambda: preview_api(config=cfg, source=source, since=since, full_refresh=full_refresh))
        render.preview(preview, as_json=json_out)
        return
    with render.feed_progress(enabled=not json_out) as progress:
        records = _guard(lambda: collect_api(config=cfg, source=source, module=module, full_refresh=full_refresh,
                                             since=since, max_pages=max_pages, partition=partition, wait=wait,
                                             command=sys.argv[:], progress=progress))
    render.run_records(records, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@collect_app.command("db")
def collect_db_cmd(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only sources of this module.")] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Read every row again (from 'initial') "
                                                                      "and reset the watermark.")] = False,
    partition: Annotated[str | None, typer.Option(help="Collect one partition (e.g. 2024-01-31) into its own "
                                                       "file; the watermark is not touched.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a running collection of the same source "
                                                      "instead of recording this run as skipped.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read the rows added or changed since the last run from SQLite or PostgreSQL, in batches.

    The watermark is (cursor, primary key): rows sharing a timestamp at the boundary are
    neither lost nor read twice. A failed query stores nothing (exit 1).
    """
    from cli import render
    from collectors.db import collect_db
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    with render.feed_progress(enabled=not json_out) as progress:
        records = _guard(lambda: collect_db(config=cfg, source=source, module=module, full_refresh=full_refresh,
                                            partition=partition, wait=wait, command=sys.argv[:], progress=progress))
    render.run_records(records, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@collect_app.command("files")
def collect_files_cmd(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only sources of this module.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a running collection of the same source "
                                                      "instead of recording this run as skipped.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Process each new or changed file in a watched folder once: copy it, or parse it into records.

    Files still being written wait for the next run; a file that does not parse is moved to
    quarantine with its error (exit 1) and the others go on.
    """
    from cli import render
    from collectors.files import collect_files
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    with render.feed_progress(enabled=not json_out) as progress:
        records = _guard(lambda: collect_files(config=cfg, source=source, module=module, wait=wait,
                                               command=sys.argv[:], progress=progress))
    render.run_records(records, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@app.command("tick")
def tick_cmd(
    loop: Annotated[bool, typer.Option("--loop", help="Keep ticking in the foreground until Ctrl-C / SIGTERM "
                                                      "(running jobs finish first).")] = False,
    every: Annotated[str, typer.Option(help="With --loop: time between ticks (10s, 1m, ...).")] = "10s",
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only sources of this module.")] = None,
    now: Annotated[str | None, typer.Option(hidden=True, help="Pretend it is this UTC time (tests).")] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run, once, every source that is due: never run, its schedule slot or interval passed, or its
    sensor fired. Put `* * * * * ... abi tick` in cron instead of one line per job.
    """
    from cli import render
    from collectors.scheduler import tick, tick_loop
    from storage.config import load_config, parse_interval

    cfg = _guard(lambda: load_config(config))
    if source is not None:
        _guard(lambda: cfg.select(source=source))
    when = _guard(lambda: parse_now(now)) if now is not None else None
    if not loop:
        rows = _guard(lambda: tick(config=cfg, now=when, module=module, source=source, command=sys.argv[:]))
        render.tick(rows, as_json=json_out)
        raise typer.Exit(1 if any(r.get("status") in ("failed", "partial") or r.get("action") == "error"
                                  for r in rows) else 0)
    import signal

    period = _guard(lambda: parse_interval(every, "--every"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    done = _guard(lambda: tick_loop(load=lambda: load_config(config), every=period, stop=stop,
                                    on_tick=lambda rows: render.tick(rows, as_json=json_out, quiet_idle=True)))
    typer.echo(f"stopped after {done} tick(s)", err=True)


@app.command("schedule")
def schedule_cmd(
    crontab: Annotated[bool, typer.Option("--crontab", help="Print per-source crontab lines.")] = False,
    install: Annotated[bool, typer.Option("--install", help="Put them in your crontab (idempotent).")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Take them out of your crontab.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Per-source crontab lines generated from the configuration, for those who prefer them to `abi tick`."""
    from collectors import crontab as cron
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    home = Path.cwd()
    if install or remove:
        _guard(lambda: cron.install(cfg, home=home, remove=remove))
        typer.echo("removed the abi lines from your crontab" if remove else "installed the abi lines in your crontab")
        return
    typer.echo(cron.crontab_block(cfg, home=home), nl=False)
    if not crontab:
        typer.echo("(print only: --install puts these lines in your crontab)", err=True)


@app.command("backfill")
def backfill_cmd(
    source: Annotated[str, typer.Option("--source", "-s", help="The partitioned source.")],
    first: Annotated[str, typer.Option("--from", help="First partition, e.g. 2024-01-01.")],
    last: Annotated[str, typer.Option("--to", help="Last partition (included).")],
    only: Annotated[str, typer.Option(help="missing (not yet collected), failed, or all.")] = "missing",
    parallel: Annotated[int, typer.Option(min=1, max=16, help="Partitions at a time.")] = 1,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Collect a range of partitions in order: each into its own file, replaced whole; resumable
    after an interruption (--only missing), and the incremental watermark never moves.
    """
    from cli import render
    from collectors.backfill import backfill, plan_backfill
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    planned = _guard(lambda: plan_backfill(config=cfg, source=source, first=first, last=last, only=only))
    with render.feed_progress(enabled=not json_out, total=len(planned), label=f"{source} partitions") as progress:
        records = _guard(lambda: backfill(config=cfg, source=source, first=first, last=last, only=only,
                                          parallel=parallel, command=sys.argv[:], progress=progress))
    render.backfill(records, planned, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@app.command("aggregate")
def aggregate_cmd(
    name: Annotated[str | None, typer.Option("--name", "-n", help="The [aggregates.NAME] to build (default: "
                                                                  "all, each after the ones it reads).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild from every input record instead of folding in "
                                                      "only what the inputs added (same bytes either way).")] = False,
    formats: Annotated[list[str] | None, typer.Option("--format", "-f", help="Also write this format: csv "
                                                                             "(JSON Lines is always written).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a running build of the same aggregate "
                                                      "instead of recording this run as skipped.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Combine several sources (or aggregates) into one dataset, one record per key.

    Reads only what the inputs added since the last run; writes processed_data/NAME/NAME.jsonl
    sorted by key, with a .meta.json sidecar listing each input and the state it was read at.
    """
    from bridges.aggregate import aggregate, aggregate_all
    from cli import render
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    wanted = ("jsonl", *[f.lower() for f in formats or [] if f.lower() != "jsonl"])
    options = {"config": cfg, "full": full, "formats": wanted, "wait": wait, "command": sys.argv[:]}
    with render.feed_progress(enabled=not json_out) as progress:
        records = _guard(lambda: [aggregate(name=name, progress=progress, **options)] if name
                         else aggregate_all(progress=progress, **options))
    render.run_records(records, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@app.command("bridge")
def bridge_cmd(
    name: Annotated[str | None, typer.Option("--name", "-n", help="The [bridges.NAME] to run (default: all).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild the whole named graph from every input record "
                                                      "(drops the triples of records removed upstream).")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a running run of the same bridge instead of "
                                                      "recording this run as skipped.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Turn stored records into RDF triples with a pipeline and write them to the bridge's named graph.

    The store is the embedded Oxigraph store under the datastore unless $ABI_TRIPLESTORE (or
    `store`) names a SPARQL 1.1 server. New records are added; a changed or removed record
    rebuilds the graph, which is swapped in as a unit. Running it twice changes nothing.
    """
    from bridges.rdf import bridge, bridge_all
    from cli import render
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    options = {"config": cfg, "full": full, "wait": wait, "command": sys.argv[:]}
    with render.feed_progress(enabled=not json_out) as progress:
        records = _guard(lambda: [bridge(name=name, progress=progress, **options)] if name
                         else bridge_all(progress=progress, **options))
    render.run_records(records, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@app.command("query")
def query_cmd(
    sparql: Annotated[str | None, typer.Argument(help="The SPARQL query (or use --file).", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the query from this file (.rq).")] = None,
    graph: Annotated[str | None, typer.Option("--graph", "-g", help="Query only this named graph (a bridge name "
                                                                    "or an IRI); default: all graphs.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (default on a terminal), json, csv or tsv "
                                                            "(SPARQL results formats).")] = "table",
    config: ConfigOpt = None,
) -> None:
    """Run a SPARQL query against the configured triple store and print the results.

    Read-only: it runs while a bridge writes and sees the store before or after that write.
    """
    from bridges.query import read_query, run_query
    from cli import render
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    text = _guard(lambda: read_query(text=sparql, file=file))
    output = _guard(lambda: run_query(config=cfg, sparql=text, graph=graph))
    _guard(lambda: render.query(output, fmt=fmt.lower()))


@app.command("export")
def export_cmd(
    graph: Annotated[str, typer.Option("--graph", "-g", help="The named graph: a bridge name or an IRI.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="turtle, ntriples or nquads.")] = "turtle",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (atomically) "
                                                                       "instead of stdout.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Write one named graph of the triple store as Turtle, N-Triples or N-Quads."""
    from bridges.query import export_graph
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    if output is None:
        count = _guard(lambda: export_graph(config=cfg, graph=graph, fmt=fmt.lower(), out=sys.stdout.buffer))
    else:
        import io

        from storage.atomic import write_bytes

        buffer = io.BytesIO()
        count = _guard(lambda: export_graph(config=cfg, graph=graph, fmt=fmt.lower(), out=buffer))
        _guard(lambda: write_bytes(output, buffer.getvalue()))
    typer.echo(f"{count} triples", err=True)


@app.command("status")
def status_cmd(
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only sources of this module.")] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One row per source: last run and its status, new items, age, stale and failure marks."""
    from cli import render
    from storage.config import load_config
    from storage.status import source_status

    cfg = _guard(lambda: load_config(config))
    rows = _guard(lambda: source_status(config=cfg, module=module))
    render.status(rows, as_json=json_out)


@app.command("runs")
def runs_cmd(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only runs of this source, aggregate or "
                                                                      "bridge.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs that ended so: success, partial, failed, "
                                                    "skipped.")] = None,
    since: Annotated[str | None, typer.Option(help="Only runs started in this window (30m, 6h, 1d, 2w) or "
                                                   "after this date.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 50,
    module: Annotated[str | None, typer.Option("--module", "-m", help="Only this module.")] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run history, newest first: when each run started, how it ended, what it did.

    Reads the history index from its end, so it stays instant however long the history is.
    """
    from cli import render
    from storage.config import load_config
    from storage.history import list_runs

    cfg = _guard(lambda: load_config(config))
    rows = _guard(lambda: list_runs(config=cfg, source=source, status=status, since=since, limit=limit,
                                    module=module))
    render.runs(rows, as_json=json_out)


@app.command("logs")
def logs_cmd(
    run_id: Annotated[str | None, typer.Argument(help="The run's id (see abi runs).", show_default=False)] = None,
    source: Annotated[str | None, typer.Option("--source", "-s", help="The latest run of this source, aggregate "
                                                                      "or bridge.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run "
                                                                "ends.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print a run's log (orchestration/compute_logs/<run_id>.log): what the terminal showed, plus detail.

    With --follow, print the lines of a run as it writes them, until its run record appears.
    """
    from storage.config import load_config
    from storage.history import run_log_lines

    cfg = _guard(lambda: load_config(config))
    lines = _guard(lambda: run_log_lines(config=cfg, run_id=run_id, source=source, follow=follow))
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        _stdout_closed()


@app.command("lineage")
def lineage_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, mermaid, dot or svg.")] = "text",
    config: ConfigOpt = None,
) -> None:
    """The dependency graph of the configuration: sources -> aggregates -> bridges -> triple stores.

    The same order `make all` and `abi materialize` follow. Paste --format mermaid into a Markdown
    file, or pipe --format dot into Graphviz (`| dot -Tpng > lineage.png`).
    """
    from storage.config import load_config
    from storage.errors import UsageError
    from storage.lineage import RENDERERS, build_lineage

    cfg = _guard(lambda: load_config(config))
    if fmt.lower() not in RENDERERS:
        _guard(lambda: (_ for _ in ()).throw(UsageError(f"unknown --format {fmt!r}: use "
                                                        f"{', '.join(RENDERERS)}")))
    sys.stdout.write(RENDERERS[fmt.lower()](build_lineage(cfg)))


@app.command("materialize")
def materialize_cmd(
    select: Annotated[str | None, typer.Option("--select", help="What to run: * (default: everything), NAME "
                                                                "globs separated by commas; *NAME adds what NAME "
                                                                "reads, NAME* what reads NAME.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild aggregates and bridges from every record.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run everything now (or the selection) in dependency order: collect, aggregate, bridge.

    A node whose upstream failed in this run is skipped and recorded with the reason.
    """
    from cli import render
    from collectors.materialize import materialize
    from storage.config import load_config

    cfg = _guard(lambda: load_config(config))
    with render.feed_progress(enabled=not json_out, label="nodes") as progress:
        records = _guard(lambda: materialize(config=cfg, select=select, full=full, command=sys.argv[:],
                                             progress=progress))
    render.run_records(records, as_json=json_out)
    raise typer.Exit(_exit_code(records))


@app.command("demo")
def demo_cmd(
    datastore: Annotated[Path, typer.Option(help="Where the demo's datastore goes.")] = Path(
        "storage/demo-datastore"),
    rounds: Annotated[int, typer.Option(min=1, max=10, help="How many collection runs.")] = 2,
    serve: Annotated[bool, typer.Option("--serve", help="Keep the sample feeds and API running afterwards "
                                                        "on 127.0.0.1:--port, for the sample_api source of "
                                                        "abi.toml (Ctrl-C stops).")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8765,
    json_out: JsonOpt = False,
) -> None:
    """Collect local sample feeds and a sample API twice (no internet) and show the status."""
    from cli import render
    from collectors.demo import run_demo

    def keep_serving(result: dict) -> None:
        import signal

        render.demo(result, as_json=json_out)
        render.serving(result)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        typer.echo("stopped")

    with render.feed_progress(enabled=not json_out) as progress:
        result = _guard(lambda: run_demo(root=datastore, rounds=rounds, progress=progress,
                                         serve=keep_serving if serve else None, port=port if serve else 0))
    if not serve:
        render.demo(result, as_json=json_out)


@app.command("version")
def version_cmd() -> None:
    """Print the tool's version."""
    from storage.runs import tool_version

    typer.echo(tool_version())


from cli import check_cmd  # noqa: E402,F401,I001 - registers abi check
from cli import ui_cmd  # noqa: E402,F401 - registers abi ui
def main() -> None:
    app()


if __name__ == "__main__":
    main()
