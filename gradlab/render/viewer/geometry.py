"""Where each node box of the viewer goes: GradLab's layered layout, spread by box width.

:func:`gradlab.render.layout.layered_layout` orders the nodes of each layer (leaves
at the top, outputs at the bottom). Here every node gets a box big enough
for its lines of text in the viewer's monospace font, and the boxes of a
layer are laid side by side in that order with a gap, so no two boxes (and
so no two labels) overlap, whatever the graph. Layers stack downwards, each
as tall as its tallest box.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gradlab.core.graph import Graph
from gradlab.render.layout import layered_layout

#: Font size of the node text, in CSS pixels at zoom 1 (the viewer's CSS uses the same).
FONT = 13
#: Width of one character of the monospace font, as a share of the font size.
CHAR = 0.62
#: Height of one line of node text.
LINE = 17
PAD_X = 10
PAD_Y = 6
GAP_X = 28
GAP_Y = 38
#: Longest line kept on a box, in characters; the card shows the rest.
MAX_CHARS = 36


@dataclass(frozen=True)
class Box:
    """A node box: centre and size, in the viewer's pixels at zoom 1."""

    x: float
    y: float
    w: float
    h: float


def clip(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def box_size(lines: Sequence[str]) -> tuple[float, float]:
    """Width and height of a box holding ``lines`` (each already clipped)."""
    chars = max((len(line) for line in lines), default=1)
    return chars * FONT * CHAR + 2 * PAD_X, len(lines) * LINE + 2 * PAD_Y


def boxes(G: Graph, sizes: Mapping[str, tuple[float, float]]) -> dict[str, Box]:
    """Node -> box, laid out in layers with no two boxes overlapping.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.MultiDiGraph([("a", "c"), ("b", "c")])
    >>> out = boxes(G, {"a": (100, 40), "b": (60, 40), "c": (80, 40)})
    >>> out["a"].y == out["b"].y < out["c"].y
    True
    >>> out["a"].x + 50 + GAP_X <= out["b"].x - 30
    True
    """
    pos = layered_layout(G)
    rows: dict[float, list[str]] = defaultdict(list)
    for n, (_, y) in pos.items():
        rows[-y].append(n)
    out: dict[str, Box] = {}
    top = 0.0
    for layer in sorted(rows):
        row = sorted(rows[layer], key=lambda n: pos[n][0])
        widths = [sizes[n][0] for n in row]
        height = max(sizes[n][1] for n in row)
        total = sum(widths) + GAP_X * (len(row) - 1)
        left = -total / 2
        for n, w in zip(row, widths, strict=True):
            out[n] = Box(left + w / 2, top + height / 2, w, sizes[n][1])
            left += w + GAP_X
        top += height + GAP_Y
    return out
