"""The app's graph viewer in Debian's chromium at 1280×720: stepping, presenter mode,
predict-first, node cards and escaping, with no script rerun for any of them.

The viewer marks its root (``.glv``) with ``data-step`` (the engine step shown, -1
before backward), ``data-predict``, ``data-revealed``, ``data-selected`` and
``data-presenter``: the tests wait for those, the app's own signals.
"""

from __future__ import annotations

from typing import Any

import pytest

from gradlab.app.share import pack
from gradlab.program import run_program
from gradlab.teach import examples
from gradlab.teach.steps import steps
from tests.conftest import screenshot, wait_for_app

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1280, 720
LONG = (
    "x = torch.tensor([1.0, 2.0], requires_grad=True)\n"
    "y = x\n"
    "for i in range(11):\n"
    "    y = y.sin() + 1\n"
    "y.sum().backward()\n"
)
HOSTILE = (
    "note = \"<img src=x onerror=self['__xss']=4>\"\n"
    "x = torch.tensor([1.0, 2.0], requires_grad=True)\n"
    "loss = (x * x).sum()\n"
    "loss.backward()\n"
    'print("<script>self.__xss = 1</script>")\n'
    "print('<img src=x onerror=\"self.__xss = 2\">')\n"
)


def open_viewer(page: Any, url: str) -> None:
    """Open ``url`` at 1280×720 and wait for the viewer to be drawn and the script to end."""
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto(url)
    wait_for_app(page)
    page.locator(".glv[data-step]").wait_for()


def step(page: Any) -> int:
    return int(page.get_attribute(".glv", "data-step"))


def wait_step(page: Any, k: int) -> None:
    page.wait_for_function(f"() => document.querySelector('.glv').dataset.step === '{k}'")


def runs(page: Any) -> int:
    """How many script runs the page has had: the count moves only on a rerun."""
    return int(page.evaluate("() => window.__runs || 0"))


def count_reruns(page: Any) -> None:
    """Count the script's runs from now on (Streamlit marks each on the app's root)."""
    page.evaluate(
        """() => {
        window.__runs = 0;
        const app = document.querySelector("[data-testid='stApp']");
        new MutationObserver(() => {
            if (app.getAttribute('data-test-script-state') === 'running') window.__runs++;
        }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    }"""
    )


def in_view(box: dict[str, float] | None) -> bool:
    """Whether a bounding box lies wholly inside the 1280×720 window."""
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= WIDTH + 0.5
        and box["y"] + box["height"] <= HEIGHT + 0.5
    )


def test_step_through_the_classic_chain_with_keys_and_clicks(app_url: str, page: Any) -> None:
    chain = examples.get("chain")
    assert chain is not None
    G = run_program(chain.source).graph
    assert G is not None
    engine = [G.nodes[s.node]["op"] for s in steps(G)]  # torch's own order, from the engine
    open_viewer(page, f"{app_url}/playground?example=chain&step=0")
    count_reruns(page)
    assert step(page) == -1
    title = page.locator(".glv .glv-step-title")
    assert "Before backward: 5 steps to go" in title.inner_text()
    page.keyboard.press("ArrowRight")
    wait_step(page, 0)
    assert engine[0] in title.inner_text() and "Step 1 of 5" in title.inner_text()
    page.get_by_role("button", name="Next ▶").click()
    wait_step(page, 1)
    page.keyboard.press("Space")
    wait_step(page, 2)
    page.keyboard.press("PageDown")
    wait_step(page, 3)
    assert f"Step 4 of 5: {engine[3]}" in title.inner_text()
    # Paths meet at y: what arrived is the sum of the two 2.25s
    assert "4.5" in page.locator(".glv .glv-lines").first.inner_text()
    screenshot(page, "app_step_4")
    page.keyboard.press("PageUp")
    wait_step(page, 2)
    page.get_by_role("button", name="◀ Prev").click()
    wait_step(page, 1)
    # Keys still reach the viewer after a click on a Streamlit widget (a toggle reruns).
    page.get_by_text("Classic picture (Graphviz)").click()
    wait_for_app(page)
    page.keyboard.press("ArrowRight")
    wait_step(page, 2)
    page.locator("[data-testid='stMainBlockContainer'] h2").click()  # anywhere on the page
    page.keyboard.press("End")
    wait_step(page, 4)
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in page.locator(".glv .glv-sent").inner_text()
    assert "step" not in page.url  # every step done: how a link opens anyway
    page.keyboard.press("ArrowLeft")
    wait_step(page, 3)
    assert "step=4" in page.url  # the address bar keeps the step, without a rerun
    assert runs(page) == 1  # only the toggle's click reran the script
    shared = page.url
    page.goto(shared)  # the link opens at the same step
    wait_for_app(page)
    page.locator(".glv[data-step]").wait_for()
    assert step(page) == 3


def test_twenty_next_presses_in_a_row_land_on_step_twenty(app_url: str, page: Any) -> None:
    G = run_program(LONG).graph
    assert G is not None
    total = len(steps(G))
    assert total > 20
    open_viewer(page, f"{app_url}/playground?p={pack(LONG)}&step=0")
    count_reruns(page)
    nxt = page.get_by_role("button", name="Next ▶")
    for _ in range(20):
        nxt.click()  # as fast as Playwright clicks: no waiting between presses
    wait_step(page, 19)
    assert page.locator(".glv .glv-progress").inner_text() == f"20 / {total}"
    page.keyboard.press("Home")
    wait_step(page, -1)
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    wait_step(page, 19)
    assert f"Step 20 of {total}" in page.locator(".glv .glv-step-title").inner_text()
    assert runs(page) == 0  # forty steps, no script rerun


def test_presenter_mode_shows_the_whole_graph_and_the_step_panel(app_url: str, page: Any) -> None:
    open_viewer(page, f"{app_url}/playground?example=chain&step=3&present=1")
    page.wait_for_function("() => document.querySelector('.glv').dataset.presenter === '1'")
    page.wait_for_timeout(300)  # the viewer fits the graph in the next frame
    stage = page.locator(".glv .glv-stage").bounding_box()
    panel = page.locator(".glv .glv-step").bounding_box()
    bar = page.locator(".glv .glv-bar").bounding_box()
    assert in_view(stage) and in_view(panel) and in_view(bar)
    assert "Step 3 of 5" in page.locator(".glv .glv-step-title").inner_text()
    assert page.evaluate("() => document.scrollingElement.scrollTop") == 0
    nodes = page.locator(".glv svg [data-node]")
    assert nodes.count() == 7
    assert stage is not None
    for i in range(nodes.count()):
        box = nodes.nth(i).bounding_box()
        assert box is not None and in_view(box)  # every node on screen, no scrolling
        right, bottom = stage["x"] + stage["width"], stage["y"] + stage["height"]
        assert stage["x"] - 1 <= box["x"] and box["x"] + box["width"] <= right + 1
        assert stage["y"] - 1 <= box["y"] and box["y"] + box["height"] <= bottom + 1
    screenshot(page, "app_presenter")
    page.keyboard.press("ArrowRight")  # the clicker's keys work in presenter mode
    wait_step(page, 3)
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('.glv').dataset.presenter === '0'")
    assert "present" not in page.url


def test_presenter_button_at_the_projector_size(app_url: str, page: Any) -> None:
    open_viewer(page, f"{app_url}/playground?example=chain")
    page.get_by_role("button", name="Presenter").click()
    page.wait_for_function("() => document.querySelector('.glv').dataset.presenter === '1'")
    assert "present=1" in page.url
    assert in_view(page.locator(".glv .glv-stage").bounding_box())
    assert in_view(page.locator(".glv .glv-side").bounding_box())


def test_predict_first_hides_the_answer_then_reveals_it(app_url: str, page: Any) -> None:
    open_viewer(page, f"{app_url}/playground?example=chain&step=0")
    count_reruns(page)
    page.get_by_label("Predict first").check()
    page.wait_for_function("() => document.querySelector('.glv').dataset.predict === '1'")
    page.keyboard.press("ArrowRight")
    wait_step(page, 0)
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    wait_step(page, 4)
    sent = page.locator(".glv .glv-sent")
    assert not sent.is_visible()  # what AccumulateGrad adds to x.grad: hidden
    assert not page.locator(".glv .glv-printed").is_visible()  # print(x.grad) would tell
    assert not page.locator(".glv .glv-caption").is_visible()  # "2.25 + 2.25 = 4.5" too
    assert page.get_by_text("Predict what this step sends").is_visible()
    assert "predict=1" in page.url
    screenshot(page, "app_predict_hidden")
    page.get_by_role("button", name="Reveal").click()
    page.wait_for_function("() => document.querySelector('.glv').dataset.revealed === '1'")
    assert sent.is_visible() and "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in sent.inner_text()
    assert page.locator(".glv .glv-printed").is_visible()
    page.keyboard.press("ArrowLeft")  # each step is hidden again until its own reveal
    wait_step(page, 3)
    assert not sent.is_visible()
    assert runs(page) == 0


def test_a_node_click_opens_its_card_beside_the_graph(app_url: str, page: Any) -> None:
    open_viewer(page, f"{app_url}/playground?example=chain")
    count_reruns(page)
    node = page.locator('.glv svg [data-node="fn3"]')  # AddBackward0, where y's paths meet
    box = node.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.querySelector('.glv').dataset.selected === 'fn3'")
    card = page.locator(".glv .glv-card")
    card.get_by_text("Chain rule: Add").wait_for()
    heading = card.locator("h3").bounding_box()
    side = page.locator(".glv .glv-side").bounding_box()
    # The card opens beside the graph, its heading on screen, in a panel that scrolls by itself.
    assert in_view(heading) and in_view(side) and heading is not None
    assert heading["x"] > box["x"] + box["width"]
    assert "node=fn3" in page.url
    assert runs(page) == 0
    screenshot(page, "app_node_card")


def test_the_playground_graph_starts_near_the_top(app_url: str, page: Any) -> None:
    open_viewer(page, f"{app_url}/playground?example=chain")
    viewer = page.locator(".glv").bounding_box()
    assert viewer is not None and viewer["y"] < 200 and in_view(viewer)
    screenshot(page, "app_playground")


def test_program_strings_are_shown_as_text_never_run(app_url: str, browser: Any) -> None:
    # A shared link opened by another student: a fresh browser context.
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{app_url}/playground?p={pack(HOSTILE)}")
        wait_for_app(page)
        page.locator(".glv[data-step]").wait_for()
        printed = page.locator(".glv .glv-printed pre")
        assert printed.inner_text().rstrip("\n") == (
            '<script>self.__xss = 1</script>\n<img src=x onerror="self.__xss = 2">'
        )
        assert printed.locator("script, img").count() == 0
        page.get_by_text("Variables").click()  # the string variable, in the table
        wait_for_app(page)
        page.wait_for_timeout(500)
        assert page.locator("img[src='x']").count() == 0
        assert page.evaluate("() => window.__xss") is None  # nothing ran
        screenshot(page, "app_xss_shared_link")
    finally:
        context.close()
