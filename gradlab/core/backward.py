"""Run the real backward pass and write what flowed onto the graph.

A post-hook on every autograd Node sees, in the order the engine runs the
nodes, the gradient that arrived (``grad_outputs``) and the gradient it sent
down each input slot (``grad_inputs``). The hooks only keep references; the
summaries are made in one batch afterwards (:func:`gradlab.summarize_many`),
and the hooks are removed whatever happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradlab.core._gc import paused_gc
from gradlab.core.errors import TraceError
from gradlab.core.graph import (
    ACCUMULATE_GRAD,
    EdgeAttrs,
    Graph,
    NodeAttrs,
    TensorSummary,
    node_dicts,
    pred_dicts,
    succ_dicts,
)
from gradlab.core.summary import summarize_many
from gradlab.core.walk import Node, walk

# One hook call: (node index, gradients sent per input slot, gradients received per output).
_Call = tuple[int, Sequence[torch.Tensor | None], Sequence[torch.Tensor | None]]


def backward(
    root: torch.Tensor,
    G: Graph,
    gradient: torch.Tensor | None = None,
    retain_graph: bool = False,
    create_graph: bool = False,
    histograms: bool = False,
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
    :func:`gradlab.teach.explain`. ``histograms`` adds a histogram to the summaries
    of gradients with more than 64 elements. Returns ``G``.

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
        plan = _align(root, G)
        calls: list[_Call] = []
        hooks = [
            fn.register_hook(_step_only(calls, i) if i in plan.fresh else _keep_all(calls, i))
            for i, fn in enumerate(plan.fns)
        ]
        try:
            torch.autograd.backward(
                root, gradient, retain_graph=retain_graph, create_graph=create_graph
            )
        finally:
            for hook in hooks:
                hook.remove()
        seed = gradient if gradient is not None else torch.ones_like(root)
        _write(plan, calls, seed, histograms)
    G.graph["backward"] = {"steps": len(calls), "retain_graph": retain_graph}
    return G


def _keep_all(calls: list[_Call], i: int) -> Any:
    def hook(sent: Sequence[torch.Tensor | None], arrived: Sequence[torch.Tensor | None]) -> None:
        calls.append((i, sent, arrived))

    return hook


def _step_only(calls: list[_Call], i: int) -> Any:
    # Holding no reference lets AccumulateGrad keep the incoming tensor as .grad
    # (no copy); its summary is read from .grad afterwards, the very same bits.
    def hook(sent: Sequence[torch.Tensor | None], arrived: Sequence[torch.Tensor | None]) -> None:
        calls.append((i, (), ()))

    return hook


@dataclass
class _Plan:
    """The live nodes reachable from the root and the attribute dicts they write to."""

    fns: list[Node]
    nodes: list[NodeAttrs]  # per live node
    sent: list[list[tuple[int, EdgeAttrs]]]  # per live node: (input slot, in-edge)
    leaves: dict[int, tuple[EdgeAttrs, NodeAttrs]]  # AccumulateGrad: leaf edge, leaf node
    fresh: set[int]  # AccumulateGrad whose leaf has no .grad yet: .grad will be what arrives
    output: tuple[NodeAttrs, EdgeAttrs]  # the root's output node and its in-edge


def _align(root: torch.Tensor, G: Graph) -> _Plan:
    """Pair every live node reachable from ``root`` with its node in ``G``.

    The root's op is found by its autograd sequence number. When ``G`` was
    traced from this root alone the walk orders agree and ids go by position;
    otherwise the live graph and ``G`` are walked in step, slot by slot. Either
    way every op name is checked. Reads the graph's own dicts
    (:func:`gradlab.core.graph.node_dicts` and the adjacency): the attribute
    dicts written to are the graph's own.
    """
    fn0 = root.grad_fn
    start, out = _root_op(G, fn0, root.output_nr)
    fns, edges = walk([fn0])
    node_attrs, succ, pred = node_dicts(G), succ_dicts(G), pred_dicts(G)
    if start == "fn0" and len(G.graph["roots"]) == 1:
        ids = [f"fn{i}" for i in range(len(fns))]
    else:
        producer = {
            (v, key): u
            for v, sources in pred.items()
            for u, keys in sources.items()
            for key in keys
        }
        ids = [""] * len(fns)
        ids[0] = start
        for child, parent, slot, _ in edges:  # a parent is always reached before its children
            ids[child] = producer.get((ids[parent], slot), "")
    nodes: list[NodeAttrs] = []
    for n, fn in zip(ids, fns, strict=True):
        attrs = node_attrs.get(n)
        if attrs is None or attrs.get("op") != type(fn).__name__:
            raise TraceError(
                "The graph given does not match this tensor's autograd graph (was it traced "
                "from another run?). Trace again: G = gradlab.trace(root)."
            )
        nodes.append(attrs)
    leaves, fresh = {}, set()
    for i, fn in enumerate(fns):
        if type(fn).__name__ == ACCUMULATE_GRAD:
            (leaf,) = pred[ids[i]]
            leaves[i] = (succ[leaf][ids[i]][0], node_attrs[leaf])
            variable = fn.variable
            if variable.grad is None and not variable._post_accumulate_grad_hooks:
                fresh.add(i)
    sent: list[list[tuple[int, EdgeAttrs]]] = [[] for _ in fns]
    try:
        for child, parent, slot, _ in edges:
            sent[parent].append((slot, succ[ids[child]][ids[parent]][slot]))
    except KeyError:
        raise TraceError(
            "The graph given lacks an edge of this tensor's autograd graph (was it edited?). "
            "Trace again: G = gradlab.trace(root)."
        ) from None
    output = (node_attrs[out], succ[start][out][0])
    return _Plan(fns, nodes, sent, leaves, fresh, output)


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


def _write(plan: _Plan, calls: list[_Call], seed: torch.Tensor, histograms: bool) -> None:
    """Set ``step`` and summarise every gradient into its node or edge, in one batch."""
    for attrs in plan.nodes:
        attrs["step"] = None
        attrs["grad"] = None
    tensors: list[torch.Tensor | None] = []
    places: list[tuple[Any, Any]] = []  # where[key] = the summary of tensors[i]
    for step, (i, sent, arrived) in enumerate(calls):
        node = plan.nodes[i]
        node["step"] = step
        if i in plan.fresh:
            first = plan.fns[i].variable.grad
            arrived = (first,)
        else:
            first = arrived[0] if arrived else None
        tensors.append(first)
        places.append((node, "grad"))
        if len(arrived) > 1:
            per_output: list[TensorSummary | None] = [None] * len(arrived)
            node["output_grads"] = per_output
            tensors += arrived
            places += [(per_output, k) for k in range(len(arrived))]
        for slot, edge in plan.sent[i]:
            tensors.append(sent[slot] if slot < len(sent) else None)
            places.append((edge, "grad"))
        if i in plan.leaves:  # AccumulateGrad: the leaf edge carries what arrived
            edge, leaf = plan.leaves[i]
            tensors += [first, plan.fns[i].variable.grad]
            places += [(edge, "grad"), (leaf, "grad")]
    out_node, out_edge = plan.output
    tensors += [seed, seed]
    places += [(out_node, "grad"), (out_edge, "grad")]
    for (where, key), summary in zip(places, summarize_many(tensors, histograms), strict=True):
        where[key] = summary
