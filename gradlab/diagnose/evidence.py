"""What one look at a model, a program or a loss gathered, for the checks to read.

:class:`Evidence` holds live objects (the loss, the call log, the module
calls) and facts (a traced graph when there is one); the checks in
:mod:`gradlab.diagnose` each read it and return findings. :class:`NodeIndex`
names live autograd objects by the ids :func:`gradlab.trace` gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from gradlab.core.graph import ACCUMULATE_GRAD, Graph
from gradlab.core.walk import Node, discover
from gradlab.diagnose.measures import Agreement, OptimizerStep
from gradlab.diagnose.observe import Call, ModuleCall


class NodeIndex:
    """Live autograd nodes and leaf tensors -> ids of ``gradlab.trace(root)``.

    Built from the live root (ids by walk position, as :func:`gradlab.trace`
    numbers them) and, when a traced graph of the same run is at hand, from
    its ``seq`` and ``op`` attributes (a graph traced elsewhere in the run, as
    the program runner does).
    """

    def __init__(self, root: torch.Tensor | None = None, G: Graph | None = None) -> None:
        self._fns: dict[Node, int] = {}  # node -> its position in the walk ("fn3")
        self._seq: dict[tuple[int, str], str] = {}
        self._leaves: dict[int, int] = {}  # id(tensor) -> its position among leaves ("leaf1")
        self._keep: list[torch.Tensor] = []
        # gradlab.core.walk's walk, run only as far as a lookup needs: ids are given in
        # discovery order, so a node's id is known once it is discovered.
        starts = [root.grad_fn] if root is not None and root.grad_fn is not None else []
        self._walk = discover(starts)
        self.root = "out0"
        if G is not None:
            for n, attrs in G.nodes(data=True):
                if attrs.get("kind") == "op" and attrs.get("seq") is not None:
                    self._seq[(int(attrs["seq"]), str(attrs.get("op")))] = str(n)
            roots = G.graph.get("roots") or ["out0"]
            self.root = str(roots[0])

    def _discover(self, fn: Node) -> None:
        self._fns[fn] = len(self._fns)
        if type(fn).__name__ == ACCUMULATE_GRAD:
            self._keep.append(fn.variable)
            self._leaves[id(fn.variable)] = len(self._leaves)

    def _walk_until(self, fn: Node | None = None, leaf: int | None = None) -> None:
        """Go on with the walk until it has found ``fn`` (or the leaf tensor of id ``leaf``)."""
        fns, leaves = self._fns, self._leaves
        while fn not in fns and leaf not in leaves:
            found = next(self._walk, None)
            if found is None:
                return
            self._discover(found)

    def fn(self, fn: Node | None) -> str | None:
        """The id of an autograd node, if it is in the graph."""
        if fn is None:
            return None
        self._walk_until(fn)
        i = self._fns.get(fn)
        if i is not None:
            return f"fn{i}"
        if self._seq and type(fn).__name__ != ACCUMULATE_GRAD:
            return self._seq.get((fn._sequence_nr(), type(fn).__name__))
        return None

    def tensor(self, t: torch.Tensor) -> str | None:
        """The id of the node that made ``t`` (its op) or holds it (a leaf)."""
        if t.grad_fn is not None:
            return self.fn(t.grad_fn)
        self._walk_until(leaf=id(t))
        i = self._leaves.get(id(t))
        return f"leaf{i}" if i is not None else None

    def op_of(self, t: torch.Tensor) -> str | None:
        """The op node of a tensor: its ``grad_fn``, or a leaf's ``AccumulateGrad``."""
        if t.grad_fn is not None:
            return self.fn(t.grad_fn)
        self._walk_until(leaf=id(t))
        for fn, i in self._fns.items():
            if type(fn).__name__ == ACCUMULATE_GRAD and fn.variable is t:
                return f"fn{i}"
        return None


@dataclass
class Evidence:
    """Everything one look gathered."""

    loss: torch.Tensor | None = None
    model: nn.Module | None = None
    # Leaves whose gradient path is checked: parameters by name, or tensors the code
    # made with requires_grad=True.
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    index: NodeIndex = field(default_factory=NodeIndex)
    calls: list[Call] | None = None
    calls_complete: bool = True  # False: the log stopped at its limit, so "unused" is unsure
    modules: list[ModuleCall] = field(default_factory=list)
    error: BaseException | None = None  # what the code raised
    error_node: str | None = None  # the node the error points at, when known
    warnings: list[str] = field(default_factory=list)
    graph: Graph | None = None  # a facts graph, with backward when it ran
    backward_ran: bool = False
    steps: list[OptimizerStep] = field(default_factory=list)  # optimizer steps the code made
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    agreements: list[Agreement] = field(default_factory=list)  # the gradient check, when asked

    def grads(self) -> dict[str, torch.Tensor]:
        """The gradients the checked leaves hold now."""
        return {n: p.grad for n, p in self.params.items() if p.grad is not None}
