"""Walk a tensor's ``grad_fn`` graph into a networkx graph of facts.

The walk is iterative (a 100,000-node chain is fine) and visits
``next_functions`` in slot order, so the same program always gives the same
node ids. The live autograd objects stay inside this module and
:mod:`gradlab.backward`; the graph gets only facts (see :mod:`gradlab.graph`).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from gradlab._gc import paused_gc
from gradlab.errors import TraceError
from gradlab.graph import Arg, EdgeAttrs, Graph, NodeAttrs, assemble
from gradlab.record import RECORD_KEY
from gradlab.summary import dtype_name, summarize_many

Node = Any  # torch.autograd.graph.Node; its C++ subclasses are not visible to typing

_FREED = "saved tensors were freed"


def trace(
    *roots: torch.Tensor,
    params: Mapping[str, torch.Tensor] | None = None,
    model: torch.nn.Module | None = None,
    show_saved: bool = False,
    values: bool = True,
    histograms: bool = False,
) -> Graph:
    """Trace the backward graph reachable from ``roots`` into a ``MultiDiGraph``.

    Parameters
    ----------
    *roots
        Tensors to trace from, usually a loss. Each needs a ``grad_fn`` or
        ``requires_grad=True``.
    params
        Names for tensors: parameters, inputs or intermediate results
        (``{"x": x, "y": y}``). A leaf gets the name of its tensor; an op node
        the name of the tensor it produced.
    model
        A module whose ``named_parameters()`` name the leaves
        (``"0.weight"``).
    show_saved
        Add a node of kind ``"saved"`` for every tensor an op saved for its
        backward, with an edge into the op, and ``saved_bytes`` on the op.
        Needs the graph not yet freed by ``backward()``.
    values
        Summarise tensors (see :class:`gradlab.TensorSummary`): ``value`` of
        leaves, outputs, saved tensors and recorded ops, and the ``grad``
        leaves already hold. ``False`` keeps only shapes, names and modules,
        which is faster for big graphs.
    histograms
        Add a histogram (``hist``) to the summaries of tensors with more than
        64 elements.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> G = gradlab.trace((x * x).sum(), params={"x": x})
    >>> [G.nodes[n]["op"] for n in ("fn0", "fn1", "fn2")]
    ['SumBackward0', 'MulBackward0', 'AccumulateGrad']
    >>> sorted(G.edges(keys=True))[2:4]  # x feeds both input slots of the multiply
    [('fn2', 'fn1', 0), ('fn2', 'fn1', 1)]
    >>> G.nodes["leaf0"]["name"], G.nodes["fn2"]["op"]
    ('x', 'AccumulateGrad')
    """
    if not roots:
        raise TraceError("trace() needs at least one tensor, e.g. gradlab.trace(loss).")
    for i, root in enumerate(roots):
        _check_root(root, i)
    with paused_gc():
        starts = [r.grad_fn for r in roots if r.grad_fn is not None]
        fns, edges = walk(starts)
        builder = _Builder(_Names(params, model), values, histograms)
        ids = builder.add_ops(fns)
        builder.add_edges((ids[c], ids[p], slot, output) for c, p, slot, output in edges)
        builder.add_roots(roots, ids, {fn: i for i, fn in enumerate(fns)})
        if show_saved:
            builder.add_saved(fns, ids)
        return builder.finish()


def walk(starts: Sequence[Node]) -> tuple[list[Node], list[tuple[int, int, int, int]]]:
    """Every autograd Node reachable from ``starts``, and the edges between them.

    Returns the nodes in discovery order and the edges as
    ``(child index, parent index, slot, output_nr)``: the parent's backward
    sends a gradient for input ``slot`` to output ``output_nr`` of the child.
    Iterative, so deep graphs cannot hit the recursion limit.
    """
    index: dict[Node, int] = {}
    order: list[Node] = []
    edges: list[tuple[int, int, int, int]] = []
    stack: list[Node] = []
    for fn in starts:
        if fn not in index:
            index[fn] = len(order)
            order.append(fn)
            stack.append(fn)
    while stack:
        fn = stack.pop()
        i = index[fn]
        for slot, (child, output) in enumerate(fn.next_functions):
            if child is None:
                continue
            j = index.get(child)
            if j is None:
                j = index[child] = len(order)
                order.append(child)
                stack.append(child)
            edges.append((j, i, slot, output))
    return order, edges


def op_name(fn: Node) -> str:
    """The class name of an autograd Node: ``"MulBackward0"``, ``"AccumulateGrad"``."""
    return type(fn).__name__


def saved_tensors(fn: Node) -> list[tuple[str, torch.Tensor]]:
    """The tensors ``fn`` saved for its backward, as ``(attribute, tensor)``.

    Raises :class:`TraceError` when ``backward()`` already freed them.
    """
    found: list[tuple[str, torch.Tensor]] = []
    try:
        if hasattr(fn, "saved_tensors"):  # custom autograd.Function: ctx.save_for_backward
            found += [(f"saved_tensors[{i}]", t) for i, t in enumerate(fn.saved_tensors)]
        for attr in dir(fn):
            if not attr.startswith("_saved_"):
                continue
            value = getattr(fn, attr)
            name = attr.removeprefix("_saved_")
            if isinstance(value, torch.Tensor):
                found.append((name, value))
            elif isinstance(value, tuple | list):
                found += [
                    (f"{name}[{i}]", t) for i, t in enumerate(value) if isinstance(t, torch.Tensor)
                ]
    except RuntimeError as exc:
        if "freed" in str(exc) or "second time" in str(exc):
            raise TraceError(
                f"The {_FREED} by backward(): trace with show_saved=True before calling "
                "backward(), or call backward(retain_graph=True)."
            ) from exc
        raise
    return found


def op_args(fn: Node) -> dict[str, Arg]:
    """The non-tensor values ``fn`` saved for its backward, without the ``_saved_`` prefix.

    Pow's ``exponent``, add's ``alpha``, sum's ``dim``, softmax's ``dim``,
    leaky ReLU's ``negative_slope``, dropout's ``p``... Tuples become lists,
    dtypes and devices strings; tensors and ``None`` are left out. PyTorch hands
    negative int64 values (``dim=-1``, ``ignore_index=-100``) through as
    unsigned; they are turned back. Scalars outlive ``backward()``, so this
    works on a freed graph too.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, 3, requires_grad=True)
    >>> op_args((x ** 3).grad_fn), op_args(x.sum(-1).grad_fn)["dim"]
    ({'exponent': 3}, [-1])
    """
    saved = _SAVED_ATTRS.get(type(fn))
    if saved is None:  # dir() is slow: once per class
        saved = _SAVED_ATTRS[type(fn)] = _Saved([a for a in dir(fn) if a.startswith("_saved_")])
    if not saved.names:
        return {}
    try:
        values = saved.get(fn)
    except RuntimeError:  # a saved tensor that backward() freed: find which, skip it from now
        for attr in saved.names:
            try:
                getattr(fn, attr)
            except RuntimeError:
                saved.skip(attr)
        return op_args(fn)
    found: dict[str, Arg] = {}
    for key, value in zip(saved.keys, values if len(saved.names) > 1 else (values,), strict=True):
        kind = type(value)
        if kind is int and value < _BIG:
            found[key] = value
        elif kind is tuple and value and type(value[0]) is int and _plain(value):
            found[key] = list(value)  # sizes, dims: the elements of one attribute share a type
        elif value is not None:
            arg = _arg(value)
            if arg is _TENSOR:
                saved.skip("_saved_" + key)  # this attribute of this class never holds a scalar
            elif arg is not None:
                found[key] = arg
    return found


def _plain(ints: tuple[Any, ...]) -> bool:
    """Whether a tuple that starts with an int holds only ints that need no turning back."""
    try:
        return bool(max(ints) < _BIG)
    except TypeError:  # something else among them: _arg sorts it out
        return False


class _Saved:
    """The ``_saved_`` attributes of one autograd Node class worth reading, and a getter."""

    def __init__(self, names: list[str]) -> None:
        self.names: list[str] = []
        self.keys: list[str] = []
        self.get: Any = None
        self._read(names)

    def _read(self, names: list[str]) -> None:
        self.names = names
        self.keys = [name.removeprefix("_saved_") for name in names]
        self.get = operator.attrgetter(*names) if names else None

    def skip(self, name: str) -> None:
        """Read ``name`` no more: it holds tensors."""
        if name in self.names:
            self._read([n for n in self.names if n != name])


# autograd Node class -> what op_args reads of it
_SAVED_ATTRS: dict[type, _Saved] = {}
_TENSOR: Any = object()  # _arg's answer for a tensor (or tensors)
_BIG, _WRAP = 1 << 63, 1 << 64  # int64 values that came through as uint64
_NAMED = (torch.dtype, torch.device, torch.layout, torch.memory_format)


def _arg(value: object) -> Any:
    """``value`` as a JSON-able argument, ``_TENSOR``, or ``None`` to leave it out."""
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return value - _WRAP if value >= _BIG else value
    if isinstance(value, torch.Tensor):
        return _TENSOR
    if isinstance(value, tuple | list):
        items = [_arg(v) for v in value]
        if any(item is _TENSOR for item in items):
            return _TENSOR
        return None if any(item is None for item in items) else items
    if isinstance(value, _NAMED):
        return str(value)
    return None


def _check_root(root: object, i: int) -> None:
    if not isinstance(root, torch.Tensor):
        raise TraceError(f"trace() takes tensors; argument {i} is a {type(root).__name__}.")
    if root.grad_fn is None and not root.requires_grad:
        raise TraceError(
            f"Tensor {i} has no grad_fn and does not require grad, so autograd recorded no "
            "graph for it. Create its inputs with requires_grad=True (and compute it outside "
            "torch.no_grad()) before tracing."
        )


class _Names:
    """Names for tensors, from ``params`` and ``model``."""

    def __init__(
        self, params: Mapping[str, torch.Tensor] | None, model: torch.nn.Module | None
    ) -> None:
        self.leaves: dict[int, str] = {}
        self.outputs: dict[tuple[Node, int], str] = {}
        self._keep: list[torch.Tensor] = []  # ids stay valid while we hold the tensors
        if model is not None:
            for name, p in model.named_parameters():
                self._add(name, p)
        for name, t in (params or {}).items():
            if isinstance(t, torch.Tensor):
                self._add(name, t)

    def _add(self, name: str, t: torch.Tensor) -> None:
        self._keep.append(t)
        if t.grad_fn is None:
            self.leaves.setdefault(id(t), name)
        else:
            self.outputs.setdefault((t.grad_fn, t.output_nr), name)

    def leaf(self, t: torch.Tensor) -> str | None:
        return self.leaves.get(id(t))

    def output(self, fn: Node, output: int = 0) -> str | None:
        return self.outputs.get((fn, output))


class _Builder:
    """Collects nodes and edges, then adds them to the graph and summarises in one batch."""

    def __init__(self, names: _Names, values: bool, histograms: bool) -> None:
        self.names = names
        self.values = values
        self.histograms = histograms
        self.nodes: list[tuple[str, NodeAttrs]] = []
        # (u, v, key, attrs); the key is the consumer's input slot, unique per pair.
        self.edges: list[tuple[str, str, int, EdgeAttrs]] = []
        self.pending: list[tuple[NodeAttrs, str, torch.Tensor]] = []  # attrs[key] = summary
        self.leaf_of: dict[int, str] = {}  # id(leaf tensor) -> leaf node id
        self.roots: list[str] = []

    def add_ops(self, fns: Sequence[Node]) -> list[str]:
        """One op node per autograd Node (a tight loop: this runs once per node)."""
        ids = [f"fn{i}" for i in range(len(fns))]
        nodes, pending, values = self.nodes, self.pending, self.values
        output_names = self.names.outputs
        for n, fn in zip(ids, fns, strict=True):
            op = type(fn).__name__
            try:
                meta = fn._input_metadata
            except (AttributeError, RuntimeError):
                meta = ()
            if meta:
                m = meta[0]
                attrs: NodeAttrs = {
                    "kind": "op",
                    "op": op,
                    "label": op,
                    "outputs": len(meta),
                    "shape": list(m.shape),
                    "dtype": dtype_name(m.dtype),
                    "device": _device_name(m.device),
                }
            else:
                attrs = {"kind": "op", "op": op, "label": op, "outputs": 0}
            nodes.append((n, attrs))
            if values:
                attrs["value"] = None  # filled in below when record() kept it
            if op == "AccumulateGrad":
                attrs["seq"] = attrs["name"] = attrs["module"] = attrs["module_type"] = None
                attrs["args"] = {}
                self._add_leaf(fn.variable, n)
                continue
            attrs["seq"] = fn._sequence_nr()
            attrs["args"] = op_args(fn)
            attrs["name"] = output_names.get((fn, 0)) if output_names else None
            entries = fn.metadata.get(RECORD_KEY)
            entry = entries.get(0) if entries else None
            if entry is None:
                attrs["module"] = attrs["module_type"] = None
            else:
                attrs["module"], attrs["module_type"] = entry.module, entry.module_type
                if values and entry.current():
                    pending.append((attrs, "value", entry.value))
        return ids

    def _add_leaf(self, t: torch.Tensor, consumer: str | None) -> str:
        n = f"leaf{len(self.leaf_of)}"
        self.leaf_of[id(t)] = n
        name = self.names.leaf(t)
        attrs: NodeAttrs = {
            "kind": "leaf",
            "label": name or "leaf",
            "name": name,
            "requires_grad": t.requires_grad,
            **_tensor_facts(t),
        }
        self.nodes.append((n, attrs))
        if self.values:
            self.pending.append((attrs, "value", t))
            if t.grad is not None:
                self.pending.append((attrs, "grad", t.grad))
        if consumer is not None:
            self.edges.append((n, consumer, 0, {"kind": "flow", "slot": 0, "output": 0}))
        return n

    def add_edges(self, edges: Iterable[tuple[str, str, int, int]]) -> None:
        self.edges += [
            (u, v, slot, {"kind": "flow", "slot": slot, "output": output})
            for u, v, slot, output in edges
        ]

    def add_roots(
        self, roots: Sequence[torch.Tensor], ids: list[str], index: dict[Node, int]
    ) -> None:
        seen: dict[int, str] = {}
        for i, root in enumerate(roots):
            if id(root) in seen:
                self.roots.append(seen[id(root)])
                continue
            n = f"out{len(seen)}"
            seen[id(root)] = n
            self.roots.append(n)
            fn = root.grad_fn
            name = (
                self.names.output(fn, root.output_nr) if fn is not None else self.names.leaf(root)
            )
            attrs: NodeAttrs = {
                "kind": "output",
                "label": name or ("out" if len(roots) == 1 else f"out{i}"),
                "name": name,
                **_tensor_facts(root),
            }
            self.nodes.append((n, attrs))
            if self.values:
                self.pending.append((attrs, "value", root))
            if fn is not None:
                producer, output = ids[index[fn]], root.output_nr
            else:
                producer, output = self.leaf_of.get(id(root)) or self._add_leaf(root, None), 0
            self.edges.append((producer, n, 0, {"kind": "flow", "slot": 0, "output": output}))

    def add_saved(self, fns: Sequence[Node], ids: list[str]) -> None:
        count = 0
        attrs_of = dict(self.nodes)
        for fn, consumer in zip(fns, ids, strict=True):
            total = 0
            for slot, (attr, t) in enumerate(saved_tensors(fn)):
                n = f"saved{count}"
                count += 1
                total += t.numel() * t.element_size()
                attrs: NodeAttrs = {
                    "kind": "saved",
                    "label": attr,
                    "attr": attr,
                    **_tensor_facts(t),
                }
                self.nodes.append((n, attrs))
                if self.values:
                    self.pending.append((attrs, "value", t))
                self.edges.append((n, consumer, slot, {"kind": "saved", "slot": slot, "output": 0}))
            attrs_of[consumer]["saved_bytes"] = total

    def finish(self) -> Graph:
        summaries = summarize_many([t for _, _, t in self.pending], self.histograms)
        for (attrs, key, _), summary in zip(self.pending, summaries, strict=True):
            attrs[key] = summary  # type: ignore[literal-required]
        return assemble(self.nodes, self.edges, roots=self.roots)


@functools.cache
def _device_name(device: torch.device) -> str:
    return str(device)


def _tensor_facts(t: torch.Tensor) -> NodeAttrs:
    return {"shape": list(t.shape), "dtype": dtype_name(t.dtype), "device": _device_name(t.device)}
