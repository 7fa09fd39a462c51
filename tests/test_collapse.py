"""collapse(): tiny literal graphs first, then every preset, then the big ones."""

from __future__ import annotations

import copy

import networkx as nx
import pytest
import torch
from torch import nn

import gradlab
from gradlab.app.targets import trace_case
from gradlab.core.collapse import PREFIX, collapse, expandable, max_depth, module_paths
from gradlab.core.graph import Graph
from gradlab.zoo import presets

# (id, kind, op, module, seq): ops in creation order, as gradlab.trace writes them.
Row = tuple[str, str, str | None, str | None, int | None]


def literal(rows: list[Row], edges: list[tuple[str, str]]) -> Graph:
    G = nx.MultiDiGraph(roots=["out0"])
    for n, kind, op, module, seq in rows:
        kind_of_module = module.split(".")[-1].capitalize() if module else None
        G.add_node(
            n, kind=kind, label=op or n, op=op, module=module, module_type=kind_of_module,
            seq=seq, shape=[2],
        )  # fmt: skip
    for slot, (u, v) in enumerate(edges):
        G.add_edge(u, v, kind="flow", slot=slot, output=0)
    return G


def chain() -> Graph:
    """x -> fc1 (addmm + its weight) -> act -> sum -> out: the smallest model."""
    return literal(
        [
            ("leaf0", "leaf", None, None, None),
            ("fn3", "op", "AccumulateGrad", None, None),
            ("fn2", "op", "AddmmBackward0", "fc1", 0),
            ("fn1", "op", "ReluBackward0", "act", 1),
            ("fn0", "op", "SumBackward0", "", 2),
            ("out0", "output", None, None, None),
        ],
        [("leaf0", "fn3"), ("fn3", "fn2"), ("fn2", "fn1"), ("fn1", "fn0"), ("fn0", "out0")],
    )


def edge_list(C: Graph) -> list[tuple[str, str, int]]:
    return sorted((u, v, d.get("count", 1)) for u, v, d in C.edges(data=True))


def modules(C: Graph) -> dict[str, str]:
    return {n: a["label"] for n, a in C.nodes(data=True) if a["kind"] == "module"}


def test_chain_at_depth_one_groups_each_module_and_its_parameter() -> None:
    C = collapse(chain(), 1)
    assert sorted(C) == ["fn0", "m_act", "m_fc1", "out0"]
    assert edge_list(C) == [("fn0", "out0", 1), ("m_act", "fn0", 1), ("m_fc1", "m_act", 1)]
    fc1 = C.nodes["m_fc1"]
    assert fc1["members"] == ["leaf0", "fn3", "fn2"]  # the weight joined its only user
    assert (fc1["count"], fc1["ops"], fc1["name"], fc1["module"]) == (3, 2, "fc1", "")
    assert fc1["label"] == "fc1 (Fc1)"


def test_depth_zero_is_one_node_and_full_depth_is_the_graph() -> None:
    G = chain()
    before = copy.deepcopy(dict(G.nodes(data=True)))
    C0 = collapse(G, 0)
    assert sorted(C0) == ["m_", "out0"]
    assert C0.nodes["m_"]["count"] == 5
    full = collapse(G, max_depth(G))
    assert sorted(full) == sorted(G)
    assert sorted(full.edges(keys=True)) == sorted(G.edges(keys=True))
    assert dict(G.nodes(data=True)) == before  # the traced graph is left alone


def test_expanding_a_module_shows_its_ops() -> None:
    C = collapse(chain(), 1, ["fc1"])
    assert "m_fc1" not in C and {"fn2", "fn3", "leaf0", "m_act"} <= set(C)
    assert edge_list(C) == [
        ("fn0", "out0", 1), ("fn2", "m_act", 1), ("fn3", "fn2", 1), ("leaf0", "fn3", 1),
        ("m_act", "fn0", 1),
    ]  # fmt: skip


def test_a_module_called_twice_gives_two_nodes_and_no_cycle() -> None:
    # LeNet's shape: one relu module used after two different convolutions.
    G = literal(
        [
            ("fn0", "op", "SumBackward0", "", 4),
            ("fn1", "op", "ReluBackward0", "relu", 3),
            ("fn2", "op", "ConvolutionBackward0", "conv2", 2),
            ("fn3", "op", "ReluBackward0", "relu", 1),
            ("fn4", "op", "ConvolutionBackward0", "conv1", 0),
            ("out0", "output", None, None, None),
        ],
        [("fn4", "fn3"), ("fn3", "fn2"), ("fn2", "fn1"), ("fn1", "fn0"), ("fn0", "out0")],
    )
    C = collapse(G, 1)
    assert modules(C) == {
        "m_relu": "relu (Relu)", "m_conv2": "conv2 (Conv2)", "m_relu#2": "relu (Relu)",
        "m_conv1": "conv1 (Conv1)",
    }  # fmt: skip
    assert nx.is_directed_acyclic_graph(C)
    # Calls are numbered in the order they ran: conv1 feeds the first.
    assert edge_list(C) == [
        ("fn0", "out0", 1), ("m_conv1", "m_relu", 1), ("m_conv2", "m_relu#2", 1),
        ("m_relu", "m_conv2", 1), ("m_relu#2", "fn0", 1),
    ]  # fmt: skip


def test_parallel_edges_between_modules_merge_with_a_count() -> None:
    G = literal(
        [
            ("fn0", "op", "AddBackward0", "b", 2),
            ("fn1", "op", "SplitBackward0", "a", 0),
            ("fn2", "op", "MulBackward0", "a", 1),
            ("out0", "output", None, None, None),
        ],
        [("fn1", "fn2"), ("fn1", "fn0"), ("fn2", "fn0"), ("fn0", "out0")],
    )
    C = collapse(G, 1)
    assert edge_list(C) == [("m_a", "m_b", 2), ("m_b", "out0", 1)]
    assert C.nodes["m_a"]["shape"] == [2]  # the exit op's facts: fn2 ran last


def blocks(n: int, odd: int | None = None) -> Graph:
    """``n`` sibling blocks ``blocks.i`` (a Linear with its weight), block ``odd`` wider."""
    rows: list[Row] = [("out0", "output", None, None, None)]
    edges: list[tuple[str, str]] = []
    previous = None
    for i in range(n):
        rows += [
            (f"fn{i}", "op", "MmBackward0", f"blocks.{i}", i),
            (f"acc{i}", "op", "AccumulateGrad", None, None),
            (f"leaf{i}", "leaf", None, None, None),
        ]
        edges += [(f"leaf{i}", f"acc{i}"), (f"acc{i}", f"fn{i}")]
        if previous is not None:
            edges.append((previous, f"fn{i}"))
        previous = f"fn{i}"
    edges.append((f"fn{n - 1}", "out0"))
    G = literal(rows, edges)
    for i in range(n):
        G.nodes[f"fn{i}"]["module_type"] = "Linear"
        G.nodes[f"acc{i}"]["shape"] = [8, 8 if i != odd else 9]
    return G


def test_identical_siblings_fold_until_the_fold_is_expanded() -> None:
    G = blocks(5)
    assert modules(collapse(G, 1)) == {"m_blocks": "blocks"}
    folded = collapse(G, 1, ["blocks"])
    assert modules(folded) == {"m_blocks.0-4": "blocks.0–4 (×5)"}
    fold = folded.nodes["m_blocks.0-4"]
    assert (fold["name"], fold["repeat"], fold["count"]) == ("blocks.0-4", 5, 15)
    unfolded = collapse(G, 1, ["blocks", "blocks.0-4"])
    assert sorted(modules(unfolded)) == [f"m_blocks.{i}" for i in range(5)]
    assert sorted(modules(collapse(G, 2, fold=None))) == [f"m_blocks.{i}" for i in range(5)]


def test_an_expanded_or_different_block_splits_the_fold() -> None:
    opened = collapse(blocks(9), 1, ["blocks.4"])  # a deep path opens its ancestors too
    assert sorted(modules(opened).values()) == ["blocks.0–3 (×4)", "blocks.5–8 (×4)"]
    assert "fn4" in opened  # blocks.4 is open: its op is shown
    odd = collapse(blocks(9, odd=4), 1, ["blocks"])
    assert sorted(modules(odd).values()) == [
        "blocks.0–3 (×4)", "blocks.4 (Linear)", "blocks.5–8 (×4)",
    ]  # fmt: skip
    assert sorted(modules(collapse(blocks(3), 1, ["blocks"]))) == [
        "m_blocks.0", "m_blocks.1", "m_blocks.2",
    ]  # fmt: skip  # three are fewer than the 4 folded by default


def test_a_graph_without_modules_is_copied() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    G = gradlab.trace((x * x).sum())
    C = collapse(G, 0)
    assert sorted(C) == sorted(G) and sorted(C.edges(keys=True)) == sorted(G.edges(keys=True))
    assert C is not G


def test_module_paths_expandable_and_depth() -> None:
    G = blocks(11)
    assert module_paths(G)[:4] == ["blocks", "blocks.0", "blocks.1", "blocks.2"]
    assert module_paths(G)[-1] == "blocks.10"  # natural order
    assert max_depth(G) == 3
    assert expandable(G, ["blocks.0-10", "blocks.3", "stale.0-1", "zzz"]) == [
        "blocks.0-10",
        "blocks.3",
    ]


def check_view(G: Graph, C: Graph) -> None:
    """C is acyclic and its nodes partition G's."""
    assert nx.is_directed_acyclic_graph(C)
    seen: list[str] = []
    for n, attrs in C.nodes(data=True):
        seen += attrs["members"] if attrs["kind"] == "module" else [n]
    assert sorted(seen) == sorted(G)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("linear", {}),
        ("lenet", {}),
        ("mlp", {"depth": 6}),
        ("transformer", {"layers": 2}),
        ("resnet_block", {}),
        ("resnet18", {}),
        ("lstm", {}),
    ],
)
def test_every_depth_of_every_preset_is_a_partition_and_a_dag(
    name: str, params: dict[str, int]
) -> None:
    G = trace_case(presets.get(name).build(0, **params))
    sizes = []
    for depth in range(max_depth(G) + 1):
        C = collapse(G, depth, fold=None)
        check_view(G, C)
        sizes.append(C.number_of_nodes())
    assert sizes == sorted(sizes)  # deeper never shows fewer nodes
    assert sizes[-1] == G.number_of_nodes()
    for path in module_paths(G):
        check_view(G, collapse(G, 1, [path]))
    assert collapse(G, 1).nodes == collapse(G, 1).nodes  # deterministic


def test_lenet_at_depth_one() -> None:
    G = trace_case(presets.get("lenet").build(0))
    C = collapse(G, 1)
    assert sorted(modules(C).values()) == sorted(
        ["conv1 (Conv2d)", "conv2 (Conv2d)", "fc1 (Linear)", "fc2 (Linear)", "fc3 (Linear)"]
        + ["relu (ReLU)"] * 4
        + ["pool (MaxPool2d)"] * 2
    )
    fc1 = C.nodes["m_fc1"]
    params = [m for m in fc1["members"] if G.nodes[m]["kind"] == "leaf"]
    assert sorted(G.nodes[m]["name"] for m in params) == ["fc1.bias", "fc1.weight"]
    # Its value and gradient are those of the op whose result leaves the module.
    (exit_op,) = [
        m for m in fc1["members"] if any(v not in fc1["members"] for v in G.successors(m))
    ]
    assert G.nodes[exit_op]["op"] == "AddmmBackward0"
    assert fc1["grad"] == G.nodes[exit_op]["grad"] and fc1["shape"] == [1, 120]


def test_a_thousand_layer_mlp_folds_to_a_handful_of_nodes() -> None:
    G = trace_case(presets.get("mlp").build(0, depth=1000))
    C = collapse(G, 1)
    check_view(G, C)
    assert modules(C) == {"m_0-1999": "0–1999 (×1000)", "m_2000": "2000 (Linear)"}
    assert C.nodes["m_0-1999"]["repeat"] == 1000
    assert C.number_of_nodes() < 10


def test_a_stack_of_transformer_layers_folds() -> None:
    # nn.Sequential calls its layers itself, so their paths are "0", "1", ...
    torch.manual_seed(0)
    stack = nn.Sequential(
        *[nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True) for _ in range(6)]
    )
    with gradlab.record():
        loss = stack(torch.randn(2, 4, 16)).pow(2).mean()
    G = gradlab.trace(loss, model=stack)
    C = collapse(G, 1)
    check_view(G, C)
    # The first layer's input needs no gradient, so autograd records fewer ops in it;
    # it is still the same block and folds with the rest.
    assert list(modules(C).values()) == ["0–5 (×6)"]
    assert C.nodes[f"{PREFIX}0-5"]["ops"] == sum(
        1 for n in G if G.nodes[n]["kind"] == "op" and G.nodes[n]["module"]
    ) + sum(1 for n in G if G.nodes[n].get("op") == "AccumulateGrad")


def test_the_32_layer_transformer_preset_folds_its_layers() -> None:
    G = trace_case(presets.get("transformer").build(0, layers=32))
    assert modules(collapse(G, 1, ["layers"])) == {"m_layers.0-31": "layers.0–31 (×32)"}
