"""Tables of facts: a graph's nodes, a program's variables, a model's parameters and memory.

One row per thing, for the app's tables and the CLI. A program's variables
are read through a small Protocol (what the table reads), so that drawing a
table never needs the program runner that made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from gradlab.core.graph import Graph, TensorSummary
from gradlab.core.memory import NodeMemory, ParamRow, SavedTensor
from gradlab.core.memory_totals import human_bytes
from gradlab.core.text import shape, short


@dataclass(frozen=True)
class NodeRow:
    """One node in words and numbers."""

    id: str
    kind: str
    op: str
    name: str
    shape: str
    dtype: str
    value: str
    grad: str
    step: int | None
    module: str


def node_rows(G: Graph, order: str = "step") -> list[NodeRow]:
    """Rows for every node; ``order="step"`` puts ops in the engine's order first.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> y = (x ** 2).sum()
    >>> [r.op for r in node_rows(gradlab.backward(y, gradlab.trace(y)))][:3]
    ['SumBackward0', 'PowBackward0', 'AccumulateGrad']
    """
    rows = [
        NodeRow(
            id=str(n),
            kind=str(d["kind"]),
            op=str(d.get("op") or d.get("label") or ""),
            name=str(d.get("name") or ""),
            shape=shape(d.get("shape")),
            dtype=str(d.get("dtype") or ""),
            value=short(d.get("value")) if d.get("value") is not None else "",
            grad=short(d.get("grad")) if d.get("grad") is not None else "",
            step=d.get("step"),
            module=str(d.get("module") or ""),
        )
        for n, d in G.nodes(data=True)
    ]
    if order == "step":
        rows.sort(key=lambda r: (r.step is None, r.step if r.step is not None else 0))
    return rows


def as_dicts(rows: list[NodeRow]) -> list[dict[str, object]]:
    """Rows as plain dicts (for a dataframe)."""
    return [asdict(r) for r in rows]


class Variable(Protocol):
    """What :func:`variable_rows` reads of a program's variable
    (:class:`gradlab.program.run.Variable`)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def text(self) -> str: ...  # a short description: "tensor (2, 3) float32", "3.5"
    @property
    def value(self) -> TensorSummary | None: ...
    @property
    def grad(self) -> TensorSummary | None: ...
    @property
    def requires_grad(self) -> bool: ...
    @property
    def grad_fn(self) -> str | None: ...


def variable_rows(variables: Sequence[Variable]) -> list[dict[str, object]]:
    """A program's variables as rows: name, kind, what it is, grad_fn and gradient."""
    return [
        {
            "name": v.name,
            "kind": v.kind,
            "what": v.text,
            "value": short(v.value) if v.value is not None else "",
            "grad_fn": v.grad_fn or "",
            "requires_grad": v.requires_grad,
            "grad": short(v.grad) if v.grad is not None else "",
        }
        for v in variables
    ]


def parameter_rows(params: Sequence[ParamRow]) -> list[dict[str, object]]:
    """A model's parameters after one backward, one row each (the shape in words)."""
    return [
        {
            "name": p.name,
            "shape": shape(list(p.shape)),
            "count": p.count,
            "requires_grad": p.requires_grad,
            "has_grad": p.has_grad,
            "grad_norm": p.grad_norm,
            "grad_mean": p.grad_mean,
            "grad_absmax": p.grad_absmax,
        }
        for p in params
    ]


def parameter_summary(params: Sequence[ParamRow]) -> str:
    """How many tensors and numbers, and how many of them train.

    Examples
    --------
    >>> from types import SimpleNamespace as P
    >>> parameter_summary([P(count=12, requires_grad=True), P(count=3, requires_grad=False)])
    '2 tensors, 15 numbers (12 trainable).'
    """
    total = sum(p.count for p in params)
    trainable = sum(p.count for p in params if p.requires_grad)
    return f"{len(params)} tensors, {total:,} numbers ({trainable:,} trainable)."


def saved_rows(nodes: Sequence[NodeMemory], limit: int = 200) -> list[dict[str, object]]:
    """The first ``limit`` nodes that save tensors for backward, sizes in words."""
    return [
        {
            "node": r.node or "(not in the graph)",
            "op": r.op,
            "module": r.module,
            "tensors": r.tensors,
            "saved": human_bytes(r.nbytes),
            "adds": human_bytes(r.new_bytes),
        }
        for r in nodes[:limit]
    ]


def saved_summary(tensors: Sequence[SavedTensor]) -> str:
    """How many tensors are saved for backward, in how many storages."""
    storages = sum(t.first for t in tensors)
    return (
        f"{len(tensors)} saved tensors in {storages} storages. A storage saved by several ops "
        "(y * y saves y twice) counts once, for the first op that saved it: the 'adds' column."
    )
