"""Take the app's pictures for the README and the Home page: pages/images/*.png.

Run: .venv/bin/python scripts/screenshots.py [--only NAME ...]

Starts ``streamlit run pages/app.py`` on a free localhost port (a private
GRADLAB_HOME, trusted mode on), drives Debian's chromium through Playwright
the way a person would, and saves one picture per flow. Needs what the test
suite needs: ``make test`` installs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import CHROMIUM_ARGS, free_port, wait_for_app  # noqa: E402

IMAGES = ROOT / "pages" / "images"
VIEWER = ".glv[data-drawn]"  # the graph viewer, drawn


def _viewer(page: Any) -> None:
    wait_for_app(page)
    page.wait_for_selector(VIEWER)
    page.wait_for_timeout(300)  # the viewer fits the graph once laid out


def playground(page: Any, url: str) -> None:
    page.goto(f"{url}/playground?example=chain&node=fn3")
    _viewer(page)
    page.wait_for_selector(".glv[data-selected='fn3']")


def stepper(page: Any, url: str) -> None:
    page.goto(f"{url}/playground?example=chain&step=4")
    _viewer(page)
    page.wait_for_selector(".glv .glv-step-title:has-text('Step 4 of 5')")


def presenter(page: Any, url: str) -> None:
    page.goto(f"{url}/playground?example=chain&step=4&present=1")
    _viewer(page)
    page.wait_for_selector(".glv[data-presenter='1']")


def model_graph(page: Any, url: str) -> None:
    page.goto(f"{url}/model_graph?preset=lenet&depth=1&expand=fc1")
    _viewer(page)


def training(page: Any, url: str) -> None:
    page.goto(f"{url}/training")
    wait_for_app(page)
    steps = page.get_by_label("steps", exact=True)
    steps.fill("300")
    steps.press("Enter")
    wait_for_app(page)
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Start").click()
    page.get_by_text("· finished").first.wait_for(timeout=120_000)
    _viewer(page)


def debugger(page: Any, url: str) -> None:
    page.goto(f"{url}/debugger?case=detach")
    _viewer(page)
    page.get_by_role("button", name="Show fn2 on the graph").click()
    page.wait_for_selector(".glv[data-selected='fn2']")
    wait_for_app(page)
    page.evaluate(  # the picture shows the page's top: findings and the graph beside them
        "() => { window.scrollTo(0, 0); document.querySelectorAll('[data-testid=stMain]')"
        ".forEach(e => e.scrollTo(0, 0)); }"
    )


# name -> (flow, viewport size, whether the picture is the whole window)
SHOTS: dict[str, tuple[Callable[[Any, str], None], tuple[int, int], bool]] = {
    "playground": (playground, (1400, 860), False),
    "stepper": (stepper, (1400, 860), False),
    "presenter": (presenter, (1280, 720), True),
    "model_graph": (model_graph, (1400, 900), False),
    "training": (training, (1400, 1300), False),
    "debugger": (debugger, (1400, 860), False),
}


def _main(page: Any, height: int) -> dict[str, float]:
    """The main column's box, without the sidebar, at most the viewport's height."""
    box = page.get_by_test_id("stMainBlockContainer").bounding_box()
    top = max(box["y"] - 16, 0)
    return {"x": box["x"] - 16, "y": top, "width": box["width"] + 32, "height": height - top}


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SHOTS), default=list(SHOTS))
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is missing: sudo apt-get install chromium", file=sys.stderr)
        return 1
    IMAGES.mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GRADLAB_HOME": home, "GRADLAB_TRUSTED": "1"}
        server = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(ROOT / "pages" / "app.py"),
                "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
                "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
            ],
            cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                for name in args.only:
                    flow, (width, height), whole = SHOTS[name]
                    context = browser.new_context(viewport={"width": width, "height": height})
                    page = context.new_page()
                    page.set_default_timeout(60_000)
                    flow(page, url)
                    page.wait_for_timeout(500)  # let charts finish their transitions
                    clip = None if whole else _main(page, height)
                    page.screenshot(path=str(IMAGES / f"{name}.png"), clip=clip)
                    print(f"wrote {IMAGES / f'{name}.png'}")
                    context.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
