"""What one forward and backward on a batch holds: saved tensors, parameters, gradients.

Autograd keeps, for every op, the tensors its backward will need (``x`` for
``x ** 2``, the input and weight of a ``Linear``). :func:`saved_tensors`
watches the forward pass with ``torch.autograd.graph.saved_tensors_hooks``:
the pack hook sees every tensor saved, in the order the ops ran, and notes its
storage. It cannot see which node saves it, so :meth:`SavedLog.attribute`
then reads each node's saved tensors, as :func:`gradlab.trace` does: each
read goes through the unpack hook with the number the pack hook gave, which
names the node. Tensors that share a storage (``y * y`` saves ``y`` twice;
``result`` of ``exp`` is the input of the next op) are counted once, charged
to the first op that saved them.

:func:`inspect_model` does the whole step for the app: the graph with values,
the saved tensors, the backward pass and :func:`parameter_table`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from gradlab.core.backward import backward
from gradlab.core.errors import GradLabError, nested_tensor_error
from gradlab.core.graph import Graph
from gradlab.core.record import record
from gradlab.core.summary import dtype_name
from gradlab.core.trace import saved_tensors as node_saved_tensors
from gradlab.core.trace import trace
from gradlab.core.walk import walk

#: What holds a saved tensor's memory besides the graph: a parameter is kept by the model,
#: an input by the caller; an activation lives only as long as the graph does.
Holder = Literal["parameter", "input", "activation"]


@dataclass(frozen=True)
class SavedTensor:
    """One tensor an op saved for its backward."""

    node: str  # id of the op node that saved it, as in gradlab.trace(root); "" if unreachable
    op: str  # that node's class name, "" if unreachable
    attr: str  # the attribute the op keeps it under: "self", "result", "saved_tensors[0]"
    shape: tuple[int, ...]
    dtype: str
    nbytes: int  # numel * element_size: what the tensor spans
    storage: int  # storage number: saved tensors with the same number share memory
    storage_bytes: int  # size of that storage
    first: bool  # the first save of its storage in the forward: the one charged for it
    holder: Holder


@dataclass(frozen=True)
class NodeMemory:
    """The saved tensors of one op node."""

    node: str
    op: str
    module: str | None
    tensors: int
    nbytes: int  # sum of the tensors' sizes (gradlab.trace's saved_bytes)
    new_bytes: int  # activation storages this node is the first to save: memory it adds


@dataclass(frozen=True)
class SavedMemory:
    """Every tensor saved during one forward pass, with totals that count a storage once."""

    tensors: tuple[SavedTensor, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes of the distinct storages saved."""
        return sum(t.storage_bytes for t in self.tensors if t.first)

    @property
    def activation_bytes(self) -> int:
        """Bytes of the distinct storages that only the graph keeps alive."""
        return sum(t.storage_bytes for t in self.tensors if t.first and t.holder == "activation")

    def per_node(self) -> dict[str, int]:
        """Node id -> activation bytes it is the first to save (sums to ``activation_bytes``)."""
        out: dict[str, int] = {}
        for t in self.tensors:
            charge = t.storage_bytes if t.first and t.holder == "activation" else 0
            out[t.node] = out.get(t.node, 0) + charge
        return out

    def by_node(self, G: Graph | None = None) -> list[NodeMemory]:
        """One row per node that saved something, most memory first; modules from ``G``."""
        rows: dict[str, list[SavedTensor]] = {}
        for t in self.tensors:
            rows.setdefault(t.node, []).append(t)
        added = self.per_node()
        out = [
            NodeMemory(
                node=n,
                op=ts[0].op,
                module=G.nodes[n].get("module") if G is not None and n in G else None,
                tensors=len(ts),
                nbytes=sum(t.nbytes for t in ts),
                new_bytes=added[n],
            )
            for n, ts in rows.items()
        ]
        out.sort(key=lambda r: (-r.new_bytes, -r.nbytes, r.node))
        return out


@dataclass(frozen=True)
class ParamRow:
    """A parameter of a model and the gradient it holds."""

    name: str
    shape: tuple[int, ...]
    count: int
    requires_grad: bool
    has_grad: bool  # False while .grad is None (not reached by backward, or frozen)
    grad_norm: float | None
    grad_mean: float | None
    grad_absmax: float | None  # largest |grad| entry


@dataclass(frozen=True)
class ModelRun:
    """Facts of one forward and backward of a model on a batch; no live tensors."""

    graph: Graph
    saved: SavedMemory
    params: tuple[ParamRow, ...]
    loss: float | None  # the scalar backpropagated
    inputs: tuple[tuple[int, ...], ...]  # shapes of the input batch


@dataclass
class SavedLog:
    """What the pack hook saw; :meth:`attribute` maps it onto the graph's nodes."""

    _facts: list[_Fact] = field(default_factory=list)
    _unpacked: list[int] = field(default_factory=list)

    def attribute(self, root: torch.Tensor) -> SavedMemory:
        """Name the node of every saved tensor by walking ``root``'s graph (before backward)."""
        owner: dict[int, tuple[str, str, str]] = {}
        starts = [root.grad_fn] if root.grad_fn is not None else []
        fns, _ = walk(starts)
        for i, fn in enumerate(fns):
            self._unpacked.clear()
            attrs = [attr for attr, _ in node_saved_tensors(fn)]
            # Each read of a saved tensor unpacks it once, in the order read.
            for number, attr in zip(self._unpacked, attrs, strict=False):
                owner.setdefault(number, (f"fn{i}", type(fn).__name__, attr))
        self._unpacked.clear()
        return self._memory(owner)

    def _memory(self, owner: dict[int, tuple[str, str, str]]) -> SavedMemory:
        storages: dict[tuple[str, int], int] = {}  # storage key -> storage number
        tensors = []
        for number, fact in enumerate(self._facts):
            node, op, attr = owner.get(number, ("", "", ""))
            first = fact.storage not in storages
            index = storages.setdefault(fact.storage, len(storages))
            tensors.append(
                SavedTensor(
                    node,
                    op,
                    attr,
                    fact.shape,
                    fact.dtype,
                    fact.nbytes,
                    index,
                    fact.size,
                    first,
                    fact.holder,
                )
            )
        return SavedMemory(tuple(tensors))


@dataclass(frozen=True)
class _Fact:
    """What the pack hook notes of a saved tensor."""

    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    storage: tuple[str, int]  # (device, data pointer): equal for tensors sharing memory
    size: int  # bytes of the storage
    holder: Holder


@dataclass(frozen=True)
class _Packed:
    """What a SavedVariable holds instead of the tensor: our number and a detached alias."""

    number: int
    tensor: torch.Tensor


@contextmanager
def saved_tensors(inputs: Sequence[torch.Tensor] = ()) -> Iterator[SavedLog]:
    """Log every tensor saved for backward inside the block (``inputs`` are held by the caller).

    Examples
    --------
    >>> x = torch.ones(2, 3, requires_grad=True)
    >>> with saved_tensors() as log:
    ...     y = x.exp()
    ...     loss = (y * y).sum()  # saves y twice: one storage
    >>> memory = log.attribute(loss)
    >>> [(t.op, t.attr, t.storage) for t in memory.tensors]
    [('ExpBackward0', 'result', 0), ('MulBackward0', 'other', 0), ('MulBackward0', 'self', 0)]
    >>> memory.activation_bytes  # y: 6 float32
    24
    """
    log = SavedLog()
    held = {_storage(t, -1)[0] for t in inputs}

    def pack(t: torch.Tensor) -> _Packed:
        if t.is_nested:  # no single shape or storage to account for
            raise nested_tensor_error("a tensor saved for backward")
        number = len(log._facts)
        key, size = _storage(t, number)
        base = t._base if t._base is not None else t
        if base.grad_fn is None and base.requires_grad:
            holder: Holder = "parameter"
        else:
            holder = "input" if key in held else "activation"
        nbytes = t.numel() * t.element_size()
        log._facts.append(_Fact(tuple(t.shape), dtype_name(t.dtype), nbytes, key, size, holder))
        # Detached: the output a node saves would otherwise hold that node (a leak).
        return _Packed(number, t.detach())

    def unpack(packed: _Packed) -> torch.Tensor:
        log._unpacked.append(packed.number)
        return packed.tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield log


def parameter_table(model: nn.Module) -> tuple[ParamRow, ...]:
    """Every parameter with its shape, size and the statistics of its ``.grad``.

    Examples
    --------
    >>> layer = torch.nn.Linear(3, 2)
    >>> layer(torch.ones(1, 3)).sum().backward()
    >>> [(r.name, r.shape, r.count, r.grad_absmax) for r in parameter_table(layer)]
    [('weight', (2, 3), 6, 1.0), ('bias', (2,), 2, 1.0)]
    """
    rows = []
    for name, p in model.named_parameters():
        g = p.grad
        stats: tuple[float | None, float | None, float | None] = (None, None, None)
        if g is not None and g.numel():
            g = g.detach().double()
            stats = (g.norm().item(), g.mean().item(), g.abs().max().item())
        rows.append(
            ParamRow(name, tuple(p.shape), p.numel(), p.requires_grad, g is not None, *stats)
        )
    return tuple(rows)


def inspect_model(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ModelRun:
    """Forward ``inputs`` with values and saved tensors recorded, trace, backward, tabulate.

    ``loss`` turns the model's output into the scalar to backpropagate; without
    it the output is summed. Gradients already in the model are cleared first,
    so the table shows this batch's.
    """
    model.zero_grad(set_to_none=True)
    with record(), saved_tensors(inputs) as log:
        out = model(*inputs)
        if not isinstance(out, torch.Tensor):
            raise GradLabError(
                f"The model returned a {type(out).__name__}; GradLab needs a tensor. "
                "Pass a `loss` that turns the output into a scalar."
            )
        root = loss(out) if loss is not None else out.sum()
    _check_scalar(root)
    G = trace(root, model=model)
    G.graph["module_types"] = {name: type(m).__name__ for name, m in model.named_modules()}
    memory = log.attribute(root)
    backward(root, G)
    value = float(root.detach())
    return ModelRun(
        graph=G,
        saved=memory,
        params=parameter_table(model),
        loss=value if math.isfinite(value) else None,
        inputs=tuple(tuple(t.shape) for t in inputs),
    )


def _check_scalar(root: object) -> None:
    if not isinstance(root, torch.Tensor):
        raise GradLabError(f"The loss is a {type(root).__name__}; it must be a scalar tensor.")
    if root.numel() != 1:
        raise GradLabError(
            f"The loss has shape {tuple(root.shape)}; backward needs a scalar. "
            "Reduce it, e.g. with .mean() or .sum()."
        )
    if root.grad_fn is None:
        raise GradLabError(
            "The loss has no grad_fn: nothing in the model requires grad (are all parameters "
            "frozen, or did the forward run under torch.no_grad()?)."
        )


def _storage(t: torch.Tensor, number: int) -> tuple[tuple[str, int], int]:
    """The key and size of ``t``'s storage; a tensor without one (sparse) is its own."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return ("none", -1 - number), t.numel() * t.element_size()
    return (str(t.device), int(storage.data_ptr())), int(storage.nbytes())
