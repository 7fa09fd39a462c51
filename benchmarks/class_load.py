"""A class on one server: many sessions run lesson programs at the same time.

Used by ``bench_worker.py`` (which prints the figures) and by the test suite
(``tests/test_class_load.py``, which checks them). It starts its own
Streamlit server on a free local port and opens ``sessions`` sessions at once
with a light client that speaks Streamlit's own websocket protocol (what a
browser tab sends when it opens a page: one ``rerun_script`` message with the
page and its link), so that the figures are the server's and the workers',
not a browser's drawing. Each session opens the Playground with a lesson
program of its own in the link (``?p=``): the classic chain, scaled by the
session's number, so each has its own right answer. A session is done when
the gradient PyTorch gives for its program is in what the server sent it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]


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
    health_max: float = 0.0  # the slowest answer of /_stcore/health while the class ran, s


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


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.read() == b"ok"
    except OSError:
        return False


def run_class(sessions: int, timeout: float = 240.0) -> ClassFigures:
    """Open ``sessions`` Playground sessions at once; their times and the server's memory."""
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
    watcher = threading.Thread(target=_watch, args=(url, server.pid, figures, stop))
    try:
        for _ in range(600):
            if _healthy(url):
                break
            time.sleep(0.1)
        # The first visit starts the worker parent; a teacher opens the page before class.
        _run(lambda: _session(port, 0, timeout, ClassFigures()))
        figures.before_mb = figures.peak_mb = _settled_rss(server.pid)
        watcher.start()
        _run(lambda: _sessions(port, sessions, timeout, figures))
        figures.after_mb = _settled_rss(server.pid)
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(home, ignore_errors=True)
    return figures


def _run(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine on a thread of its own (the caller may already run an event loop:
    Playwright's, in the test suite)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(make())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def _sessions(port: int, sessions: int, timeout: float, figures: ClassFigures) -> None:
    await asyncio.gather(*(_session(port, k, timeout, figures) for k in range(1, sessions + 1)))


async def _session(port: int, k: int, timeout: float, figures: ClassFigures) -> None:
    """One tab: open the Playground with program ``k``, read until its script has run."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    from gradlab.app.share import ViewState, to_params

    started = time.monotonic()
    right, refused = answer(k).encode(), (b"CPU time", b"of running time")
    seen = {"right": False, "refused": False}
    said: list[bytes] = []
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream",
                                      subprotocols=["streamlit"], max_size=None,
                                      open_timeout=timeout) as ws:  # fmt: skip
            opened = BackMsg()
            opened.rerun_script.query_string = urlencode(to_params(ViewState(program=program(k))))
            opened.rerun_script.page_name = "playground"
            await ws.send(opened.SerializeToString())
            while True:
                data = await asyncio.wait_for(ws.recv(), timeout)
                assert isinstance(data, bytes)
                seen["right"] |= right in data
                seen["refused"] |= any(r in data for r in refused)
                said.append(data)
                message = ForwardMsg()
                message.ParseFromString(data)
                if message.WhichOneof("type") == "script_finished":
                    ended = message.script_finished
                    if ended == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                        continue  # the page reran itself (it keeps the link up to date)
                    if ended != ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                        break
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        figures.failed.append(f"session {k}: {type(exc).__name__} {exc}")
        return
    if seen["right"]:
        figures.seconds.append(time.monotonic() - started)
        figures.correct += 1
    elif seen["refused"]:
        figures.refused += 1
        figures.failed.append(f"session {k}: refused for time")
    else:
        figures.failed.append(f"session {k}: the script ended without the right answer "
                              f"({_texts(said)})")  # fmt: skip


def _texts(messages: list[bytes]) -> str:
    """The readable runs of what the server sent: what the page said instead of the answer."""
    import re

    found = re.findall(rb"[ -~]{24,}", b"".join(messages))
    return " | ".join(t.decode()[:400] for t in found if b"Line" in t or b"stopped" in t)


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
        answered = _healthy(url, timeout=30)
        took = time.monotonic() - started
        figures.health_max = max(figures.health_max, took if answered else float("inf"))
        stop.wait(0.25)


