"""trace(): literal graphs, ids, names, saved tensors, depth, errors."""

import contextlib
import threading
import warnings

import pytest
import torch
from torch import nn

import gradlab
from gradlab.core.errors import TraceError


def test_edge_list_of_a_times_b_plus_c() -> None:
    a, b, c = (torch.tensor(v, requires_grad=True) for v in (2.0, 3.0, 4.0))
    G = gradlab.trace(a * b + c, params={"a": a, "b": b, "c": c})
    label = {n: d.get("name") or d.get("op") or d["label"] for n, d in G.nodes(data=True)}
    edges = sorted((label[u], label[v], k) for u, v, k in G.edges(keys=True))
    assert edges == [
        ("AccumulateGrad", "AddBackward0", 1),  # c
        ("AccumulateGrad", "MulBackward0", 0),  # a
        ("AccumulateGrad", "MulBackward0", 1),  # b
        ("AddBackward0", "out", 0),
        ("MulBackward0", "AddBackward0", 0),
        ("a", "AccumulateGrad", 0),
        ("b", "AccumulateGrad", 0),
        ("c", "AccumulateGrad", 0),
    ]
    kinds = sorted(d["kind"] for _, d in G.nodes(data=True))
    assert kinds == ["leaf"] * 3 + ["op"] * 5 + ["output"]


def test_scenario_1_a_leaf_that_tracks_gradients() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    G = gradlab.trace(x, params={"x": x})
    assert x.grad_fn is None
    leaf = G.nodes["leaf0"]
    assert (leaf["kind"], leaf["shape"], leaf["dtype"], leaf["requires_grad"]) == (
        "leaf",
        [2, 3],
        "float32",
        True,
    )
    assert leaf["value"]["values"] == x.tolist()
    assert list(G.edges) == [("leaf0", "out0", 0)]


def test_scenario_2_square_has_powbackward_with_its_value() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    with gradlab.record():
        y = x**2
    G = gradlab.trace(y, params={"x": x, "y": y})
    assert G.nodes["fn0"]["op"] == "PowBackward0"
    assert G.nodes["fn0"]["value"]["values"] == [4.0, 9.0]
    assert G.nodes["fn0"]["name"] == "y"


def test_scenario_3_nodes_and_the_double_edge_of_y_times_y() -> None:
    x = torch.ones(2, 2, requires_grad=True)
    with gradlab.record():
        y = x + 2
        z = y * y * 3
        out = z.mean()
    G = gradlab.trace(out, params={"x": x, "y": y})
    ops = sorted(G.nodes[n]["op"] for n in gradlab.op_nodes(G))
    assert ops == [
        "AccumulateGrad",
        "AddBackward0",
        "MeanBackward0",
        "MulBackward0",
        "MulBackward0",
    ]
    add = next(n for n in G if G.nodes[n].get("name") == "y")
    (square,) = {v for _, v in G.out_edges(add)}
    assert G.number_of_edges(add, square) == 2  # y feeds both inputs of one multiply
    assert G.nodes["out0"]["value"]["values"] == 27.0


def test_ids_are_the_same_for_the_same_program() -> None:
    def program() -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
        return model(torch.randn(4, 3)).sum()

    a, b = gradlab.trace(program()), gradlab.trace(program())
    assert list(a.nodes(data="op")) == list(b.nodes(data="op"))
    assert sorted(a.edges(keys=True)) == sorted(b.edges(keys=True))


def test_model_names_leaves_and_intermediates_get_variable_names() -> None:
    model = nn.Linear(2, 1)
    x = torch.randn(3, 2)
    h = model(x)
    G = gradlab.trace(h.sum(), model=model, params={"h": h})
    names = {d.get("name") for _, d in G.nodes(data=True)}
    assert {"weight", "bias", "h"} <= names


def test_a_100000_node_chain_traces_without_recursion_error() -> None:
    x = torch.zeros(1, requires_grad=True)
    chain = [x]
    for _ in range(100_000):
        chain[0] = chain[0] + 1
    G = gradlab.trace(chain[0], values=False)
    assert len(gradlab.op_nodes(G)) == 100_001
    # Once Python has touched the nodes of a graph this deep, PyTorch's own node
    # destructor recurses when the graph is freed; a large stack lets it finish.
    threading.stack_size(256 << 20)
    try:
        freeing = threading.Thread(target=chain.clear)
        freeing.start()
        freeing.join()
    finally:
        threading.stack_size(0)


def test_show_saved_adds_saved_tensors_with_their_bytes() -> None:
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    G = gradlab.trace((a * b).sum(), show_saved=True)
    mul = next(n for n in gradlab.op_nodes(G) if G.nodes[n]["op"] == "MulBackward0")
    saved = sorted(
        G.nodes[u]["attr"] for u, _, d in G.in_edges(mul, data=True) if d["kind"] == "saved"
    )
    assert saved == ["other", "self"]
    assert G.nodes[mul]["saved_bytes"] == 2 * 3 * 4
    values = {
        G.nodes[u]["attr"]: G.nodes[u]["value"]["values"]
        for u, _, d in G.in_edges(mul, data=True)
        if d["kind"] == "saved"
    }
    assert values == {"self": a.tolist(), "other": b.tolist()}


def test_show_saved_after_backward_says_how_to_fix_it() -> None:
    a = torch.randn(3, requires_grad=True)
    y = (a * a).sum()
    y.backward()
    with pytest.raises(TraceError, match="retain_graph=True"):
        gradlab.trace(y, show_saved=True)


def test_values_false_keeps_structure_without_summaries() -> None:
    a = torch.randn(3, requires_grad=True)
    with gradlab.record():
        y = (a**3).sum()
    G = gradlab.trace(y, values=False)
    assert all("value" not in d and "args" not in d for _, d in G.nodes(data=True))
    assert G.nodes["fn1"]["shape"] == [3]
    full = gradlab.trace(y)
    assert full.nodes["fn1"]["args"] == {"exponent": 3}  # the scalar PowBackward0 kept
    structure = ("kind", "op", "shape", "dtype", "device", "name", "module", "seq", "outputs")
    for n, d in G.nodes(data=True):
        assert {k: d.get(k) for k in structure} == {k: full.nodes[n].get(k) for k in structure}


def test_errors_name_the_problem() -> None:
    with pytest.raises(TraceError, match="requires_grad=True"):
        gradlab.trace(torch.ones(2))
    with pytest.raises(TraceError, match="takes tensors"):
        gradlab.trace([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TraceError, match="at least one"):
        gradlab.trace()


def test_the_same_root_twice_is_one_output() -> None:
    a = torch.randn(2, requires_grad=True)
    y = a.sum()
    G = gradlab.trace(y, y)
    assert G.graph["roots"] == ["out0", "out0"]
    assert sum(1 for _, k in G.nodes(data="kind") if k == "output") == 1


@pytest.mark.parametrize("recorded", [False, True])
def test_a_nested_tensor_in_the_graph_gets_a_clear_error(recorded: bool) -> None:
    a, b = torch.randn(2, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    recording = gradlab.record() if recorded else contextlib.nullcontext()
    with warnings.catch_warnings(), recording:
        warnings.simplefilter("ignore")  # the nested tensor API is a prototype
        values = (torch.nested.as_nested_tensor([a, b]) * 2).values()
    with pytest.raises(TraceError, match=r"nested tensor \(the output of MulBackward0\)"):
        gradlab.trace(values.sum())
    # started after the nested ops, as the message says, the rest traces
    start = values.detach().requires_grad_()
    G = gradlab.trace((start**2).sum(), params={"v": start})
    assert [G.nodes[n]["op"] for n in gradlab.op_nodes(G)][:2] == ["SumBackward0", "PowBackward0"]
    assert G.nodes["leaf0"]["shape"] == [18]
