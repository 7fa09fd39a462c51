"""The one walk of an autograd graph: ``next_functions`` from the roots, iteratively.

Every id GradLab gives a live autograd Node comes from this walk's order:
nodes are numbered as they are discovered (the starts first, in the order
given), a node's inputs are looked at in slot order, and the node discovered
last is expanded next (a stack), so the same program always gives the same
ids (``fn0``, ``fn1``, ... in :func:`gradlab.trace`; ``leaf0``, ... for the
leaves of the ``AccumulateGrad`` nodes in that order). Iterative: a
100,000-node chain cannot hit the recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from gradlab.core.graph import ACCUMULATE_GRAD

Node = Any  # torch.autograd.graph.Node; its C++ subclasses are not visible to typing
#: An edge of the walk: (child index, parent index, slot, output_nr). The parent's
#: backward sends a gradient for its input ``slot`` to output ``output_nr`` of the child.
Edge = tuple[int, int, int, int]


def discover(
    starts: Iterable[Node],
    through: Callable[[Node], bool] | None = None,
    edges: list[Edge] | None = None,
) -> Iterator[Node]:
    """Yield every autograd Node reachable from ``starts``, in discovery order.

    A node's position in what is yielded is its index (``fn{index}``). The
    walk runs only as far as the caller reads, so a lookup can stop at the
    node it wants. ``through(node)``, when given, says whether the walk goes on
    through a node it discovered (the starts always): a node it does not go
    through is still yielded, its inputs are not looked at. ``edges``, when
    given, receives every edge the walk follows, as ``(child, parent, slot,
    output_nr)``, right after its child is yielded.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, requires_grad=True)
    >>> [type(fn).__name__ for fn in discover([(x * 2).sum().grad_fn])]
    ['SumBackward0', 'MulBackward0', 'AccumulateGrad']
    """
    index: dict[Node, int] = {}
    stack: list[Node] = []
    for fn in starts:
        if fn not in index:
            index[fn] = len(index)
            stack.append(fn)
            yield fn
    add = edges.append if edges is not None else None
    while stack:
        fn = stack.pop()
        i = index[fn]
        for slot, (child, output) in enumerate(fn.next_functions):
            if child is None:
                continue
            j = index.get(child)
            if j is None:
                j = index[child] = len(index)
                if through is None or through(child):
                    stack.append(child)
                yield child
            if add is not None:
                add((j, i, slot, output))


def walk(starts: Sequence[Node]) -> tuple[list[Node], list[Edge]]:
    """Every autograd Node reachable from ``starts``, and the edges between them.

    Returns the nodes in discovery order (see :func:`discover`) and the edges
    as ``(child index, parent index, slot, output_nr)``: the parent's backward
    sends a gradient for input ``slot`` to output ``output_nr`` of the child.
    """
    edges: list[Edge] = []
    return list(discover(starts, edges=edges)), edges


def leaf_tensors(fns: Iterable[Node]) -> list[torch.Tensor]:
    """The leaf tensors of the ``AccumulateGrad`` nodes among ``fns``, in their order."""
    return [fn.variable for fn in fns if type(fn).__name__ == ACCUMULATE_GRAD]
