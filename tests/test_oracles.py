"""A corpus of programs checked against three oracles.

1. The graph's op nodes and edges equal an independent walk of ``next_functions``.
2. torchviz's ``make_dot`` draws the same number of autograd nodes.
3. Every captured gradient equals ``torch.autograd.grad`` with respect to the same
   intermediate tensor, bit for bit; every leaf's ``grad`` equals its ``.grad``.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradlab

Case = tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]


def leaf(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, requires_grad=True)


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def with_module(model: nn.Module, root: torch.Tensor, names: dict[str, torch.Tensor]) -> Case:
    return (root,), {**dict(model.named_parameters()), **names}


def square() -> Case:
    x = leaf(2)
    y = x**2
    return (y.sum(),), {"x": x, "y": y}


def classic_chain() -> Case:
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    z = y * y * 3
    return (z.mean(),), {"x": x, "y": y, "z": z}


def multi_output_split() -> Case:
    x = leaf(4)
    a, b = x.split(2)
    prod = a * b
    return (prod.sum(),), {"x": x, "a": a, "prod": prod}


def max_with_indices() -> Case:
    x = leaf(3, 4)
    values, _ = x.max(dim=1)
    return (values.sum(),), {"x": x, "values": values}


def views() -> Case:
    x = leaf(6)
    v = x.view(2, 3)
    t = v.t()
    s = t[1:, :2]
    return ((s * 2).sum(),), {"x": x, "v": v, "t": t, "s": s}


def in_place_on_non_leaf() -> Case:
    x = leaf(3)
    y = x * 2
    y.add_(1)
    y.mul_(x.detach())
    return (y.sum(),), {"x": x, "y": y}


def custom_function() -> Case:
    x = leaf(3)
    y = Square.apply(x)
    return ((y + x).sum(),), {"x": x, "y": y}


def parameter_used_twice() -> Case:
    w = leaf(3, 3)
    x = leaf(3)
    h = w @ x
    out = w @ h
    return (out.sum(),), {"w": w, "x": x, "h": h}


def lstm() -> Case:
    model = nn.LSTM(3, 4)
    x = leaf(2, 1, 3)
    out, _ = model(x)
    return with_module(model, out.sum(), {"x": x, "out": out})


def multi_head_attention() -> Case:
    model = nn.MultiheadAttention(8, 2, batch_first=True)
    x = leaf(1, 3, 8)
    out, _ = model(x, x, x)
    return with_module(model, out.sum(), {"x": x, "out": out})


def double_backward() -> Case:
    x = leaf(3)
    y = (x**3).sum()
    (g,) = torch.autograd.grad(y, x, create_graph=True)  # 3 x^2, with its own graph
    return ((g * g).sum(),), {"x": x, "g": g}


def detached_branch() -> Case:
    x = leaf(3)
    y = x * 2
    z = y.detach() * x
    return ((y + z).sum(),), {"x": x, "y": y, "z": z}


def two_roots() -> Case:
    x = leaf(3)
    shared = x.exp()
    return ((shared * 2).sum(), shared.sin().sum()), {"x": x, "shared": shared}


def softmax_cross_entropy() -> Case:
    model = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    logits = model(x)
    loss = F.cross_entropy(logits, torch.tensor([0, 2]))
    return with_module(model, loss, {"logits": logits})


def conv_pool() -> Case:
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2))
    x = leaf(1, 1, 5, 5)
    y = model(x)
    return with_module(model, y.sum(), {"x": x, "y": y})


def cat_stack_index_expand() -> Case:
    a, b = leaf(2, 2), leaf(2, 2)
    c = torch.cat([a, b], dim=1)
    s = torch.stack([a, b])
    picked = c.index_select(1, torch.tensor([0, 3]))
    e = a[:, :1].expand(2, 3)
    return ((picked.sum() + s.mean() + e.sum()),), {"a": a, "b": b, "c": c, "s": s}


def broadcasting() -> Case:
    a, b = leaf(3, 1), leaf(1, 4)
    c = a + b
    return ((c * c).sum(),), {"a": a, "b": b, "c": c}


def checkpointed() -> Case:
    x = leaf(4)
    y = checkpoint(lambda t: t.sin() * t, x, use_reentrant=False)
    return (y.sum(),), {"x": x, "y": y}


def norm_gelu_dropout() -> Case:
    model = nn.Sequential(nn.LayerNorm(4), nn.GELU(), nn.Dropout(0.5))
    x = leaf(2, 4)
    y = model(x)
    return with_module(model, y.sum(), {"x": x, "y": y})


def embedding() -> Case:
    model = nn.Embedding(5, 3)
    idx = torch.tensor([1, 3, 1])
    y = model(idx)
    return with_module(model, (y**2).sum(), {"y": y})


CORPUS: dict[str, Callable[[], Case]] = {
    f.__name__: f
    for f in (
        square, classic_chain, multi_output_split, max_with_indices, views, in_place_on_non_leaf,
        custom_function, parameter_used_twice, lstm, multi_head_attention, double_backward,
        detached_branch, two_roots, softmax_cross_entropy, conv_pool, cat_stack_index_expand,
        broadcasting, checkpointed, norm_gelu_dropout, embedding,
    )
}  # fmt: skip


def build(name: str) -> Case:
    torch.manual_seed(0)
    with gradlab.record():
        return CORPUS[name]()


def independent_walk(roots: tuple[torch.Tensor, ...], leaf_names: dict[int, str]) -> Counter[tuple]:
    """(producer, consumer, slot) edges between autograd nodes, keyed without GradLab."""

    def key(fn: object) -> tuple:
        if type(fn).__name__ == "AccumulateGrad":
            return ("acc", leaf_names[id(fn.variable)])  # type: ignore[attr-defined]
        return (type(fn).__name__, fn._sequence_nr())  # type: ignore[attr-defined]

    edges: Counter[tuple] = Counter()
    todo = [r.grad_fn for r in roots if r.grad_fn is not None]
    seen = set(todo)
    while todo:
        fn = todo.pop()
        for slot, (child, _) in enumerate(fn.next_functions):
            if child is None:
                continue
            edges[(key(child), key(fn), slot)] += 1
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return edges


def gradlab_edges(G: gradlab.trace) -> Counter[tuple]:  # type: ignore[valid-type]
    def key(n: str) -> tuple:
        d = G.nodes[n]
        if d["op"] == "AccumulateGrad":
            (leaf_node,) = G.predecessors(n)
            return ("acc", G.nodes[leaf_node]["name"])
        return (d["op"], d["seq"])

    ops = set(gradlab.op_nodes(G))
    return Counter(
        (key(u), key(v), d["slot"]) for u, v, d in G.edges(data=True) if u in ops and v in ops
    )


@pytest.mark.parametrize("name", list(CORPUS))
def test_structure_equals_an_independent_walk(name: str) -> None:
    roots, names = build(name)
    G = gradlab.trace(*roots, params=names)
    leaf_names = {id(t): n for n, t in names.items() if t.grad_fn is None}
    assert gradlab_edges(G) == independent_walk(roots, leaf_names)
    assert G.graph["roots"] == [f"out{i}" for i in range(len(roots))]


def metadata_facts(roots: tuple[torch.Tensor, ...]) -> Counter[tuple]:
    """(op, seq, shape, dtype, device, outputs) of every autograd node, read from its metadata."""
    facts: Counter[tuple] = Counter()
    todo = [r.grad_fn for r in roots if r.grad_fn is not None]
    seen = set(todo)
    while todo:
        fn = todo.pop()
        meta = fn._input_metadata
        seq = None if type(fn).__name__ == "AccumulateGrad" else fn._sequence_nr()
        m = (list(meta[0].shape), str(meta[0].dtype).removeprefix("torch."), str(meta[0].device))
        facts[(type(fn).__name__, seq, *map(str, m), len(meta))] += 1
        for child, _ in fn.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                todo.append(child)
    return facts


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "plain"])
@pytest.mark.parametrize("name", list(CORPUS))
def test_node_facts_equal_the_nodes_metadata(name: str, recorded: bool) -> None:
    # A recorded op takes its facts from the value kept, an AccumulateGrad from its
    # leaf, the others from the node's metadata: all must agree with the metadata.
    torch.manual_seed(0)
    if recorded:
        roots, names = build(name)
    else:
        roots, names = CORPUS[name]()
    for values in (True, False):
        G = gradlab.trace(*roots, params=names, values=values)
        got = Counter(
            (d["op"], d["seq"], *map(str, (d["shape"], d["dtype"], d["device"])), d["outputs"])
            for d in (G.nodes[n] for n in gradlab.op_nodes(G))
        )
        assert got == metadata_facts(roots)


@pytest.mark.parametrize("name", list(CORPUS))
def test_torchviz_draws_the_same_number_of_autograd_nodes(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torchviz
    roots, names = build(name)
    G = gradlab.trace(*roots, params=names)
    dot = torchviz.make_dot(roots if len(roots) > 1 else roots[0], params=names)
    # torchviz fills tensors (blue, green, orange) and leaves autograd nodes unfilled.
    node_lines = [line for line in dot.body if re.match(r"\s*\d+ \[label=", line)]
    fn_nodes = [line for line in node_lines if "fillcolor" not in line]
    assert len(fn_nodes) == len(gradlab.op_nodes(G))


@pytest.mark.parametrize("name", list(CORPUS))
def test_captured_gradients_equal_autograd_grad(name: str) -> None:
    roots, names = build(name)
    root = roots[0]
    G = gradlab.trace(*roots, params=names)
    tensors = [t for t in names.values() if t.requires_grad]
    expected = torch.autograd.grad(root, tensors, retain_graph=True, allow_unused=True)
    leaves = [t for t in tensors if t.grad_fn is None]
    for t in leaves:
        t.grad = None
    gradlab.backward(root, G)
    by_name = {d.get("name"): (n, d) for n, d in G.nodes(data=True) if d.get("name")}
    checked = 0
    for (name_, t), want in zip(
        ((k, v) for k, v in names.items() if v.requires_grad), expected, strict=True
    ):
        n, d = by_name[name_]
        if want is None:  # not on the path from this root
            continue
        got = d["grad"]
        assert got is not None, f"{name_} ({n}) got no gradient"
        if want.numel() <= 64:
            assert got["values"] == want.tolist(), name_
        else:
            assert got["norm"] == pytest.approx(float(want.double().norm()), rel=1e-5)
        if t.grad_fn is None:
            assert torch.equal(t.grad, want)
        checked += 1
    assert checked >= 1


def test_the_corpus_covers_what_the_issue_lists() -> None:
    ops = Counter()
    for name in CORPUS:
        roots, names = build(name)
        ops.update(
            G_op
            for G_op in (
                d["op"]
                for _, d in gradlab.trace(*roots, params=names).nodes(data=True)
                if d["kind"] == "op"
            )
        )
    for op in ["SplitBackward0", "MaxBackward0", "ViewBackward0", "SquareBackward", "MulBackward0"]:
        assert ops[op] >= 1, op
    assert len(CORPUS) >= 15
