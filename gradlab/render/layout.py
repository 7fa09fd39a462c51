"""Layered layout of a graph, leaves at the top and outputs at the bottom.

No Graphviz binary is needed: each node's layer is its longest distance to
an output, so a parameter sits right above the op that uses it, and the
nodes of a layer are ordered by the barycentre of their neighbours below,
then above (two sweeps), which removes most edge crossings. Linear in the
number of edges: 15,000 nodes lay out in well under a second.
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx

from gradlab.core.graph import Graph

Position = tuple[float, float]


def layers(G: Graph) -> dict[str, int]:
    """Node -> layer, 0 at the top; every edge goes from a lower to a higher layer."""
    height: dict[str, int] = {}  # longest path to a sink
    for n in reversed(list(nx.topological_sort(G))):
        height[n] = max((height[s] + 1 for s in G.successors(n)), default=0)
    top = max(height.values(), default=0)
    return {n: top - h for n, h in height.items()}


def layered_layout(G: Graph) -> dict[str, Position]:
    """Node -> (x, y): y = -layer, x spread within the layer to reduce crossings.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.MultiDiGraph([("a", "c"), ("b", "c"), ("c", "d")])
    >>> pos = layered_layout(G)
    >>> pos["a"][1] == pos["b"][1] > pos["c"][1] > pos["d"][1]
    True
    """
    layer_of = layers(G)
    rows: dict[int, list[str]] = defaultdict(list)
    for n in G.nodes:  # graph order keeps the walk's order as the first guess
        rows[layer_of[n]].append(n)
    depth = max(rows, default=0)
    order = {n: float(i) for row in rows.values() for i, n in enumerate(row)}
    for sweep in (range(depth - 1, -1, -1), range(1, depth + 1)):
        below = sweep.step < 0
        for layer in sweep:
            row = rows[layer]
            for n in row:
                near = list(G.successors(n) if below else G.predecessors(n))
                if near:
                    order[n] = sum(order[m] for m in near) / len(near)
            row.sort(key=lambda n: order[n])
            for i, n in enumerate(row):
                order[n] = float(i)
    pos: dict[str, Position] = {}
    for layer, row in rows.items():
        offset = (len(row) - 1) / 2
        for i, n in enumerate(row):
            pos[n] = (i - offset, -float(layer))
    return pos
