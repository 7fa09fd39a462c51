"""The graph as table rows: one row per node, for the app's node table and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from gradlab.core.graph import Graph
from gradlab.core.text import shape, short
from gradlab.program.run import Variable


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
