"""save()/load(): every format, exact round trips, clear errors."""

import json
import math
from pathlib import Path

import networkx as nx
import pytest
import torch

import gradlab
from gradlab.app.cli import main
from gradlab.core.errors import ExportError
from gradlab.render.formats import (
    FORMATS,
    GRAPHVIZ_UP_TO,
    Format,
    dot_available,
    no_picture_reason,
    offers,
)


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


def test_every_row_of_the_table_is_what_save_writes_and_load_reads(
    graph: nx.MultiDiGraph, tmp_path: Path
) -> None:
    if not dot_available():
        pytest.fail("Graphviz's dot is missing: the test command installs it")
    assert list(FORMATS) == ["dot", "svg", "png", "json", "graphml", "html"]
    for spec in FORMATS.values():
        path = gradlab.save(graph, tmp_path / f"g.{spec.suffix}", clusters=True)
        assert path.read_bytes() == spec.write(graph, True), spec.suffix
        if spec.read is None:
            with pytest.raises(ExportError, match=r"only \.json and \.graphml files"):
                gradlab.load(path)
        else:
            back = gradlab.load(path)
            assert sorted(back.edges(keys=True)) == sorted(graph.edges(keys=True)), spec.suffix
    assert [s.suffix for s in FORMATS.values() if s.needs_dot] == ["svg", "png"]


def test_a_new_format_is_one_row(
    graph: nx.MultiDiGraph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def write(G: nx.MultiDiGraph, clusters: bool) -> bytes:
        return f"{G.number_of_nodes()} nodes".encode()

    def read(raw: bytes) -> nx.MultiDiGraph:
        G = nx.MultiDiGraph()
        count = int(raw.split()[0])
        G.add_nodes_from((f"n{i}", {"kind": "leaf", "label": ""}) for i in range(count))
        return G

    row = Format("count", "Count", "text/plain", False, write, read, "how many nodes")
    monkeypatch.setitem(FORMATS, "count", row)
    path = gradlab.save(graph, tmp_path / "g.count")
    assert path.read_text() == f"{graph.number_of_nodes()} nodes"
    assert gradlab.load(path).number_of_nodes() == graph.number_of_nodes()
    offer = offers(graph, "g")[-1]
    assert (offer.file_name, offer.help, offer.blocked) == ("g.count", "how many nodes", None)
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert ".count" in capsys.readouterr().out


def test_pictures_are_offered_only_with_dot_and_below_the_graphviz_limit(
    graph: nx.MultiDiGraph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def blocked(G: nx.MultiDiGraph) -> dict[str, str]:
        return {o.format.suffix: o.help for o in offers(G, "g") if o.blocked is not None}

    if not dot_available():
        pytest.fail("Graphviz's dot is missing: the test command installs it")
    assert blocked(graph) == {}
    assert [o.help for o in offers(graph, "g")] == [s.help for s in FORMATS.values()]
    big = nx.MultiDiGraph()
    big.add_nodes_from(f"n{i}" for i in range(GRAPHVIZ_UP_TO + 1))
    assert set(blocked(big)) == {"svg", "png"} and "1,501 nodes" in blocked(big)["svg"]
    assert no_picture_reason(graph) is None and "1,501 nodes" in str(no_picture_reason(big))
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot program
    assert set(blocked(graph)) == {"svg", "png"} and "apt-get" in blocked(graph)["png"]
    assert no_picture_reason(graph) is None  # the browser lays the classic picture out
