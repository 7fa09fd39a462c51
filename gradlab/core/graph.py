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
* ``"module"``: in a collapsed view (:func:`gradlab.core.collapse.collapse`), one
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

import functools
import types
import typing
from collections.abc import Collection, Iterable
from typing import Literal, TypeAlias, TypedDict

import networkx as nx

Graph: TypeAlias = nx.MultiDiGraph  # every GradLab graph; node ids are strings

#: The op of the node that writes a leaf's ``.grad`` (``torch.autograd.graph``'s name).
ACCUMULATE_GRAD = "AccumulateGrad"

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
    nodes: Collection[tuple[str, NodeAttrs]],
    edges: Iterable[tuple[str, str, int, EdgeAttrs]],
    **graph_attrs: object,
) -> Graph:
    """Build a ``MultiDiGraph`` from node and ``(u, v, key, attrs)`` edge lists.

    Equal to ``add_nodes_from`` then ``add_edges_from``, without their
    per-item checks and attribute copies: the attribute dicts given become the
    graph's own. Every edge end must be among ``nodes``, and keys unique per
    pair. It fills networkx's documented adjacency structure (dict of dicts of
    key dicts, the key dict shared between successors and predecessors); a
    test compares the result with networkx's own construction.

    Examples
    --------
    >>> G = assemble([("a", {"kind": "leaf", "label": "a"}), ("b", {"kind": "op", "label": "b"})],
    ...              [("a", "b", 0, {"kind": "flow", "slot": 0})], roots=["b"])
    >>> list(G.edges(keys=True, data="slot")), G.graph["roots"]
    ([('a', 'b', 0, 0)], ['b'])
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


# Fast reads of a graph's own dicts, for code that touches every node or edge. They
# are networkx's documented adjacency structure, reached here and nowhere else; read
# them, and write only into the attribute dicts (as ``G.nodes[n][key] = value`` does).
Adjacency: TypeAlias = dict[str, dict[str, dict[int, EdgeAttrs]]]  # u -> v -> key -> attrs


def node_dicts(G: Graph) -> dict[str, NodeAttrs]:
    """``n -> attribute dict`` for every node, the graph's own dicts: ``G.nodes[n]``
    without the view.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.ones(2, requires_grad=True)
    >>> G = gradlab.trace((x * 3).sum())
    >>> node_dicts(G)["fn1"] is G.nodes["fn1"]
    True
    """
    nodes: dict[str, NodeAttrs] = G._node
    return nodes


def succ_dicts(G: Graph) -> Adjacency:
    """``u -> v -> key -> attribute dict``, the graph's own: ``G.succ`` without the views.

    ``succ_dicts(G)[u]`` holds the successors of ``u``; the attribute dicts are
    the edges' own, so a value written into one is the edge's attribute.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.ones(2, requires_grad=True)
    >>> G = gradlab.trace((x * 3).sum())
    >>> list(succ_dicts(G)["fn1"]), succ_dicts(G)["fn1"]["fn0"][0] is G.edges["fn1", "fn0", 0]
    (['fn0'], True)
    """
    succ: Adjacency = G._succ
    return succ


def pred_dicts(G: Graph) -> Adjacency:
    """``v -> u -> key -> attribute dict``, the graph's own: ``G.pred`` without the views.

    The key dicts are the same objects as in :func:`succ_dicts`.
    """
    pred: Adjacency = G._pred
    return pred


def edge_dicts(G: Graph) -> dict[tuple[str, str, int], EdgeAttrs]:
    """``(u, v, key) -> attribute dict`` for every edge, the graph's own dicts.

    The same as ``{(u, v, k): d for u, v, k, d in G.edges(keys=True, data=True)}``
    without the view machinery, for code that touches every edge.
    """
    return {
        (u, v, key): attrs
        for u, targets in succ_dicts(G).items()
        for v, keys in targets.items()
        for key, attrs in keys.items()
    }


#: How deep a loaded graph's nested lists may go (a tensor has at most 64 dimensions).
MAX_NESTING = 66


def check_graph(G: Graph) -> None:
    """Check that ``G`` is a GradLab graph as declared above; a ``ValueError`` names the
    first node, edge or attribute that is not.

    For graphs read from files (:func:`gradlab.load`): string node ids, a ``kind`` and
    a ``label`` on every node, integer edge keys, and every declared attribute of
    its declared type (summaries complete, kinds among the known ones). Attributes
    that are not declared are left as they are.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.ones(2, requires_grad=True)
    >>> check_graph(gradlab.trace((x * 3).sum()))
    >>> G = gradlab.trace((x * 3).sum()); G.nodes["fn0"]["step"] = "first"
    >>> check_graph(G)
    Traceback (most recent call last):
    ...
    ValueError: node 'fn0': its 'step' is 'first', not int | None
    """
    for n, attrs in G.nodes(data=True):
        if not isinstance(n, str):
            raise ValueError(f"node id {_short(n)} is not a string")
        for key in ("kind", "label"):
            if key not in attrs:
                raise ValueError(f"node {_short(n)} has no '{key}'")
        _check_attrs(attrs, "node", f"node {_short(n)}")
    for u, v, key, attrs in G.edges(keys=True, data=True):
        where = f"edge {_short(u)} -> {_short(v)}"
        if not isinstance(key, int) or isinstance(key, bool):
            raise ValueError(f"{where}: its key {_short(key)} is not an integer")
        _check_attrs(attrs, "edge", where)
    roots = G.graph.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) and r in G for r in roots):
        raise ValueError(f"the graph's 'roots' {_short(roots)} are not ids of its nodes")
    types = G.graph.get("module_types", {})
    if not isinstance(types, dict) or not all(
        isinstance(k, str) and isinstance(t, str) for k, t in types.items()
    ):
        raise ValueError("the graph's 'module_types' is not a table of names")


@functools.cache
def _declared() -> dict[str, dict[str, object]]:
    """The declared attribute types, the recursive aliases as markers."""
    local = {"NestedFloats": _NestedFloats, "Arg": _Arg, "TensorSummary": TensorSummary}
    return {
        "node": typing.get_type_hints(NodeAttrs, localns=local),
        "edge": typing.get_type_hints(EdgeAttrs, localns=local),
        "summary": typing.get_type_hints(TensorSummary, localns=local),
    }


class _NestedFloats:
    """Marker for :data:`NestedFloats`: a number or nested lists of numbers."""


class _Arg:
    """Marker for :data:`Arg`: a scalar, a string or nested lists of them."""


def _check_attrs(attrs: dict[str, object], kind: str, where: str) -> None:
    hints, checks = _declared()[kind], _checks(kind)
    for key, value in attrs.items():
        check = checks.get(key)
        if check is None or check(value, 0):
            continue
        hint = hints[key]
        summaries = [h for h in typing.get_args(hint) or (hint,) if typing.is_typeddict(h)]
        if isinstance(value, dict) and summaries:
            fields = _declared()["summary"]
            missing = [f for f in fields if f not in value]
            if missing:
                raise ValueError(f"{where}: its '{key}' summary has no {', '.join(missing)}")
            bad = next(f for f, h in fields.items() if not _matches(value[f], h, 1))
            raise ValueError(
                f"{where}: its '{key}' summary has '{bad}' {_short(value[bad])}, "
                f"not {_hint_name(fields[bad])}"
            )
        if isinstance(value, list) and typing.get_origin(hint) is list:
            item = typing.get_args(hint)[0]
            bad_item = next(v for v in value if not _matches(v, item, 1))
            raise ValueError(
                f"{where}: its '{key}' holds {_short(bad_item)}, not {_hint_name(item)}"
            )
        raise ValueError(f"{where}: its '{key}' is {_short(value)}, not {_hint_name(hint)}")


def _matches(value: object, hint: object, depth: int) -> bool:
    return _checker(hint)(value, depth)


@functools.cache
def _checks(kind: str) -> dict[str, _Check]:
    return {key: _checker(hint) for key, hint in _declared()[kind].items()}


_Check: TypeAlias = "typing.Callable[[object, int], bool]"


@functools.cache
def _checker(hint: object) -> _Check:
    """A function telling whether a value (at a nesting depth) is of the declared type."""

    def deeper(depth: int) -> int:
        if depth >= MAX_NESTING:
            raise ValueError(f"a value is nested more than {MAX_NESTING} deep")
        return depth + 1

    if hint is _NestedFloats or hint is _Arg:
        # exact types: what JSON and tolist() give (bool is a number here, as in tolist())
        scalars = {int, float, bool} if hint is _NestedFloats else {int, float, bool, str}

        def nested(value: object, depth: int) -> bool:
            if type(value) is not list:
                return type(value) in scalars
            if all(type(v) in scalars for v in value):
                return True
            d = deeper(depth)
            return all(nested(v, d) for v in value)

        return nested
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return lambda value, depth: isinstance(value, str) and value in args
    if origin is typing.Union or origin is types.UnionType:
        options = [_checker(h) for h in args if h is not type(None)]
        if len(options) == 1 and len(args) == 2:  # X | None, most declared attributes
            (only,) = options
            return lambda value, depth: value is None or only(value, depth)
        options = [_checker(h) for h in args]
        return lambda value, depth: any(check(value, depth) for check in options)
    if origin is list:
        item = _checker(args[0])

        def listed(value: object, depth: int) -> bool:
            d = deeper(depth)
            return isinstance(value, list) and all(item(v, d) for v in value)

        return listed
    if origin is dict:
        entry = _checker(args[1])

        def table(value: object, depth: int) -> bool:
            d = deeper(depth)
            return isinstance(value, dict) and all(
                isinstance(k, str) and entry(v, d) for k, v in value.items()
            )

        return table
    if typing.is_typeddict(hint):
        fields = [(k, _checker(h)) for k, h in _declared()["summary"].items()]

        def summary(value: object, depth: int) -> bool:
            if not isinstance(value, dict):
                return False
            d = deeper(depth)
            return all(k in value and check(value[k], d) for k, check in fields)

        return summary
    if hint is type(None):
        return lambda value, depth: value is None
    if hint is float:
        return lambda value, depth: type(value) is float or type(value) is int
    if hint is int:
        return lambda value, depth: type(value) is int
    if isinstance(hint, type):
        kind = hint
        return lambda value, depth: isinstance(value, kind)
    raise TypeError(f"no check for the declared type {hint!r}")


def _hint_name(hint: object) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if isinstance(hint, type):
        return {"_NestedFloats": "numbers", "_Arg": "a saved argument"}.get(
            hint.__name__, hint.__name__
        )
    return (
        str(hint)
        .replace("typing.", "")
        .replace("gradlab.core.graph.", "")
        .replace("NoneType", "None")
    )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
