"""A class on one server: many browser sessions run lesson programs at the same time.

Used by ``bench_worker.py`` (which prints the figures) and by the test suite
(``tests/test_class_load.py``, which checks them). It starts its own
Streamlit server on a free local port, opens ``sessions`` Playwright contexts
in one Debian chromium, and sends each to the Playground with a lesson
program of its own in the link (``?p=``): the classic chain, scaled by the
session's number, so each has its own right answer. A session is done when
the gradient PyTorch gives for its program is on its screen.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@dataclass
class ClassFigures:
    """What a class run measured."""

    seconds: list[float] = field(default_factory=list)  # open -> right answer on screen
    correct: int = 0
    refused: int = 0  # sessions told their program ran out of time
    failed: list[str] = field(default_factory=list)
    before_mb: float = 0.0  # the server's resident memory before the sessions
    peak_mb: float = 0.0
    after_mb: float = 0.0  # after every session closed
    healthy: bool = True  # /_stcore/health answered within 1 s all along


def program(k: int) -> str:
    """The classic chain with x = k: out = mean(3 (x + 2)^2), x.grad = 1.5 (k + 2) each."""
    return (f"x = torch.full((2, 2), {k}.0, requires_grad=True)\ny = x + 2\nz = y * y * 3\n"
            f"out = z.mean()\nout.backward()\nprint('session {k}:', x.grad[0, 0].item())")


def answer(k: int) -> str:
    return f"session {k}: {1.5 * (k + 2)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident memory of the server process (its worker parent is a process of its own)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            return r.read() == b"ok"
    except OSError:
        return False


def run_class(sessions: int, timeout: float = 240.0) -> ClassFigures:
    """Open ``sessions`` Playground sessions at once; their times and the server's memory."""
    from playwright.sync_api import sync_playwright

    from gradlab.share import ViewState, to_params

    figures = ClassFigures()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    home = tempfile.mkdtemp(prefix="gradlab-class-")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "pages" / "app.py"),
         "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
         "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
        cwd=ROOT, env={**os.environ, "GRADLAB_HOME": home},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stop = threading.Event()
    try:
        for _ in range(600):
            if _healthy(url):
                break
            time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=CHROMIUM_ARGS)  # fmt: skip
            warm = browser.new_page()  # the first visit starts the worker parent
            warm.goto(f"{url}/playground?" + _query(to_params(ViewState(program=program(0)))))
            warm.get_by_text(answer(0)).first.wait_for(timeout=timeout * 1000)
            warm.close()
            figures.before_mb = _rss_mb(server.pid)
            figures.peak_mb = figures.before_mb
            watcher = threading.Thread(target=_watch, args=(url, server.pid, figures, stop))
            watcher.start()
            contexts = [browser.new_context(viewport={"width": 1280, "height": 720})
                        for _ in range(sessions)]  # fmt: skip
            pages = [c.new_page() for c in contexts]
            started: dict[int, float] = {}
            for k, page in enumerate(pages, start=1):
                link = _query(to_params(ViewState(program=program(k))))
                started[k] = time.monotonic()
                page.goto(f"{url}/playground?{link}", wait_until="commit")
            deadline = time.monotonic() + timeout
            waiting = dict(enumerate(pages, start=1))
            while waiting and time.monotonic() < deadline:
                for k, page in list(waiting.items()):
                    if page.get_by_text(answer(k)).count():
                        figures.seconds.append(time.monotonic() - started[k])
                        figures.correct += 1
                        del waiting[k]
                    elif page.get_by_text("CPU time").count() or page.get_by_text(
                        "more than 5 s"
                    ).count():
                        figures.refused += 1
                        figures.failed.append(f"session {k}: refused for time")
                        del waiting[k]
                time.sleep(0.2)
            figures.failed += [f"session {k}: no answer in {timeout:g} s" for k in waiting]
            for context in contexts:
                context.close()
            browser.close()
        figures.after_mb = _settled_rss(server.pid)
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(home, ignore_errors=True)
    return figures


def _settled_rss(pid: int) -> float:
    """The server's memory once it stops falling (sessions are cleaned up after they close)."""
    last = _rss_mb(pid)
    for _ in range(20):
        time.sleep(0.5)
        now = _rss_mb(pid)
        if abs(now - last) < 1:
            return now
        last = now
    return last


def _watch(url: str, pid: int, figures: ClassFigures, stop: threading.Event) -> None:
    while not stop.is_set():
        figures.peak_mb = max(figures.peak_mb, _rss_mb(pid))
        started = time.monotonic()
        if not _healthy(url) or time.monotonic() - started > 1:
            figures.healthy = False
        stop.wait(0.25)


def _query(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)
