"""The dependency graph of the configuration: sources -> aggregates -> bridges -> triple stores.

It is read from the configuration alone (what depends on what is declared
there), in the same order Make follows (collect, then aggregate, then bridge),
and drawn as text, Mermaid, Graphviz DOT, or an SVG laid out here, so the web
UI needs neither Graphviz nor the internet.
"""

from __future__ import annotations

import hashlib
import html
import os
from dataclasses import dataclass, field

from storage.config import Config
from storage.pipeline_config import aggregate_order, store_url_for


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # rss, api, db, files, aggregate, bridge, store
    module: str | None
    label: str
    layer: int


@dataclass
class Lineage:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def upstream(self, name: str) -> set[str]:
        """`name` and everything it reads, directly or not."""
        return self._walk(name, reverse=True)

    def downstream(self, name: str) -> set[str]:
        """`name` and everything that reads it, directly or not."""
        return self._walk(name, reverse=False)

    def _walk(self, name: str, *, reverse: bool) -> set[str]:
        seen, todo = {name}, [name]
        while todo:
            current = todo.pop()
            for a, b in self.edges:
                nxt = a if reverse and b == current else b if not reverse and a == current else None
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen


def store_label(config: Config, url: str | None) -> str:
    from storage.redact import redact_url

    return "embedded Oxigraph store" if url is None else f"SPARQL server {redact_url(url)}"


def build_lineage(config: Config) -> Lineage:
    """Nodes in dependency order (each after everything it reads) and the edges between them."""
    graph = Lineage()
    layer: dict[str, int] = {}
    for src in config.sources.values():
        layer[src.name] = 0
        graph.nodes.append(Node(src.name, src.kind, src.module, src.name, 0))
    for name in aggregate_order(config.aggregates):
        agg = config.aggregates[name]
        layer[name] = 1 + max(layer[i] for i in agg.inputs)
        graph.nodes.append(Node(name, "aggregate", agg.module, name, layer[name]))
        graph.edges += [(i, name) for i in agg.inputs]
    stores: dict[str, str] = {}
    top = max(layer.values(), default=0)
    for b in config.bridges.values():
        layer[b.name] = max(top, layer[b.input]) + 1
        graph.nodes.append(Node(b.name, "bridge", b.module, b.name, layer[b.name]))
        graph.edges.append((b.input, b.name))
        url = store_url_for(config.triplestore, b)
        # the id lands in SVG attributes and the UI: a hash, never the URL (it may carry credentials)
        store_id = "store:embedded" if url is None else "store:" + hashlib.sha256(url.encode()).hexdigest()[:12]
        stores.setdefault(store_id, store_label(config, url))
        graph.edges.append((b.name, store_id))
    last = max((layer[b] for b in config.bridges), default=0) + 1
    for store_id, label in stores.items():
        graph.nodes.append(Node(store_id, "store", None, label, last))
    return graph


def render_text(graph: Lineage) -> str:
    """One line per node in run order, with what it reads."""
    reads: dict[str, list[str]] = {}
    for a, b in graph.edges:
        reads.setdefault(b, []).append(a)
    width = max((len(n.label) for n in graph.nodes), default=0)
    lines = []
    for node in graph.nodes:
        kind = node.kind if node.kind in ("aggregate", "bridge", "store") else f"source/{node.kind}"
        source = f"  <- {', '.join(_label(graph, r) for r in reads[node.id])}" if node.id in reads else ""
        lines.append(f"{node.label:<{width}}  {kind:<14}{source}".rstrip())
    return "\n".join(lines) + ("\n" if lines else "")


def _label(graph: Lineage, node_id: str) -> str:
    return next((n.label for n in graph.nodes if n.id == node_id), node_id)


def _safe_id(node_id: str, index: dict[str, int]) -> str:
    return f"n{index[node_id]}"


def render_mermaid(graph: Lineage) -> str:
    index = {n.id: i for i, n in enumerate(graph.nodes)}
    shapes = {"aggregate": ("[[", "]]"), "bridge": ("{{", "}}"), "store": ("[(", ")]")}
    lines = ["flowchart LR"]
    for node in graph.nodes:
        left, right = shapes.get(node.kind, ("([", "])"))
        text = node.label.replace('"', "'")
        lines.append(f'    {_safe_id(node.id, index)}{left}"{text}<br/><small>{node.kind}</small>"{right}')
    lines += [f"    {_safe_id(a, index)} --> {_safe_id(b, index)}" for a, b in graph.edges]
    return "\n".join(lines) + "\n"


def render_dot(graph: Lineage) -> str:
    index = {n.id: i for i, n in enumerate(graph.nodes)}
    shapes = {"aggregate": "box3d", "bridge": "hexagon", "store": "cylinder"}
    lines = ["digraph abi {", "    rankdir=LR;", '    node [fontname="Helvetica", fontsize=11];']
    for node in graph.nodes:
        text = node.label.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'    {_safe_id(node.id, index)} [label="{text}\\n({node.kind})", '
                     f'shape={shapes.get(node.kind, "ellipse")}];')
    lines += [f"    {_safe_id(a, index)} -> {_safe_id(b, index)};" for a, b in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


_FILL = {"aggregate": "#e8f0fe", "bridge": "#fef3e0", "store": "#e6f4ea"}


def render_svg(graph: Lineage, *, status: dict[str, str] | None = None) -> str:
    """A left-to-right layered drawing: one column per layer, curved edges, every label escaped.

    `status` (node id -> last run status) colours each node's border.
    """
    status = status or {}
    box_w, box_h, gap_x, gap_y, pad = 220, 46, 60, 18, 20
    columns: dict[int, list[Node]] = {}
    for node in graph.nodes:
        columns.setdefault(node.layer, []).append(node)
    layers = sorted(columns)
    col_of = {layer: i for i, layer in enumerate(layers)}
    tallest = max((len(c) for c in columns.values()), default=1)
    width = pad * 2 + len(layers) * box_w + max(0, len(layers) - 1) * gap_x
    height = pad * 2 + tallest * box_h + max(0, tallest - 1) * gap_y
    pos: dict[str, tuple[int, int]] = {}
    for layer, nodes in columns.items():
        offset = (tallest - len(nodes)) * (box_h + gap_y) // 2
        for row, node in enumerate(nodes):
            pos[node.id] = (pad + col_of[layer] * (box_w + gap_x), pad + offset + row * (box_h + gap_y))
    border = {"success": "#1e8e3e", "failed": "#d93025", "partial": "#f29900", "skipped": "#5f6368"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="lineage" class="lineage">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#80868b"/></marker></defs>']
    for a, b in graph.edges:
        (ax, ay), (bx, by) = pos[a], pos[b]
        x1, y1, x2, y2 = ax + box_w, ay + box_h // 2, bx, by + box_h // 2
        mid = (x1 + x2) // 2
        parts.append(f'<path class="edge" data-from="{html.escape(a, quote=True)}" '
                     f'data-to="{html.escape(b, quote=True)}" d="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" '
                     'fill="none" stroke="#80868b" stroke-width="1.5" marker-end="url(#arrow)"/>')
    for node in graph.nodes:
        x, y = pos[node.id]
        stroke = border.get(status.get(node.id, ""), "#9aa0a6")
        label = node.label if len(node.label) <= 25 else node.label[:24] + "…"
        parts.append(
            f'<g class="node" data-node="{html.escape(node.id, quote=True)}" data-kind="{node.kind}">'
            f'<title>{html.escape(node.label)}</title>'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="{_FILL.get(node.kind, "#fff")}" '
            f'stroke="{stroke}" stroke-width="2"/>'
            f'<text x="{x + 10}" y="{y + 19}" font-size="13" font-weight="600">{html.escape(label)}</text>'
            f'<text x="{x + 10}" y="{y + 36}" font-size="11" fill="#5f6368">{html.escape(node.kind)}'
            f'{" · " + html.escape(node.module) if node.module else ""}</text></g>')
    parts.append("</svg>")
    return os.linesep.join(parts) + "\n"


RENDERERS = {"text": render_text, "mermaid": render_mermaid, "dot": render_dot, "svg": render_svg}
