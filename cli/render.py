"""Terminal and JSON rendering for the CLI: presentation only, no decisions."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

_STYLE = {"success": "green", "partial": "yellow", "failed": "red", "skipped": "cyan", "never run": "dim"}


class _Plain:
    """print() with rich's signature, for piped output: cron runs need no colours and skip importing rich."""

    def __init__(self, stderr: bool) -> None:
        self.stream = sys.stderr if stderr else sys.stdout

    def print(self, text: Any = "", *, style: str | None = None, markup: bool = False) -> None:
        self.stream.write(f"{text}\n")


def _lines(stderr: bool = False) -> Any:
    """Where lines of text go: rich on a terminal, plain writes otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    return _console(stderr=stderr) if stream.isatty() else _Plain(stderr)


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (cron logs, `| grep`) gets wide lines instead of wrapped table cells.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def feed_progress(*, enabled: bool, total: int | None = None, label: str = "feeds") -> Iterator[Any]:
    """A rich progress line on a terminal (a bar when the total is known); nothing when piped or --json."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[last]}"), TimeElapsedColumn(), console=_console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task(label, total=total, last="")

        def update(name: str, item: dict[str, Any]) -> None:
            bar.update(task, advance=1, last=f"{name}: {item['status']}")

        yield update


def backfill(records: list[dict[str, Any]], planned: list[str], *, as_json: bool) -> None:
    if as_json:
        print_json(records)
        return
    out = _lines()
    if not planned:
        out.print("nothing to backfill: every partition in the range is collected (--only all runs them again)",
                  markup=False)
    for record in records:
        c = record["counts"]
        part = record["details"].get("partition")
        out.print(f"{part}: {record['status']}: {c.get('records', 0)} records "
                  f"({c.get('removed', 0)} removed since the last run of it) in {record['duration_s']:.2f}s",
                  style=_STYLE.get(record["status"]), markup=False)


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _plain(value: Any) -> Any:
    """A typed watermark value ({"datetime": "..."}) as its text."""
    return next(iter(value.values())) if isinstance(value, dict) and len(value) == 1 else value


def summary_line(record: dict[str, Any]) -> str:
    if record["status"] == "skipped":
        return f"{record['source']}: skipped: {record['reason']}"
    parts = _count_parts(record)
    return (f"{record['source']}: {record['status']}: {', '.join(parts)} in {record['duration_s']:.2f}s "
            f"(run {record['run_id']})")


def _count_parts(record: dict[str, Any]) -> list[str]:
    """The counts that say what a run of this kind did, in reading order."""
    c = record["counts"]
    details = record.get("details") or {}
    if record["kind"] == "aggregate":
        mode = details.get("mode", "incremental")
        if details.get("full_reason"):
            mode += f" ({details['full_reason']})"
        return [f"{c.get('records_read', 0)} records read", f"{c.get('new', 0)} new keys",
                f"{c.get('updated', 0)} updated", f"{c.get('records', 0)} in the dataset", mode]
    if record["kind"] == "bridge":
        mode = details.get("mode", "incremental")
        if details.get("full_reason"):
            mode += f" ({details['full_reason']})"
        return [f"{c.get('records_read', 0)} records read", f"{c.get('triples_added', 0)} triples added",
                f"{c.get('triples', 0)} in the graph", mode]
    if record["kind"] == "files":
        parts = [f"{c.get('files', 0)} files", f"{c.get('new_files', 0)} new", f"{c.get('changed_files', 0)} changed",
                 f"{c.get('unchanged_files', 0)} unchanged", f"{c.get('waiting', 0)} waiting"]
        if c.get("quarantined"):
            parts.append(f"{c['quarantined']} quarantined")
        if c.get("records"):
            parts.append(f"{c['records']} records ({c.get('new', 0)} new, {c.get('updated', 0)} updated)")
        return parts
    if record["kind"] in ("api", "db"):
        unit = "pages" if record["kind"] == "api" else "batches"
        parts = [f"{c.get(unit, 0)} {unit}", f"{c.get('records', 0)} records", f"{c.get('new', 0)} new",
                 f"{c.get('updated', 0)} updated", f"{c.get('unchanged', 0)} unchanged"]
        if c.get("removed"):
            parts.append(f"{c['removed']} removed")
        if c.get("retries"):
            parts.append(f"{c['retries']} retries")
        wm = (record.get("details") or {}).get("watermark_after")
        if isinstance(wm, dict):  # a database watermark: (cursor, key)
            wm = f"{_plain(wm['cursor'])} / {', '.join(str(_plain(k)) for k in wm['key'])}"
        if wm is not None:
            parts.append(f"watermark {wm}")
        return parts
    parts = [f"{c.get('feeds', 0)} feeds", f"{c.get('new', 0)} new", f"{c.get('already_stored', 0)} already stored"]
    if c.get("not_modified"):
        parts.append(f"{c['not_modified']} not modified")
    if c.get("errors"):
        parts.append(f"{c['errors']} failed")
    return parts


def run_records(records: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print_json(records[0] if len(records) == 1 else records)
        return
    out, err = _lines(), _lines(stderr=True)
    for record in records:
        out.print(summary_line(record), style=_STYLE.get(record["status"]), markup=False)
        for item in record.get("items", []):
            if item.get("error") and item["status"] in ("failed", "gone"):
                err.print(f"  {item['feed']}: {item['error']}", markup=False)
        for warning in record.get("warnings", []):
            err.print(f"  warning: {warning}", markup=False)
        if record.get("error") and record["status"] == "failed":
            err.print(f"error: {record['source']}: {record['error']['message']}", markup=False)


def preview(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    out = _console()
    would = ", ".join(f"{n} {k}" for k, n in result["would_write"].items()) or "nothing"
    out.print(f"{result['source']}: dry run of {result['url']} (watermark {result['watermark']!r}): "
              f"{result['records_on_first_page']} records on the first page: {would}; "
              f"{'more pages follow' if result['more_pages'] else 'no more pages'}", markup=False)
    out.print(f"would write ({result['write']}) to {result['target']}; first records:", markup=False)
    for record in result["sample"]:
        out.print("  " + json.dumps(record, ensure_ascii=False)[:200], markup=False)


def serving(result: dict[str, Any]) -> None:
    _console().print(
        f"\nServing the sample feeds and API on {result['server']} until Ctrl-C. In another terminal:\n"
        f"  ABI_SAMPLE_API_TOKEN=demo-token make collect-api SOURCE=sample_api", markup=False)


def tick(rows: list[dict[str, Any]], *, as_json: bool, quiet_idle: bool = False) -> None:
    if as_json:
        print_json(rows)
        return
    ran = [r for r in rows if r["action"] != "wait"]
    if quiet_idle and not ran:
        return
    out = _lines()
    stamp = datetime.now().astimezone().strftime("%H:%M:%S")
    if not ran:
        pipeline = sum(1 for r in rows if r["kind"] in ("aggregate", "bridge"))
        more = f"; {pipeline} aggregates and bridges up to date" if pipeline else ""
        out.print(f"{stamp} nothing due ({len(rows) - pipeline} sources{more})", markup=False)
    for row in ran:
        if row["action"] == "ran":
            text = f"{row['source']}: ran ({row['reason']}): {row['status']}, {row['summary']} (run {row['run_id']})"
        else:
            text = f"{row['source']}: {row['action']}: {row['reason']}"
        out.print(f"{stamp} {text}", style=_STYLE.get(row.get("status") or row["action"]), markup=False)


_ANSI = {"green": "32", "yellow": "33", "red": "31", "cyan": "36", "dim": "2"}


def plain_table(headers: list[str], rows: list[tuple[list[str], str | None]], *, stream: Any = None) -> None:
    """Columns aligned by hand: `abi status` is run every minute by scripts and must cost no more than
    its start-up, and rich's table costs more than the rest of the command. Colour only on a terminal."""
    stream = stream or sys.stdout
    colour = stream.isatty()
    widths = [len(h) for h in headers]
    for cells, _ in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    stream.write(("\033[1m" + line(headers) + "\033[0m" if colour else line(headers)) + "\n")
    for cells, style in rows:
        text = line([" ".join(c.split()) for c in cells])
        code = _ANSI.get(style or "")
        stream.write((f"\033[{code}m{text}\033[0m" if colour and code else text) + "\n")


def status_notes(row: dict[str, Any]) -> list[tuple[bool, str]]:
    """What the NOTE of a status row says, in order, each as (is a mark like STALE, text): the CLI and
    the web UI show the same notes."""
    notes = [(True, mark) for mark, on in (("STALE", row.get("stale")), ("OVERDUE", row.get("overdue"))) if on]
    if row.get("behind"):
        notes.append((False, "behind " + ", ".join(row["behind"])))
    if row["last_status"] in ("failed", "partial", "skipped") and row.get("last_reason"):
        notes.append((False, row["last_reason"]))
    if row.get("sensor_skip_reason"):
        notes.append((False, "sensor: " + row["sensor_skip_reason"]))
    return notes


def status(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    table = []
    for row in rows:
        when = row["last_run_at"]
        when = datetime.fromisoformat(when.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%SZ") if when else "-"
        note = " ".join(text for _, text in status_notes(row))
        nxt = row.get("next_due") or "-"
        nxt = nxt if nxt in ("now", "-") else nxt[11:16] + "Z"
        table.append(([row["source"], row["module"], row["kind"], when, row["last_status"],
                       "-" if row["new_items"] is None else str(row["new_items"]),
                       str(row["total"] if row.get("total") is not None else row.get("total_new", 0)),
                       human_age(row["age_s"]), str(row["consecutive_failures"]), nxt, note[:70]],
                      _STYLE.get(row["last_status"])))
    plain_table(["NAME", "MODULE", "KIND", "LAST RUN", "STATUS", "NEW", "TOTAL", "AGE", "FAILS", "NEXT", "NOTE"],
                table)


def demo(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    out = _console()
    out.print(f"Served 15 sample feeds and a sample API on {result['server']}; configuration written to "
              f"{result['config']}", markup=False)
    for i, record in enumerate(result["runs"]):
        out.print(f"run {i // 2 + 1}: " + summary_line(record), style=_STYLE.get(record["status"]), markup=False)
    out.print(f"{result['requests']} HTTP requests in all; entries are in "
              f"{result['datastore']}/core/modules/abi/orchestration/rss_feed/, articles in "
              f"{result['datastore']}/core/modules/abi/raw_data/sample_api/\n", markup=False)
    for record in result.get("stages", []):
        out.print(f"{record['kind']}: " + summary_line(record), style=_STYLE.get(record["status"]), markup=False)
    if result.get("topics"):
        top = ", ".join(f"{t['topic']} {t['articles']}" for t in result["topics"])
        out.print(f"articles per topic in the knowledge graph (top 5): {top}\n", markup=False)
    status(result["status"], as_json=False)
    out.print(f"\nNext: .venv/bin/abi status --config {result['config']}   (or --json); "
              f".venv/bin/abi query --config {result['config']} 'SELECT ...'; "
              f"the run records are in {result['datastore']}/core/modules/abi/orchestration/history/runs/",
              markup=False)


def query(output: Any, *, fmt: str) -> None:
    """SPARQL results: a table for people, the standard formats for scripts."""
    from storage.errors import UsageError

    if fmt != "table":
        if output.kind == "graph" and fmt in ("json", "csv", "tsv"):
            raise UsageError("a CONSTRUCT or DESCRIBE query gives triples: use --format ntriples or turtle")
        if fmt not in ("json", "csv", "tsv", "ntriples", "turtle"):
            raise UsageError(f"unknown --format {fmt!r}: use table, json, csv or tsv (ntriples, turtle for "
                             "CONSTRUCT)")
        sys.stdout.buffer.write(output.serialize(fmt))
        sys.stdout.flush()
        return
    if output.kind == "ask":
        sys.stdout.write(f"{output.rows[0][0]}\n")
        return
    if not sys.stdout.isatty():  # piped: tab-separated text, one row per line
        sys.stdout.write("\t".join(output.variables) + "\n")
        for row in output.rows:
            sys.stdout.write("\t".join("" if c is None else " ".join(c.split()) for c in row) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for var in output.variables:
        table.add_column(var)
    for row in output.rows:  # Text: collected values are shown as they are, never read as rich markup
        table.add_row(*(Text("" if c is None else c) for c in row))
    console = _console()
    console.print(table)
    console.print(f"{len(output.rows)} row{'s' if len(output.rows) != 1 else ''}", style="dim")


def _brief_counts(run: dict[str, Any]) -> str:
    if run.get("error"):
        return run["error"]
    if run.get("status") == "skipped":
        return run.get("reason") or ""
    counts = run.get("counts") or {}
    keys = ("new", "updated", "records", "records_read", "triples", "entries", "files", "errors")
    return ", ".join(f"{k} {counts[k]}" for k in keys if counts.get(k))


def runs(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    if not sys.stdout.isatty():
        for run in rows:
            sys.stdout.write("\t".join([run["run_id"], run["source"], run["kind"], run["status"],
                                        run.get("started_at") or "", f"{run.get('duration_s') or 0:.2f}s",
                                        " ".join(_brief_counts(run).split())]) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("STARTED", "SOURCE", "KIND", "STATUS", "TOOK", "WHAT", "RUN ID"):
        table.add_column(col)
    for run in rows:
        started = (run.get("started_at") or "")[:19].replace("T", " ")
        table.add_row(started, run["source"], run["kind"], Text(run["status"], style=_STYLE.get(run["status"], "")),
                      f"{run.get('duration_s') or 0:.2f}s", Text(_brief_counts(run)[:80]), run["run_id"])
    console = _console()
    console.print(table)
    if not rows:
        console.print("no runs match", style="dim")
