"""The Playground page under AppTest: the program, the example menu, errors, links, and what
the viewer is given. Stepping, predict-first and presenter mode run in the browser: see
tests/test_app_browser.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gradlab.app.share import pack
from gradlab.program import run_program
from gradlab.teach import examples
from tests.conftest import ROOT, app_test
from tests.viewer_app import node_ids, viewer_data, viewers

SQUARE = "x = torch.tensor([2., 3.], requires_grad=True)\ny = x ** 2\ny.sum().backward()\n"


def variables(at: Any) -> dict[str, dict[str, Any]]:
    frame = at.dataframe[0].value
    return {row["name"]: row for row in frame.to_dict("records")}


def opened(**query: str) -> Any:
    """The Playground opened from a link with these query parameters."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "app.py"), default_timeout=60)
    at.query_params.update(query)
    at.run()
    at.switch_page("playground.py")
    at.run()
    return at


def graph_of(example_id: str) -> Any:
    example = examples.get(example_id)
    assert example is not None
    result = run_program(example.source)
    assert result.graph is not None
    return result.graph


def test_opens_on_the_square_example_with_its_graph() -> None:
    at = app_test("playground.py")
    assert not at.exception
    assert at.text_area(key="pg.program").value == examples.EXAMPLES[0].source
    assert {"fn0", "fn1", "leaf0", "out0"} <= set(node_ids(at))
    assert variables(at)["x"]["grad"] == "[4., 6.]"
    assert at.query_params["example"] == "square"


def test_the_viewer_gets_the_engines_steps_with_their_numbers() -> None:
    at = opened(example="chain")
    data = viewer_data(at)
    G = graph_of("chain")
    steps = data["payload"]["steps"]
    nodes = data["payload"]["nodes"]
    order = {n: step for n, step in G.nodes(data="step") if step is not None}
    ran = sorted(order, key=order.__getitem__)
    assert [nodes[s["node"]]["id"] for s in steps] == ran  # the engine's own order
    assert [nodes[s["node"]]["label"] for s in steps] == [
        "MeanBackward0", "MulBackward0", "MulBackward0", "AddBackward0", "AccumulateGrad",
    ]  # fmt: skip
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in " ".join(steps[-1]["sent"])
    # Everything predict-first must hide travels with the graph: printed output, the lesson.
    assert data["payload"]["printed"].startswith("tensor(27.")
    assert "2.25 + 2.25 = 4.5" in data["payload"]["caption"]
    assert "2.25 + 2.25 = 4.5" not in " ".join(c.value for c in at.caption)
    assert not [c for c in at.code if c.value.startswith("tensor(27.")]
    assert data["url"] is True and data["send"] is False  # stepping never reruns the page


def test_choosing_an_example_loads_it() -> None:
    at = app_test("playground.py")
    at.selectbox(key="pg.example").set_value("chain").run()
    assert at.text_area(key="pg.program").value == examples.get("chain").source  # type: ignore[union-attr]
    assert variables(at)["x"]["grad"] == "[[4.5, 4.5], [4.5, 4.5]]"


def test_an_edited_example_is_your_program_in_the_menu() -> None:
    at = app_test("playground.py")
    at.text_area(key="pg.program").set_value(SQUARE.replace("** 2", "** 3")).run()
    assert at.selectbox(key="pg.example").value == "yours"
    assert "Your program" in at.selectbox(key="pg.example").options
    assert variables(at)["x"]["grad"] == "[12., 27.]"
    assert at.query_params["p"] == pack(SQUARE.replace("** 2", "** 3"))
    assert "example" not in at.query_params
    at.selectbox(key="pg.example").set_value("chain").run()
    assert at.text_area(key="pg.program").value == examples.get("chain").source  # type: ignore[union-attr]
    at.selectbox(key="pg.example").set_value("yours").run()  # the edits come back
    assert at.text_area(key="pg.program").value == SQUARE.replace("** 2", "** 3")


def test_a_link_to_an_edited_program_opens_it_as_your_program() -> None:
    at = opened(p=pack(SQUARE))
    assert at.text_area(key="pg.program").value == SQUARE
    assert at.selectbox(key="pg.example").value == "yours"


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
    data = viewer_data(at)["payload"]
    assert [data["nodes"][i]["id"] for i in data["highlight"]] == ["fn0"]


def test_a_refused_program_says_what_and_where() -> None:
    at = app_test("playground.py")
    at.text_area(key="pg.program").set_value("import os\nx = 1").run()
    assert not at.exception
    assert "Line 1" in at.error[0].value and "import os" in at.error[0].value


def test_dunder_names_in_errors_show_as_code() -> None:
    at = app_test("playground.py")
    program = "x = torch.tensor([1., 2.], requires_grad=True)\ny = x.__class__\n"
    at.text_area(key="pg.program").set_value(program).run()
    assert not at.exception
    message = at.error[0].value
    assert "`__class__`" in message and "**class**" not in message


def test_a_misspelt_method_gets_did_you_mean() -> None:
    at = app_test("playground.py")
    program = "x = torch.tensor([1., 2.], requires_grad=True)\ny = x.sigmod()\n"
    at.text_area(key="pg.program").set_value(program).run()
    assert not at.exception
    assert "Did you mean `sigmoid`?" in at.error[0].value



def test_a_misspelt_function_gets_did_you_mean() -> None:
    at = app_test("playground.py")
    program = "x = torch.tensor([1., 2.], requires_grad=True)\ny = torch.sigmod(x)\n"
    at.text_area(key="pg.program").set_value(program).run()
    assert not at.exception
    assert "Did you mean `sigmoid`?" in at.error[0].value


def test_nothing_to_draw_says_what_to_add() -> None:
    at = app_test("playground.py")
    at.text_area(key="pg.program").set_value("a = torch.ones(3)\nprint(a)\n").run()
    assert not at.exception and not viewers(at)
    info = at.info[0].value
    assert "requires_grad=True" in info and "backward()" in info
    assert [c.value for c in at.code] == ["tensor([1., 1., 1.])"]  # printed shown beside


@pytest.mark.parametrize(
    "example_id", ["backward_twice", "inplace_needed", "inplace_leaf", "no_grad_fn"]
)
def test_each_teachable_error_is_explained_with_its_fix(example_id: str) -> None:
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
        data = viewer_data(at)["payload"]
        assert [data["nodes"][i]["id"] for i in data["highlight"]] == [expected.node]


def test_a_link_starts_the_browser_at_its_step_card_and_mode() -> None:
    at = opened(example="chain", step="4", predict="1", present="1", node="fn3")
    data = viewer_data(at)
    assert data["options"] == {"color": "kind", "predict": True, "step": 3}
    assert data["presenter"] is True and data["select"]["id"] == "fn3"
    # What the browser keeps in the address bar stays there on the page's own reruns.
    at.text_area(key="pg.program").set_value(examples.get("chain").source).run()  # type: ignore[union-attr]
    assert at.query_params["step"] == "4" and at.query_params["present"] == "1"
    at.text_area(key="pg.program").set_value(SQUARE).run()  # another graph: start afresh
    assert "step" not in at.query_params and "node" not in at.query_params
    assert viewer_data(at)["options"]["step"] == "end"  # every gradient shown


def test_the_classic_picture_and_downloads(downloads: dict[str, Any]) -> None:
    at = app_test("playground.py")
    at.toggle(key="pg.classic").set_value(True).run()
    dots = at.get("graphviz_chart")
    assert dots and "PowBackward0" in dots[0].proto.spec
    assert at.query_params["view"] == "graphviz"
    assert sorted(downloads) == ["dot", "graphml", "html", "json", "png", "svg"]
    page = downloads["html"][0]().decode()
    assert "GradLabViewer.mount" in page and "PowBackward0" in page
    shown = {n["id"] for n in json.loads(downloads["json"][0]())["nodes"]}
    assert {"fn0", "fn1", "leaf0", "out0"} <= shown


def test_saved_tensors_are_listed_in_the_node_card() -> None:
    at = opened(example="chain")
    nodes = {n["id"]: n for n in viewer_data(at)["payload"]["nodes"]}
    assert not any(n.startswith("saved") for n in nodes)  # drawn in the card, not as nodes
    G = graph_of("chain")
    from gradlab.core.graph import saved_by

    (square,) = [
        n for n in G if G.nodes[n].get("op") == "MulBackward0" and len(saved_by(G, n)) == 2
    ]
    details = dict(nodes[square]["details"])
    assert details["Saved for backward"].splitlines() == [
        "other: [[3., 3.], [3., 3.]]", "self: [[3., 3.], [3., 3.]]",
    ]  # fmt: skip
