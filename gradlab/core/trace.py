"""Walk a tensor's ``grad_fn`` graph into a networkx graph of facts.

The walk (:mod:`gradlab.core.walk`) is iterative (a 100,000-node chain is
fine) and visits ``next_functions`` in slot order, so the same program always
gives the same node ids. The live autograd objects stay inside this module and
:mod:`gradlab.backward`; the graph gets only facts (see :mod:`gradlab.core.graph`).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from gradlab.core._gc import paused_gc
from gradlab.core.errors import TraceError, nested_tensor_error
from gradlab.core.graph import ACCUMULATE_GRAD, Arg, EdgeAttrs, Graph, NodeAttrs, assemble
from gradlab.core.record import RECORD_KEY, _Entry
from gradlab.core.summary import dtype_name, summarize_many
from gradlab.core.walk import Node, walk

_FREED = "saved tensors were freed"


def trace(
    *roots: torch.Tensor,
    params: Mapping[str, torch.Tensor | torch.nn.Module] | None = None,
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
        the name of the tensor it produced. A module names its parameters
        after it: ``{"linear": nn.Linear(2, 1)}`` names ``linear.weight``.
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
        leaves already hold; and read the scalar arguments ops saved
        (``args``). ``False`` keeps only the structure (shapes, dtypes,
        devices, names, modules, sequence numbers), which is faster for big
        graphs.
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
        builder = _Builder(_Names(params, model), values, histograms)
        fns = builder.walk([r.grad_fn for r in roots if r.grad_fn is not None])
        builder.add_roots(roots)
        if show_saved:
            builder.add_saved(fns)
        return builder.finish()


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
    """Names for tensors, from ``params`` and ``model`` (the first name of a tensor wins)."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor | torch.nn.Module] | None,
        model: torch.nn.Module | None,
    ) -> None:
        self.leaves: dict[int, str] = {}
        self.outputs: dict[tuple[Node, int], str] = {}
        # ids stay valid while the tensors live: the model holds its parameters, and
        # this list the tensors of ``params``
        self._keep = [(n, t) for n, t in (params or {}).items() if isinstance(t, torch.Tensor)]
        if model is not None:
            self._add_parameters(model)
        for name, t in self._keep:
            self._add(name, t)
        for name, m in (params or {}).items():
            if isinstance(m, torch.nn.Module):
                self._add_parameters(m, name + ".")

    def _add(self, name: str, t: torch.Tensor) -> None:
        fn = t.grad_fn
        if fn is None:
            self.leaves.setdefault(id(t), name)
        else:
            self.outputs.setdefault((fn, t.output_nr), name)

    def _add_parameters(self, model: torch.nn.Module, prefix: str = "") -> None:
        """The names ``model.named_parameters()`` gives, from a plain walk of ``_modules``.

        On a 2,000-module model it takes about two thirds of the time of the
        generator chain behind ``named_parameters``. Modules are visited in the same
        order (each shared one once), so a shared parameter gets the same, first, name.
        """
        seen: set[int] = set()
        stack: list[tuple[str, torch.nn.Module]] = [(prefix, model)]
        while stack:
            prefix, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            for name, p in module._parameters.items():
                if p is not None:
                    self._add(prefix + name, p)
            if module._modules:
                stack += [
                    (f"{prefix}{k}.", m)
                    for k, m in reversed(module._modules.items())
                    if m is not None
                ]

    def leaf(self, t: torch.Tensor) -> str | None:
        return self.leaves.get(id(t))

    def output(self, fn: Node, output: int = 0) -> str | None:
        return self.outputs.get((fn, output))


class _Builder:
    """Collects node facts and edges from one walk of the graph.

    The summaries are made in one batch at the end, and the graph is made by
    :func:`gradlab.core.graph.assemble` (nodes and edges in the order found).
    """

    def __init__(self, names: _Names, values: bool, histograms: bool) -> None:
        self.names = names
        self.outputs = names.outputs
        self.values = values
        self.histograms = histograms
        self.nodes: dict[str, NodeAttrs] = {}
        # (u, v, key, attributes) in the order found; the key is the consumer's input slot
        self.edges: list[tuple[str, str, int, EdgeAttrs]] = []
        self.pending: list[tuple[NodeAttrs, str, torch.Tensor]] = []  # attrs[key] = summary
        self.ids: dict[Node, str] = {}  # autograd Node -> op node id
        self.leaf_of: dict[int, str] = {}  # id(leaf tensor) -> leaf node id
        self.roots: list[str] = []

    def walk(self, starts: Sequence[Node]) -> list[Node]:
        """Add every autograd Node reachable from ``starts`` (see :func:`walk`).

        Returns the live nodes in id order.
        """
        fns, edges = walk(starts)
        ids = [f"fn{i}" for i in range(len(fns))]
        add = self._add_op
        self.ids.update(zip(fns, ids, strict=True))
        for fn, n in zip(fns, ids, strict=True):
            add(fn, n)
        self.edges += [
            (ids[c], ids[p], slot, {"kind": "flow", "slot": slot, "output": output})
            for c, p, slot, output in edges
        ]
        return fns

    def _add_op(self, fn: Node, n: str) -> None:
        """The facts of one op node (a tight path: this runs once per autograd Node)."""
        op = type(fn).__name__
        attrs: NodeAttrs
        if op == ACCUMULATE_GRAD:
            # Its facts are its leaf's, which the tensor gives faster than the metadata.
            leaf, facts = self._add_leaf(fn.variable, n)
            attrs = {
                "kind": "op",
                "op": op,
                "label": op,
                "outputs": 1,
                "shape": facts["shape"][:],  # type: ignore[index]
                "dtype": facts["dtype"],
                "device": facts["device"],
                "seq": None,
                "name": None,
                "module": None,
                "module_type": None,
            }
            if self.values:
                attrs["value"] = None
                attrs["args"] = {}
            self.nodes[n] = attrs
            self.nodes[leaf] = facts  # right after its AccumulateGrad
            return
        kept = fn.metadata.get(RECORD_KEY)
        outputs = self.outputs
        if type(kept) is _Entry:
            # A recorded single-output op: the facts of its output are those of the value
            # kept (the same tensor), which a tensor reads faster than node metadata.
            entry: _Entry | None = kept
            t = kept.value
            try:
                shape = list(t.shape)
            except RuntimeError as exc:
                raise _unshaped(t.is_nested, f"the output of {op}", exc) from None
            attrs = {
                "kind": "op",
                "op": op,
                "label": op,
                "outputs": 1,
                "shape": shape,
                "dtype": dtype_name(t.dtype),
                "device": _device_name(t.device),
                "seq": fn._sequence_nr(),
                "name": outputs.get((fn, 0)) if outputs else None,
                "module": kept.module,
                "module_type": kept.module_type,
            }
        else:
            entry = kept.get(0) if kept else None
            attrs = _op_facts(fn, op)
            attrs["seq"] = fn._sequence_nr()
            attrs["name"] = outputs.get((fn, 0)) if outputs else None
            if entry is None:
                attrs["module"] = attrs["module_type"] = None
            else:
                attrs["module"], attrs["module_type"] = entry.module, entry.module_type
        if self.values:
            attrs["value"] = None  # filled in by finish() when record() kept it
            attrs["args"] = op_args(fn)
            if entry is not None and entry.current():
                self.pending.append((attrs, "value", entry.value))
        self.nodes[n] = attrs

    def _add_leaf(self, t: torch.Tensor, consumer: str | None) -> tuple[str, NodeAttrs]:
        """A leaf node for ``t`` (and its edge into ``consumer``); the caller places it."""
        n = f"leaf{len(self.leaf_of)}"
        self.leaf_of[id(t)] = n
        name = self.names.leaves.get(id(t))
        try:
            shape = list(t.shape)
        except RuntimeError as exc:
            raise _unshaped(t.is_nested, "a leaf", exc) from None
        attrs: NodeAttrs = {
            "kind": "leaf",
            "label": name or "leaf",
            "name": name,
            "requires_grad": t.requires_grad,
            "shape": shape,
            "dtype": dtype_name(t.dtype),
            "device": _device_name(t.device),
        }
        if self.values:
            self.pending.append((attrs, "value", t))
            if t.grad is not None:
                self.pending.append((attrs, "grad", t.grad))
        if consumer is not None:
            self.edges.append((n, consumer, 0, {"kind": "flow", "slot": 0, "output": 0}))
        return n, attrs

    def add_roots(self, roots: Sequence[torch.Tensor]) -> None:
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
            self.nodes[n] = attrs
            if self.values:
                self.pending.append((attrs, "value", root))
            if fn is not None:
                producer, output = self.ids[fn], root.output_nr
            else:
                producer, output = self.leaf_of.get(id(root), ""), 0
                if not producer:
                    producer, facts = self._add_leaf(root, None)
                    self.nodes[producer] = facts
            self.edges.append((producer, n, 0, {"kind": "flow", "slot": 0, "output": output}))

    def add_saved(self, fns: Sequence[Node]) -> None:
        count = 0
        for fn in fns:
            consumer, total = self.ids[fn], 0
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
                self.nodes[n] = attrs
                if self.values:
                    self.pending.append((attrs, "value", t))
                self.edges.append((n, consumer, slot, {"kind": "saved", "slot": slot, "output": 0}))
            self.nodes[consumer]["saved_bytes"] = total

    def finish(self) -> Graph:
        summaries = summarize_many([t for _, _, t in self.pending], self.histograms)
        for (attrs, key, _), summary in zip(self.pending, summaries, strict=True):
            attrs[key] = summary  # type: ignore[literal-required]
        return assemble(self.nodes.items(), self.edges, roots=self.roots)


def _op_facts(fn: Node, op: str) -> NodeAttrs:
    """The facts of an op node's output 0 and its number of outputs, from its metadata."""
    try:
        meta = fn._input_metadata
    except (AttributeError, RuntimeError):
        meta = ()
    if not meta:
        return {"kind": "op", "op": op, "label": op, "outputs": 0}
    m = meta[0]
    try:
        shape = list(m.shape)
    except RuntimeError as exc:
        raise _unshaped(m.is_nested_tensor, f"the output of {op}", exc) from None
    return {
        "kind": "op",
        "op": op,
        "label": op,
        "outputs": len(meta),
        "shape": shape,
        "dtype": dtype_name(m.dtype),
        "device": _device_name(m.device),
    }


@functools.cache
def _device_name(device: torch.device) -> str:
    return str(device)


def _tensor_facts(t: torch.Tensor) -> NodeAttrs:
    try:
        shape = list(t.shape)
    except RuntimeError as exc:
        raise _unshaped(t.is_nested, "a tensor given", exc) from None
    return {"shape": shape, "dtype": dtype_name(t.dtype), "device": _device_name(t.device)}


def _unshaped(nested: bool, where: str, exc: RuntimeError) -> Exception:
    """The error for a tensor without one shape: a clear one for a nested tensor."""
    return nested_tensor_error(where) if nested else exc
