"""The Debugger page: AppTest for each interaction, a real browser for the main flow."""

from __future__ import annotations

from typing import Any

import pytest

from gradlab.app.share import pack, unpack
from gradlab.diagnose.gallery import CASES, get
from gradlab.isolation.trusted import EXAMPLE, TRUSTED_ENV
from tests.conftest import ROOT, app_test, screenshot, wait_for_app
from tests.viewer_app import viewer_data


def outlined(at: Any) -> list[str]:
    """Ids of the nodes the viewer outlines in red (the culprits)."""
    data = viewer_data(at)["payload"]
    return [data["nodes"][i]["id"] for i in data["highlight"]]


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
    select = viewer_data(at)["select"]
    assert select["id"] == "fn2" and select["center"]  # the browser opens its card, centred
    assert at.session_state["dbg.node"] == "fn2"
    again = select["seq"]
    at.button(key="dbg.show.0").click().run()  # asked again: centred again
    assert viewer_data(at)["select"]["seq"] > again


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


def opened(**query: str) -> Any:
    """The Debugger opened from a link with these query parameters."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "app.py"), default_timeout=60)
    at.query_params.update(query)
    at.run()
    at.switch_page("debugger.py")
    at.run()
    return at


def test_program_and_code_modes_are_kept_in_the_link() -> None:
    at = app_test("debugger.py")
    at.radio(key="dbg.source").set_value("program").run()
    program = at.text_area(key="dbg.program").value
    assert unpack(at.query_params["p"]) == program and "case" not in at.query_params
    again = opened(p=at.query_params["p"])  # a reload keeps the mode and the program
    assert again.radio(key="dbg.source").value == "program"
    assert again.text_area(key="dbg.program").value == program
    code = "model = torch.nn.Linear(2, 1)\nx = torch.randn(3, 2)\n"
    pasted = opened(code=pack(code))
    assert pasted.radio(key="dbg.source").value == "code"
    assert pasted.text_area(key="dbg.code").value == code  # shown, not run
    assert unpack(pasted.query_params["code"]) == code


# The code box's example with the hidden layer cut off from backward.
DETACHED = EXAMPLE.replace(
    "        return self.out(torch.relu(self.hidden(x)))",
    '        print("forward ran")\n        return self.out(torch.relu(self.hidden(x)).detach())',
)


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
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{app_url}/debugger?case=vanishing_sigmoid")
    wait_for_app(page)
    page.locator(".glv[data-step]").wait_for()
    page.wait_for_selector("text=vanish")
    culprits = page.evaluate(
        "() => [...document.querySelectorAll('.glv svg [data-node]')]"
        ".filter(g => getComputedStyle(g.querySelector('rect')).stroke === 'rgb(214, 39, 40)')"
        ".map(g => g.getAttribute('data-node'))"
    )
    assert culprits  # outlined in red
    button = page.locator("button", has_text="on the graph").first
    node = button.inner_text().split("Show ")[1].split(" on the graph")[0]
    button.scroll_into_view_if_needed()
    button.click()
    wait_for_app(page)
    page.wait_for_function(f"() => document.querySelector('.glv').dataset.selected === '{node}'")
    card = page.locator(".glv .glv-card")
    card.get_by_text("Chain rule", exact=True).wait_for()
    viewer = page.locator(".glv").bounding_box()
    shown = card.bounding_box()
    target = page.locator(f'.glv svg [data-node="{node}"]').bounding_box()
    assert viewer is not None and shown is not None and target is not None
    # The graph, the card beside it and the culprit are all on the screen, no empty column.
    assert viewer["y"] >= 0 and viewer["y"] + viewer["height"] <= 720
    assert shown["x"] > target["x"] and shown["y"] >= 0 and shown["y"] < 720
    stage = page.locator(".glv .glv-stage").bounding_box()
    assert stage is not None
    middle = (target["x"] + target["width"] / 2, target["y"] + target["height"] / 2)
    assert abs(middle[0] - (stage["x"] + stage["width"] / 2)) < 40  # centred on the culprit
    assert abs(middle[1] - (stage["y"] + stage["height"] / 2)) < 40
    screenshot(page, "debugger_show_on_graph")
