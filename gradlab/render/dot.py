"""The classic picture: Graphviz DOT text, drawn the way torchviz draws it.

Colours (the legend drawn with the graph says the same):

* light blue box: a leaf tensor that requires grad (a parameter or an input);
  a white box is a leaf that does not.
* light grey: an autograd op (``MulBackward0``, ``AccumulateGrad``).
* green: an output, the tensor traced from.
* orange: a tensor an op saved for its backward (``show_saved=True``).
* red fill: a NaN or an Inf in the node's value or gradient.
* thick red outline: a highlighted node (the current backward step, a finding).

After :func:`gradlab.backward` an op's label also shows ``step k`` (the
engine's order) and ``grad`` (what flowed into it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import graphviz

from gradlab.core.graph import ACCUMULATE_GRAD, Graph, NodeAttrs, TensorSummary
from gradlab.core.text import shape, short

# Hex, so Graphviz and the browser (Plotly) read the same colours.
FILL = {
    "leaf": "#add8e6",  # light blue
    "leaf_nograd": "#ffffff",
    "op": "#d3d3d3",  # light grey
    "output": "#caff70",  # torchviz's darkolivegreen1
    "saved": "#ffa500",  # orange
    "module": "#d9c8f0",  # lavender: a collapsed module call (gradlab.core.collapse)
    "nonfinite": "#ff6347",  # tomato
}
LEGEND = (
    ("leaf", "leaf (requires grad)"),
    ("op", "autograd op"),
    ("output", "output"),
    ("saved", "saved tensor"),
    ("nonfinite", "NaN / Inf"),
)


def to_dot(
    G: Graph,
    *,
    highlight: Iterable[str] = (),
    clusters: bool = False,
    legend: bool = True,
    values: bool = True,
) -> str:
    """DOT text of ``G``: leaves at the top, the output at the bottom.

    ``highlight`` outlines nodes in red; ``clusters`` draws a box around the
    nodes of each ``nn.Module`` (nested by dotted path); ``values`` adds
    values and gradients to the labels. See the module docstring for the
    colours.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> dot = to_dot(gradlab.trace((x ** 2).sum()))
    >>> "PowBackward0" in dot and FILL["leaf"] in dot
    True
    """
    marked = set(highlight)
    dot = graphviz.Digraph(
        graph_attr={"rankdir": "TB", "fontname": "Helvetica", "fontsize": "11"},
        node_attr={"style": "filled", "shape": "box", "fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#555555"},
    )
    groups = _module_groups(G) if clusters else {}
    tree = _Cluster()
    for n, attrs in G.nodes(data=True):
        style = _node_style(str(n), attrs, marked, values)
        group = groups.get(str(n))
        if group:
            tree.place(group.split("."), (str(n), style))
        else:
            dot.node(str(n), **style)
    tree.draw(dot)
    for u, v, attrs in G.edges(data=True):
        style = {"style": "dashed", "color": "darkorange"} if attrs.get("kind") == "saved" else {}
        grad = attrs.get("grad")
        if grad is not None:
            style["tooltip"] = f"grad sent: {short(grad)}"
        dot.edge(str(u), str(v), **style)
    if legend:
        _draw_legend(dot)
    return str(dot.source)


def node_fill(attrs: NodeAttrs) -> str:
    """The fill colour of a node (see the module docstring)."""
    if _nonfinite(attrs.get("value")) or _nonfinite(attrs.get("grad")):
        return FILL["nonfinite"]
    kind = attrs["kind"]
    if kind == "leaf" and not attrs.get("requires_grad", True):
        return FILL["leaf_nograd"]
    return FILL[kind]


def node_label(attrs: NodeAttrs, values: bool = True) -> str:
    """The text of a node's box."""
    kind = attrs["kind"]
    lines = [str(attrs.get("label"))]
    if kind == "op" and attrs.get("name"):
        lines.append(f"→ {attrs['name']}")
    if kind != "op" or attrs.get("op") != ACCUMULATE_GRAD:
        lines.append(shape(attrs.get("shape")))
    if values:
        if attrs.get("value") is not None and kind != "op":
            lines.append(short(attrs.get("value")))
        elif attrs.get("value") is not None:
            lines.append(f"= {short(attrs.get('value'))}")
        if attrs.get("grad") is not None:
            lines.append(f"grad {short(attrs.get('grad'))}")
    if attrs.get("step") is not None:
        lines.append(f"step {attrs['step']}")
    return "\n".join(lines)


def _node_style(n: str, attrs: NodeAttrs, marked: set[str], values: bool) -> dict[str, str]:
    style = {
        "label": node_label(attrs, values),
        "fillcolor": node_fill(attrs),
        "tooltip": f"{n}: {attrs.get('op') or attrs['kind']}",
    }
    if attrs["kind"] == "op":
        style["shape"] = "box"
        style["style"] = "filled,rounded"
    if n in marked:
        style.update(color="red", penwidth="3")
    return style


def _nonfinite(s: TensorSummary | None) -> bool:
    return s is not None and bool(s["nan"] or s["inf"])


def _module_groups(G: Graph) -> dict[str, str]:
    """Node id -> module path; a leaf and its AccumulateGrad join their consumer's module."""
    groups = {str(n): m for n, m in G.nodes(data="module") if m}
    for n, kind in G.nodes(data="kind"):
        if kind == "leaf":
            accumulate = [str(v) for v in G.successors(n)]
            users = {groups.get(str(w)) for a in accumulate for w in G.successors(a)}
            if len(users) == 1 and None not in users:
                (module,) = users
                assert module is not None
                for m in [str(n), *accumulate]:
                    groups[m] = module
    return groups


@dataclass
class _Cluster:
    """The nodes of one module and the clusters of its submodules."""

    nodes: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    children: dict[str, _Cluster] = field(default_factory=dict)

    def place(self, path: list[str], node: tuple[str, dict[str, str]]) -> None:
        cluster = self
        for part in path:
            cluster = cluster.children.setdefault(part, _Cluster())
        cluster.nodes.append(node)

    def draw(self, dot: graphviz.Digraph, prefix: str = "") -> None:
        for part, child in self.children.items():
            path = f"{prefix}.{part}" if prefix else part
            with dot.subgraph(name=f"cluster_{path}") as sub:
                sub.attr(label=path, style="rounded,dashed", color="#888888", fontcolor="#444444")
                for n, style in child.nodes:
                    sub.node(n, **style)
                child.draw(sub, path)


def _draw_legend(dot: graphviz.Digraph) -> None:
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="legend", style="rounded", color="#bbbbbb", fontcolor="#666666")
        names = [f"legend_{kind}" for kind, _ in LEGEND]
        for (kind, text), name in zip(LEGEND, names, strict=True):
            legend.node(name, label=text, fillcolor=FILL[kind], fontsize="9")
        for a, b in itertools.pairwise(names):
            legend.edge(a, b, style="invis")
