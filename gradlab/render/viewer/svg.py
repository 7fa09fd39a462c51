"""A still picture of a viewer payload as SVG, for places that run no JavaScript.

GitHub's notebook preview and ``nbconvert`` show the ``image/svg+xml`` output
of :func:`gradlab.show`: the same boxes, at the same places, with every
gradient of the finished backward pass. Made in Python, with no Graphviz.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

#: Pictures wider or taller than this are scaled down (the numbers stay in the file).
MAX_SIDE = 1400
#: Bigger graphs get boxes without text: the picture is an overview.
TEXT_UP_TO = 400


def to_svg(data: dict[str, Any]) -> str:
    """SVG text of a payload from :func:`gradlab.render.viewer.payload`.

    Examples
    --------
    >>> import torch, gradlab
    >>> from gradlab.render.viewer import payload
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> G = gradlab.trace((x ** 2).sum(), params={"x": x})
    >>> picture = to_svg(payload(G))
    >>> picture.startswith("<svg") and ">PowBackward0<" in picture
    True
    """
    nodes = data["nodes"]
    pad = 16
    if nodes:
        x0 = min(n["x"] - n["w"] / 2 for n in nodes) - pad
        y0 = min(n["y"] - n["h"] / 2 for n in nodes) - pad
        x1 = max(n["x"] + n["w"] / 2 for n in nodes) + pad
        y1 = max(n["y"] + n["h"] / 2 for n in nodes) + pad
    else:
        x0, y0, x1, y1 = 0.0, 0.0, 100.0, 40.0
    w, h = x1 - x0, y1 - y0
    scale = min(1.0, MAX_SIDE / max(w, h))
    text = len(nodes) <= TEXT_UP_TO
    font, line = data.get("font", 13), data.get("line", 17)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * scale:.0f}" height="{h * scale:.0f}" '
        f'viewBox="{x0:.1f} {y0:.1f} {w:.1f} {h:.1f}" font-family="DejaVu Sans Mono, Menlo, '
        f'Consolas, monospace" font-size="{font}">',
        f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#ffffff"/>',
        '<g fill="none" stroke="#9a9a9a" stroke-width="1.4">',
    ]
    for e in data["edges"]:
        u, v = nodes[e["u"]], nodes[e["v"]]
        ya, yb = u["y"] + u["h"] / 2, v["y"] - v["h"] / 2
        mid = (ya + yb) / 2
        out.append(f'<path d="M{u["x"]},{ya} C{u["x"]},{mid} {v["x"]},{mid} {v["x"]},{yb}"/>')
    out.append("</g>")
    for e in data["edges"]:
        if e.get("count", 1) > 1 and text:
            u, v = nodes[e["u"]], nodes[e["v"]]
            mx = (u["x"] + v["x"]) / 2 - 6
            my = (u["y"] + u["h"] / 2 + v["y"] - v["h"] / 2) / 2
            out.append(
                f'<text x="{mx:.1f}" y="{my:.1f}" text-anchor="end" fill="#b03030" '
                f'font-weight="bold">×{e["count"]}</text>'
            )
    marked = set(data.get("highlight", []))
    for f in data.get("findings", []):
        marked |= {i for i, n in enumerate(nodes) if n["id"] in f["nodes"][:1]}
    for i, n in enumerate(nodes):
        bx, by = n["x"] - n["w"] / 2, n["y"] - n["h"] / 2
        stroke = ' stroke="#d62728" stroke-width="4"' if i in marked else ' stroke="#555555"'
        out.append(
            f'<rect x="{bx:.1f}" y="{by:.1f}" width="{n["w"]}" height="{n["h"]}" rx="6" '
            f"fill={quoteattr(n['fill'])}{stroke}/>"
        )
        if not text:
            continue
        for j, content in enumerate(n["lines"]):
            weight = ' font-weight="bold"' if j == 0 else ""
            out.append(
                f'<text x="{bx + 10:.1f}" y="{by + 6 + (j + 0.78) * line:.1f}"{weight} '
                f'xml:space="preserve">{escape(content)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out)
