"""Saved tensors and the parameter table, checked against torch and against gradlab.core.trace."""

from __future__ import annotations

import copy
import gc
import warnings
import weakref

import pytest
import torch
from torch import nn

import gradlab
from gradlab.core.errors import GradLabError
from gradlab.core.memory import inspect_model, parameter_table, saved_tensors
from gradlab.core.trace import saved_tensors as node_saved_tensors
from gradlab.core.walk import walk
from gradlab.zoo import presets


def test_a_storage_saved_twice_counts_once_for_the_first_saver() -> None:
    x = torch.ones(2, 3, requires_grad=True)
    with saved_tensors() as log:
        y = x.exp()  # ExpBackward0 saves its result y
        loss = (y * y).sum()  # MulBackward0 saves y as self and as other
    memory = log.attribute(loss)
    G = gradlab.trace(loss)
    assert sorted((G.nodes[t.node]["op"], t.attr) for t in memory.tensors) == [
        ("ExpBackward0", "result"), ("MulBackward0", "other"), ("MulBackward0", "self"),
    ]  # fmt: skip
    assert {t.storage for t in memory.tensors} == {0}
    assert memory.total_bytes == memory.activation_bytes == 6 * 4
    exp, mul = "fn2", "fn1"  # trace order: sum, mul, exp
    assert (G.nodes[exp]["op"], G.nodes[mul]["op"]) == ("ExpBackward0", "MulBackward0")
    assert memory.per_node() == {exp: 24, mul: 0}
    rows = {r.node: r for r in memory.by_node(G)}
    assert (rows[mul].tensors, rows[mul].nbytes, rows[mul].new_bytes) == (2, 48, 0)


def test_parameters_and_inputs_are_held_anyway() -> None:
    a = torch.ones(3, requires_grad=True)
    b = torch.full((3,), 2.0, requires_grad=True)
    x = torch.arange(3.0)
    with saved_tensors([x]) as log:
        loss = (a * b * x).sum()  # a * b saves a and b; (a * b) * x saves only x
    memory = log.attribute(loss)
    assert sorted((t.node, t.attr, t.holder) for t in memory.tensors) == [
        ("fn1", "other", "input"), ("fn2", "other", "parameter"), ("fn2", "self", "parameter"),
    ]  # fmt: skip
    assert memory.activation_bytes == 0 and memory.total_bytes == 3 * 12
    assert memory.per_node() == {"fn1": 0, "fn2": 0}


def test_a_tensor_saved_outside_the_traced_graph_has_no_node() -> None:
    x = torch.ones(4, requires_grad=True)
    with saved_tensors() as log:
        _unused = x.sin()  # saves x, but the loss does not depend on it
        loss = x.exp().sum()
    memory = log.attribute(loss)
    assert sorted(t.node for t in memory.tensors) == ["", "fn1"]
    assert memory.by_node()[-1].node == ""


def test_saved_activations_are_freed_with_the_graph() -> None:
    x = torch.ones(1000, requires_grad=True)
    with saved_tensors() as log:
        y = x.exp()
    storage = weakref.ref(y.untyped_storage())
    log.attribute(y.sum())
    del y
    gc.collect()
    assert storage() is None  # the pack hook keeps no reference cycle to the graph


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("lenet", {}),
        ("mlp", {}),
        ("resnet_block", {}),
        ("lstm", {}),
        ("transformer", {"layers": 2}),
    ],
)
def test_per_node_bytes_match_trace_and_totals_match_an_independent_walk(
    name: str, params: dict[str, int]
) -> None:
    case = presets.get(name).build(0, **params)
    torch.manual_seed(1)  # dropout draws its mask from the global generator
    with saved_tensors([case.inputs]) as log:
        loss = case.loss()
    memory = log.attribute(loss)

    # Oracle: the same forward without hooks, read through trace(show_saved=True) and
    # the saved tensors of every node, with shared storages counted once by data pointer.
    torch.manual_seed(1)
    plain = case.loss()
    G = gradlab.trace(plain, show_saved=True)
    expected = {n: b for n, b in G.nodes(data="saved_bytes") if b}
    got: dict[str, int] = {}
    for t in memory.tensors:
        got[t.node] = got.get(t.node, 0) + t.nbytes
    assert {n: b for n, b in got.items() if b} == expected
    storages: dict[int, int] = {}
    for fn in walk([plain.grad_fn])[0]:
        for _, t in node_saved_tensors(fn):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    assert memory.total_bytes == sum(storages.values())
    assert sum(memory.per_node().values()) == memory.activation_bytes > 0


def test_parameter_table_matches_torch() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)
    model(torch.randn(5, 3)).pow(2).mean().backward()
    rows = {r.name: r for r in parameter_table(model)}
    assert list(rows) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, p in model.named_parameters():
        row = rows[name]
        assert (row.shape, row.count, row.requires_grad) == (
            tuple(p.shape),
            p.numel(),
            p.requires_grad,
        )
        if p.grad is None:
            assert not row.has_grad and row.grad_norm is None
            continue
        assert row.has_grad
        assert row.grad_norm == pytest.approx(p.grad.norm().item(), rel=1e-6)
        assert row.grad_mean == pytest.approx(p.grad.mean().item(), rel=1e-6, abs=1e-12)
        assert row.grad_absmax == pytest.approx(p.grad.abs().max().item(), rel=1e-6)
    assert rows["2.bias"].has_grad is False


def test_inspect_model_gives_torch_gradients_and_facts() -> None:
    case = presets.get("lenet").build(0)
    twin = copy.deepcopy(case.model)
    run = inspect_model(case.model, [case.inputs], lambda out: case.loss_fn(out, case.target))
    torch_loss = case.loss_fn(twin(case.inputs), case.target)
    torch_loss.backward()
    assert run.loss == pytest.approx(torch_loss.item())
    norms = {r.name: r.grad_norm for r in run.params}
    for name, p in twin.named_parameters():
        assert norms[name] == pytest.approx(p.grad.norm().item(), rel=1e-5)
    assert run.inputs == ((1, 1, 32, 32),)
    assert run.graph.graph["module_types"]["conv1"] == "Conv2d"
    assert run.graph.graph["backward"]
    assert {t.node for t in run.saved.tensors} <= set(run.graph)


def test_inspect_model_explains_bad_models() -> None:
    model = nn.Linear(3, 2)
    with pytest.raises(GradLabError, match="scalar"):
        inspect_model(model, [torch.ones(4, 3)], lambda out: out)
    with pytest.raises(GradLabError, match="tensor"):
        inspect_model(_TupleModel(), [torch.ones(4, 3)])
    model.requires_grad_(False)
    with pytest.raises(GradLabError, match="requires grad"):
        inspect_model(model, [torch.ones(4, 3)])


class _TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), x


def test_a_model_with_nested_tensors_gets_a_clear_error() -> None:
    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            parts = torch.nested.as_nested_tensor([self.lin(x), self.lin(x[:1])])
            return (parts * 2).values()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the nested tensor API is a prototype
        with pytest.raises(GradLabError, match=r"nested tensor \(a tensor saved for backward\)"):
            inspect_model(Nested(), (torch.randn(2, 3),))
