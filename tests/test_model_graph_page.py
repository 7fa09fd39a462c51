"""The Model graph page: AppTest for its interactions, one real browser for the click."""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

import networkx as nx
import pytest

from gradlab.core.collapse import collapse
from gradlab.core.memory import inspect_model
from gradlab.isolation.trusted import EXAMPLE, TRUSTED_ENV
from gradlab.render.formats import dot_available
from gradlab.zoo.presets import PRESETS
from tests.conftest import app_test, screenshot, wait_for_app
from tests.viewer_app import click_viewer_node, node_ids, viewer_data

PAGE = "model_graph.py"


def figure_nodes(at: Any) -> list[str]:
    """The node ids the page's viewer draws."""
    return node_ids(at)


def shown(at: Any) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Input batch"))


def test_every_preset_loads_and_shows_its_graph() -> None:
    at = app_test(PAGE)
    assert not at.exception
    assert figure_nodes(at)  # LeNet by default
    for name in PRESETS:
        at.selectbox(key="mg.preset").set_value(name).run()
        assert not at.exception, name
        assert not at.error, name
        assert re.search(r"Showing [\d,]+ of [\d,]+ autograd graph nodes", shown(at)), name
        assert at.query_params["preset"] == name
        assert at.get("dataframe"), name  # parameter and saved-tensor tables


def test_depth_expand_and_link() -> None:
    at = app_test(PAGE)
    collapsed = figure_nodes(at)
    assert "m_conv1" in collapsed and not any(n.startswith("leaf") for n in collapsed)
    at.slider(key="mg.depth").set_value(2).run()
    full = figure_nodes(at)
    assert not any(n.startswith("m_") for n in full) and len(full) == 38
    assert "Showing 38 of 38" in shown(at)
    at.slider(key="mg.depth").set_value(1).run()
    click_viewer_node(at, "m_conv1")
    assert not at.exception
    assert at.multiselect(key="mg.expanded").value == ["conv1"]
    assert at.query_params["expand"] == "conv1"
    opened = figure_nodes(at)
    assert "m_conv1" not in opened and len(opened) == len(collapsed) + 4  # conv, Acc ×2, leaf ×2
    at.button(key="mg.close").click().run()
    assert figure_nodes(at) == collapsed and "expand" not in at.query_params


def test_a_link_opens_the_same_view_and_bad_links_fall_back() -> None:
    at = app_test()
    at.query_params.update(
        {"preset": "mlp", "mlp.depth": "8", "depth": "1", "expand": "0-15", "view": "graphviz"}
    )
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.number_input(key="mg.arg.mlp.depth").value == 8
    assert at.multiselect(key="mg.expanded").value == ["0-15"]
    dot = at.get("graphviz_chart")[0].proto.spec
    assert "15 (ReLU)" in dot and "×8" not in dot  # the fold of 8 (Linear, ReLU) is open
    bad = app_test()
    bad.query_params.update({"preset": "nope", "depth": "x", "expand": "zz,0", "mlp.depth": "-3"})
    bad.switch_page(PAGE).run()
    assert not bad.exception and not bad.error
    assert bad.selectbox(key="mg.preset").value == "lenet"


def test_a_big_model_is_folded_first() -> None:
    at = app_test(PAGE)
    at.selectbox(key="mg.preset").set_value("mlp").run()
    at.number_input(key="mg.arg.mlp.depth").set_value(1000).run()
    assert not at.exception
    assert "m_0-1999" in figure_nodes(at) and len(figure_nodes(at)) < 10
    assert "of 7,008 autograd graph nodes" in shown(at)


def test_colour_by_saved_memory() -> None:
    at = app_test(PAGE)
    at.selectbox(key="mg.color").set_value("saved").run()
    data = viewer_data(at)
    assert data["options"]["color"] == "grad" and "log₁₀ bytes saved" in shown(at)
    colour = {n["id"]: n["gnorm"] for n in data["payload"]["nodes"] if n["gnorm"] is not None}
    case = PRESETS["lenet"].build(0)
    run = inspect_model(case.model, [case.inputs], lambda out: case.loss_fn(out, case.target))
    per_node = run.saved.per_node()
    C = collapse(run.graph, 1)
    for n, members in C.nodes(data="members"):
        added = sum(per_node.get(m, 0) for m in members or [n])
        expected = pytest.approx(math.log10(added), abs=1e-4) if added else None
        assert colour.get(n) == expected, n
    # conv1 saves only the input and its weight, both held anyway: it adds nothing.
    assert "m_conv1" not in colour and "m_fc1" in colour


def test_downloads_hold_the_graph_shown(downloads: dict[str, Any]) -> None:
    at = app_test(PAGE)
    nodes = figure_nodes(at)
    assert sorted(downloads) == ["dot", "graphml", "html", "json", "png", "svg"]
    data = {fmt: make() for fmt, (make, kwargs) in downloads.items() if not kwargs["disabled"]}
    graph = json.loads(data["json"])
    assert sorted(n["id"] for n in graph["nodes"]) == sorted(nodes)
    assert downloads["json"][1]["file_name"] == "lenet-depth1.json"
    assert "conv1 (Conv2d)" in data["dot"].decode() and "\tm_conv1 [label=" in data["dot"].decode()
    assert sorted(nx.read_graphml(io.BytesIO(data["graphml"]))) == sorted(nodes)
    if dot_available():
        assert data["svg"].lstrip().startswith(b"<?xml") and b"conv1 (Conv2d)" in data["svg"]
        assert data["png"][:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert downloads["svg"][1]["disabled"] and "Graphviz" in downloads["svg"][1]["help"]


def test_code_is_refused_without_trusted_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    at = app_test(PAGE)
    at.radio(key="mg.source").set_value("code").run()
    assert not at.exception
    assert at.text_area(key="mg.code").disabled
    assert "trusted mode" in at.info[0].value and "gradlab app --trusted" in at.info[0].value
    assert not [b for b in at.button if b.key == "mg.run"]


def test_trusted_code_runs_and_an_endless_loop_can_be_killed(trusted_server: None) -> None:
    at = app_test(PAGE)
    at.radio(key="mg.source").set_value("code").run()
    at.text_area(key="mg.code").set_value("while True:\n    pass\n")
    at.button(key="mg.run").click().run()
    # The page returned while the code runs: it stays usable, with a kill button.
    assert "Running your code" in at.info[0].value
    at.radio(key="mg.source").set_value("preset").run()
    assert "m_conv1" in figure_nodes(at)
    at.radio(key="mg.source").set_value("code").run()
    assert "Running your code" in at.info[0].value
    at.button(key="mg.kill").click().run()
    assert not at.exception
    assert "Stopped with the kill button" in at.error[0].value
    at.text_area(key="mg.code").set_value(EXAMPLE)
    at.button(key="mg.run").click().run()
    at.session_state["mg.job"].result(timeout=60)
    at.run()
    assert not at.exception and at.success[0].value.startswith("Ran in")
    assert {"m_hidden", "m_out"} <= set(figure_nodes(at))
    assert "code" in at.query_params


@pytest.mark.browser
def test_open_a_preset_and_expand_a_module_in_the_browser(app_url: str, page: Any) -> None:
    # A first visit to the entry script makes Streamlit use its st.navigation (see report).
    page.goto(app_url)
    wait_for_app(page)
    page.goto(f"{app_url}/model_graph?preset=lenet")
    wait_for_app(page)
    page.locator(".glv[data-step]").wait_for()
    nodes = page.evaluate("() => GradLabViewer.instances()[0].nodes.map(n => n.id)")
    assert "m_conv1" in nodes
    screenshot(page, "model_graph_lenet")
    # The graph opens at a reading zoom on the loss end; bring conv1 to the middle, as a drag would.
    page.evaluate("() => GradLabViewer.instances()[0].centerOn('m_conv1', false)")
    box = page.locator('.glv svg [data-node="m_conv1"]').bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"expand=conv1"))
    wait_for_app(page)
    page.wait_for_function(
        "() => !GradLabViewer.instances().some(v => v.nodes.some(n => n.id === 'm_conv1'))"
    )
    after = page.evaluate("() => GradLabViewer.instances()[0].nodes.map(n => n.id)")
    assert "m_conv1" not in after and len(after) == len(nodes) + 4
    assert page.locator(".glv svg").get_by_text("ConvolutionBackward0").count() >= 1
    screenshot(page, "model_graph_expanded")
    page.get_by_text("Classic picture (Graphviz, modules boxed)").click()
    wait_for_app(page)
    page.wait_for_url(re.compile(r"view=graphviz"))
    page.locator('[data-testid="stGraphVizChart"] svg').wait_for()
    assert page.locator('[data-testid="stGraphVizChart"] svg g.cluster').count() >= 1
    screenshot(page, "model_graph_graphviz")
