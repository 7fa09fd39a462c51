"""The graph viewer in the browser: Next to the new step drawn, panning frame rate, file sizes.

Run: python benchmarks/bench_viewer.py [--depth 1000] [--layers 32] [--repeat 20] [--seconds 3]

Drives Debian's chromium (headless, software rendering) through Playwright on
the standalone HTML files that ``gradlab.save(G, "lesson.html")`` writes, opened
from file://:

* **Next → step drawn**: from the key event to just after the next frame
  is painted (the handler, the DOM or canvas update, style, layout and
  paint; a task posted from that frame's ``requestAnimationFrame`` runs after
  the paint, so it includes the wait for the display's next frame, up to
  16.7 ms), median and worst of ``--repeat`` presses, on the classic chain
  and LeNet (SVG) and the MLP and the transformer (canvas). Target: under 50 ms.
* **Panning**: frames drawn per second while the view is dragged a few pixels
  every frame for ``--seconds``, on the ``--depth``-layer MLP at full detail
  (7,008 nodes at depth 1000) and on the ``--layers``-layer transformer, at the
  reading zoom (boxes with text) and zoomed out to the whole graph (boxes
  only); and the canvas's own drawing time per frame. Target: 30+ fps.
* **File size** of the HTML file for the classic chain and LeNet.

Headless chromium paints at up to 60 frames a second. Medians; the machine
is shared, so ratios and orders of magnitude matter more than the digits.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import gradlab
from gradlab.app.targets import trace_case
from gradlab.render.viewer import page, payload
from gradlab.zoo import presets

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]

NEXT_JS = """async (n) => {
  const frame = () => new Promise(r => requestAnimationFrame(r));
  const times = [];
  for (let i = 0; i < n; i++) {
    document.getElementById('gradlab-viewer').glv.reset();
    await frame(); await frame();
    const t0 = performance.now();
    document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
    await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));  // after the paint
    times.push(performance.now() - t0);
  }
  return times;
}"""

PAN_JS = """async ([seconds, zoomOut]) => {
  const view = document.getElementById('gradlab-viewer').glv;
  const root = document.querySelector('.glv');
  if (zoomOut) view.fit(true);  // every node on screen
  const frame = () => new Promise(r => requestAnimationFrame(r));
  await frame(); await frame();
  const painted0 = +root.dataset.painted;
  const t0 = performance.now();
  let dir = 1, i = 0;
  while (performance.now() - t0 < seconds * 1000) {
    if (++i % 60 === 0) dir = -dir;
    view.panBy(4 * dir, 6 * dir);
    await frame();
  }
  const elapsed = (performance.now() - t0) / 1000;
  return {fps: (+root.dataset.painted - painted0) / elapsed, frames: i / elapsed};
}"""

DRAW_JS = """async (n) => {
  const view = document.getElementById('gradlab-viewer').glv;
  const frame = () => new Promise(r => requestAnimationFrame(r));
  const times = [];
  for (let i = 0; i < n; i++) {
    view.panBy(3, 3);
    await frame(); await frame();
    times.push(view.state().drawMs);  // the canvas's own drawing time for that frame
  }
  return times;
}"""


def classic_chain() -> gradlab.core.graph.Graph:
    x = torch.ones(2, 2, requires_grad=True)
    with gradlab.record():
        y = x + 2
        z = y * y * 3
        out = z.mean()
    names = {"x": x, "y": y, "z": z, "out": out}
    return gradlab.backward(out, gradlab.trace(out, params=names))


def write_files(folder: Path, depth: int, layers: int) -> dict[str, Path]:
    """The HTML files measured: the lessons' classic chain, LeNet, the MLP, the transformer."""
    graphs = {
        "classic chain": classic_chain(),
        "LeNet": trace_case(presets.get("lenet").build(0)),
        f"MLP ×{depth}": trace_case(presets.get("mlp").build(0, depth=depth)),
        f"transformer ×{layers}": trace_case(presets.get("transformer").build(0, layers=layers)),
    }
    files = {}
    for name, G in graphs.items():
        path = folder / (name.replace(" ", "_").replace("×", "x") + ".html")
        big = G.number_of_nodes() > 2000
        path.write_text(page(payload(G, cards=not big)), "utf-8")
        files[name] = path
    return files


def open_page(browser: Any, path: Path) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.route(
        "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
    )
    p = context.new_page()
    p.goto(path.as_uri())
    p.wait_for_selector(".glv[data-drawn]")
    return p


def streamlit_rows(args: argparse.Namespace) -> list[str]:
    """The app's side, measured in the same run (see the section below)."""
    if args.no_app:
        return []
    return app_rows(args.repeat, args.old)


# -- the app: the viewer inside Streamlit, against the old Streamlit-rerun stepping ---------
#
# The old path (each Next a rerun that rebuilds the Plotly figure) is measured on the
# pages and library of the last commit that still had it (before pages/stepper.py was
# removed), exported with ``git archive`` into a temporary folder and served from there.

APP_NEXT_JS = """async () => {
  const root = document.querySelector('.glv');
  const before = root.dataset.step;
  const next = [...root.querySelectorAll('button')].find(b => b.textContent === 'Next ▶');
  const t0 = performance.now();
  next.click();
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));  // after the paint
  if (root.dataset.step === before) throw new Error('Next did not move');
  return performance.now() - t0;
}"""


def app_rows(repeat: int, old: str | None) -> list[str]:
    """Next → step drawn in the app (new viewer and old rerun) and the Playground's first paint."""
    from playwright.sync_api import sync_playwright

    root = Path(__file__).resolve().parents[1]
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        from playwright.sync_api import Error as BrowserError

        old_tree = _old_tree(root, Path(tmp) / "old", old)
        try:
            if old_tree is not None:
                before = _server(old_tree, Path(tmp) / "old-home")
                with before as url:
                    rows += _old_rows(browser, url, repeat, before.started)
            server = _server(root, Path(tmp) / "home")
            with server as url:
                rows += _new_rows(browser, url, repeat, server.started)
        except BrowserError as exc:  # the file-based rows above still count
            print(f"the app was not measured to the end: {exc}", file=sys.stderr)
        browser.close()
    return rows


def _old_tree(root: Path, folder: Path, old: str | None) -> Path | None:
    """The app as it was before the viewer, from git; None when git cannot give it."""
    import subprocess

    try:
        if old is None:
            last = subprocess.run(
                ["git", "rev-list", "-1", "HEAD", "--", "pages/stepper.py"],
                cwd=root, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            old = f"{last}~1" if last else None
        if old is None:
            return None
        folder.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", old, "gradlab", "pages", "plugins"],
            cwd=root, capture_output=True, check=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"the old Streamlit stepping is not measured: {exc}", file=sys.stderr)
        return None
    return folder if (folder / "pages" / "stepper.py").is_file() else None


class _server:
    """``streamlit run pages/app.py`` of the tree at ``root`` on a free port, as a context."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root, self.home = root, home
        self.started = 0.0  # time.perf_counter() when the process was started

    def __enter__(self) -> str:
        import os
        import socket
        import subprocess
        import time
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "GRADLAB_HOME": str(self.home), "PYTHONPATH": str(self.root)}
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(self.root / "pages" / "app.py"),
             "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
             "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
            cwd=self.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self.url
            except OSError:
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def _old_rows(browser: Any, url: str, repeat: int, started: float) -> list[str]:
    """The old Playground: Next reruns the script, which rebuilds the Plotly figure."""
    import time

    chart = '[data-testid="stPlotlyChart"] .scatterlayer path.point'
    idle = "[data-testid='stApp'][data-test-script-state='notRunning']"
    paints = []
    for _ in range(2):  # the first load on this server pays for its imports too
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        p = context.new_page()
        p.set_default_timeout(120_000)
        t0 = time.perf_counter()
        p.goto(f"{url}/playground?example=chain")
        p.wait_for_selector(chart)
        paints.append(time.perf_counter() - (started if not paints else t0))
        context.close()
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    p = context.new_page()
    p.set_default_timeout(120_000)
    p.goto(f"{url}/playground?example=chain&step=0")
    p.wait_for_selector(chart)
    p.wait_for_selector(idle)
    times = []
    while len(times) < repeat:
        for k in range(1, 6):
            t0 = time.perf_counter()
            p.locator('button:has-text("Next")').first.click()
            p.wait_for_selector(f"h4:has-text('Step {k} of 5:')")
            p.wait_for_selector(idle)  # the rerun has drawn everything
            times.append(time.perf_counter() - t0)
        p.locator('button:has-text("Reset")').first.click()
        p.wait_for_selector("text=Before the first step")
        p.wait_for_selector(idle)
    context.close()
    ms = [1e3 * t for t in times]
    return [
        f"| app: Next → step drawn (old: Streamlit rerun) | classic chain | 7 | "
        f"**{statistics.median(ms):.0f} ms** | {max(ms):.0f} ms | – |",
        f"| app: Playground first paint (old, server start → graph drawn) | classic chain | 7 | "
        f"**{paints[0]:.1f} s** | – | – |",
        f"| app: Playground first paint (old, fresh browser, warm server) | classic chain | 7 | "
        f"**{paints[1]:.1f} s** | – | – |",
    ]


def _new_rows(browser: Any, url: str, repeat: int, started: float) -> list[str]:
    """The Playground with the viewer: Next is answered in the browser, no rerun."""
    import time

    idle = "[data-testid='stApp'][data-test-script-state='notRunning']"
    paints = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        p = context.new_page()
        p.set_default_timeout(120_000)
        t0 = time.perf_counter()
        p.goto(f"{url}/playground?example=chain")
        p.wait_for_selector(".glv[data-drawn]")
        paints.append(time.perf_counter() - (started if not paints else t0))
        context.close()
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    p = context.new_page()
    p.set_default_timeout(120_000)
    p.goto(f"{url}/playground?example=chain&step=0")
    p.wait_for_selector(".glv[data-drawn]")
    p.wait_for_selector(idle)
    times, clicks = [], []
    while len(times) < repeat:
        p.keyboard.press("Home")
        for _ in range(5):
            times.append(p.evaluate(APP_NEXT_JS))
        p.keyboard.press("Home")
        for k in range(5):
            t0 = time.perf_counter()  # as Playwright sees it: a real click, then the new step
            p.get_by_role("button", name="Next ▶").click()
            p.wait_for_function(
                f"() => document.querySelector('.glv').dataset.step === '{k}'", polling="raf"
            )
            clicks.append(1e3 * (time.perf_counter() - t0))
    context.close()
    return [
        f"| app: Next → step drawn (viewer, in the page) | classic chain | 7 | "
        f"**{statistics.median(times):.1f} ms** | {max(times):.1f} ms | < 50 ms |",
        f"| app: Next → step drawn (viewer, Playwright click to new step) | classic chain | 7 | "
        f"**{statistics.median(clicks):.0f} ms** | {max(clicks):.0f} ms | < 50 ms |",
        f"| app: Playground first paint (server start → graph drawn) | classic chain | 7 | "
        f"**{paints[0]:.1f} s** | – | < 3 s |",
        f"| app: Playground first paint (fresh browser, warm server) | classic chain | 7 | "
        f"**{paints[1]:.1f} s** | – | < 3 s |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=1000, help="MLP hidden layers (1000)")
    parser.add_argument("--layers", type=int, default=32, help="transformer layers (32)")
    parser.add_argument("--repeat", type=int, default=20, help="Next presses timed (20)")
    parser.add_argument("--seconds", type=float, default=3.0, help="panning time per case (3)")
    parser.add_argument("--no-app", action="store_true", help="skip the Streamlit app's rows")
    parser.add_argument(
        "--old", default=None,
        help="git revision of the old Streamlit stepping (default: the last with pages/stepper.py)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is needed: sudo apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), args.depth, args.layers)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            rows = measure(browser, files, args)
            browser.close()
    print("| what | graph | nodes | median | worst | target |")
    print("|---|---|---|---|---|---|")
    for row in rows + streamlit_rows(args):
        print(row)
    return 0


def measure(browser: Any, files: dict[str, Path], args: argparse.Namespace) -> list[str]:
    rows = []
    for name, path in files.items():
        p = open_page(browser, path)
        nodes = p.evaluate("document.getElementById('gradlab-viewer').glv.state()")
        count = p.evaluate("JSON.parse(document.getElementById('gradlab-data').textContent)"
                           ".nodes.length")  # fmt: skip
        times = p.evaluate(NEXT_JS, args.repeat)
        rows.append(
            f"| Next → step drawn ({nodes['renderer']}) | {name} | {count} | "
            f"**{statistics.median(times):.1f} ms** | {max(times):.1f} ms | < 50 ms |"
        )
        if nodes["renderer"] == "canvas":
            for zoom_out in (False, True):
                pan = p.evaluate(PAN_JS, [args.seconds, zoom_out])
                where = "whole graph, boxes only" if zoom_out else "reading zoom, text"
                draws = p.evaluate(DRAW_JS, max(5, args.repeat))
                rows.append(
                    f"| panning, frames/s ({where}) | {name} | {count} | "
                    f"**{pan['fps']:.0f} fps** | canvas draw {statistics.median(draws):.1f} ms "
                    f"(worst {max(draws):.1f}) | 30+ fps |"
                )
        p.context.close()
    for name in ("classic chain", "LeNet"):
        size = files[name].stat().st_size
        rows.append(f"| HTML file size | {name} | – | **{size / 1024:.0f} KiB** | – | – |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
