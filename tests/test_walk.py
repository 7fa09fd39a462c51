"""The one walk of a live graph (gradlab.core.walk): trace's order, a stopping rule, lazy steps."""

from __future__ import annotations

import torch
from torch import nn

import gradlab
from gradlab.core.graph import ACCUMULATE_GRAD
from gradlab.core.walk import Edge, discover, leaf_tensors, walk


def _net_loss() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    return model, model(torch.randn(5, 3)).pow(2).sum()


def test_discovery_order_is_the_order_of_trace_ids() -> None:
    model, loss = _net_loss()
    G = gradlab.trace(loss, model=model)
    fns = list(discover([loss.grad_fn]))
    assert [type(fn).__name__ for fn in fns] == [G.nodes[f"fn{i}"]["op"] for i in range(len(fns))]
    assert len(fns) == len(gradlab.op_nodes(G))
    # leaves are numbered in the order of their AccumulateGrad nodes
    names = {id(p): n for n, p in model.named_parameters()}
    leaves = leaf_tensors(fns)
    assert [names[id(t)] for t in leaves] == [G.nodes[f"leaf{i}"]["name"] for i in range(4)]


def test_edges_are_next_functions_slot_by_slot() -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x * x + x.exp()
    fns, edges = walk([y.grad_fn])
    index = {fn: i for i, fn in enumerate(fns)}
    # torch is the oracle: every (child, output_nr) in next_functions, at its slot
    expected = {
        (index[child], index[fn], slot, output)
        for fn in fns
        for slot, (child, output) in enumerate(fn.next_functions)
        if child is not None
    }
    assert set(edges) == expected and len(edges) == len(expected)
    mul = next(fn for fn in fns if type(fn).__name__ == "MulBackward0")
    accumulate = fns.index(next(fn for fn in fns if type(fn).__name__ == ACCUMULATE_GRAD))
    assert [(c, s) for c, p, s, _ in edges if p == index[mul]] == [(accumulate, 0), (accumulate, 1)]


def test_the_walk_steps_only_as_far_as_it_is_read() -> None:
    _, loss = _net_loss()
    edges: list[Edge] = []
    steps = discover([loss.grad_fn], edges=edges)
    assert next(steps) is loss.grad_fn and edges == []  # the start, nothing expanded yet
    first_input = next(steps)
    assert first_input is next(c for c, _ in loss.grad_fn.next_functions if c is not None)
    assert edges == []
    rest = list(steps)
    assert [loss.grad_fn, first_input, *rest] == walk([loss.grad_fn])[0]
    assert edges == walk([loss.grad_fn])[1]


def test_through_stops_the_walk_at_nodes_it_refuses() -> None:
    x = torch.ones(2, requires_grad=True)
    y = (x.exp() * 2).sum()
    nothing = list(discover([y.grad_fn], through=lambda fn: False))
    inputs = [c for c, _ in y.grad_fn.next_functions if c is not None]
    assert nothing == [y.grad_fn, *inputs]  # the start is always gone through
    names = [type(fn).__name__ for fn in discover([y.grad_fn], through=lambda fn: True)]
    assert names == ["SumBackward0", "MulBackward0", "ExpBackward0", ACCUMULATE_GRAD]
    no_exp = discover([y.grad_fn], through=lambda fn: type(fn).__name__ != "ExpBackward0")
    assert [type(fn).__name__ for fn in no_exp] == ["SumBackward0", "MulBackward0", "ExpBackward0"]


def test_starts_are_numbered_first_and_once() -> None:
    x = torch.ones(2, requires_grad=True)
    a, b = x * 2, x + 1
    fns = list(discover([a.grad_fn, b.grad_fn, a.grad_fn]))
    assert fns[:2] == [a.grad_fn, b.grad_fn] and len(fns) == 3  # the shared AccumulateGrad once
    leaves = leaf_tensors(fns)
    assert len(leaves) == 1 and leaves[0] is x
