"""The pages of `abi ui`: pure functions from the read-side library to HTML strings.

Everything here reads the datastore and never writes it, so the same pages can
be served live (`abi ui`) or written once as static files (`abi ui --build`).
Links are relative and every page has a `.html` name, so the two look and work
the same: the server answers `/runs.html` and `/runs/<run id>.html`, exactly the
files the static build writes, and a page opened from file:// still links.

Every value that comes from collected data (feed titles, errors, log lines,
record samples) goes through `esc`; the only script is one constant inline
block whose hash the Content-Security-Policy names, so even a missed escape
could not run injected code.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from cli.render import human_age, status_notes
from storage.config import Config
from storage.runs import RUN_ID_RE

STATUSES = ("success", "partial", "failed", "skipped")
RUNS_LIMIT = 200  # rows on the served runs page unless ?limit= asks for more
RUNS_LIMIT_MAX = 5000
TEXT_SCAN = 5000  # a served ?q= search looks through at most this many of the newest runs
LOG_LINES = 5000  # the tail of a run's log shown on its page
ITEMS_SHOWN = 500
SIDECARS_SUMMED = 1000  # an append dataset's record count sums at most this many file sidecars

NAV = (("index.html", "Overview"), ("catalog.html", "Assets"), ("lineage.html", "Lineage"),
       ("runs.html", "Runs"), ("sensors.html", "Sensors & schedules"), ("alerts.html", "Alerts"))

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#202124;
background:#f6f7f9}
nav{display:flex;align-items:center;gap:4px;padding:0 20px;background:#1f2937;color:#fff;height:46px;
position:sticky;top:0;z-index:1}
nav .brand{font-weight:700;margin-right:18px;letter-spacing:.3px}
nav a{color:#d1d5db;text-decoration:none;padding:6px 10px;border-radius:6px}
nav a:hover{background:#374151;color:#fff}
nav a.active{background:#4b5563;color:#fff}
main{padding:18px 24px 40px;max-width:1400px}
h1{font-size:20px;margin:4px 0 14px}
h2{font-size:16px;margin:22px 0 8px}
a{color:#1a56db}
.muted{color:#6b7280}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb;border-radius:8px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{background:#f9fafb;font-weight:600;font-size:13px;color:#374151;white-space:nowrap}
tbody tr:hover{background:#f9fbff}
table.narrow{width:auto;min-width:320px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{max-width:520px;overflow-wrap:anywhere}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap;
border:1px solid transparent}
.s-success{background:#e6f4ea;color:#137333}
.s-failed{background:#fce8e6;color:#b3261e}
.s-partial{background:#fef7e0;color:#8a5300}
.s-skipped{background:#f1f3f4;color:#5f6368}
.s-never{background:#fff;color:#6b7280;border-color:#d1d5db}
.s-stale{background:#fef7e0;color:#8a5300}
.s-open{background:#fce8e6;color:#b3261e}
.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin-bottom:12px}
.filters label{display:flex;flex-direction:column;font-size:12px;color:#4b5563;gap:2px}
.filters input,.filters select{font:inherit;padding:4px 6px;border:1px solid #cbd5e1;border-radius:6px;
background:#fff}
.filters button{font:inherit;padding:5px 12px;border:1px solid #1a56db;background:#1a56db;color:#fff;
border-radius:6px;cursor:pointer}
pre{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px;overflow:auto;white-space:pre-wrap;
overflow-wrap:anywhere}
pre.log{background:#111827;color:#e5e7eb;max-height:70vh}
.error{background:#fce8e6;border:1px solid #f5c2bd;border-radius:8px;padding:10px;margin:10px 0;
overflow-wrap:anywhere}
.warn{background:#fef7e0;border:1px solid #f3dc9b;border-radius:8px;padding:10px;margin:10px 0}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;border:1px solid #e5e7eb;
border-radius:8px;padding:10px 14px;margin:0}
dl.kv dt{color:#6b7280}
dl.kv dd{margin:0;overflow-wrap:anywhere}
.svgbox{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px;overflow:auto}
.svgbox a:hover rect{filter:brightness(.95)}
ul.schema{margin:0;padding-left:16px}
footer{margin-top:28px;color:#9ca3af;font-size:12px}
"""

# The only script: filters the rendered run table (select, select, text), also from file://.
SCRIPT = """
(function () {
  var form = document.getElementById("run-filter");
  if (!form) { return; }
  var source = form.elements["source"], status = form.elements["status"], text = form.elements["q"];
  var rows = Array.prototype.slice.call(document.querySelectorAll("#runs tbody tr"));
  var shown = document.getElementById("shown");
  var params = new URLSearchParams(window.location.search);
  function preset(control, value) {
    if (value === null) { return; }
    if (control.tagName === "SELECT") {
      for (var i = 0; i < control.options.length; i++) {
        if (control.options[i].value === value) { control.value = value; }
      }
    } else { control.value = value; }
  }
  preset(source, params.get("source")); preset(status, params.get("status")); preset(text, params.get("q"));
  function apply() {
    var s = source.value, st = status.value, q = text.value.trim().toLowerCase(), n = 0;
    rows.forEach(function (row) {
      var ok = (!s || row.getAttribute("data-source") === s) && (!st || row.getAttribute("data-status") === st) &&
        (!q || row.textContent.toLowerCase().indexOf(q) !== -1);
      row.hidden = !ok;
      if (ok) { n++; }
    });
    shown.textContent = n + " of " + rows.length + " runs shown";
  }
  source.addEventListener("change", apply);
  status.addEventListener("change", apply);
  text.addEventListener("input", apply);
  if (form.getAttribute("data-mode") === "static") {
    form.addEventListener("submit", function (event) { event.preventDefault(); apply(); });
  }
  apply();
})();
"""

SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# No network, no plugins, no inline handlers: only our own inline style and the one hashed script.
# The meta tag carries it into the static build; frame-ancestors only counts (and is only allowed) in a header.
META_CSP = (f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; img-src data:; "
            "form-action 'self'; base-uri 'none'")
CSP = META_CSP + "; frame-ancestors 'none'"


class NotFound(Exception):
    """The page or run asked for does not exist (a 404, not an error)."""


def esc(value: Any) -> str:
    """Text and attribute safe: every value from the datastore or the config goes through this."""
    return html.escape("" if value is None else str(value), quote=True)


def _ts(value: str | None) -> str:
    """'2026-11-26T08:33:18.123456Z' -> '2026-11-26 08:33:18Z' (UTC throughout, as the CLI)."""
    return f"{value[:19].replace('T', ' ')}Z" if value else "-"


def _interval(seconds: int | None) -> str:
    if not seconds:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"every {seconds // size}{unit}"
    return f"every {seconds}s"


def badge(status: str | None) -> str:
    status = status or "never run"
    cls = {"never run": "s-never"}.get(status, f"s-{status}" if status in STATUSES else "s-never")
    return f'<span class="badge {cls}" data-status="{esc(status)}">{esc(status)}</span>'


def run_href(run_id: str, root: str = "") -> str:
    return f"{root}runs/{quote(run_id, safe='')}.html"


def runs_href(root: str = "", **params: str) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{root}runs.html" + (f"?{query}" if query else "")


def layout(title: str, body: str, *, active: str, config: Config, root: str = "", static: bool = False) -> str:
    """The frame every page shares: nav bar, title, the config it was read from, the time it was rendered."""
    links = "".join(f'<a href="{root}{href}"{" class=active" if href == active else ""}>{esc(label)}</a>'
                    for href, label in NAV)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    how = "static build" if static else "live: reload the page for new runs"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(META_CSP)}">'
            f'<link rel="icon" href="data:,"><title>{esc(title)} · abi</title><style>{CSS}</style></head>\n'
            f'<body><nav><span class="brand">abi</span>{links}</nav><main>'
            f'<h1>{esc(title)}</h1>\n{body}\n'
            f'<footer>config {esc(config.path)} · datastore {esc(config.datastore.root)} · rendered {now} '
            f'({esc(how)})</footer></main><script>{SCRIPT}</script></body></html>\n')


def table(headers: Iterable[str], rows: Iterable[str], *, ident: str | None = None, empty: str = "nothing yet",
          narrow: bool = False) -> str:
    """Rows are pre-rendered `<tr>` strings (their cells escaped by the caller)."""
    body = "".join(rows)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    attr = (f' id="{esc(ident)}"' if ident else "") + (' class="narrow"' if narrow else "")
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- overview ---------------------------------------------------------------------------------------------

def _health(row: dict[str, Any]) -> int:
    """Sort order of the overview: failing first, then stale or overdue, then never run, then healthy."""
    if row["last_status"] in ("failed", "partial") or row.get("consecutive_failures"):
        return 0
    if row.get("stale") or row.get("overdue") or row.get("behind"):
        return 1
    if row["last_status"] == "never run":
        return 2
    return 3


def _note(row: dict[str, Any]) -> str:
    return " ".join(f'<span class="badge s-stale">{esc(text)}</span>' if mark else esc(text)
                    for mark, text in status_notes(row))


def overview(config: Config, *, root: str = "", static: bool = False, **_: Any) -> str:
    from storage.status import source_status

    rows = sorted(source_status(config=config), key=lambda r: (_health(r), r["kind"] == "bridge", r["source"]))
    counts = {"nodes": len(rows), "failing": sum(_health(r) == 0 for r in rows),
              "stale or overdue": sum(_health(r) == 1 for r in rows),
              "never run": sum(_health(r) == 2 for r in rows), "healthy": sum(_health(r) == 3 for r in rows)}
    cards = "".join(f'<div class="card" data-count="{esc(k)}"><b>{v}</b>{esc(k)}</div>' for k, v in counts.items())
    out = []
    for r in rows:
        last = (f'<a href="{esc(run_href(r["last_run_id"], root))}">{esc(_ts(r["last_run_at"]))}</a>'
                if r.get("last_run_id") and RUN_ID_RE.match(r["last_run_id"]) else esc(_ts(r["last_run_at"])))
        total = r.get("total", r.get("total_new"))
        new = "-" if r.get("new_items") is None else r["new_items"]
        out.append(
            f'<tr data-node="{esc(r["source"])}" data-health="{_health(r)}">'
            f'<td><a href="{esc(runs_href(root, source=r["source"]))}">{esc(r["source"])}</a></td>'
            f'<td>{esc(r["kind"])}</td><td>{esc(r["module"])}</td><td>{badge(r["last_status"])}</td>'
            f"<td>{last}</td><td>{esc(human_age(r.get('age_s')))}</td><td class=num>{esc(new)}</td>"
            f"<td class=num>{esc(total)}</td><td class=num>{esc(r.get('consecutive_failures', 0))}</td>"
            f"<td>{esc(_ts(r['next_due']) if r.get('next_due') not in (None, 'now') else r.get('next_due') or '-')}"
            f'</td><td class="wrap">{_note(r)}</td></tr>')
    body = (f'<div class="cards">{cards}</div>'
            + table(("Name", "Kind", "Module", "Status", "Last run", "Since success", "New", "Total", "Fails",
                     "Next due", "Note"), out, ident="overview",
                    empty="nothing configured: add [sources.NAME] to the config"))
    return layout("Overview", body, active="index.html", config=config, root=root, static=static)


# --- asset catalog ----------------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def schema_sample(record: Any) -> list[tuple[str, str, str]]:
    """(field, type, example) of a record's top-level fields; the example cut short (it is a glimpse)."""
    if not isinstance(record, dict):
        return [("(record)", _type_name(record), _short(record))]
    return [(str(k), _type_name(v), _short(v)) for k, v in record.items()]


def _short(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _first_line_record(path: Path) -> Any:
    """The first record of a JSON Lines file: one line read, however big the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    return json.loads(line)
    except (OSError, ValueError):
        return None
    return None


def _folder_dataset(folder: Path) -> dict[str, Any]:
    """One record per file (RSS): the folder's sidecar says the count; the first file found is the sample."""
    from storage.records import SAFE_NAME, sidecar_path

    meta = _read_json(sidecar_path(folder)) or {}
    sample = None
    if folder.is_dir():
        with os.scandir(folder) as entries:
            for entry in entries:  # the first record file found: no listing, no sorting of the whole folder
                if SAFE_NAME.match(entry.name) and not entry.name.endswith(".meta.json"):
                    sample = _read_json(Path(entry.path))
                    break
    return {"records": meta.get("records"), "updated": meta.get("fetched_at") or meta.get("written_at"),
            "sample": sample, "files": None, "exists": folder.is_dir()}


def _lines_dataset(folder: Path) -> dict[str, Any]:
    """JSON Lines files with a sidecar each (API, DB, files): one dataset file, or one per run/partition."""
    metas: list[Path] = []
    for sub in (folder, folder / "partitions"):
        if sub.is_dir():
            with os.scandir(sub) as entries:
                metas += [Path(e.path) for e in entries if e.name.endswith(".jsonl.meta.json")]
    if not metas:
        files = sum(1 for _ in os.scandir(folder)) if folder.is_dir() else 0
        return {"records": None, "updated": None, "sample": None, "files": files or None, "exists": folder.is_dir()}
    metas.sort(key=lambda p: p.name)
    newest = _read_json(metas[-1]) or {}
    records: int | None = None
    if len(metas) <= SIDECARS_SUMMED:
        records = sum(int((_read_json(p) or {}).get("records") or 0) for p in metas)
    data = metas[0].with_name(metas[0].name[: -len(".meta.json")])
    return {"records": records, "updated": newest.get("fetched_at") or newest.get("written_at"),
            "sample": _first_line_record(data), "files": len(metas), "exists": True}


def catalog_rows(config: Config) -> list[dict[str, Any]]:
    """Every dataset the config produces: where it lives, how many records, when it changed, a schema sample."""
    ds = config.datastore
    rows = []
    for src in config.sources.values():
        folder = ds.data_dir(src.module, src.name, src.path)
        info = _folder_dataset(folder) if src.kind == "rss" else _lines_dataset(folder)
        rows.append({"name": src.name, "kind": src.kind, "module": src.module,
                     "location": ds.relative(folder) + ("/" if src.kind == "rss" else ""), **info})
    for agg in config.aggregates.values():
        target = ds.module_dir(agg.module) / agg.folder / f"{agg.name}.jsonl"
        meta = _read_json(target.with_name(target.name + ".meta.json")) or {}
        rows.append({"name": agg.name, "kind": "aggregate", "module": agg.module, "location": ds.relative(target),
                     "records": meta.get("records"), "updated": meta.get("written_at"),
                     "sample": _first_line_record(target) if target.is_file() else None, "files": None,
                     "exists": target.is_file()})
    if config.bridges:
        from storage.lineage import store_label
        from storage.pipeline_config import store_url_for

        for b in config.bridges.values():
            summary = _read_json(ds.summaries_dir(b.module) / f"{b.name}.json") or {}
            success = summary.get("last_success") or {}
            rows.append({"name": b.name, "kind": "bridge (graph)", "module": b.module,
                         "location": f"<{b.graph}> in {store_label(config, store_url_for(config.triplestore, b))}",
                         "records": (success.get("counts") or {}).get("triples"), "unit": "triples",
                         "updated": success.get("ended_at"), "sample": None, "files": None,
                         "exists": bool(success)})
    return rows


def catalog(config: Config, *, root: str = "", static: bool = False, **_: Any) -> str:
    out = []
    for row in catalog_rows(config):
        sample = row["sample"]
        if sample is not None:
            items = "".join(f"<li><code>{esc(f)}</code> <span class=muted>{esc(t)}</span> "
                            f'<span class="mono">{esc(v)}</span></li>' for f, t, v in schema_sample(sample)[:40])
            schema = f'<ul class="schema">{items}</ul>'
        elif row["files"]:
            schema = f'<span class="muted">{esc(row["files"])} files, no JSON records</span>'
        else:
            schema = '<span class="muted">-</span>'
        records = "-" if row["records"] is None else f"{row['records']:,}"
        if row.get("unit"):
            records += f" {row['unit']}"
        if row["files"] and row["records"] is not None and row["files"] > 1:
            records += f" in {row['files']:,} files"
        elif row["files"] and row["records"] is None and row["sample"] is not None:
            records = f"{row['files']:,} files (more than {SIDECARS_SUMMED} to count)"
        where = esc(row["location"]) if row["exists"] else f'{esc(row["location"])} <span class=muted>(not yet)</span>'
        out.append(f'<tr data-asset="{esc(row["name"])}"><td><a href="{esc(runs_href(root, source=row["name"]))}">'
                   f'{esc(row["name"])}</a></td><td>{esc(row["kind"])}</td><td>{esc(row["module"])}</td>'
                   f'<td class="wrap mono">{where}</td><td class=num>{esc(records)}</td>'
                   f"<td>{esc(_ts(row['updated']))}</td><td class=wrap>{schema}</td></tr>")
    body = ('<p class="muted">Each dataset the configuration produces; locations are relative to the datastore. '
            "The schema sample is the first record found, read alone.</p>"
            + table(("Asset", "Kind", "Module", "Location", "Records", "Last update", "Schema sample"), out,
                    ident="catalog", empty="no datasets configured"))
    return layout("Asset catalog", body, active="catalog.html", config=config, root=root, static=static)


# --- lineage ----------------------------------------------------------------------------------------------

def lineage(config: Config, *, root: str = "", static: bool = False, **_: Any) -> str:
    from storage.lineage import build_lineage, render_svg
    from storage.status import source_status

    graph = build_lineage(config)
    status = {r["source"]: r["last_status"] for r in source_status(config=config)}
    svg = render_svg(graph, status=status)
    for node in graph.nodes:  # each node (but a store, which has no runs) links to its run history
        if node.kind == "store":
            continue
        start = svg.find(f'<g class="node" data-node="{html.escape(node.id, quote=True)}"')
        end = svg.find("</g>", start)
        if start < 0 or end < 0:
            continue
        href = esc(runs_href(root, source=node.id))
        svg = (svg[:start] + f'<a href="{href}" class="node-link">' + svg[start:end + 4] + "</a>"
               + svg[end + 4:])
    reads: dict[str, list[str]] = {}
    for a, b in graph.edges:
        reads.setdefault(b, []).append(a)
    labels = {n.id: n.label for n in graph.nodes}
    out = []
    for node in graph.nodes:
        name = (esc(node.label) if node.kind == "store"
                else f'<a href="{esc(runs_href(root, source=node.id))}">{esc(node.label)}</a>')
        out.append(f'<tr data-node="{esc(node.id)}"><td>{name}</td><td>{esc(node.kind)}</td>'
                   f"<td>{esc(node.module or '-')}</td>"
                   f"<td>{esc(', '.join(labels.get(r, r) for r in reads.get(node.id, [])) or '-')}</td>"
                   f"<td>{badge(status.get(node.id)) if node.kind != 'store' else '-'}</td></tr>")
    body = ('<p class="muted">Sources → aggregates → bridges → triple stores, in the order <code>make all</code> '
            "runs them; the border shows the last run's status. Click a node for its runs.</p>"
            f'<div class="svgbox">{svg}</div><h2>Nodes</h2>'
            + table(("Node", "Kind", "Module", "Reads", "Last status"), out, ident="nodes",
                    empty="nothing configured"))
    return layout("Lineage", body, active="lineage.html", config=config, root=root, static=static)


# --- run history ------------------------------------------------------------------------------------------

def brief_counts(run: dict[str, Any]) -> str:
    counts = run.get("counts") or {}
    keys = ("new", "updated", "records", "records_read", "triples_added", "triples", "feeds", "files", "errors")
    return ", ".join(f"{k} {counts[k]}" for k in keys if counts.get(k))


def _run_rows(rows: list[dict[str, Any]], root: str) -> list[str]:
    out = []
    for run in rows:
        rid = run.get("run_id") or ""
        link = (f'<a class="run-link" href="{esc(run_href(rid, root))}">{esc(rid)}</a>'
                if RUN_ID_RE.match(rid) else esc(rid))
        what = run.get("error") or (run.get("reason") if run.get("status") == "skipped" else None) \
            or brief_counts(run)
        part = f" · partition {run['partition']}" if run.get("partition") else ""
        out.append(f'<tr data-source="{esc(run.get("source"))}" data-status="{esc(run.get("status"))}">'
                   f"<td>{esc(_ts(run.get('started_at')))}</td><td>{esc(run.get('source'))}</td>"
                   f"<td>{esc(run.get('kind'))}</td><td>{badge(run.get('status'))}</td>"
                   f"<td class=num>{float(run.get('duration_s') or 0):.2f}s</td>"
                   f'<td class="wrap">{esc(what)}{esc(part)}</td><td class="mono">{link}</td></tr>')
    return out


def runs(config: Config, *, root: str = "", static: bool = False, params: dict[str, str] | None = None,
         limit: int | None = None, rows: list[dict[str, Any]] | None = None, **_: Any) -> str:
    """The run history with filters: the server applies ?source=&status=&since=&q=; the page's script filters
    the rendered rows as you type (which is all the static build has)."""
    from storage.history import list_runs, node_names

    params = {} if static else dict(params or {})
    source, status = params.get("source") or None, params.get("status") or None
    since, text = params.get("since") or None, (params.get("q") or "").strip()
    if limit is None:
        try:
            limit = max(1, min(RUNS_LIMIT_MAX, int(params.get("limit") or RUNS_LIMIT)))
        except ValueError:
            limit = RUNS_LIMIT
    if rows is None:
        if text:
            scanned = list_runs(config=config, source=source, status=status, since=since, limit=TEXT_SCAN)
            needle = text.lower()
            rows = [r for r in scanned if needle in json.dumps(r, ensure_ascii=False).lower()][:limit]
        else:
            rows = list_runs(config=config, source=source, status=status, since=since, limit=limit)
    names = sorted(node_names(config))

    def options(values: Iterable[str], chosen: str | None, everything: str) -> str:
        opts = [f'<option value="">{esc(everything)}</option>']
        opts += [f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(v)}</option>' for v in values]
        return "".join(opts)

    extra = "" if static else (
        f'<label>Since<input name="since" value="{esc(since or "")}" placeholder="1d, 6h, 2026-01-31" size="12">'
        f'</label><label>Limit<input name="limit" value="{esc(limit)}" size="5"></label>'
        '<button type="submit">Search history</button>')
    form = (f'<form id="run-filter" class="filters" method="get" action="runs.html" '
            f'data-mode="{"static" if static else "served"}">'
            f'<label>Source<select name="source">{options(names, source, "all sources")}</select></label>'
            f'<label>Status<select name="status">{options(STATUSES, status, "any status")}</select></label>'
            f'<label>Text<input name="q" type="search" value="{esc(text)}" placeholder="error, run id, count…" '
            f'size="24"></label>{extra}<span id="shown" class="muted"></span></form>')
    scope = (f"The newest {len(rows)} runs of this build." if static else
             f"Newest first, at most {limit} (the server filters by the form when you press Search history; "
             "the selects and text filter the rows shown as you type).")
    body = (f'<p class="muted">{esc(scope)}</p>{form}'
            + table(("Started", "Source", "Kind", "Status", "Took", "What", "Run id"), _run_rows(rows, root),
                    ident="runs", empty="no runs match"))
    return layout("Runs", body, active="runs.html", config=config, root=root, static=static)


# --- one run ----------------------------------------------------------------------------------------------

def locate_run(config: Config, run_id: str) -> tuple[str, dict[str, Any]]:
    """(module, record) of a run id; NotFound when the id is malformed or no module has it."""
    from storage.runs import read_run

    match = RUN_ID_RE.match(run_id or "")
    if not match:
        raise NotFound(run_id)
    ds = config.datastore
    modules = []
    with contextlib.suppress(KeyError):  # a node no longer configured: look in every module
        modules.append(config.module_of(match["source"]))
    modules += [m for m in ds.modules() if m not in modules]
    for module in modules:
        record = read_run(ds, module, run_id)
        if record:
            return module, record
    raise NotFound(run_id)


LOG_BYTES = 1 << 20  # a page shows at most the last MiB of a log, whatever its size
LOG_LINE_CHARS = 2000


def _log_tail(path: Path) -> tuple[list[str], str]:
    """The last LOG_LINES lines of a log, read from its last MiB at most, and a note on what is left out."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        start = max(0, size - LOG_BYTES)
        fh.seek(start)
        data = fh.read(size - start)
    if start:
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""  # from the first whole line
    lines = data.decode("utf-8", "replace").splitlines()
    shown = [line[:LOG_LINE_CHARS] for line in lines[-LOG_LINES:]]
    if start:
        note = f"the last {len(shown)} lines; the first {start:,} bytes of the log are not shown"
    elif len(lines) > len(shown):
        note = f"the last {len(shown)} lines; {len(lines) - len(shown)} earlier lines cut"
    else:
        note = ""
    return shown, note


def run_page(config: Config, run_id: str, *, root: str = "../", static: bool = False, **_: Any) -> str:
    from storage.run_logs import log_path

    module, rec = locate_run(config, run_id)
    facts = [("Source", f'<a href="{esc(runs_href(root, source=rec.get("source") or ""))}">'
                        f'{esc(rec.get("source"))}</a>'),
             ("Kind", esc(rec.get("kind"))), ("Module", esc(module)), ("Status", badge(rec.get("status"))),
             ("Started", esc(_ts(rec.get("started_at")))), ("Ended", esc(_ts(rec.get("ended_at")))),
             ("Took", f"{float(rec.get('duration_s') or 0):.3f}s"),
             ("Command", f'<code>{esc(" ".join(str(a) for a in rec.get("command") or []))}</code>'),
             ("Version", esc(rec.get("version"))), ("Host / pid", esc(f"{rec.get('host')} / {rec.get('pid')}"))]
    if rec.get("reason"):
        facts.insert(4, ("Reason", esc(rec["reason"])))
    parts = ['<dl class="kv">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    error = rec.get("error")
    if error:
        parts.append(f'<div class="error" id="run-error"><b>{esc(error.get("type"))}</b>: '
                     f'{esc(error.get("message"))}</div>')
    for warning in rec.get("warnings") or []:
        parts.append(f'<div class="warn">{esc(warning)}</div>')
    counts = rec.get("counts") or {}
    parts.append("<h2>Counts</h2>" + table(("Count", "Value"), (
        f"<tr><td>{esc(k)}</td><td class=num>{esc(v)}</td></tr>" for k, v in counts.items()), empty="no counts",
        ident="counts", narrow=True))
    items = rec.get("items") or []
    if items:
        keys: list[str] = []
        for item in items[:50]:
            keys += [k for k in item if k not in keys]
        rows = ("<tr>" + "".join(f'<td class="wrap">{esc(_short(item.get(k), 160) if item.get(k) is not None else "")}'
                                 f"</td>" for k in keys) + "</tr>" for item in items[:ITEMS_SHOWN])
        more = f" (first {ITEMS_SHOWN} of {len(items)})" if len(items) > ITEMS_SHOWN else ""
        parts.append(f"<h2>Items{esc(more)}</h2>" + table(keys, rows, ident="items"))
    files = rec.get("files_written") or []
    parts.append(f"<h2>Files written ({len(files)})</h2>" + (
        "<pre>" + esc("\n".join(str(f) for f in files[:ITEMS_SHOWN])) + "</pre>" if files
        else '<p class="muted">none</p>'))
    if rec.get("details"):
        parts.append("<h2>Details</h2><pre>" + esc(json.dumps(rec["details"], indent=2, ensure_ascii=False,
                                                              default=str)) + "</pre>")
    path = log_path(config.datastore, module, run_id)
    if path.is_file():
        lines, cut = _log_tail(path)
        note = f'<p class="muted">{esc(cut)} (abi logs prints it all)</p>' if cut else ""
        parts.append(f'<h2>Log</h2><p class="muted mono">{esc(config.datastore.relative(path))}</p>{note}'
                     f'<pre class="log" id="log">{esc(chr(10).join(lines))}</pre>')
    else:
        parts.append('<h2>Log</h2><p class="muted" id="log">no log for this run (written from v0.6 on)</p>')
    return layout(f"Run {run_id}", "".join(parts), active="runs.html", config=config, root=root, static=static)


# --- sensors & schedules ----------------------------------------------------------------------------------

def sensors(config: Config, *, root: str = "", static: bool = False, **_: Any) -> str:
    from storage.schedules import read_sensor_state
    from storage.status import source_status

    status = {r["source"]: r for r in source_status(config=config)}
    ds = config.datastore
    out = []
    for src in config.sources.values():
        row = status.get(src.name, {})
        state = read_sensor_state(ds, src) if src.sensor else {}
        when = f"cron <code>{esc(src.schedule)}</code> (UTC)" if src.schedule else esc(_interval(src.interval_s))
        sensor = (f"{esc(src.sensor.type)} <span class=muted>(at most every {src.sensor.minimum_interval_s}s)"
                  "</span>" if src.sensor else "-")
        check = "-"
        if state.get("last_check_at"):
            check = f"{esc(_ts(state['last_check_at']))} {badge(state.get('last_result'))}"
            if state.get("last_reason"):
                check += f' <span class="muted">{esc(state["last_reason"])}</span>'
        skip = "-"
        if state.get("last_skip_reason"):
            skip = (f"{esc(state['last_skip_reason'])} <span class=muted>({esc(_ts(state.get('last_skip_at')))}, "
                    f"{esc(state.get('skips', 0))} skips)</span>")
        due = row.get("next_due")
        due_text = "now" if due == "now" else _ts(due) if due else "-"
        overdue = ' <span class="badge s-stale">OVERDUE</span>' if row.get("overdue") else ""
        out.append(f'<tr data-node="{esc(src.name)}"><td><a href="{esc(runs_href(root, source=src.name))}">'
                   f"{esc(src.name)}</a></td><td>{esc(src.kind)}</td><td>{esc(src.module)}</td><td>{when}</td>"
                   f"<td>{sensor}</td><td>{esc(due_text)}{overdue}</td><td>{esc(_ts(row.get('last_run_at')))}</td>"
                   f"<td>{check}</td><td class=wrap>{skip}</td></tr>")
    downstream = [(a.name, "aggregate", a.module, ", ".join(a.inputs)) for a in config.aggregates.values()]
    downstream += [(b.name, "bridge", b.module, b.input) for b in config.bridges.values()]
    rest = [f'<tr data-node="{esc(n)}"><td>{esc(n)}</td><td>{esc(k)}</td><td>{esc(m)}</td><td>{esc(i)}</td></tr>'
            for n, k, m, i in downstream]
    body = ('<p class="muted">What <code>abi tick</code> (cron, every minute) decides from: each source\'s '
            "interval or cron schedule, and its sensor's last check.</p>"
            + table(("Source", "Kind", "Module", "Schedule", "Sensor", "Next due", "Last run", "Last sensor check",
                     "Last skip reason"), out, ident="sensors", empty="no sources configured")
            + "<h2>Aggregates and bridges</h2>"
            '<p class="muted">They have no schedule of their own: they run after their inputs '
            "(<code>make all</code>, <code>abi materialize</code>).</p>"
            + table(("Name", "Kind", "Module", "Reads"), rest, empty="none configured"))
    return layout("Sensors & schedules", body, active="sensors.html", config=config, root=root, static=static)


# --- alerts -----------------------------------------------------------------------------------------------

def alerts(config: Config, *, root: str = "", static: bool = False, **_: Any) -> str:
    """The findings `abi check` would report now (computed, not sent), and whether each was sent."""
    try:
        from storage.checks import run_checks
    except ImportError:
        body = '<p class="muted">This version has no <code>abi check</code>.</p>'
        return layout("Open alerts", body, active="alerts.html", config=config, root=root, static=static)
    findings = run_checks(config=config)
    sent: dict[str, Any] = {}
    try:
        from storage.alert_state import read_state, state_path

        if state_path(config.datastore).is_file():
            sent = read_state(config.datastore).get("alerts") or {}
    except ImportError:
        pass
    webhook = getattr(config, "alerts", None)
    out = []
    for f in findings:
        entry = sent.get(f.key)
        if entry is None:
            state = "not sent" if webhook else "no webhook configured"
        elif entry.get("sent_at"):
            state = f"sent {_ts(entry['sent_at'])} ({entry.get('sends', 1)}x), open since {_ts(entry.get('opened_at'))}"
        else:
            state = f"not yet sent (open since {_ts(entry.get('opened_at'))})"
        if entry and entry.get("last_error"):
            state += f"; last send failed: {entry['last_error'].get('message')}"
        out.append(f'<tr data-key="{esc(f.key)}"><td><a href="{esc(runs_href(root, source=f.node))}">{esc(f.node)}'
                   f"</a></td><td>{esc(f.kind)}</td><td>{esc(f.module)}</td>"
                   f'<td><span class="badge s-open">{esc(f.rule)}</span></td><td class=wrap>{esc(f.message)}</td>'
                   f"<td class=wrap>{esc(state)}</td></tr>")
    resolving = [e for k, e in sent.items() if e.get("status") == "resolving" and k not in {f.key for f in findings}]
    note = ("Alerts go to the webhook of [alerts] when <code>abi check</code> runs." if webhook else
            "No [alerts] webhook configured: <code>abi check</code> prints these and exits 1, nothing is sent.")
    body = (f'<p class="muted">What <code>abi check</code> finds right now (computed on this page, not sent). '
            f"{note}</p>"
            + table(("Node", "Kind", "Module", "Rule", "Finding", "Alert"), out, ident="alerts",
                    empty="all checks pass: no open alerts"))
    if resolving:
        body += "<h2>Resolutions not yet delivered</h2>" + table(
            ("Node", "Rule", "Why"), (f"<tr><td>{esc(e.get('node'))}</td><td>{esc(e.get('rule'))}</td>"
                                      f"<td>{esc(e.get('resolved_reason'))}</td></tr>" for e in resolving))
    return layout("Open alerts", body, active="alerts.html", config=config, root=root, static=static)


def not_found(config: Config | None, path: str) -> str:
    body = (f'<p>No page at <code>{esc(path)}</code>.</p><p><a href="/index.html">Back to the overview</a></p>')
    if config is None:
        return f"<!DOCTYPE html><html><head><title>Not found</title></head><body>{body}</body></html>"
    return layout("Not found", body, active="", config=config, root="/")


def error_page(config: Config | None, message: str, *, title: str = "Error") -> str:
    body = f'<div class="error">{esc(message)}</div>'
    if config is None:
        return f"<!DOCTYPE html><html><head><title>{esc(title)}</title></head><body>{body}</body></html>"
    return layout(title, body, active="", config=config, root="/")


PageFn = Callable[..., str]
PAGES: dict[str, PageFn] = {"index.html": overview, "catalog.html": catalog, "lineage.html": lineage,
                            "runs.html": runs, "sensors.html": sensors, "alerts.html": alerts}
