"""gradlab.core.graph's fast paths agree with networkx's own construction and views."""

from __future__ import annotations

import networkx as nx
import torch

import gradlab
from gradlab.core import graph
from gradlab.core.graph import EdgeAttrs, NodeAttrs, assemble


def _lists() -> tuple[list[tuple[str, NodeAttrs]], list[tuple[str, str, int, EdgeAttrs]]]:
    nodes: list[tuple[str, NodeAttrs]] = [
        ("fn0", {"kind": "op", "label": "MulBackward0"}),
        ("fn1", {"kind": "op", "label": "AccumulateGrad"}),
        ("leaf0", {"kind": "leaf", "label": "x"}),
        ("out0", {"kind": "output", "label": "out"}),
    ]
    edges: list[tuple[str, str, int, EdgeAttrs]] = [
        ("leaf0", "fn1", 0, {"kind": "flow", "slot": 0}),
        ("fn1", "fn0", 0, {"kind": "flow", "slot": 0}),
        ("fn1", "fn0", 1, {"kind": "flow", "slot": 1}),  # y = x * x: two slots
        ("fn0", "out0", 0, {"kind": "flow", "slot": 0}),
    ]
    return nodes, edges


def test_assemble_equals_networkx_construction_in_content_and_order() -> None:
    nodes, edges = _lists()
    G = assemble(nodes, edges, roots=["out0"])
    H = nx.MultiDiGraph(roots=["out0"])
    H.add_nodes_from(nodes)
    H.add_edges_from(edges)
    assert G.graph == H.graph
    assert list(G.nodes(data=True)) == list(H.nodes(data=True))
    assert list(G.edges(keys=True, data=True)) == list(H.edges(keys=True, data=True))
    for n in H:
        assert list(G.pred[n].items()) == list(H.pred[n].items())
        assert list(G.succ[n].items()) == list(H.succ[n].items())
    assert nx.utils.graphs_equal(G, H)
    assert G.edges["fn1", "fn0", 1] is edges[2][3]  # the dicts given are the graph's own


def test_the_dicts_are_the_graphs_own() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    G = gradlab.trace((x * x).sum())
    nodes, succ, pred = graph.node_dicts(G), graph.succ_dicts(G), graph.pred_dicts(G)
    assert list(nodes) == list(G.nodes) and all(nodes[n] is G.nodes[n] for n in G)
    for u, v, k, attrs in G.edges(keys=True, data=True):
        assert succ[u][v][k] is attrs and pred[v][u][k] is attrs
    assert {u: set(vs) for u, vs in succ.items()} == {u: set(G.successors(u)) for u in G}
    assert {v: set(us) for v, us in pred.items()} == {v: set(G.predecessors(v)) for v in G}
    assert graph.edge_dicts(G) == {(u, v, k): d for u, v, k, d in G.edges(keys=True, data=True)}
    succ["fn1"]["fn0"][0]["grad"] = None  # a write into an attribute dict is the edge's
    assert G.edges["fn1", "fn0", 0]["grad"] is None
