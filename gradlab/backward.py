"""Run the real backward pass and write what flowed onto the graph.

A post-hook on every autograd Node sees, in the order the engine runs the
nodes, the gradient that arrived (``grad_outputs``) and the gradient it sent
down each input slot (``grad_inputs``). The hooks only keep references; the
summaries are made in one batch afterwards (:func:`gradlab.summarize_many`),
and the hooks are removed whatever happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradlab._gc import paused_gc
from gradlab.errors import TraceError
from gradlab.graph import Graph
from gradlab.summary import summarize_many
from gradlab.trace import Node, walk

# One hook call: (node index, gradients sent per input slot, gradients received per output).
_Call = tuple[int, Sequence[torch.Tensor | None], Sequence[torch.Tensor | None]]
Edges = list[tuple[str, str, int]]  # (producer id, consumer id, slot)


def backward(
    root: torch.Tensor,
    G: Graph,
    gradient: torch.Tensor | None = None,
    retain_graph: bool = False,
    create_graph: bool = False,
) -> Graph:
    """Run ``root.backward(gradient)`` for real and record it onto ``G``.

    ``G`` must come from :func:`gradlab.trace` with ``root`` among its roots.
    Every op node the engine ran gets ``step`` (its 0-based position in the
    engine's order) and ``grad`` (the gradient with respect to its output:
    what flowed into it). Every flow edge gets ``grad``: what the consumer's
    backward sent down that input slot; where two edges meet, the gradients
    are summed (``y * y``). Leaves get their accumulated ``.grad``. The
    values are PyTorch's own. Errors from PyTorch (a non-scalar root without
    ``gradient``, a graph already freed) propagate unchanged; see
    :func:`gradlab.explain`. Returns ``G``.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> y = (x ** 2).sum()
    >>> G = gradlab.backward(y, gradlab.trace(y))
    >>> [G.nodes[n]["op"] for n in gradlab.engine_order(G)]
    ['SumBackward0', 'PowBackward0', 'AccumulateGrad']
    >>> G.nodes["leaf0"]["grad"]["values"]
    [4.0, 6.0]
    """
    if root.grad_fn is None:
        raise TraceError(
            "This tensor has no grad_fn: it is a leaf, so backward() has no graph to run. "
            "Compute something from it first, e.g. (x ** 2).sum()."
        )
    with paused_gc():
        fns, ids, edges, root_edge = _align(root, G)
        calls: list[_Call] = []
        hooks = [
            fn.register_hook(lambda sent, arrived, i=i: calls.append((i, sent, arrived)))
            for i, fn in enumerate(fns)
        ]
        try:
            torch.autograd.backward(
                root, gradient, retain_graph=retain_graph, create_graph=create_graph
            )
        finally:
            for hook in hooks:
                hook.remove()
        seed = gradient if gradient is not None else torch.ones_like(root)
        _write(G, fns, ids, edges, calls, root_edge, seed)
    G.graph["backward"] = {"steps": len(calls), "retain_graph": retain_graph}
    return G


def _align(root: torch.Tensor, G: Graph) -> tuple[list[Node], list[str], Edges, tuple[str, str]]:
    """Pair every live node reachable from ``root`` with its id in ``G``.

    The root's op is found by its autograd sequence number. When ``G`` was
    traced from this root alone the walk orders agree and ids go by position;
    otherwise the live graph and ``G`` are walked in step, slot by slot. Either
    way every op name is checked.
    """
    fn0 = root.grad_fn
    start, out = _root_op(G, fn0, root.output_nr)
    fns, edges = walk([fn0])
    nodes = G.nodes
    if start == "fn0" and len(G.graph["roots"]) == 1:
        ids = [f"fn{i}" for i in range(len(fns))]
    else:
        ids = [""] * len(fns)
        ids[0] = start
        producer = {(v, k): u for u, v, k in G.in_edges(_op_ids(G), keys=True)}
        for child, parent, slot, _ in edges:  # a parent is always reached before its children
            ids[child] = producer.get((ids[parent], slot), "")
    for n, fn in zip(ids, fns, strict=True):
        if n not in nodes or nodes[n].get("op") != type(fn).__name__:
            raise TraceError(
                "The graph given does not match this tensor's autograd graph (was it traced "
                "from another run?). Trace again: G = gradlab.trace(root)."
            )
    return fns, ids, [(ids[c], ids[p], slot) for c, p, slot, _ in edges], (start, out)


def _root_op(G: Graph, fn0: Node, output: int) -> tuple[str, str]:
    """``(root's op id, output node id)``."""
    seq, op = fn0._sequence_nr(), type(fn0).__name__
    for out in G.graph.get("roots", []):
        for producer, _, data in G.in_edges(out, data=True):
            node = G.nodes[producer]
            if node.get("seq") == seq and node.get("op") == op and data["output"] == output:
                return str(producer), str(out)
    raise TraceError(
        "This tensor is not a root of the graph given: trace it first, "
        "G = gradlab.trace(root), then call gradlab.backward(root, G)."
    )


def _op_ids(G: Graph) -> list[str]:
    return [n for n, kind in G.nodes(data="kind") if kind == "op"]


def _write(
    G: Graph,
    fns: list[Node],
    ids: list[str],
    edges: Edges,
    calls: list[_Call],
    root_edge: tuple[str, str],
    seed: torch.Tensor,
) -> None:
    nodes, edge_attrs = G.nodes, G.edges
    for n in ids:
        nodes[n]["step"] = None
        nodes[n]["grad"] = None
    producer = {(v, slot): u for u, v, slot in edges}
    # (tensor, where, key): where[key] becomes the tensor's summary, all in one batch.
    jobs: list[tuple[torch.Tensor | None, Any, Any]] = []
    for step, (i, grad_inputs, grad_outputs) in enumerate(calls):
        n = ids[i]
        node = nodes[n]
        node["step"] = step
        arrived = grad_outputs[0] if grad_outputs else None
        jobs.append((arrived, node, "grad"))
        if len(grad_outputs) > 1:
            node["output_grads"] = [None] * len(grad_outputs)
            jobs += [(g, node["output_grads"], k) for k, g in enumerate(grad_outputs)]
        for slot, sent in enumerate(grad_inputs):
            u = producer.get((n, slot))
            if u is not None:
                jobs.append((sent, edge_attrs[u, n, slot], "grad"))
        if node["op"] == "AccumulateGrad":
            (leaf,) = G.predecessors(n)  # leaf -> AccumulateGrad carries what arrived
            jobs.append((arrived, edge_attrs[leaf, n, 0], "grad"))
            jobs.append((fns[i].variable.grad, nodes[leaf], "grad"))
    out = root_edge[1]
    jobs.append((seed, nodes[out], "grad"))
    jobs.append((seed, edge_attrs[root_edge[0], out, 0], "grad"))
    summaries = summarize_many([t for t, _, _ in jobs])
    for (_, where, key), summary in zip(jobs, summaries, strict=True):
        where[key] = summary
