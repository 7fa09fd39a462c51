"""``gradlab.show`` in notebooks: a notebook run by nbclient, and a real JupyterLab in chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, free_port

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
CHAIN = """import torch, gradlab
x = torch.ones(2, 2, requires_grad=True)
y = x + 2
z = y * y * 3
out = z.mean()
gradlab.show(out, step=-1)"""
EVIL_CELL = f"""G = gradlab.trace(out, params={{{EVIL!r}: x}})
G = gradlab.backward(out, G, retain_graph=True)
gradlab.show(G, printed={EVIL!r}, caption={EVIL!r})"""


def notebook(*cells: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


@pytest.fixture(scope="module")
def executed() -> Any:
    nb = notebook(CHAIN, EVIL_CELL)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3")
    client.execute()
    return nb


def bundle(cell: Any) -> dict[str, str]:
    shown = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
    assert len(shown) == 1, cell.outputs
    return dict(shown[0]["data"])


def test_nbclient_gets_the_mimebundle(executed: Any) -> None:
    data = bundle(executed.cells[0])
    assert set(data) >= {"text/html", "image/svg+xml", "text/plain"}
    assert data["text/plain"] == "<GradLab graph: 7 nodes, 5 autograd ops, 5 backward steps>"
    assert data["text/html"].startswith('<div class="gradlab-show">')
    assert "<iframe" in data["text/html"] and "GradLabViewer" in data["text/html"]
    assert data["image/svg+xml"].startswith("<svg")
    assert "grad [[4.5, 4.5], [4.5, 4.5]]" in data["image/svg+xml"]  # x.grad, torch's numbers
    assert "&lt;script&gt;" in bundle(executed.cells[1])["image/svg+xml"]


@pytest.mark.browser
def test_the_notebook_output_steps_in_chromium(executed: Any, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        outputs = [bundle(c)["text/html"] for c in executed.cells]
        page.set_content("<h1>notebook</h1>" + "".join(outputs))  # two viewers on one page
        frames = page.frame_locator("iframe.gradlab-frame")
        first, second = frames.nth(0), frames.nth(1)
        first.locator(".glv[data-drawn]").wait_for()
        second.locator(".glv[data-drawn]").wait_for()
        first.locator("text=Next ▶").click()
        page.keyboard.press("ArrowRight")
        assert first.locator(".glv").get_attribute("data-step") == "1"
        assert second.locator(".glv").get_attribute("data-step") == "4"  # untouched: at the end
        second.locator(".glv-printed pre").wait_for()
        assert second.locator(".glv-printed pre").inner_text() == EVIL
        # the still pictures made way for the live viewers
        assert page.locator(".gradlab-still").count() == 0
        for f in page.frames:
            assert f.evaluate("window.__pwned") is None
            assert f.evaluate("document.querySelectorAll('img').length") == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "notebook-outputs.png"), full_page=True)
    finally:
        page.close()


# -- a real JupyterLab -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    pytest.importorskip("jupyterlab")
    root = tmp_path_factory.mktemp("lab")
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / ".cfg"),
        "JUPYTER_RUNTIME_DIR": str(root / ".rt"),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / f"jupyterlab-{port}.log").open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
                f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--allow-root",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited with {server.returncode}")
                try:
                    with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("jupyter lab did not answer within 90 s") from None
                    time.sleep(0.3)
            yield url, root
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.mark.browser
@pytest.mark.slow
def test_show_in_a_real_jupyterlab(jupyterlab: tuple[str, Path], browser: Any) -> None:
    url, root = jupyterlab
    nbformat.write(notebook(CHAIN), root / "lesson.ipynb")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{url}/lab/tree/lesson.ipynb")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        page.wait_for_selector("text=Python 3 (ipykernel) | Idle")  # the kernel is connected
        page.click(".jp-Cell .jp-InputArea-editor")
        page.keyboard.press("Shift+Enter")
        page.wait_for_selector(".jp-Cell .jp-InputPrompt:has-text('[1]')")
        try:
            page.wait_for_selector(".jp-OutputArea iframe.gradlab-frame")
            frame = page.frame_locator(".jp-OutputArea iframe.gradlab-frame")
            frame.locator(".glv[data-drawn] .glv-node").first.wait_for()
        finally:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-run.png"))
        assert frame.locator(".glv-node").count() == 7
        frame.locator("text=Next ▶").click()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        glv = frame.locator(".glv")
        assert glv.get_attribute("data-step") == "2"
        assert frame.locator(".glv-step-title").inner_text() == "Step 3 of 5: MulBackward0"
        page.screenshot(path=str(ARTIFACTS / "jupyterlab.png"))
    finally:
        context.close()
    assert shutil.which("chromium")


@pytest.mark.browser
def test_without_javascript_the_output_is_a_picture(executed: Any, browser: Any) -> None:
    """Where nothing runs (an untrusted notebook, nbconvert's Markdown), the still picture shows."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    page = context.new_page()
    try:
        page.set_content(bundle(executed.cells[0])["text/html"])
        still = page.locator("img.gradlab-still")
        assert still.is_visible()
        page.wait_for_function("document.querySelector('img.gradlab-still').complete")
        assert still.evaluate("img => img.naturalWidth") > 100  # the SVG decoded and drew
        page.screenshot(path=str(ARTIFACTS / "notebook-no-javascript.png"))
    finally:
        context.close()
