"""The Playground page: AppTest for each interaction, a real browser for the main flow."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gradlab import examples
from gradlab.share import pack
from tests.conftest import app_test, screenshot, wait_for_app

SQUARE = "x = torch.tensor([2., 3.], requires_grad=True)\ny = x ** 2\ny.sum().backward()\n"


def plotly_ids(at: Any) -> set[str]:
    charts = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"]
    assert charts, "no Plotly chart on the page"
    spec = json.loads(charts[0].proto.spec)
    return {n for trace in spec["data"] for n in (trace.get("customdata") or [])}


def variables(at: Any) -> dict[str, dict[str, Any]]:
    frame = at.dataframe[0].value
    return {row["name"]: row for row in frame.to_dict("records")}


def test_opens_on_the_square_example_with_its_graph() -> None:
    at = app_test("playground.py")
    assert not at.exception
    assert at.text_area(key="pg.program").value == examples.EXAMPLES[0].source
    assert {"fn0", "fn1", "leaf0", "out0"} <= plotly_ids(at)
    assert variables(at)["x"]["grad"] == "[4., 6.]"
    assert at.query_params["example"] == "square"


def test_choosing_an_example_loads_it() -> None:
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value("chain").run()
    assert at.text_area(key="pg.program").value == examples.get("chain").source  # type: ignore[union-attr]
    assert variables(at)["x"]["grad"] == "[[4.5, 4.5], [4.5, 4.5]]"
    assert "2.25 + 2.25 = 4.5" in " ".join(c.value for c in at.caption)


def test_editing_the_program_reruns_it_and_links_carry_it() -> None:
    at = app_test("playground.py")
    at.text_area(key="pg.program").set_value(SQUARE.replace("** 2", "** 3")).run()
    assert variables(at)["x"]["grad"] == "[12., 27.]"
    assert at.query_params["p"] == pack(SQUARE.replace("** 2", "** 3"))


def test_a_non_scalar_backward_is_explained_with_both_fixes_and_its_node() -> None:
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value("non_scalar").run()
    assert not at.exception
    assert "Line 3" in at.error[0].value and "scalar outputs" in at.error[0].value
    text = " ".join(m.value for m in at.markdown)
    assert "backward() needs a scalar" in text
    fixes = [c.value for c in at.code]
    assert any("y.sum().backward()" in f for f in fixes)
    assert any("torch.ones_like(y)" in f for f in fixes)
    charts = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"]
    spec = json.loads(charts[0].proto.spec)
    outlined = [
        t for t in spec["data"] if t.get("marker", {}).get("line", {}).get("color") == "red"
    ]
    assert outlined and outlined[0]["customdata"] == ["fn0"]


def test_a_refused_program_says_what_and_where() -> None:
    at = app_test("playground.py")
    at.text_area(key="pg.program").set_value("import os\nx = 1").run()
    assert not at.exception
    assert "Line 1" in at.error[0].value and "import os" in at.error[0].value


def test_picking_a_node_shows_its_details() -> None:
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value("chain").run()
    picker = next(s for s in at.selectbox if s.label == "Node details")
    add = next(o for o in picker.options if "AddBackward0" in o)
    at.session_state["pg.node"] = add.split(":")[0]  # as a click on the chart sets it
    at.run()
    text = " ".join(m.value for m in at.markdown)
    assert "**AddBackward0**" in text
    details = " ".join(c.value for c in at.code)
    assert "4.5" in details  # the gradient arriving at y: 2.25 + 2.25


def test_the_graphviz_view_and_downloads() -> None:
    at = app_test("playground.py")
    at.radio(key="pg.view").set_value("graphviz").run()
    dots = at.get("graphviz_chart")
    assert dots and "PowBackward0" in dots[0].proto.spec
    names = {b.proto.label for b in at.get("download_button")}
    assert {"DOT", "SVG", "PNG", "JSON", "GraphML"} <= names


@pytest.mark.browser
def test_type_a_program_see_the_graph_and_click_a_node(app_url: str, page: Any) -> None:
    page.goto(f"{app_url}/playground?example=chain")
    wait_for_app(page)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .scatterlayer path.point')
    screenshot(page, "playground_chain")

    editor = page.get_by_role("textbox", name="Program")
    editor.fill(
        "w = torch.tensor([1., -2.], requires_grad=True)\n"
        "loss = (w.exp() * 3).sum()\nloss.backward()"
    )
    editor.press("Control+Enter")
    wait_for_app(page)
    page.wait_for_selector('[data-testid="stPlotlyChart"] text:has-text("ExpBackward0")')
    table = page.locator('[data-testid="stDataFrame"]').first
    assert table.is_visible()

    points = page.locator('[data-testid="stPlotlyChart"] .scatterlayer path.point')
    labels = page.locator('[data-testid="stPlotlyChart"] .scatterlayer text')
    target = next(
        i for i in range(labels.count()) if "ExpBackward0" in labels.nth(i).text_content()
    )
    points.nth(target).click(force=True)
    wait_for_app(page)
    page.wait_for_selector("text=Gradient arriving")
    assert page.get_by_text("ExpBackward0").first.is_visible()
    screenshot(page, "playground_node")

    broken = "x = torch.tensor([2., 3.], requires_grad=True)\ny = x ** 2\ny.backward()"
    page.goto(f"{app_url}/playground?p={pack(broken)}")
    wait_for_app(page)
    page.wait_for_selector("text=backward() needs a scalar")
    screenshot(page, "playground_error")
