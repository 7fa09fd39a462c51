"""save()/load(): every format, exact round trips, clear errors."""

import json
import math
from pathlib import Path

import networkx as nx
import pytest
import torch

import gradlab
from gradlab.core.errors import ExportError
from gradlab.render.formats import dot_available


@pytest.fixture
def graph() -> nx.MultiDiGraph:
    x = torch.tensor([1.0, 0.0], requires_grad=True)
    with gradlab.record():
        y = x.log() * 2  # log(0) = -inf: non-finite values must survive a round trip
        out = y[0] + x.sum()
    G = gradlab.trace(out, params={"x": x}, show_saved=True)
    return gradlab.backward(out, G)


def same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN == NaN here


@pytest.mark.parametrize("suffix", ["json", "graphml"])
def test_round_trip_keeps_nodes_edges_and_attributes(
    graph: nx.MultiDiGraph, tmp_path: Path, suffix: str
) -> None:
    path = gradlab.save(graph, tmp_path / f"g.{suffix}")
    back = gradlab.load(path)
    assert sorted(back.nodes) == sorted(graph.nodes)
    assert sorted(back.edges(keys=True)) == sorted(graph.edges(keys=True))
    for n, attrs in graph.nodes(data=True):
        assert same(dict(back.nodes[n]), attrs), n
    for u, v, k, attrs in graph.edges(keys=True, data=True):
        assert same(dict(back.edges[u, v, k]), attrs)
    assert same(back.graph, graph.graph)
    values = [d["value"] for _, d in back.nodes(data=True) if d.get("value")]
    assert any(s["inf"] for s in values)  # the -inf from log(0) came back


def test_plain_networkx_reads_both_files(graph: nx.MultiDiGraph, tmp_path: Path) -> None:
    data = json.loads(gradlab.save(graph, tmp_path / "g.json").read_text())
    assert nx.node_link_graph(data, edges="edges").number_of_edges() == graph.number_of_edges()
    read = nx.read_graphml(gradlab.save(graph, tmp_path / "g.graphml"))
    assert read.nodes["fn0"]["op"] == graph.nodes["fn0"]["op"]  # strings stay native
    assert json.loads(read.nodes["fn0"]["shape"]) == graph.nodes["fn0"]["shape"]


def test_dot_text_and_pictures(graph: nx.MultiDiGraph, tmp_path: Path) -> None:
    dot = gradlab.save(graph, tmp_path / "g.dot").read_text()
    assert dot.startswith("digraph") and "LogBackward0" in dot and "legend" in dot
    if not dot_available():
        pytest.fail("Graphviz's dot is missing: the test command installs it")
    svg = gradlab.save(graph, tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "LogBackward0" in svg
    png = gradlab.save(graph, tmp_path / "g.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dot_program_is_explained(
    graph: nx.MultiDiGraph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ExportError, match="apt-get install graphviz"):
        gradlab.save(graph, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_unknown_suffix_and_unreadable_files(graph: nx.MultiDiGraph, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown suffix"):
        gradlab.save(graph, tmp_path / "g.pdf")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ExportError, match="Cannot read"):
        gradlab.load(tmp_path / "bad.json")
    with pytest.raises(ExportError, match=r"only \.json and \.graphml"):
        gradlab.load(tmp_path / "g.dot")


def test_nan_is_written_the_way_python_reads_it(tmp_path: Path) -> None:
    x = torch.tensor([float("nan")], requires_grad=True)
    G = gradlab.trace(x * 1)
    back = gradlab.load(gradlab.save(G, tmp_path / "g.json"))
    assert math.isnan(back.nodes["leaf0"]["value"]["values"][0])
