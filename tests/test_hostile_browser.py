"""The hostile corpus typed into the Playground in a real browser, as a student would.

Each program of ``tests/hostile/corpus.py`` is typed into the Program box and
run (Ctrl+Enter); the page must show its outcome within 20 s (one clear
message naming the construct or the limit, never a traceback or a server
path), nothing may be written, and the server must keep answering
``/_stcore/health`` within a second while the programs run in their workers.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gradlab.app.share import pack
from gradlab.isolation import sandbox
from tests.hostile.corpus import CORPUS, Hostile

from .conftest import screenshot, wait_for_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not sandbox.status().complete, reason="no OS sandbox here"),
]

_LEAKS = ("Traceback", 'File "', "/work/", "site-packages", "/usr/lib", ".venv")


class Health:
    """Polls the server's health endpoint in the background; keeps the slow answers."""

    def __init__(self, url: str) -> None:
        self.url, self.slow = url, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    slow: list[float]

    def poll(self) -> None:
        late = 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=10) as r:
                    ok = r.read() == b"ok"
            except OSError:
                ok = False
            took = time.monotonic() - started if ok else float("inf")
            late = late + 1 if took > 1 else 0
            if late >= 2:  # two answers in a row over a second: not a scheduling blip
                self.slow.append(took)
            self.stop.wait(0.2)


@pytest.fixture(scope="module")
def playground(browser: Any, app_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{app_url}/playground?example=chain")
    wait_for_app(page)
    yield page
    context.close()


@pytest.fixture(scope="module")
def health(app_url: str) -> Iterator[Health]:
    watch = Health(app_url)
    watch.thread.start()
    yield watch
    watch.stop.set()
    watch.thread.join()


def _id(entry: Hostile) -> str:
    return f"{entry.category}-{entry.name}"


@pytest.mark.parametrize("entry", CORPUS, ids=_id)
def test_typed_into_the_playground(
    entry: Hostile, playground: Any, health: Health, tmp_path: Path
) -> None:
    target = tmp_path / "escape.bin"
    source = entry.source.replace("{target}", str(target))
    box = playground.get_by_role("textbox", name="Program")
    box.fill(source)
    box.press("Control+Enter")
    # The page writes the program into its link when its run is done: within 20 s.
    playground.wait_for_url(lambda url: urlencode({"p": pack(source)}) in url)
    wait_for_app(playground)
    alerts = playground.locator("[data-testid='stAlert']")
    text = " ".join(alerts.all_inner_texts())
    for leak in _LEAKS:
        assert leak not in playground.inner_text("body"), leak
    assert list(tmp_path.iterdir()) == [], "the program wrote a file"
    if entry.expect == "runs":
        assert "Line " not in text, text
        assert entry.word in playground.inner_text("body")
    else:
        error = playground.locator("[data-testid='stAlertContentError']").first
        message = error.inner_text()
        assert message.startswith("Line "), message
        assert entry.word.replace("`", "") in message.replace("`", ""), message
    assert health.slow == [], f"/_stcore/health was slow: {health.slow}"


def test_the_page_still_works_after_the_corpus(playground: Any, health: Health) -> None:
    box = playground.get_by_role("textbox", name="Program")
    box.fill("x = torch.ones(2, 2, requires_grad=True)\ny = x + 2\nz = y * y * 3\n"
             "out = z.mean()\nout.backward()\nprint('after:', x.grad[0, 0].item())")  # fmt: skip
    box.press("Control+Enter")
    playground.get_by_text("after: 4.5").first.wait_for()
    screenshot(playground, "hostile-after")
    assert health.slow == []
