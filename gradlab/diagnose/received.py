"""The first node of a backward pass that sent a NaN or an inf, without a hook per node.

:func:`first_bad_sender` runs the pass ``torch.autograd.grad(root, stops, grad)``
would run, as one ``autograd.grad`` call whose inputs are a
:class:`~torch.autograd.graph.GradientEdge` for every input that the watched
nodes send to (as :mod:`gradlab.core.capture` does): the engine keeps those
gradients in C++, with no Python call per node. One fused norm over them
says which are not finite, and the engine order comes from the nodes'
sequence numbers: the engine runs a node after every node that sends to it,
and those were made later in forward, so it runs them by decreasing
sequence number.

Only inputs of nodes the pass runs anyway are captured, so the same nodes run
and receive the same gradients as in that pass; ``.grad`` is left as it was.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import torch
from torch.autograd.graph import GradientEdge

from gradlab.core.graph import ACCUMULATE_GRAD
from gradlab.core.walk import Edge, Node, discover

Key = tuple[int, int]  # (node index in walk order, input of that node)
AMBIGUOUS: Literal["ambiguous"] = "ambiguous"
Sender = tuple[Node, torch.Tensor] | Literal["ambiguous"] | None
K = TypeVar("K")


def first_bad_sender(
    root: torch.Tensor, grad: torch.Tensor | None, stops: list[torch.Tensor], watched: list[Node]
) -> Sender:
    """The first watched node, in engine order, to send a non-finite gradient, and what it sent.

    The pass is ``torch.autograd.grad(root, stops, grad)``, on a graph kept by
    ``retain_graph=True``; only the watched nodes are walked, so ``watched``
    should hold every node the pass runs (when a node outside might run,
    ``"ambiguous"``). What a node sent is known when it is the only
    sender to that input; when another node sends there too, ``"ambiguous"``
    (a hooked pass can tell). ``None`` when no watched node sent one.
    """
    assert root.grad_fn is not None
    fns, edges, outside = _walk_watched(root.grad_fn, set(watched))
    index = {fn: i for i, fn in enumerate(fns)}
    stop_keys = [k for t in stops if (k := _key_of(t, index, fns)) is not None]
    # A node leads to a stop only if it was made after it (a leaf's AccumulateGrad: any node).
    lowest = min((_made(fns[j]) for j, _ in stop_keys), default=-1)  # none seen: may be beyond
    if outside > lowest:
        return AMBIGUOUS  # an unwatched node might run (it may lead to a stop): not seen here
    parents: dict[int, list[int]] = {}
    for child, parent, _slot, _output in edges:
        parents.setdefault(child, []).append(parent)
    runs = _ancestors({j for j, _ in stop_keys}, parents)  # the nodes the pass executes
    live = runs | {j for j, _ in stop_keys}  # nodes whose inputs receive a gradient
    senders: dict[Key, list[int]] = {}
    sends: dict[int, list[Key]] = {}
    for child, parent, _slot, output in edges:  # in slot order for each parent
        if parent in runs and child in live:
            senders.setdefault((child, output), []).append(parent)
            sends.setdefault(parent, []).append((child, output))
    mine = {index[fn] for fn in watched if fn in index} & runs
    keys = list(dict.fromkeys([k for i in mine for k in sends.get(i, [])] + stop_keys))
    inputs: list[Any] = [
        fns[j].variable if type(fns[j]).__name__ == ACCUMULATE_GRAD else GradientEdge(fns[j], k)
        for j, k in keys
    ]
    if not inputs:
        return None  # no stop is reached: the pass runs nothing
    got = torch.autograd.grad(root, inputs, grad, allow_unused=True, retain_graph=True)
    arrived: dict[Key, torch.Tensor | None] = dict(zip(keys, got, strict=True))
    bad = not_finite(arrived)
    for i in sorted(mine, key=lambda i: -fns[i]._sequence_nr()):
        for key in sends.get(i, []):
            if key not in bad:
                continue
            g = arrived[key]
            if len(senders[key]) != 1 or g is None:  # another node's share is mixed in
                return AMBIGUOUS
            return fns[i], g
    return None


def _walk_watched(start: Node, watched: set[Node]) -> tuple[list[Node], list[Edge], int]:
    """The walk of :mod:`gradlab.core.walk` that goes on only through watched nodes (and the start).

    Returns the nodes, the edges ``(child, parent, slot, output_nr)`` and the
    highest sequence number of an unwatched node reached (-1 if none; leaves'
    AccumulateGrad nodes do not count): a node can lead to a stop only if its
    sequence number is higher than the stop's.
    """
    edges: list[Edge] = []
    fns = list(discover([start], through=watched.__contains__, edges=edges))
    outside = max(
        (
            fn._sequence_nr()
            for fn in fns[1:]
            if fn not in watched and type(fn).__name__ != ACCUMULATE_GRAD
        ),
        default=-1,
    )
    return fns, edges, outside


def _made(fn: Node) -> int:
    """A node's sequence number; -1 for AccumulateGrad (any node may send to a leaf)."""
    return -1 if type(fn).__name__ == ACCUMULATE_GRAD else int(fn._sequence_nr())


def _key_of(t: torch.Tensor, index: dict[Node, int], fns: list[Node]) -> Key | None:
    """Where the gradient of ``t`` arrives: its node's input, or its leaf's AccumulateGrad."""
    if t.grad_fn is not None:
        j = index.get(t.grad_fn)
        return (j, t.output_nr) if j is not None else None
    for j, fn in enumerate(fns):
        if type(fn).__name__ == ACCUMULATE_GRAD and fn.variable is t:
            return (j, 0)
    return None


def _ancestors(starts: set[int], parents: dict[int, list[int]]) -> set[int]:
    """Every node with a path to one of ``starts`` (its senders, theirs, and so on)."""
    found: set[int] = set()
    stack = list(starts)
    while stack:
        for p in parents.get(stack.pop(), []):
            if p not in found:
                found.add(p)
                stack.append(p)
    return found


def not_finite(arrived: dict[K, torch.Tensor | None]) -> set[K]:
    """The keys whose gradient holds a NaN or an inf: one fused norm, float64 so it cannot
    overflow for float32 gradients (the few inf norms are looked at again, for float64 ones)."""
    dense = [(key, g) for key, g in arrived.items()
             if g is not None and g.is_floating_point() and not g.is_sparse and g.numel() > 0
             and g.device.type != "meta"]  # fmt: skip
    other = [(key, g) for key, g in arrived.items() if g is not None and g.is_sparse]
    found = {key for key, g in other if not bool(torch.isfinite(g.coalesce().values()).all())}
    if not dense:
        return found
    norms = torch.stack(torch._foreach_norm([g for _, g in dense], 2, dtype=torch.float64))
    sure = (norms.isnan() | norms.isinf()).tolist()  # NaN: a NaN entry; inf: an inf entry...
    for (key, g), bad in zip(dense, sure, strict=True):
        # ...or, for a float64 gradient only, entries beyond 1e154 whose squares overflow.
        if bad and (g.dtype != torch.float64 or not bool(torch.isfinite(g).all())):
            found.add(key)
    return found
