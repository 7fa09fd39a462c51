"""The Playground page: AppTest for each interaction, a real browser for the main flow."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from gradlab import examples
from gradlab.graph import saved_by
from gradlab.share import pack
from tests.conftest import ROOT, app_test, click_node, screenshot, wait_for_app

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


def outlined(at: Any) -> list[str]:
    """Ids of the nodes outlined in red on the Plotly chart (the current step, an error)."""
    charts = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"]
    spec = json.loads(charts[0].proto.spec)
    return [
        n
        for t in spec["data"]
        if t.get("marker", {}).get("line", {}).get("color") == "red"
        for n in t.get("customdata") or []
    ]


def grey(at: Any) -> set[str]:
    """Ids of the nodes drawn grey: no gradient has reached them yet."""
    charts = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"]
    spec = json.loads(charts[0].proto.spec)
    return {
        n
        for t in spec["data"]
        if t.get("marker", {}).get("color") == "#e4e4e4"
        for n in t.get("customdata") or []
    }


def stepping(example: str = "chain", **query: str) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "app.py"), default_timeout=60)
    at.query_params.update({"example": example, **query})
    at.run()
    at.switch_page("playground.py")
    at.run()
    if "step" not in query:
        at.toggle(key="pg.stepping").set_value(True).run()
    return at


def texts(at: Any) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.code])


def test_stepping_through_the_chain_follows_the_engine_to_x_grad() -> None:
    at = stepping()
    assert not at.exception
    assert "Before the first step" in texts(at)
    assert grey(at) == {"fn0", "fn1", "fn2", "fn3", "fn4", "leaf0"}  # only out0 holds 1
    ops = ["MeanBackward0", "MulBackward0", "MulBackward0", "AddBackward0", "AccumulateGrad"]
    for i, op in enumerate(ops):
        at.button(key="pg.steps.next").click().run()
        assert not at.exception
        assert outlined(at) == [f"fn{i}"]
        assert f"Step {i + 1} of 5" in texts(at) and op in texts(at)
        assert f"fn{i}" not in grey(at)
    text = texts(at)
    assert "x.grad += [[4.5, 4.5], [4.5, 4.5]]" in text
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in text
    assert grey(at) == set()
    assert at.query_params["step"] == "5"
    at.button(key="pg.steps.prev").click().run()
    assert outlined(at) == ["fn3"]
    assert "Paths meet at `y`" in texts(at)
    assert "[[2.25, 2.25], [2.25, 2.25]] + [[2.25, 2.25], [2.25, 2.25]] = [[4.5, 4.5]" in texts(at)
    at.button(key="pg.steps.reset").click().run()
    assert "Before the first step" in texts(at) and at.query_params["step"] == "0"


def test_predict_first_hides_what_is_sent_until_reveal() -> None:
    at = stepping()
    at.toggle(key="pg.predict").set_value(True).run()
    for _ in range(5):
        at.button(key="pg.steps.next").click().run()
    assert "`x.grad` after this step: **?**" in texts(at)
    assert "x.grad = [[4.5" not in texts(at)
    assert "leaf0" in grey(at)  # its gradient is not shown before the reveal
    at.button(key="pg.steps.reveal").click().run()
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in texts(at)
    assert "leaf0" not in grey(at)
    at.button(key="pg.steps.prev").click().run()
    assert "**?**" in texts(at)  # each step is hidden again
    assert at.query_params["predict"] == "1"


def test_a_link_opens_at_the_same_step() -> None:
    at = stepping(step="4", predict="1")
    assert not at.exception
    assert at.toggle(key="pg.stepping").value is True
    assert outlined(at) == ["fn3"] and "Step 4 of 5" in texts(at)
    assert "**?**" in texts(at)


def test_play_runs_the_engine_to_the_end() -> None:
    at = stepping()
    at.session_state["pg.steps.speed"] = 0.25
    at.button(key="pg.steps.play").click().run(timeout=60)
    assert not at.exception
    assert at.session_state["pg.steps.step"] == 5
    assert at.session_state["pg.steps.playing"] is False
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in texts(at)


def test_a_changed_program_starts_its_steps_again() -> None:
    at = stepping()
    at.button(key="pg.steps.next").click().run()
    at.button(key="pg.steps.next").click().run()
    at.text_area(key="pg.program").set_value(SQUARE).run()
    assert at.session_state["pg.steps.step"] == 0
    for _ in range(3):
        at.button(key="pg.steps.next").click().run()
    assert "x.grad = [4., 6.]" in texts(at)


def test_presenter_mode_hides_the_editor_and_keeps_the_steps() -> None:
    at = stepping(step="2", present="1")
    assert not at.exception
    assert not [t for t in at.text_area if t.key == "pg.program"]
    assert "font-size: 22px" in " ".join(h.proto.body for h in at.get("html"))
    assert outlined(at) == ["fn1"]
    at.button(key="pg.steps.next").click().run()
    assert outlined(at) == ["fn2"] and at.query_params["present"] == "1"
    at.toggle(key="pg.present").set_value(False).run()
    assert [t for t in at.text_area if t.key == "pg.program"]


@pytest.mark.browser
def test_step_backward_to_the_end_with_the_keyboard(app_url: str, page: Any) -> None:
    page.goto(f"{app_url}/playground?example=chain&step=0")
    wait_for_app(page)
    points = '[data-testid="stPlotlyChart"] .scatterlayer path.point'
    page.wait_for_selector(points)  # keys pressed before the chart is drawn can be lost
    page.get_by_text("Before the first step").click()  # the page has the keyboard's focus
    for i in range(1, 6):
        page.keyboard.press("ArrowRight")
        wait_for_app(page)
        page.wait_for_selector(f"text=Step {i} of 5:")
        page.wait_for_selector(points)
        if i == 4:
            screenshot(page, "playground_step_sum")
    page.wait_for_selector("text=x.grad = [[4.5, 4.5], [4.5, 4.5]]")
    screenshot(page, "playground_step_end")
    assert "step=5" in page.url
    page.keyboard.press("ArrowLeft")
    wait_for_app(page)
    page.wait_for_selector("text=Step 4 of 5:")
    shared = page.url
    page.goto(shared)  # the shared link opens at the same step
    wait_for_app(page)
    page.wait_for_selector("text=Step 4 of 5:")
    assert page.get_by_text("Paths meet at").first.is_visible()


@pytest.mark.browser
def test_presenter_mode_in_the_browser(app_url: str, page: Any) -> None:
    page.goto(f"{app_url}/playground?example=chain&step=3&present=1")
    wait_for_app(page)
    page.wait_for_selector("text=Step 3 of 5:")
    page.wait_for_selector('[data-testid="stPlotlyChart"] .scatterlayer path.point')
    assert page.get_by_role("textbox", name="Program").count() == 0
    size = page.evaluate("getComputedStyle(document.documentElement).fontSize")
    assert size == "22px"
    screenshot(page, "playground_presenter")


@pytest.mark.parametrize(
    "example_id", ["backward_twice", "inplace_needed", "inplace_leaf", "no_grad_fn"]
)
def test_each_teachable_error_is_explained_with_its_fix(example_id: str) -> None:
    from gradlab.program import run_program

    example = examples.get(example_id)
    assert example is not None
    expected = run_program(example.source).error
    assert expected is not None and expected.explanation is not None
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value(example_id).run()
    assert not at.exception
    assert f"Line {expected.line}" in at.error[0].value
    assert f"#### {expected.explanation.title}" in [m.value for m in at.markdown]
    fixes = [c.value for c in at.code]
    assert all(fix in fixes for fix in expected.explanation.fixes)
    if expected.node is not None:
        assert outlined(at) == [expected.node]


def test_the_step_view_downloads_the_graph_as_it_stood(downloads: dict[str, Any]) -> None:
    at = stepping()
    for _ in range(2):
        at.button(key="pg.steps.next").click().run()
    assert sorted(downloads) == ["dot", "graphml", "json", "png", "svg"]
    make, kwargs = downloads["json"]
    assert kwargs["file_name"] == "gradlab-step2.json"
    shown = {n["id"]: n for n in json.loads(make())["nodes"]}
    # two steps ran: MeanBackward0 and the outer MulBackward0 hold gradients, the rest not yet
    assert [n for n in sorted(shown) if shown[n].get("grad") is not None] == ["fn0", "fn1", "out0"]
    assert "MulBackward0" in downloads["dot"][0]().decode()


def test_saved_tensors_are_drawn_on_request_and_listed_in_node_details() -> None:
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value("chain").run()
    assert not any(n.startswith("saved") for n in plotly_ids(at))
    at.toggle(key="pg.saved").set_value(True).run()
    drawn = plotly_ids(at)
    assert any(n.startswith("saved") for n in drawn)
    G = examples_graph("chain")
    (square,) = [
        n for n in G if G.nodes[n].get("op") == "MulBackward0" and len(saved_by(G, n)) == 2
    ]
    at.session_state["pg.node"] = square  # y * y keeps y twice, once per input
    at.run()
    assert any(m.value.startswith("*Saved for backward*") for m in at.markdown)
    rows = next(d.value for d in at.dataframe if "attribute" in d.value.columns)
    assert list(rows["attribute"]) == ["other", "self"]
    assert list(rows["value"]) == ["[[3., 3.], [3., 3.]]"] * 2
    assert set(rows["node"]) <= drawn


def examples_graph(example_id: str) -> Any:
    from gradlab.program import run_program

    example = examples.get(example_id)
    assert example is not None
    result = run_program(example.source)
    assert result.graph is not None
    return result.graph


def test_a_click_on_the_chart_opens_the_nodes_card() -> None:
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value("chain").run()
    at = click_node(at, "fn3")  # AddBackward0, where y's two gradient pieces meet
    assert not at.exception
    assert at.session_state["pg.node"] == "fn3" and at.query_params["node"] == "fn3"
    text = " ".join(m.value for m in at.markdown)
    assert "**Chain rule: Add**" in text and "Paths meet at `y`" in text


def test_nodes_can_be_coloured_by_gradient_norm() -> None:
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value("chain").run()
    at.radio(key="pg.color").set_value("grad").run()
    assert not at.exception
    spec = json.loads(
        next(e for e in at.main if getattr(e, "type", "") == "plotly_chart").proto.spec
    )
    coloured = next(t for t in spec["data"] if isinstance(t.get("marker", {}).get("color"), list))
    G = examples_graph("chain")
    for n, c in zip(coloured["customdata"], coloured["marker"]["color"], strict=True):
        assert c == pytest.approx(math.log10(G.nodes[n]["grad"]["norm"]))
    assert "fn3" in coloured["customdata"]  # ops, leaves and the output all hold a gradient


def test_play_reveals_each_answer_even_when_predicting() -> None:
    at = stepping(predict="1", step="0")
    at.session_state["pg.steps.speed"] = 0.25
    at.button(key="pg.steps.play").click().run(timeout=60)
    assert at.session_state["pg.steps.step"] == 5
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in texts(at)  # shown once Play is over
    at.run()
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in texts(at) and "**?**" not in texts(at)
