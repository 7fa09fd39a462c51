"""The standalone HTML file in Debian's chromium, opened from file:// with the network blocked.

At 1280×720 (a projector): stepping with keys and clicks, predict first,
presenter mode, node cards, colours, the canvas renderer, and strings from a
program shown as text, never run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import gradlab
from gradlab.app.targets import trace_case
from gradlab.core.collapse import collapse
from gradlab.render.viewer import page as html_page
from gradlab.render.viewer import payload
from gradlab.zoo import presets

from .conftest import ARTIFACTS

pytestmark = pytest.mark.browser

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
CAPTION = "y feeds both inputs of one multiply: 2.25 + 2.25 = 4.5"
PRINTED = "tensor(27., grad_fn=<MeanBackward0>) tensor([[4.5000, 4.5000], [4.5000, 4.5000]])"


def chain_graph() -> gradlab.core.graph.Graph:
    x = torch.ones(2, 2, requires_grad=True)
    with gradlab.record():
        y = x + 2
        z = y * y * 3
        out = z.mean()
    return gradlab.backward(out, gradlab.trace(out, params={"x": x, "y": y, "z": z, "out": out}))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("viewer")
    out = {}
    chain = payload(chain_graph(), printed=PRINTED, caption=CAPTION, title="The classic chain")
    out["chain"] = folder / "chain.html"
    out["chain"].write_text(html_page(chain), "utf-8")
    evil = chain_graph()
    for _, attrs in evil.nodes(data=True):
        attrs["name"], attrs["module"], attrs["module_type"] = EVIL, EVIL, EVIL
        if attrs["kind"] == "leaf":
            attrs["label"] = EVIL
    finding = {"nodes": ["fn1"], "severity": "error", "title": EVIL}
    out["evil"] = folder / "evil.html"
    out["evil"].write_text(
        html_page(payload(evil, printed=EVIL, caption=EVIL, title=EVIL, findings=[finding])),
        "utf-8",
    )
    mlp = trace_case(presets.get("mlp").build(0, depth=100))
    out["mlp"] = folder / "mlp.html"
    out["mlp"].write_text(html_page(payload(mlp, cards=False)), "utf-8")
    lenet = trace_case(presets.get("lenet").build(0))
    out["collapsed"] = folder / "collapsed.html"
    out["collapsed"].write_text(html_page(payload(collapse(lenet))), "utf-8")
    out["lenet"] = folder / "lenet.html"
    out["lenet"].write_text(html_page(payload(trace_case(presets.get("lenet").build(0)))), "utf-8")
    return out


@pytest.fixture
def offline(browser: Any) -> Iterator[Any]:
    """A 1280×720 page whose every request other than file:// is aborted (and counted)."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    blocked: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    p = context.new_page()
    p.set_default_timeout(20_000)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.blocked = blocked
    p.errors = errors
    yield p
    context.close()
    assert not blocked, f"the page asked the network for {blocked}"
    assert not errors, errors


def open_file(p: Any, path: Path) -> None:
    p.goto(path.as_uri())
    p.wait_for_selector(".glv[data-drawn]")


def step(p: Any) -> int:
    return int(p.get_attribute(".glv", "data-step"))


def shot(p: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / f"viewer-{name}.png"))


def test_keys_and_clicks_step_the_classic_chain(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    open_file(p, files["chain"])
    assert step(p) == -1
    assert "Before backward" in p.inner_text(".glv-step-title")
    p.keyboard.press("ArrowRight")
    assert step(p) == 0
    assert p.inner_text(".glv-step-title") == "Step 1 of 5: MeanBackward0 (→ out)"
    p.click("text=Next ▶")
    assert step(p) == 1
    p.keyboard.press("ArrowRight")  # keys still work after a click on a button
    assert step(p) == 2
    p.click(".glv-stage", position={"x": 20, "y": 20})  # a click on the empty graph
    p.keyboard.press("PageDown")
    assert step(p) == 3
    p.click(".glv-side", position={"x": 5, "y": 300})  # a click on the panel
    p.keyboard.press("ArrowLeft")
    assert step(p) == 2
    p.select_option(".glv-color", "grad")  # a select keeps no arrow keys afterwards
    p.keyboard.press("Space")
    assert step(p) == 3
    p.keyboard.press("PageUp")
    assert step(p) == 2
    p.click("text=Predict first")
    p.keyboard.press("ArrowRight")
    assert step(p) == 3
    p.click("body", position={"x": 1275, "y": 715})  # anywhere on the page
    p.keyboard.press("ArrowLeft")
    assert step(p) == 2
    p.click("text=Reset")
    assert step(p) == -1
    for _ in range(10):
        p.keyboard.press("ArrowRight")
    for _ in range(10):
        p.click("text=Next ▶")
    assert step(p) == 4  # 20 presses in a row: the last of the 5 steps, none lost
    assert p.inner_text(".glv-progress") == "5 / 5"
    assert p.inner_text(".glv-step-title") == "Step 5 of 5: AccumulateGrad of x"
    shot(p, "chain-end")


def test_twenty_quick_presses_are_twenty_steps(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    open_file(p, files["lenet"])  # 27 steps: 20 presses must not reach the end
    for i in range(20):
        p.keyboard.press("ArrowRight" if i % 2 else "PageDown")
    assert step(p) == 19
    assert p.inner_text(".glv-progress") == "20 / 27"
    for _ in range(5):
        p.click("text=◀ Prev")
    assert step(p) == 14


def test_steps_show_only_what_the_engine_had_computed(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    open_file(p, files["chain"])
    leaf = "[data-node='leaf0'] text:last-of-type"
    assert p.text_content(leaf) == "grad ?"
    for _ in range(4):
        p.keyboard.press("ArrowRight")
    assert p.text_content(leaf) == "grad ?"  # AccumulateGrad has not run yet
    add = "[data-node='fn3'] text:last-of-type"
    assert p.text_content(add) == "grad [[4.5, 4.5], [4.5, 4.5]]"  # summed: arrived at step 4
    p.keyboard.press("ArrowRight")
    assert p.text_content(leaf) == "grad [[4.5, 4.5], [4.5, 4.5]]"


def test_predict_first_hides_then_reveals(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    open_file(p, files["chain"])
    assert p.is_visible(f"text={CAPTION}") and p.is_visible(".glv-printed pre")
    p.click("text=Predict first")
    for _ in range(3):
        p.keyboard.press("ArrowRight")
    assert step(p) == 2
    assert not p.is_visible(".glv-sent")
    assert not p.is_visible(f"text={CAPTION}") and not p.is_visible(".glv-printed pre")
    assert p.is_visible("text=Predict what this step sends")
    assert p.text_content("[data-node='fn3'] text:last-of-type") == "grad ?"
    shot(p, "predict-hidden")
    p.click("text=Reveal")
    assert p.get_attribute(".glv", "data-revealed") == "1"
    assert p.is_visible(".glv-sent") and "Sends down input 0 to AddBackward0" in p.inner_text(
        ".glv-sent"
    )
    assert p.is_visible(f"text={CAPTION}") and p.inner_text(".glv-printed pre") == PRINTED
    p.keyboard.press("ArrowRight")  # the next step hides its answer again
    assert step(p) == 3 and not p.is_visible(".glv-sent")
    p.keyboard.press("r")
    assert p.is_visible(".glv-sent")
    shot(p, "predict-revealed")


def inside(box: dict[str, float], outer: dict[str, float], slack: float = 1) -> bool:
    return (
        box["x"] >= outer["x"] - slack
        and box["y"] >= outer["y"] - slack
        and box["x"] + box["width"] <= outer["x"] + outer["width"] + slack
        and box["y"] + box["height"] <= outer["y"] + outer["height"] + slack
    )


def test_presenter_mode_fits_graph_and_panel_at_1280x720(
    offline: Any, files: dict[str, Path]
) -> None:
    p = offline
    open_file(p, files["chain"])
    p.click("text=Presenter")
    p.keyboard.press("ArrowRight")
    p.keyboard.press("ArrowRight")
    screen = {"x": 0, "y": 0, "width": 1280, "height": 720}
    stage = p.locator(".glv-stage").bounding_box()
    panel = p.locator(".glv-step").bounding_box()
    graph = p.locator(".glv-nodes").bounding_box()
    assert inside(stage, screen) and inside(panel, screen)
    assert inside(graph, stage)  # the whole graph, every node
    assert graph["height"] > 400  # and big: at least as tall as most of the screen
    assert stage["width"] > 700
    scroll = p.evaluate("[document.scrollingElement.scrollHeight, window.innerHeight]")
    assert scroll[0] <= scroll[1]  # nothing to scroll
    assert p.evaluate("window.scrollY") == 0
    shot(p, "presenter")
    p.keyboard.press("Escape")
    assert p.get_attribute(".glv", "data-presenter") == "0"


def test_a_node_click_opens_its_card_in_view(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    selected: list[Any] = []
    open_file(p, files["chain"])
    p.evaluate(
        "window.__picked = []; document.getElementById('gradlab-viewer').glv.destroy();"
        "window.gradlabView = GradLabViewer.mount(document.getElementById('gradlab-viewer'),"
        " JSON.parse(document.getElementById('gradlab-data').textContent),"
        " {onSelect: (n) => window.__picked.push(n)});"
    )
    p.click("text=End")
    p.click("[data-node='fn3']")
    card = p.locator(".glv-card")
    assert card.is_visible()
    screen = {"x": 0, "y": 0, "width": 1280, "height": 720}
    side = p.locator(".glv-side").bounding_box()
    assert inside(side, screen)  # the panel beside the graph, on screen
    assert inside(p.locator(".glv-card h3").bounding_box(), side)  # the card's top in view
    assert inside(p.locator(".glv-card h4").first.bounding_box(), side)
    text = card.inner_text()
    assert "AddBackward0 → y" in text and "Chain rule" in text
    assert "Paths meet at y" in text  # the sum of the two edges of y * y
    selected = p.evaluate("window.__picked")
    assert selected == [
        {"id": "fn3", "kind": "op", "label": "AddBackward0", "name": "y", "module": None}
    ]
    assert p.get_attribute(".glv", "data-selected") == "fn3"
    p.click("text=Reset")
    p.keyboard.press("ArrowRight")  # keys still step with a card open
    assert step(p) == 0
    assert "Not computed yet" in card.inner_text()  # the card follows the step
    shot(p, "card")


def test_labels_fit_their_boxes_in_the_browser(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    for name in ("chain", "lenet"):
        open_file(p, files[name])
        p.click("text=End")
        overflow = p.evaluate(
            """() => [...document.querySelectorAll('.glv-node')].flatMap(g => {
                const w = +g.querySelector('rect').getAttribute('width');
                return [...g.querySelectorAll('text')]
                  .filter(t => t.getComputedTextLength() + 10 > w)
                  .map(t => t.textContent);
            })"""
        )
        assert overflow == [], name
        if name == "lenet":
            p.click("text=Fit")
            shot(p, "lenet")


def test_colour_by_gradient_norm_and_centre_on_a_finding(
    offline: Any, files: dict[str, Path]
) -> None:
    p = offline
    open_file(p, files["evil"])
    fill = p.evaluate("getComputedStyle(document.querySelector(\"[data-node='fn1'] rect\")).stroke")
    assert fill == "rgb(214, 39, 40)"  # the culprit, in red
    p.select_option(".glv-color", "grad")
    assert p.is_visible(".glv-legend")
    colours = p.evaluate(
        "[...document.querySelectorAll('.glv-node rect')].map(r => r.getAttribute('fill'))"
    )
    assert len(set(colours)) > 2
    p.mouse.move(300, 300)
    p.mouse.wheel(0, 600)  # zoom out around the pointer
    state = p.evaluate("document.getElementById('gradlab-viewer').glv.state()")
    assert state["view"]["s"] < 0.9
    p.click(".glv-finding")
    assert p.get_attribute(".glv", "data-selected") == "fn1"
    # centred on the finding's node, at a readable zoom
    assert p.evaluate("document.getElementById('gradlab-viewer').glv.state()")["view"]["s"] >= 0.8
    node = p.locator("[data-node='fn1'] rect").bounding_box()
    stage = p.locator(".glv-stage").bounding_box()
    assert abs(node["x"] + node["width"] / 2 - (stage["x"] + stage["width"] / 2)) < 2
    assert abs(node["y"] + node["height"] / 2 - (stage["y"] + stage["height"] / 2)) < 2


def test_program_strings_are_shown_as_text_never_run(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    open_file(p, files["evil"])
    p.click("text=End")
    p.click("[data-node='leaf0']")
    assert p.evaluate("window.__pwned") is None
    assert p.evaluate("document.querySelectorAll('img').length") == 0
    assert p.evaluate("document.querySelectorAll('script').length") == 3  # the page's own
    assert p.inner_text(".glv-printed pre") == EVIL
    assert p.inner_text(".glv-caption") == EVIL
    assert p.inner_text(".glv-title") == EVIL
    assert EVIL in p.inner_text(".glv-card")
    assert EVIL[:30] in p.text_content("[data-node='leaf0'] text")
    assert p.inner_text(".glv-finding") == EVIL
    p.hover("[data-node='fn1']")
    assert EVIL[:20] in p.inner_text(".glv-tip")
    assert p.evaluate("window.__pwned") is None
    shot(p, "xss")


def test_big_graphs_draw_on_a_canvas_and_still_click(offline: Any, files: dict[str, Path]) -> None:
    p = offline
    open_file(p, files["mlp"])
    assert p.get_attribute(".glv", "data-renderer") == "canvas"
    p.keyboard.press("ArrowRight")
    assert step(p) == 0
    # click the current step's node where the canvas drew it
    where = p.evaluate(
        """() => {
            const v = document.getElementById('gradlab-viewer').glv.state().view;
            const d = JSON.parse(document.getElementById('gradlab-data').textContent);
            const n = d.nodes[d.steps[0].node];
            const r = document.querySelector('.glv-stage').getBoundingClientRect();
            return {x: r.left + v.x + n.x * v.s, y: r.top + v.y + n.y * v.s, id: n.id};
        }"""
    )
    p.mouse.click(where["x"], where["y"])
    assert p.get_attribute(".glv", "data-selected") == where["id"]
    assert "MseLossBackward0" in p.inner_text(".glv-card")
    painted = int(p.get_attribute(".glv", "data-painted"))
    p.mouse.move(640, 400)
    p.mouse.down()
    p.mouse.move(500, 200, steps=5)
    p.mouse.up()
    p.wait_for_selector(f".glv:not([data-painted='{painted}'])")
    shot(p, "canvas")


def test_play_runs_to_the_end_and_full_screen_fills_the_window(
    offline: Any, files: dict[str, Path]
) -> None:
    p = offline
    open_file(p, files["chain"])
    p.select_option(".glv-speed", "4×")
    p.click("text=Play")
    assert p.inner_text(".glv-bar button:has-text('Pause')") == "Pause"
    p.wait_for_selector(".glv[data-step='4']")  # attribute waits: the page's CSP forbids eval
    p.wait_for_selector(".glv-bar button:text-is('Play')")  # it stops by itself at the end
    p.click("text=Play")  # from the end: starts again from the top
    p.wait_for_selector(".glv:not([data-step='4'])")
    p.click("text=Pause")
    stopped = step(p)
    p.keyboard.press("ArrowRight")
    assert step(p) == min(stopped + 1, 4)
    p.click("text=Full screen")
    p.wait_for_selector(".glv:fullscreen, .glv.glv-presenter")
    box = p.locator(".glv").bounding_box()
    assert box["width"] >= 1279 and box["height"] >= 719


def test_a_collapsed_view_steps_and_explains_its_module_boxes(
    offline: Any, files: dict[str, Path]
) -> None:
    p = offline
    open_file(p, files["collapsed"])
    assert p.locator(".glv-module").count() >= 8  # conv1, pool, fc1, ... as boxes
    for _ in range(3):
        p.keyboard.press("ArrowRight")
    assert "Sends down input 0 to the module" in p.inner_text(".glv-sent")
    p.click("text=End")
    fc1 = p.locator(".glv-module", has_text="fc1 (Linear)")
    assert "grad ‖·‖=" in fc1.locator("text").last.text_content()  # its gradient, once done
    fc1.click()
    assert "this is a module node" in p.inner_text(".glv-card")
    shot(p, "collapsed")


def test_text_stays_readable_on_dark_fills(offline: Any, files: dict[str, Path]) -> None:
    open_file(offline, files["chain"])
    offline.locator("select").filter(has_text="Colour").first.select_option(label="Colour: ‖grad‖")
    dark = offline.locator(".glv-node.glv-dark")
    assert dark.count() >= 1  # the low end of viridis is dark purple
    ink = dark.first.locator("text").first.evaluate("t => getComputedStyle(t).fill")
    assert ink == "rgb(255, 255, 255)"
    light = offline.locator(".glv-node:not(.glv-dark)").first.locator("text").first
    assert light.evaluate("t => getComputedStyle(t).fill") == "rgb(17, 17, 17)"
    shot(offline, "grad-colours")
