"""The Debugger page: AppTest for each interaction, a real browser for the main flow."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
