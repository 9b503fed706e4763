"""A flow's graph as text: Mermaid, Graphviz dot, or an indented outline (`vlrun flow`).

Each node shows its name and the values it collects; end nodes are drawn apart (Mermaid's
stadium shape, dot's double octagon); edges carry their `when` condition. The output is
deterministic (file order), so a drawing committed in docs can be checked against its profile.
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.config.flow_model import Flow, Node

FORMATS = ("mermaid", "dot", "text")


def draw(flow: Flow, fmt: str, title: str = "") -> str:
    """The graph of ``flow`` in ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    lines = {"mermaid": _mermaid, "dot": _dot, "text": _text}[fmt](flow, title)
    return "\n".join(lines) + "\n"


def _label(node: Node) -> str:
    values = ", ".join(v.name + ("*" if v.secret else "") for v in node.collect)
    return node.name + (f"\n{values}" if values else "")


def _mermaid_text(text: str) -> str:
    # Mermaid strings are double-quoted; quotes become #quot; and lines <br/>.
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def _mermaid(flow: Flow, title: str) -> Iterator[str]:
    if title:
        yield "---"
        yield f"title: {title}"
        yield "---"
    yield "flowchart TD"
    # Ids get a prefix: `end`, `graph` or `subgraph` are Mermaid words, and fine node names.
    yield "  start_((start)) --> n_" + flow.start
    for node in flow.nodes.values():
        label = _mermaid_text(_label(node))
        yield f'  n_{node.name}(["{label}"])' if node.end else f'  n_{node.name}["{label}"]'
    for source, target, when in flow.edges():
        if when:
            yield f'  n_{source} -- "{_mermaid_text(when)}" --> n_{target}'
        else:
            yield f"  n_{source} --> n_{target}"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot(flow: Flow, title: str) -> Iterator[str]:
    yield "digraph flow {"
    if title:
        yield f'  label="{_dot_text(title)}"; labelloc=t;'
    yield '  node [shape=box, style=rounded, fontname="Helvetica"];'
    yield '  edge [fontname="Helvetica", fontsize=10];'
    yield "  __start [shape=point, width=0.15];"
    for node in flow.nodes.values():
        shape = ", shape=doubleoctagon" if node.end else ""
        yield f'  "{node.name}" [label="{_dot_text(_label(node))}"{shape}];'
    yield f'  __start -> "{flow.start}";'  # quoted ids: `node`, `edge`, `graph` are dot words
    for source, target, when in flow.edges():
        label = f' [label="{_dot_text(when)}"]' if when else ""
        yield f'  "{source}" -> "{target}"{label};'
    yield "}"


def _text(flow: Flow, title: str) -> Iterator[str]:
    if title:
        yield title
    for node in flow.nodes.values():
        marks = [m for m, on in (("start", node.name == flow.start), ("end", node.end)) if on]
        yield node.name + (f" ({', '.join(marks)})" if marks else "")
        for value in node.collect:
            yield f"  collects {value.name}: {value.type}" + (" (secret)" if value.secret else "")
        for t in node.transitions:
            yield f"  -> {t.to}" + (f" when {t.when.text}" if t.when else "")
