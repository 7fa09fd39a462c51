"""Capture the gradient that passes through every autograd node during training.

:func:`capture_backward` runs one backward pass that also yields, for every
node of the loss's graph, the gradient with respect to the node's (first)
output, and the ``.grad`` of every leaf. Node ids are those of
:func:`gradlab.trace` for the same loss (``fn3``, ``leaf0``, ``out0``), so the
app can colour the traced graph with them.

Two ways, with the same results:

``"edges"`` (the default)
    One ``torch.autograd.grad`` call whose inputs are a
    :class:`~torch.autograd.graph.GradientEdge` per node (and the leaves
    themselves): the engine keeps the gradients in C++ as it goes, with no
    Python call per node, then the leaves' gradients are accumulated into
    ``.grad`` exactly as ``AccumulateGrad`` would (a same-layout gradient
    becomes ``.grad`` itself, otherwise it is copied into the parameter's
    layout, or added in place). PyTorch's own gradients: they equal, bit for
    bit, what ``loss.backward()`` puts in ``.grad``.
``"hooks"``
    A post-hook on every node and a real ``loss.backward()``. Slower, but it
    keeps everything ``backward()`` does that a ``grad`` call would skip:
    ``DistributedDataParallel`` averages gradients from hooks on the
    parameters' ``AccumulateGrad`` nodes. :func:`capture_mode` picks it for
    such models. The hooks are removed whatever happens.

Statistics stay on the device: one ``torch._foreach_norm`` over the distinct
gradients (views of one buffer count once) gives a vector of norms, which
the training loop moves to the host in one transfer together with the loss
(:meth:`Captured.resolve`), never a ``.item()`` per node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.autograd.graph import GradientEdge

from gradlab.core.errors import GradLabError
from gradlab.core.graph import ACCUMULATE_GRAD
from gradlab.core.walk import Node, leaf_tensors, walk

CaptureMode = Literal["edges", "hooks"]


@dataclass(frozen=True)
class NodeNorms:
    """The gradient norm of every node of one captured pass, by :func:`gradlab.trace` id.

    ``ids`` objects are shared between steps whose graphs have the same ids.
    """

    ids: tuple[str, ...]
    norms: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        """``{node id: norm}``."""
        return dict(zip(self.ids, self.norms, strict=True))


@dataclass(frozen=True)
class Captured:
    """One captured pass, still on the device: norms of the distinct gradients.

    ``index[i]`` is the position in ``norms`` of node ``ids[i]``. ``grads``
    holds the gradients themselves when asked for (tests compare them with
    ``.grad``).
    """

    ids: tuple[str, ...]
    index: tuple[int, ...]
    norms: torch.Tensor  # (distinct gradients,) float32, on the loss's device
    grads: dict[str, torch.Tensor] | None

    def resolve(self, host: Sequence[float]) -> NodeNorms:
        """The :class:`NodeNorms`, given ``norms`` moved to the host."""
        return NodeNorms(self.ids, tuple(host[j] for j in self.index))


def capture_mode(model: nn.Module) -> CaptureMode:
    """``"hooks"`` for models whose backward must really run (DDP, FSDP), else ``"edges"``."""
    for module in model.modules():
        if type(module).__name__ in ("DistributedDataParallel", "FullyShardedDataParallel"):
            return "hooks"
    return "edges"


def capture_backward(
    loss: torch.Tensor, *, mode: CaptureMode = "edges", keep_grads: bool = False
) -> Captured:
    """Run ``loss``'s backward pass, accumulate ``.grad`` and capture every node's gradient.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> c = capture_backward((x ** 2).sum())
    >>> dict(zip(c.ids, c.resolve(c.norms.tolist()).norms))  # doctest: +NORMALIZE_WHITESPACE
    {'fn0': 1.0, 'fn1': 1.4142135381698608, 'fn2': 7.211102485656738,
     'leaf0': 7.211102485656738, 'out0': 1.0}
    >>> x.grad
    tensor([4., 6.])
    """
    if loss.grad_fn is None:
        raise GradLabError(
            "The loss has no grad_fn: nothing it was computed from requires grad (are all "
            "parameters frozen, or was it computed under torch.no_grad()?)."
        )
    if loss.numel() != 1:
        raise GradLabError(
            f"The loss has shape {list(loss.shape)}: backward needs a single number. Reduce it "
            "first (loss.mean() or loss.sum())."
        )
    fns, _ = walk([loss.grad_fn])
    leaves = leaf_tensors(fns)
    if mode == "edges" and any(v._post_accumulate_grad_hooks for v in leaves):
        mode = "hooks"  # those hooks run only inside a real backward()
    arrived = _run_hooked(loss, fns) if mode == "hooks" else _run_edges(loss, fns)
    ids = [f"fn{i}" for i in range(len(fns))]
    grads: list[torch.Tensor | None] = list(arrived)
    ids += [f"leaf{j}" for j in range(len(leaves))]
    grads += [v.grad for v in leaves]
    ids.append("out0")
    grads.append(torch.ones_like(loss))  # the seed backward() starts from
    return _norms(ids, grads, keep_grads)


def _run_edges(loss: torch.Tensor, fns: Sequence[Node]) -> list[torch.Tensor | None]:
    """One ``autograd.grad`` over an edge per node, then ``AccumulateGrad``'s own rule."""
    inputs: list[Any] = [
        fn.variable if type(fn).__name__ == ACCUMULATE_GRAD else GradientEdge(fn, 0) for fn in fns
    ]
    grads: list[torch.Tensor | None] = list(torch.autograd.grad(loss, inputs, allow_unused=True))
    with torch.no_grad():
        for fn, g in zip(fns, grads, strict=True):
            if g is not None and type(fn).__name__ == ACCUMULATE_GRAD:
                _accumulate(fn.variable, g)
    return grads


def _accumulate(variable: torch.Tensor, g: torch.Tensor) -> None:
    """What ``AccumulateGrad`` does outside grad mode: keep, copy into layout, or add."""
    if variable.grad is None:
        if (
            g.is_sparse
            or g.stride() == variable.stride()
            or (g.is_contiguous() and not _dense(variable))
        ):
            variable.grad = g
        elif _dense(variable):
            variable.grad = torch.empty_strided(
                variable.shape, variable.stride(), dtype=g.dtype, device=g.device
            ).copy_(g)
        else:
            variable.grad = g.clone(memory_format=torch.contiguous_format)
    else:
        variable.grad += g


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill its memory without gaps or overlaps, in any dim order."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda s: s[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _run_hooked(loss: torch.Tensor, fns: Sequence[Node]) -> list[torch.Tensor | None]:
    """A post-hook on every node keeps what arrived; a real ``backward()`` runs."""
    arrived: list[torch.Tensor | None] = [None] * len(fns)

    def keeper(i: int) -> Any:
        def hook(sent: object, received: Sequence[torch.Tensor | None]) -> None:
            arrived[i] = received[0] if received else None

        return hook

    handles = [fn.register_hook(keeper(i)) for i, fn in enumerate(fns)]
    try:
        torch.autograd.backward(loss)
    finally:
        for handle in handles:
            handle.remove()
    return arrived


@torch.no_grad()
def _norms(ids: list[str], grads: list[torch.Tensor | None], keep_grads: bool) -> Captured:
    """Norms of the distinct gradients in one ``_foreach_norm``; views of one buffer count once."""
    distinct: list[torch.Tensor] = []
    position: dict[tuple[int, int, torch.dtype], int] = {}
    kept_ids: list[str] = []
    index: list[int] = []
    for n, g in zip(ids, grads, strict=True):
        if g is None:
            continue
        # A contiguous tensor is its buffer's numel elements from data_ptr on: the same
        # start, length and dtype mean the same elements (a reshape's gradient, say).
        key = (g.data_ptr(), g.numel(), g.dtype) if g.is_contiguous() and not g.is_sparse else None
        j = position.get(key) if key is not None else None
        if j is None:
            j = len(distinct)
            distinct.append(_dense_real(g))
            if key is not None:
                position[key] = j
        kept_ids.append(n)
        index.append(j)
    if distinct:
        norms = torch.stack(torch._foreach_norm(distinct, 2, dtype=torch.float32))
    else:
        norms = torch.zeros(0)
    kept = {n: g for n, g in zip(ids, grads, strict=True) if g is not None} if keep_grads else None
    return Captured(tuple(kept_ids), tuple(index), norms, kept)


def _dense_real(g: torch.Tensor) -> torch.Tensor:
    """A tensor with the same 2-norm that ``_foreach_norm`` takes."""
    if g.is_sparse:
        g = g.coalesce().values()
    if g.is_complex():
        g = torch.view_as_real(g)
    return g
