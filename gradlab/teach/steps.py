"""The backward pass one engine step at a time, read off a graph :func:`gradlab.backward` filled.

:func:`steps` lists what each step of the real engine did: the op it ran, the
gradient pieces that arrived at its output (several when paths meet, as in
``y * y``, and then summed), and the gradient it sent to each input. An
``AccumulateGrad`` step adds what arrived to its leaf's ``.grad``.

:func:`as_of` is the graph as it stood during step ``k``: gradients of the
steps not yet run are taken away, so a picture or a hover shows no more than
the engine had computed. :func:`reached` tells which nodes hold a gradient by
then (for colouring).

Examples
--------
>>> import torch, gradlab
>>> x = torch.tensor([2.0, 3.0], requires_grad=True)
>>> y = x * x
>>> loss = y.sum()
>>> G = gradlab.trace(loss, params={"x": x, "y": y})
>>> _ = gradlab.backward(loss, G)
>>> [(s.index, s.op, len(s.arrivals), len(s.departures)) for s in steps(G)]
[(0, 'SumBackward0', 1, 1), (1, 'MulBackward0', 1, 2), (2, 'AccumulateGrad', 2, 0)]
>>> steps(G)[2].leaf, steps(G)[2].incoming["values"]
('leaf0', [4.0, 6.0])
"""

from __future__ import annotations

from dataclasses import dataclass

from gradlab.core.errors import GradLabError
from gradlab.core.graph import ACCUMULATE_GRAD, Graph, TensorSummary, engine_order


@dataclass(frozen=True)
class Arrival:
    """A gradient piece that reached an op's output along one edge."""

    sender: str  # the node whose backward sent it (the op that consumed this output in forward)
    slot: int  # the sender's input slot
    output: int  # which output of the receiving op it is for
    grad: TensorSummary | None


@dataclass(frozen=True)
class Departure:
    """The gradient an op's backward sent to one of its inputs."""

    receiver: str  # the node that produced this input in forward (an op, or a leaf)
    slot: int
    grad: TensorSummary | None


@dataclass(frozen=True)
class Step:
    """One step of the backward engine: an op run, what came in and what went out."""

    index: int  # 0-based position in the engine's order
    node: str
    op: str
    name: str | None  # the variable the op's output was bound to, where known
    arrivals: tuple[Arrival, ...]  # several when paths meet: the engine sums them
    incoming: TensorSummary | None  # their sum: the gradient w.r.t. the op's output
    departures: tuple[Departure, ...]  # one per input slot that needs a gradient
    leaf: str | None = None  # AccumulateGrad: the leaf whose .grad it adds to
    leaf_grad: TensorSummary | None = None  # that leaf's .grad after the whole pass

    outgrads: tuple[TensorSummary | None, ...] = ()  # ops with several outputs: one per output

    @property
    def summed(self) -> bool:
        """Whether several gradient pieces met at one output here and were added up."""
        outputs = [a.output for a in self.arrivals]
        return len(outputs) != len(set(outputs))

    def pieces(self) -> dict[int, tuple[tuple[Arrival, ...], TensorSummary | None]]:
        """Per output of the op: the pieces that arrived and their sum."""
        totals = self.outgrads or (self.incoming,)
        grouped: dict[int, tuple[Arrival, ...]] = {}
        for a in self.arrivals:
            grouped[a.output] = (*grouped.get(a.output, ()), a)
        return {i: (grouped[i], totals[i] if i < len(totals) else None) for i in sorted(grouped)}


def steps(G: Graph) -> list[Step]:
    """Every step the engine ran, in its order; raises if ``backward`` did not run on ``G``."""
    if not G.graph.get("backward"):
        raise GradLabError(
            "This graph has no backward pass yet: call gradlab.backward(root, G) "
            "(or loss.backward() in a program) before stepping through it."
        )
    return [_step(G, i, n) for i, n in enumerate(engine_order(G))]


def _step(G: Graph, index: int, n: str) -> Step:
    attrs = G.nodes[n]
    arrivals = tuple(
        Arrival(v, int(e.get("slot", k)), int(e.get("output", 0)), e.get("grad"))
        for _, v, k, e in sorted(G.out_edges(n, keys=True, data=True), key=_order)
        if e.get("kind", "flow") == "flow"
    )
    departures = tuple(
        Departure(u, int(e.get("slot", k)), e.get("grad"))
        for u, _, k, e in sorted(G.in_edges(n, keys=True, data=True), key=_slot)
        if e.get("kind", "flow") == "flow"
    )
    leaf = None
    leaf_grad = None
    if attrs.get("op") == ACCUMULATE_GRAD:
        leaf = next((u for u, _ in G.in_edges(n) if G.nodes[u]["kind"] == "leaf"), None)
        leaf_grad = G.nodes[leaf].get("grad") if leaf is not None else None
        departures = ()  # the edge from the leaf stands for the accumulation, not a send
    return Step(
        index=index,
        node=n,
        op=str(attrs.get("op")),
        name=attrs.get("name"),
        arrivals=arrivals,
        incoming=attrs.get("grad"),
        departures=departures,
        leaf=leaf,
        leaf_grad=leaf_grad,
        outgrads=tuple(attrs.get("output_grads") or ()),
    )


def _order(edge: tuple[str, str, int, dict[str, object]]) -> tuple[str, int]:
    return edge[1], edge[2]


def _slot(edge: tuple[str, str, int, dict[str, object]]) -> tuple[int, str]:
    return edge[2], edge[0]


def reached(G: Graph, k: int) -> set[str]:
    """Nodes that hold a gradient once step ``k`` has run (``k = -1``: before the first).

    An op holds one once its step ran; a leaf once its ``AccumulateGrad`` ran;
    a traced output from the start (the gradient backward starts from).
    """
    done = {n for n, s in G.nodes(data="step") if s is not None and s <= k}
    out = set(done)
    for n, kind in G.nodes(data="kind"):
        if kind == "output" or (kind == "leaf" and any(v in done for v in G.successors(n))):
            out.add(n)
    return out


def as_of(G: Graph, k: int, *, sent: bool = True) -> Graph:
    """A copy of ``G`` with only the gradients the engine had computed during step ``k``.

    The op of step ``k`` keeps the gradient that arrived at it; what it sent
    to its inputs is kept when ``sent`` (hidden while a student predicts it).
    Later steps keep no gradient at all.
    """
    H = G.copy()  # fresh attribute dicts: popping keys leaves G as it was
    order = engine_order(G)
    current = order[k] if 0 <= k < len(order) else None
    holds = reached(G, k if sent else k - 1)
    if current is not None:
        holds.add(current)
    ran = {n for n, s in G.nodes(data="step") if s is not None and (s < k or (sent and s == k))}
    for n, attrs in H.nodes(data=True):
        if n not in holds:
            attrs.pop("grad", None)
            attrs.pop("output_grads", None)
            attrs.pop("step", None)
    for _, v, attrs in H.edges(data=True):
        if attrs.get("kind", "flow") == "flow" and H.nodes[v]["kind"] != "output" and v not in ran:
            attrs.pop("grad", None)
    return H
