"""The Debugger page: AppTest for each interaction, a real browser for the main flow."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gradlab.cli.app import TRUSTED_ENV
from gradlab.diagnose.gallery import CASES, get
from tests.conftest import app_test, screenshot, wait_for_app


def outlined(at: Any) -> list[str]:
    """Ids of the nodes the Plotly chart outlines in red."""
    charts = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"]
    assert charts, "no Plotly chart on the page"
    spec = json.loads(charts[0].proto.spec)
    return [
        n for t in spec["data"] if t.get("marker", {}).get("line", {}).get("color") == "red"
        for n in t.get("customdata") or []
    ]  # fmt: skip


def text(at: Any) -> str:
    return " ".join(m.value for m in at.markdown)


def test_opens_on_a_gallery_case_with_its_finding_and_red_node() -> None:
    at = app_test("debugger.py")
    assert not at.exception
    assert "The gradient path is cut by .detach()" in text(at)
    assert outlined(at) == ["fn2"]  # the add where the detached value joins the loss
    assert at.query_params["case"] == "detach"


def test_choosing_a_case_and_clicking_its_finding_opens_the_node() -> None:
    at = app_test("debugger.py")
    at.selectbox(key="dbg.case").set_value("where_nan_gradient").run()
    assert "The first NaN/Inf of the backward pass comes from LogBackward0" in text(at)
    assert outlined(at) == ["fn2"]
    at.button(key="dbg.show.0").click().run()
    assert not at.exception
    assert "**LogBackward0** &nbsp; `fn2`" in text(at)
    assert at.session_state["dbg.node"] == "fn2"


def test_every_gallery_case_renders_without_an_exception() -> None:
    at = app_test("debugger.py")
    for name in ("all_frozen", "missing_zero_grad", "vanishing_sigmoid", "inplace_saved"):
        at.selectbox(key="dbg.case").set_value(name).run()
        assert not at.exception, name
        assert get(name).expect in text(at)
        if name == "missing_zero_grad":  # the table of the loop's steps, as torch ran them
            steps = at.dataframe[0].value
            norms = list(steps["gradient norm"])
            assert len(norms) == 8 and norms == sorted(norms)


def test_a_healthy_preset_says_no_problems_and_the_gradient_check_paints_the_leaves() -> None:
    at = app_test("debugger.py")
    at.radio(key="dbg.source").set_value("preset").run()
    at.selectbox(key="dbg.preset").set_value("linear").run()
    assert not at.exception
    assert any("No problems found" in s.value for s in at.success)
    at.toggle(key="dbg.gc").set_value(True).run()
    assert any("gradient check" in c.value for c in at.caption)


def test_a_typed_program_is_diagnosed_and_a_refused_one_explained() -> None:
    at = app_test("debugger.py")
    at.radio(key="dbg.source").set_value("program").run()
    assert "The first NaN/Inf of the forward pass comes from log" in text(at)
    at.text_area(key="dbg.program").set_value("import os\n").run()
    assert not at.exception
    assert "did not run" in at.error[0].value and "import os" in at.error[0].value


def test_every_case_is_one_click_away() -> None:
    at = app_test("debugger.py")
    picks = [b for b in at.button if str(b.key).startswith("dbg.pick.")]
    assert len(picks) == len(CASES)
    at.button(key="dbg.pick.lr_too_high").click().run()
    assert not at.exception
    assert at.selectbox(key="dbg.case").value == "lr_too_high"
    assert "The loss diverges: the learning rate is too high" in text(at)


def test_the_gradient_check_switch_finds_the_wrong_backward_and_paints_it() -> None:
    at = app_test("debugger.py")
    at.selectbox(key="dbg.case").set_value("wrong_backward").run()
    assert "Autograd disagrees with finite differences" in text(at)
    assert any("gradient check" in c.value for c in at.caption)
    assert sorted(outlined(at)) == ["leaf2", "leaf3"]  # the first layer's weight and bias
    at.toggle(key="dbg.gc").set_value(False).run()
    assert any("No problems found" in s.value for s in at.success)


def figure(at: Any) -> dict[str, Any]:
    """The Plotly chart's spec: its traces and layout."""
    charts = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"]
    return dict(json.loads(charts[0].proto.spec))


def position(spec: dict[str, Any], n: str) -> tuple[float, float]:
    """Where node ``n`` is drawn."""
    for t in spec["data"]:
        if n in (t.get("customdata") or []):
            i = t["customdata"].index(n)
            return float(t["x"][i]), float(t["y"][i])
    raise AssertionError(f"{n} is not drawn")


def test_a_finding_s_button_centres_the_graph_on_its_node() -> None:
    at = app_test("debugger.py")
    at.selectbox(key="dbg.case").set_value("vanishing_sigmoid").run()
    before = figure(at)["layout"]
    assert "range" not in before.get("yaxis", {})  # no focus yet: the whole graph
    at.button(key="dbg.show.0").click().run()
    assert not at.exception
    node = at.session_state["dbg.node"]
    spec = figure(at)
    x, y = position(spec, node)
    (x0, x1), (y0, y1) = spec["layout"]["xaxis"]["range"], spec["layout"]["yaxis"]["range"]
    assert x0 < x < x1 and y0 < y < y1
    assert (x0 + x1) / 2 == pytest.approx(x) and (y0 + y1) / 2 == pytest.approx(y)
    ys = [v for t in spec["data"] if t.get("customdata") for v in t["y"]]
    assert max(ys) - min(ys) > 10 and y1 - y0 <= 10  # a tall graph: a window round the node
    assert position(spec, node) in [
        (float(t["x"][0]), float(t["y"][0]))
        for t in spec["data"] if t.get("marker", {}).get("line", {}).get("color") == "royalblue"
    ]  # fmt: skip  # and it is the selected one


def test_a_small_graph_is_centred_on_the_node_and_kept_whole() -> None:
    at = app_test("debugger.py")
    at.selectbox(key="dbg.case").set_value("where_nan_gradient").run()
    at.radio(key="dbg.view").set_value("graphviz").run()
    unfocused = at.get("graphviz_chart")[0].proto.spec
    at.radio(key="dbg.view").set_value("plotly").run()
    at.button(key="dbg.show.0").click().run()
    spec = figure(at)
    x, y = position(spec, "fn2")
    (x0, x1), (y0, y1) = spec["layout"]["xaxis"]["range"], spec["layout"]["yaxis"]["range"]
    assert (x0 + x1) / 2 == pytest.approx(x) and (y0 + y1) / 2 == pytest.approx(y)
    for t in spec["data"]:
        for px, py in zip(t["x"], t["y"], strict=True) if t.get("customdata") else ():
            assert x0 < px < x1 and y0 < py < y1  # every node still in view
    at.radio(key="dbg.view").set_value("graphviz").run()
    assert not at.exception and at.session_state["dbg.focus"] == "fn2"
    assert at.get("graphviz_chart")[0].proto.spec == unfocused  # the Graphviz picture as it was


DETACHED = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        print("forward ran")
        return self.out(torch.relu(self.hidden(x)).detach())


model = Net()
x = torch.randn(16, 4)
loss = lambda out: out.pow(2).mean()
"""


def test_pasted_code_is_refused_without_trusted_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    at = app_test("debugger.py")
    at.radio(key="dbg.source").set_value("code").run()
    assert not at.exception
    assert at.text_area(key="dbg.code").disabled
    assert "trusted mode" in at.info[0].value and "gradlab app --trusted" in at.info[0].value
    assert not [b for b in at.button if b.key == "dbg.run"]


def test_pasted_code_is_diagnosed_and_an_endless_loop_can_be_killed(trusted_server: None) -> None:
    at = app_test("debugger.py")
    at.radio(key="dbg.source").set_value("code").run()
    at.text_area(key="dbg.code").set_value("while True:\n    pass\n")
    at.button(key="dbg.run").click().run()
    # The page returned while the code runs: it stays usable, with a kill button.
    assert "Running your code" in at.info[0].value
    at.radio(key="dbg.source").set_value("gallery").run()
    assert "The gradient path is cut by .detach()" in text(at)
    at.radio(key="dbg.source").set_value("code").run()
    assert "Running your code" in at.info[0].value
    at.button(key="dbg.kill").click().run()
    assert not at.exception
    assert "Stopped with the kill button" in at.error[0].value
    at.text_area(key="dbg.code").set_value(DETACHED)
    at.button(key="dbg.run").click().run()
    at.session_state["dbg.job"].result(timeout=60)
    at.run()
    assert not at.exception and at.success[0].value.startswith("Ran and diagnosed in")
    assert "The gradient path is cut by .detach()" in text(at)
    assert any("forward ran" in c.value for c in at.code)  # what the code printed
    report = at.session_state["dbg.result"].report
    (finding,) = report.findings
    assert (finding.kind, finding.cause, finding.where) == (
        "no_gradient",
        "detach",
        "hidden.weight, hidden.bias",
    )
    assert outlined(at) == list(finding.nodes)
    assert report.graph.nodes[finding.nodes[0]]["op"] == "AddmmBackward0"  # where it rejoins
    space: dict[str, Any] = {}
    exec(DETACHED, space)  # the premise, in PyTorch: the hidden layer gets no gradient
    space["loss"](space["model"](space["x"])).backward()
    assert space["model"].hidden.weight.grad is None and space["model"].out.weight.grad is not None


@pytest.mark.browser
def test_load_a_broken_case_see_the_red_node_and_its_explanation(app_url: str, page: Any) -> None:
    page.goto(f"{app_url}/debugger?case=where_nan_gradient")
    wait_for_app(page)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .scatterlayer path.point')
    page.wait_for_selector("text=The first NaN/Inf of the backward pass comes from LogBackward0")
    strokes = page.eval_on_selector_all(
        '[data-testid="stPlotlyChart"] .scatterlayer path.point',
        "els => els.map(e => getComputedStyle(e).stroke)",
    )
    assert "rgb(255, 0, 0)" in strokes  # the culprit, outlined in red
    screenshot(page, "debugger_where_nan_found")
    page.get_by_role("button", name="Show fn2 on the graph").click()
    wait_for_app(page)
    page.wait_for_selector("text=Gradient arriving")
    assert page.get_by_text("LogBackward0").first.is_visible()
    screenshot(page, "debugger_where_nan")


def _blue_points_in_view(page: Any) -> list[bool]:
    """For each point outlined in blue (the selected node): whether it lies inside the plot."""
    return list(
        page.eval_on_selector_all(
            '[data-testid="stPlotlyChart"] .scatterlayer path.point',
            """els => {
                const plot = document.querySelector(
                    '[data-testid="stPlotlyChart"] .nsewdrag').getBoundingClientRect();
                return els.filter(e => getComputedStyle(e).stroke === 'rgb(65, 105, 225)')
                    .map(e => { const r = e.getBoundingClientRect();
                        const x = r.x + r.width / 2, y = r.y + r.height / 2;
                        return x > plot.left && x < plot.right
                            && y > plot.top && y < plot.bottom; });
            }""",
        )
    )


@pytest.mark.browser
def test_a_finding_s_button_centres_a_tall_graph_on_its_node(app_url: str, page: Any) -> None:
    page.goto(f"{app_url}/debugger?case=vanishing_sigmoid")
    wait_for_app(page)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .scatterlayer path.point')
    assert _blue_points_in_view(page) == []  # nothing selected yet
    button = page.locator("button", has_text="on the graph").first
    node = button.inner_text().split("Show ")[1].split(" on the graph")[0]
    button.click()
    wait_for_app(page)
    page.wait_for_selector("text=Chain rule")  # the node's details are open
    assert page.get_by_text(node, exact=True).first.is_visible()
    assert _blue_points_in_view(page) == [True]  # the node is selected and in view
    page.get_by_test_id("stPlotlyChart").first.scroll_into_view_if_needed()
    screenshot(page, "debugger_focus_vanishing")
