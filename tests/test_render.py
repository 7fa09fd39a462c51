"""The DOT picture, the Plotly figure, the layered layout, the tables and the Debugger's charts."""

import math

import networkx as nx
import pytest
import torch
from torch import nn

import gradlab
from gradlab.core.memory import inspect_model
from gradlab.core.memory_totals import human_bytes
from gradlab.core.summary import summarize
from gradlab.core.text import describe, number, shape, short
from gradlab.diagnose import FAMILY, Agreement, examine
from gradlab.program import run_program
from gradlab.render.diagnosis import FAMILY_TITLES, depth_profile, gradcheck_colors
from gradlab.render.dot import FILL, node_label, to_dot
from gradlab.render.layout import layered_layout, layers
from gradlab.render.plotly import to_figure
from gradlab.render.table import (
    parameter_rows,
    parameter_summary,
    saved_rows,
    saved_summary,
    variable_rows,
)
from gradlab.zoo import presets


def traced_model() -> nx.MultiDiGraph:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    with gradlab.record():
        loss = model(torch.randn(2, 3)).sum()
    return gradlab.backward(loss, gradlab.trace(loss, model=model))


def test_dot_has_every_node_the_legend_colours_and_clusters() -> None:
    G = traced_model()
    dot = to_dot(G, clusters=True, highlight=["fn1"])
    for n in G:
        assert f"\t{n} [" in dot or f'\t"{n}" [' in dot
    for colour in (FILL["leaf"], FILL["op"], FILL["output"]):
        assert colour in dot
    assert "cluster_0" in dot and "cluster_2" in dot and "cluster_legend" in dot
    start = dot.index("\tfn1 [")
    statement = dot[start : dot.index("]\n", dot.index("tooltip=", start))]
    assert "color=red" in statement and "penwidth=3" in statement


def test_labels_show_values_gradients_and_steps() -> None:
    G = traced_model()
    label = node_label(G.nodes["fn0"])
    assert "SumBackward0" in label and "step 0" in label and "grad 1." in label


def test_nonfinite_nodes_are_red() -> None:
    x = torch.tensor([0.0], requires_grad=True)
    with gradlab.record():
        y = x.log()
    dot = to_dot(gradlab.trace(y))
    assert FILL["nonfinite"] in dot


def test_layout_puts_every_edge_downwards() -> None:
    G = traced_model()
    pos = layered_layout(G)
    assert set(pos) == set(G)
    assert all(pos[u][1] > pos[v][1] for u, v in G.edges())
    layer = layers(G)
    assert layer["out0"] == max(layer.values())


def test_layout_of_a_wide_random_dag_keeps_order() -> None:
    G = nx.gn_graph(500, seed=1).reverse()  # a tree pointing to its root
    H = nx.MultiDiGraph(G)
    pos = layered_layout(H)
    assert all(pos[u][1] > pos[v][1] for u, v in H.edges())


def test_plotly_figure_names_nodes_and_colours_by_gradient() -> None:
    G = traced_model()
    fig = to_figure(G, color="grad", highlight=["fn2"], selected="fn3")
    ids = [n for trace in fig.data if trace.customdata is not None for n in trace.customdata]
    assert set(G) <= set(ids)
    scaled = [t for t in fig.data if getattr(t.marker, "showscale", None)]
    assert scaled and "grad" in scaled[0].marker.colorbar.title.text
    outlines = {t.marker.line.color for t in fig.data[1:] if t.mode == "markers"}
    assert {"red", "royalblue"} <= outlines


def test_plotly_colours_by_kind_are_valid_css() -> None:
    G = traced_model()
    fig = to_figure(G)  # would raise on a Graphviz-only colour name
    colours = {c for t in fig.data[1:] for c in (t.marker.color or [])}
    assert {FILL["leaf"], FILL["op"], FILL["output"]} <= colours


def test_plotly_uses_webgl_for_big_graphs() -> None:
    G = nx.MultiDiGraph()
    for i in range(1200):
        G.add_node(f"n{i}", kind="op", label="op", op="AddBackward0")
    G.add_edges_from((f"n{i}", f"n{i + 1}") for i in range(1199))
    fig = to_figure(G)
    assert fig.data[0].type == "scattergl"


def test_text_forms() -> None:
    assert number(0.333333333) == "0.3333" and number(2.0) == "2." and number(float("nan")) == "nan"
    assert shape([2]) == "(2,)" and shape([]) == "()"
    s = gradlab.summarize(torch.tensor([1.0, float("inf")]))
    assert short(s) == "[1., inf]"
    assert "1 Inf" in describe(s)


def test_variable_rows_show_torchs_values_and_gradients() -> None:
    result = run_program(
        "x = torch.tensor([2.0, 3.0], requires_grad=True)\ny = (x * x).sum()\ny.backward()\n"
    )
    rows = {r["name"]: r for r in variable_rows(result.variables)}
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad is not None
    assert rows["x"]["grad"] == short(summarize(x.grad)) and rows["x"]["requires_grad"] is True
    assert rows["y"]["grad_fn"] == "SumBackward0" and rows["y"]["value"] == short(
        summarize((x * x).sum().detach())
    )


def test_parameter_and_memory_tables_hold_torchs_numbers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    model[2].bias.requires_grad_(False)
    run = inspect_model(model, [torch.randn(5, 3)], lambda out: out.sum())
    rows = parameter_rows(run.params)
    assert [r["name"] for r in rows] == [n for n, _ in model.named_parameters()]
    assert rows[0]["shape"] == "(4, 3)" and rows[0]["count"] == 12
    weight = model[0].weight
    assert weight.grad is not None
    assert rows[0]["grad_norm"] == pytest.approx(weight.grad.norm().item())
    assert parameter_summary(run.params) == "4 tensors, 21 numbers (20 trainable)."
    nodes = run.saved.by_node(run.graph)
    saved = saved_rows(nodes, limit=2)
    assert len(saved) == 2 and [r["node"] for r in saved] == [r.node for r in nodes[:2]]
    assert saved[0]["saved"] == human_bytes(nodes[0].nbytes)
    storages = sum(t.first for t in run.saved.tensors)
    assert saved_summary(run.saved.tensors).startswith(
        f"{len(run.saved.tensors)} saved tensors in {storages} storages."
    )


def test_the_debuggers_profile_is_the_reports_layers() -> None:
    report = examine(presets.get("mlp").build())
    fig = depth_profile(report.layers)
    assert fig is not None and fig.layout.yaxis.type == "log"
    assert list(fig.data[0].y) == [layer.rms for layer in report.layers if layer.rms > 0]
    assert depth_profile(report.layers[:1]) is None


def test_gradient_check_colours_the_leaves_it_checked() -> None:
    x = torch.ones(2, requires_grad=True)
    G = gradlab.trace((x * 3).sum(), params={"x": x})
    checks = [
        Agreement("x", "leaf0", 2, worst=50.0, autograd=1.0, numeric=2.0),
        Agreement("gone", None, 2, worst=0.5, autograd=1.0, numeric=1.0),
        Agreement("other", "leaf9", 2, worst=0.0, autograd=1.0, numeric=1.0),
    ]
    checked = gradcheck_colors(checks, G)
    assert checked is not None and checked.colors == {"leaf0": pytest.approx(math.log10(50))}
    assert "The largest: 50, for `x`." in checked.caption
    assert gradcheck_colors((), G) is None


def test_every_family_of_findings_has_a_title() -> None:
    assert set(FAMILY_TITLES) == set(FAMILY.values())

