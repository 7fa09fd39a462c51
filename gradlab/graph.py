"""The one data model: a networkx ``MultiDiGraph`` of autograd facts.

Every GradLab graph is a :class:`networkx.MultiDiGraph` whose node and edge
attributes are the dictionaries declared here. They hold facts (numbers,
strings, small nested lists), never live tensors, so a graph pickles, caches
and exports cleanly.

Nodes
-----
``kind`` says what a node stands for:

* ``"op"``: one autograd Node (a ``grad_fn``), ``op`` is its class name such
  as ``"PowBackward0"`` or ``"AccumulateGrad"``.
* ``"leaf"``: a leaf tensor, held by an ``AccumulateGrad`` node.
* ``"output"``: a root tensor handed to :func:`gradlab.trace`.
* ``"saved"``: a tensor an op saved for its backward (``show_saved=True``).
* ``"module"``: in a collapsed view (:func:`gradlab.collapse.collapse`), one
  call of an ``nn.Module`` (or a fold of repeated ones) standing for the
  ``members`` of the traced graph.

Node ids are strings made from the kind and the position in the walk
(``"fn0"``, ``"leaf2"``, ``"out0"``, ``"saved5"``): the same program gives the
same ids.

Edges
-----
Edges point the way data flows forward (leaf -> AccumulateGrad -> ... -> the
root's op -> output), one per (producer, consumer, input slot). ``y = x * x``
has two edges from x's ``AccumulateGrad`` into the same ``MulBackward0``, with
``slot`` 0 and 1.

Graph attributes
----------------
``G.graph["roots"]`` lists the output node ids in the order given to
``trace``; ``G.graph["backward"]`` is set once :func:`gradlab.backward` ran.
``G.graph["module_types"]``, when present, maps module paths to class names
(``{"": "LeNet", "conv1": "Conv2d"}``), for modules that ran no op of their own.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, TypedDict

import networkx as nx

Graph: TypeAlias = nx.MultiDiGraph  # every GradLab graph; node ids are strings
NodeKind: TypeAlias = Literal["op", "leaf", "output", "saved", "module"]
EdgeKind: TypeAlias = Literal["flow", "saved"]
NestedFloats: TypeAlias = "float | int | bool | complex | list[NestedFloats]"
#: A non-tensor argument an op saved for its backward (see ``NodeAttrs.args``).
Arg: TypeAlias = "int | float | bool | str | list[Arg]"

#: The number of elements up to which a summary keeps the values themselves.
MAX_VALUES = 64
#: Bins of the histogram kept for bigger tensors.
HIST_BINS = 16


class TensorSummary(TypedDict):
    """What GradLab keeps of a tensor.

    The statistics cover the finite entries only; ``nan`` and ``inf`` count the
    others. They are ``None`` when there is no finite entry (or the tensor is
    empty). Complex tensors are summarised by their magnitudes.
    """

    shape: list[int]
    dtype: str
    numel: int
    norm: float | None
    mean: float | None
    min: float | None
    max: float | None
    nan: int
    inf: int
    values: NestedFloats | None  # the tensor itself (``tolist()``) when numel <= MAX_VALUES
    hist: list[int] | None  # bigger tensors: counts in HIST_BINS equal bins over [min, max]


class NodeAttrs(TypedDict, total=False):
    """Attributes of a graph node. Only ``kind`` and ``label`` are always set."""

    kind: NodeKind
    label: str  # short text for drawings: the op name, a variable name, "out"
    op: str | None  # class name of the autograd Node (kind "op")
    shape: list[int] | None  # of the tensor this node produces or holds
    dtype: str | None  # "float32"
    device: str | None  # "cpu", "cuda:0"
    name: str | None  # variable or parameter name: "x", "linear.weight"
    module: str | None  # dotted path of the nn.Module that produced it ("" = the top module)
    module_type: str | None  # that module's class name: "Linear"
    seq: int | None  # autograd sequence number: the order ops were created in forward
    # ops: the non-tensor values the op saved for its backward, by name without "_saved_":
    # {"exponent": 2}, {"alpha": 1}, {"dim": [1], "keepdim": False, ...}; {} for AccumulateGrad.
    # Read with the values (trace(values=True), the default); absent otherwise.
    args: dict[str, Arg]
    outputs: int  # number of outputs of an op (its backward takes one gradient per output)
    requires_grad: bool  # leaves: whether .grad is accumulated
    value: TensorSummary | None  # forward value (ops: needs gradlab.record)
    grad: TensorSummary | None  # ops: gradient w.r.t. its output; leaves: .grad
    output_grads: list[TensorSummary | None]  # ops with several outputs: one per output
    step: int | None  # 0-based position at which the backward engine ran the op
    saved_bytes: int  # ops with show_saved: bytes held by their saved tensors
    attr: str  # saved nodes: the attribute the op keeps it under ("self", "result")
    count: int  # module nodes: nodes of the traced graph inside
    ops: int  # module nodes: op nodes inside
    members: list[str]  # module nodes: ids of the nodes inside, in the traced graph
    repeat: int  # module nodes: how many identical sibling blocks a fold stands for (else 1)


class EdgeAttrs(TypedDict, total=False):
    """Attributes of a graph edge (producer -> consumer)."""

    kind: EdgeKind
    slot: int  # input slot of the consumer: position in its backward's next_functions
    output: int  # which output of the producer feeds the edge (output_nr)
    grad: TensorSummary | None  # gradient the consumer's backward sent down this edge
    count: int  # collapsed views: edges of the traced graph merged into this one


def op_nodes(G: Graph) -> list[str]:
    """Ids of the nodes of kind ``"op"``, in id order of the walk.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.ones(2, requires_grad=True)
    >>> G = gradlab.trace((x * 3).sum())
    >>> [G.nodes[n]["op"] for n in op_nodes(G)]
    ['SumBackward0', 'MulBackward0', 'AccumulateGrad']
    """
    return [n for n, kind in G.nodes(data="kind") if kind == "op"]


def nodes_of(G: Graph, kind: NodeKind) -> list[str]:
    """Ids of the nodes of one kind."""
    return [n for n, k in G.nodes(data="kind") if k == kind]


def without_saved(G: Graph) -> Graph:
    """``G`` without its saved-tensor nodes (a read-only view when it has any), for drawings.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> G = gradlab.trace((x.exp() * x).sum(), show_saved=True)
    >>> len(nodes_of(G, "saved")) > 0, nodes_of(without_saved(G), "saved")
    (True, [])
    """
    keep = [n for n, kind in G.nodes(data="kind") if kind != "saved"]
    return G.subgraph(keep) if len(keep) < G.number_of_nodes() else G


def saved_by(G: Graph, n: str) -> list[str]:
    """The saved-tensor nodes of op ``n``, in the order the op keeps them."""
    found = [(k, u) for u, _, k in G.in_edges(n, keys=True) if G.nodes[u]["kind"] == "saved"]
    return [u for _, u in sorted(found)]


def engine_order(G: Graph) -> list[str]:
    """Op node ids in the order the backward engine ran them (needs ``backward``)."""
    stepped = [(step, n) for n, step in G.nodes(data="step") if step is not None]
    return [n for _, n in sorted(stepped)]


def assemble(
    nodes: list[tuple[str, NodeAttrs]],
    edges: list[tuple[str, str, int, EdgeAttrs]],
    **graph_attrs: object,
) -> Graph:
    """Build a ``MultiDiGraph`` from node and ``(u, v, key, attrs)`` edge lists.

    Equal to ``add_nodes_from`` then ``add_edges_from``, without their
    per-item checks and attribute copies: the attribute dicts given become the
    graph's own. Every edge end must be among ``nodes``, and keys unique per
    pair. It fills networkx's documented adjacency structure (dict of dicts of
    key dicts, the key dict shared between successors and predecessors); a
    test compares the result with networkx's own construction.
    """
    G = nx.MultiDiGraph(**graph_attrs)
    succ: dict[str, dict[str, dict[int, EdgeAttrs]]] = {n: {} for n, _ in nodes}
    pred: dict[str, dict[str, dict[int, EdgeAttrs]]] = {n: {} for n, _ in nodes}
    for u, v, key, attrs in edges:
        keys = succ[u].get(v)
        if keys is None:
            keys = succ[u][v] = pred[v][u] = {}
        keys[key] = attrs
    G._node.update(nodes)
    G._succ.update(succ)  # G._adj is G._succ
    G._pred.update(pred)
    return G


def edge_dicts(G: Graph) -> dict[tuple[str, str, int], EdgeAttrs]:
    """``(u, v, key) -> attribute dict`` for every edge, the graph's own dicts.

    The same as ``{(u, v, k): d for u, v, k, d in G.edges(keys=True, data=True)}``
    without the view machinery, for code that touches every edge.
    """
    return {
        (u, v, key): attrs
        for u, targets in G._succ.items()
        for v, keys in targets.items()
        for key, attrs in keys.items()
    }
