"""The viewer's data: a graph of facts as JSON-safe lists and strings.

Everything the browser needs is computed here, in Python, once: each node's
box text and position, its value and gradient as text and norms, its
chain-rule card, the engine's steps with what arrived and what was sent, and
the findings to mark. The browser only draws and steps; it computes nothing
about autograd. See :mod:`gradlab.render.viewer` for the format.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import networkx as nx

from gradlab.core.graph import (
    ACCUMULATE_GRAD,
    Graph,
    NodeAttrs,
    TensorSummary,
    saved_by,
    without_saved,
)
from gradlab.core.text import describe, shape, short
from gradlab.render.dot import FILL, node_fill
from gradlab.render.steps import arrival_lines, departure_lines, who
from gradlab.render.viewer.geometry import FONT, LINE, box_size, boxes, clip
from gradlab.teach.chain import Card, card, no_card
from gradlab.teach.chain import show as show_tensor
from gradlab.teach.steps import Step
from gradlab.teach.steps import steps as engine_steps

VERSION = 1
_AGREES = {True: "✓ the formula gives what PyTorch sent", False: "✗ differs from what PyTorch sent"}


def payload(
    G: Graph,
    *,
    steps: bool = True,
    cards: bool = True,
    findings: Iterable[Any] = (),
    highlight: Iterable[str] = (),
    focus: str | None = None,
    printed: str | None = None,
    caption: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """The JSON-safe data :func:`gradlab.render.viewer` mounts, for graph ``G``.

    ``steps`` adds the backward steps (when :func:`gradlab.backward` ran on
    ``G``); ``cards`` each node's chain-rule card (about 1 ms a node).
    ``findings`` are :class:`gradlab.diagnose.Finding` objects (or dicts with
    ``nodes``, ``severity`` and ``title``); ``highlight`` node ids to outline;
    ``focus`` a node to centre on. ``printed`` (a program's output) and
    ``caption`` (a lesson's text) are hidden in predict-first mode until
    Reveal. Every string is data: the viewer shows it as text.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> with gradlab.record():
    ...     loss = (x * x).sum()
    >>> G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x}))
    >>> p = payload(G)
    >>> [n["label"] for n in p["nodes"]]
    ['SumBackward0', 'MulBackward0', 'AccumulateGrad', 'x', 'out']
    >>> p["nodes"][3]["grad"], [p["nodes"][s["node"]]["label"] for s in p["steps"]]
    ('[4., 6.]', ['SumBackward0', 'MulBackward0', 'AccumulateGrad'])
    """
    D = without_saved(G)
    ids = list(D.nodes)
    index = {n: i for i, n in enumerate(ids)}
    found = [_finding(f) for f in findings]
    ran = engine_steps(G) if steps and G.graph.get("backward") else []
    reach = _reach(D, ran)
    lines = {n: _box_lines(D.nodes[n]) for n in ids}
    placed = boxes(D, {n: box_size(lines[n]) for n in ids})
    nodes = [
        _node(G, n, D.nodes[n], lines[n], placed[n], reach.get(n), cards and n in G) for n in ids
    ]
    edges = _merge(
        # ``at``: the step whose backward sent the edge's gradient (the consumer's)
        {"u": index[u], "v": index[v], "grad": _short(data.get("grad")), "at": reach.get(v)}
        for u, v, data in D.edges(data=True)
    )
    return {
        "version": VERSION,
        "title": title,
        "caption": caption,
        "printed": printed,
        "font": FONT,
        "line": LINE,
        "fill": dict(FILL),
        "nodes": nodes,
        "edges": edges,
        "steps": [_step(G, s, len(ran), index) for s in ran if s.node in index],
        "findings": [f for f in found if f["nodes"]] + [f for f in found if not f["nodes"]],
        "highlight": [index[n] for n in highlight if n in index],
        "focus": index.get(focus) if focus is not None else None,
        "collapsed": bool(G.graph.get("collapsed")),
    }


def _box_lines(attrs: NodeAttrs) -> list[str]:
    """The text of a node box, micrograd-style: name, shape, data, grad."""
    kind = attrs["kind"]
    title = str(attrs.get("label"))
    if kind == "op" and attrs.get("name"):
        title += f" → {attrs['name']}"
    lines = [clip(title)]
    if kind == "op" and attrs.get("op") == ACCUMULATE_GRAD:
        return [*lines, clip("grad " + _short_or_dash(attrs.get("grad")))]
    lines.append(
        clip(shape(attrs.get("shape")) + (f" {attrs['dtype']}" if attrs.get("dtype") else ""))
    )
    lines.append(clip("data " + _short_or_dash(attrs.get("value"))))
    lines.append(clip("grad " + _short_or_dash(attrs.get("grad"))))
    return lines


def _node(
    G: Graph,
    n: str,
    attrs: NodeAttrs,
    lines: list[str],
    box: Any,
    reach: float | None,
    with_card: bool,
) -> dict[str, Any]:
    value, grad = attrs.get("value"), attrs.get("grad")
    out: dict[str, Any] = {
        "id": n,
        "kind": attrs["kind"],
        "label": str(attrs.get("label")),
        "name": attrs.get("name"),
        "op": attrs.get("op"),
        "lines": lines,
        "shape": shape(attrs.get("shape")),
        "value": _short(value),
        "grad": _short(grad),
        "vnorm": _log_norm(value),
        "gnorm": _log_norm(grad),
        "fill": node_fill(attrs),
        "module": attrs.get("module"),
        "module_type": attrs.get("module_type"),
        "x": round(box.x, 1),
        "y": round(box.y, 1),
        "w": round(box.w, 1),
        "h": round(box.h, 1),
        "reach": reach,
        "step": attrs.get("step"),
        "details": _details(G, n, attrs) if n in G else [],
    }
    if with_card:
        reason = no_card(G, n)
        out["card"] = card_text(card(G, n)) if reason is None else None
        out["nocard"] = reason
    return out


def _details(G: Graph, n: str, attrs: NodeAttrs) -> list[list[str]]:
    """``[heading, text]`` pairs for the node card: facts, value, gradient, saved tensors."""
    facts = [f"id {n}", f"kind {attrs['kind']}"]
    for key in ("op", "name", "dtype", "device"):
        if attrs.get(key):
            facts.append(f"{key} {attrs.get(key)}")
    if attrs.get("module") is not None and attrs["kind"] != "module":
        facts.append(f"module {attrs['module'] or '(top)'} ({attrs.get('module_type')})")
    step = attrs.get("step")
    if step is not None:
        facts.append(f"backward step {step + 1}")
    if attrs.get("kind") == "module":
        facts.append(f"{attrs.get('count', 0)} nodes, {attrs.get('ops', 0)} ops inside")
    out = [["Node", " · ".join(facts)]]
    if attrs.get("value") is not None:
        out.append(["Value", describe(attrs["value"])])
    if attrs.get("grad") is not None:
        out.append(["Gradient", describe(attrs["grad"])])
    saved = [
        f"{G.nodes[s].get('attr')}: {show_tensor(G.nodes[s].get('value'))}" for s in saved_by(G, n)
    ]
    if saved:
        out.append(["Saved for backward", "\n".join(saved)])
    return out


def card_text(c: Card) -> str:
    """A chain-rule card as plain text (the viewer shows it in a monospace block)."""
    lines = [f"Chain rule: {c.title}", c.forward, "", f"Arriving: {c.incoming}", ""]
    for r in c.rules:
        lines.append(f"To {r.name} (input {r.slot}, node {r.input})")
        lines.append(f"  {r.formula}")
        if r.numbers != r.formula:
            lines.append(f"  {r.numbers}")
        check = _AGREES.get(r.agrees) if r.agrees is not None else None
        lines.append(f"  sent: {show_tensor(r.result)}" + (f"  {check}" if check else ""))
        lines.append("")
    if c.accumulated is not None and c.rules:
        lines += [f"{c.rules[0].name}.grad now: {show_tensor(c.accumulated)}", ""]
    for s in c.sums:
        lines += [f"Paths meet at {s.name} (node {s.node}): the sum of {len(s.parts)} edges"]
        lines += [f"  {s.text}", ""]
    if c.note:
        lines.append(c.note)
    return "\n".join(lines).strip()


def _step(G: Graph, s: Step, total: int, index: dict[str, int]) -> dict[str, Any]:
    """One engine step: its heading, what arrived, and what it sent (hidden while predicting)."""
    sent = departure_lines(G, s)
    receivers = [index[d.receiver] for d in s.departures if d.receiver in index]
    if s.leaf is not None and s.leaf in index:
        receivers.append(index[s.leaf])
    return {
        "node": index[s.node],
        "title": f"Step {s.index + 1} of {total}: {who(G, s.node)}",
        "arrived": arrival_lines(G, s),
        "sent": sent,
        "receivers": receivers,
        "summed": s.summed,
    }


def _reach(D: Graph, ran: list[Step]) -> dict[str, float]:
    """Node -> the step after which it holds its gradient (-1: from the start).

    An op holds it once its own step ran, a leaf once its AccumulateGrad ran,
    an output from the start; a module node of a collapsed view half a step
    after the latest node it feeds (its ops run after those).
    """
    if not ran:
        return {}
    out: dict[str, float] = {}
    index = {s.node: float(s.index) for s in ran}  # a collapsed view keeps the traced steps
    for n in reversed(list(nx.topological_sort(D))):
        attrs = D.nodes[n]
        kind = attrs["kind"]
        if kind == "output":
            out[n] = -1.0
        elif n in index:
            out[n] = index[n]
        else:
            after = [out[s] for s in D.successors(n) if s in out]
            if after:  # a module's own ops ran after the last step shown, if not before
                out[n] = max(after) if kind == "leaf" else min(max(after) + 0.5, len(ran) - 1)
    return out


def _merge(edges: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parallel edges (``y * y``) drawn once, with their count."""
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for e in edges:
        key = (e["u"], e["v"])
        if key in merged:
            merged[key]["count"] += 1
        else:
            merged[key] = {**e, "count": 1}
    return list(merged.values())


def _finding(f: Any) -> dict[str, Any]:
    get = f.get if isinstance(f, dict) else lambda k, d=None: getattr(f, k, d)
    return {
        "nodes": [str(n) for n in get("nodes", ()) or ()],
        "severity": str(get("severity", "warning")),
        "title": str(get("title", "")),
        "kind": str(get("kind", "")),
    }


def _short(s: TensorSummary | None) -> str | None:
    return short(s) if s is not None else None


def _short_or_dash(s: TensorSummary | None) -> str:
    return short(s) if s is not None else "–"


def _log_norm(s: TensorSummary | None) -> float | None:
    norm = s.get("norm") if s else None
    if norm is None or not math.isfinite(norm):
        return None
    return round(math.log10(norm), 4) if norm > 0 else -12.0
