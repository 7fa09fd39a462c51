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
from gradlab import presets
from gradlab.targets import trace_case
from gradlab.viewer import page, payload

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


def classic_chain() -> gradlab.graph.Graph:
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
    """The app's side, measured in the same run: to be added here.

    First paint of the Playground from a cold page load (server and browser
    together, target under 3 s), and the old path's Next (a Streamlit rerun
    that rebuilds the Plotly figure, about 1,000 ms) against the viewer's.
    Each returns a table row like the ones :func:`main` prints.
    """
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=1000, help="MLP hidden layers (1000)")
    parser.add_argument("--layers", type=int, default=32, help="transformer layers (32)")
    parser.add_argument("--repeat", type=int, default=20, help="Next presses timed (20)")
    parser.add_argument("--seconds", type=float, default=3.0, help="panning time per case (3)")
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
