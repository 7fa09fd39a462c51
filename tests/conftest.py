"""Shared fixtures: a real Streamlit server, Debian's chromium through Playwright, AppTest.

Browser tests are marked ``browser`` and grouped with ``xdist_group("browser")``
so that one worker runs them all against one server. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gradlab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private data folder (run store and the like) for the app under test."""
    home = tmp_path_factory.mktemp("gradlab-home")
    os.environ["GRADLAB_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def app_url(gradlab_home: Path) -> Iterator[str]:
    """Start ``streamlit run pages/app.py`` on a free localhost port; yield its URL."""
    port = free_port()
    env = {**os.environ, "GRADLAB_HOME": str(gradlab_home), "GRADLAB_TRUSTED": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / f"streamlit-server-{port}.log").open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(ROOT / "pages" / "app.py"),
                "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
                "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
            ],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, server)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}; see {ARTIFACTS}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"streamlit did not become healthy within {timeout} s")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium, driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: run `sudo apt-get install chromium`.")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; a screenshot is saved when the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(30_000)
    yield p
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def wait_for_app(page: Any) -> None:
    """Wait until the app finished its rerun: connected, and the script not running."""
    page.wait_for_timeout(200)
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']")
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def app_test(page_file: str | None = None, **kwargs: Any) -> Any:
    """An AppTest of the entry script, switched to ``pages/<page_file>`` when given."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "app.py"), default_timeout=60, **kwargs)
    at.run()
    if page_file is not None:
        at.switch_page(page_file)
        at.run()
    return at


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The data of every download button drawn, by file suffix (AppTest runs in-process)."""
    from streamlit.delta_generator import DeltaGenerator

    seen: dict[str, Any] = {}
    original = DeltaGenerator.download_button

    def spy(self: DeltaGenerator, label: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        seen[kwargs["file_name"].rsplit(".", 1)[1]] = (data, kwargs)
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    return seen


def click_node(at: Any, node: str) -> Any:
    """Rerun an AppTest as the browser does after a click on ``node`` in a Plotly graph.

    The selection goes in as the chart's own widget state (what the frontend
    sends), so the page reads it through ``st.plotly_chart``'s return value.
    """
    import json

    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    for chart in at.get("plotly_chart"):
        data = json.loads(chart.proto.spec)["data"]
        for curve, trace in enumerate(data):
            ids = list(trace.get("customdata") or [])
            if node in ids:
                index = ids.index(node)
                states: WidgetStates = at._tree.get_widget_states()
                state = states.widgets.add()
                state.id = chart.proto.id
                point = {
                    "customdata": node, "curve_number": curve,
                    "point_index": index, "point_number": index,
                }  # fmt: skip
                state.string_value = json.dumps(
                    {
                        "selection": {
                            "points": [point],
                            "point_indices": [index],
                            "box": [],
                            "lasso": [],
                        }
                    }
                )
                return at._run(states)
    raise AssertionError(f"no Plotly chart on the page draws node {node!r}")


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Small models train faster on one thread, and far faster on a busy machine.

    Training tests use it for every test of theirs:
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def trusted_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if started with `gradlab app --trusted`: the flag, and a localhost address."""
    from streamlit import config

    from gradlab.isolation.trusted import TRUSTED_ENV

    monkeypatch.setenv(TRUSTED_ENV, "1")
    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)
