"""``gradlab app`` starts Streamlit as a product and honours Streamlit's own configuration.

The plan (:func:`gradlab.app.cli.app.launch_plan`) is tested on its own; then
``gradlab app`` is started for real and asked what it serves (``/_stcore/health``
on the port expected) and which flags it passed (the server process's own
command line: ``gradlab app`` replaces itself with ``streamlit run``). A page
that raises runs in chromium with the same options: no traceback, no server
path, no Deploy button.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gradlab.app.cli.app import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    PRODUCT,
    config_files,
    env_var,
    launch_plan,
)
from gradlab.core.errors import GradLabError
from tests.conftest import ARTIFACTS, _wait_healthy, free_port, screenshot, wait_for_app


def write_config(folder: Path, text: str) -> Path:
    path = folder / ".streamlit" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- the plan, on its own -------------------------------------------------------------------


def test_nothing_configured_gives_the_product_settings_and_the_defaults() -> None:
    plan = launch_plan({}, {}, [])
    assert plan.options["server.port"] == DEFAULT_PORT
    assert plan.options["server.address"] == DEFAULT_HOST
    assert plan.options["client.showErrorDetails"] == "none"
    assert plan.options["client.toolbarMode"] in ("viewer", "minimal")
    assert plan.options["server.maxUploadSize"] <= 32  # type: ignore[operator]
    assert plan.options["server.maxMessageSize"] <= 64  # type: ignore[operator]
    assert plan.configured == {}
    assert (plan.address, plan.port) == (DEFAULT_HOST, DEFAULT_PORT)
    assert "--client.showErrorDetails=none" in plan.flags()
    assert "--server.headless=true" in plan.flags()


def test_the_product_values_are_ones_streamlit_accepts() -> None:
    from streamlit import config

    template = config._config_options_template
    for key, value in PRODUCT.items():
        assert key in template, key
        assert isinstance(value, template[key].type), (key, value)
        assert env_var(key) == template[key].env_var  # Streamlit's own name for it
    details = {o.value for o in config.ShowErrorDetailsConfigOptions}
    assert PRODUCT["client.showErrorDetails"] in details - {"full", "stacktrace"}
    assert env_var("server.port") == "STREAMLIT_SERVER_PORT"


def test_an_environment_variable_is_left_to_streamlit() -> None:
    plan = launch_plan({}, {"STREAMLIT_SERVER_PORT": "9123"}, [])
    assert "server.port" not in plan.options
    assert plan.port == 9123
    assert "STREAMLIT_SERVER_PORT" in plan.configured["server.port"]
    assert plan.options["server.address"] == DEFAULT_HOST  # the rest is still filled in


def test_an_empty_environment_variable_counts_as_unset() -> None:
    assert launch_plan({}, {"STREAMLIT_SERVER_PORT": ""}, []).options["server.port"] == 8501


def test_config_files_are_left_to_streamlit_and_read_in_its_order(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "project"
    write_config(home, '[server]\nport = 9001\naddress = "10.0.0.1"\n')
    write_config(cwd, '[server]\nport = 9002\n[client]\nshowErrorDetails = "full"\n')
    files = config_files(tmp_path / "pages" / "app.py", cwd=cwd, home=home)
    plan = launch_plan({}, {}, files)
    for key in ("server.port", "server.address", "client.showErrorDetails"):
        assert key not in plan.options
    assert plan.port == 9002  # the project's file over the home folder's
    assert plan.address == "10.0.0.1"
    assert plan.configured["server.port"] == str(cwd / ".streamlit" / "config.toml")
    assert plan.options["client.toolbarMode"] == PRODUCT["client.toolbarMode"]
    # The environment over both files.
    assert launch_plan({}, {"STREAMLIT_SERVER_PORT": "9003"}, files).port == 9003


def test_gradlab_app_flags_win_over_everything(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nport = 9002\naddress = "0.0.0.0"\n')
    plan = launch_plan(
        {"server.port": 9100, "server.address": "127.0.0.1"},
        {"STREAMLIT_SERVER_PORT": "9003"},
        [path],
    )
    assert plan.options["server.port"] == 9100
    assert plan.options["server.address"] == "127.0.0.1"
    assert (plan.port, plan.address) == (9100, "127.0.0.1")
    assert "server.port" not in plan.configured


def test_env_references_in_config_files(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nport = "env:MY_PORT"\n')
    assert launch_plan({}, {"MY_PORT": "9555"}, [path]).port == 9555


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("[server\nport = 1", {}, "not valid TOML"),
        ('[server]\nport = "eighty"\n', {}, "is not a port number"),
        ("", {"STREAMLIT_SERVER_PORT": "99999"}, "STREAMLIT_SERVER_PORT"),
    ],
)
def test_bad_configuration_is_one_clear_error(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(GradLabError, match=message) as caught:
        launch_plan({}, environ, [path])
    assert "\n" not in str(caught.value)


# --- gradlab app, for real ------------------------------------------------------------------


def start_app(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    full_env = (
        {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
        | {"HOME": str(home), "GRADLAB_HOME": str(home / "gradlab")}
        | (env or {})
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gradlab", "app", *args],
        cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def serving(server: subprocess.Popen[str], port: int) -> list[str]:
    """Wait until the server answers on ``port``; return the flags it was started with."""
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", server)  # type: ignore[arg-type]
    except RuntimeError:
        server.kill()
        raise AssertionError(server.communicate()[0]) from None
    command = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    return [a.decode() for a in command if a.startswith(b"--")]


def stop(server: subprocess.Popen[str]) -> str:
    server.terminate()
    try:
        out, _ = server.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        out, _ = server.communicate()
    return out


def test_app_passes_the_product_settings(tmp_path: Path) -> None:
    port = free_port()
    server = start_app(tmp_path, "--port", str(port))
    try:
        flags = serving(server, port)
    finally:
        out = stop(server)
    assert f"--server.port={port}" in flags
    for key, value in PRODUCT.items():
        assert f"--{key}={str(value).lower() if isinstance(value, bool) else value}" in flags
    assert out.splitlines()[0] == f"GradLab: http://127.0.0.1:{port}"


def test_app_honours_streamlit_server_port(tmp_path: Path) -> None:
    port = free_port()
    server = start_app(tmp_path, env={"STREAMLIT_SERVER_PORT": str(port)})
    try:
        flags = serving(server, port)
    finally:
        out = stop(server)
    assert not any(f.startswith("--server.port") for f in flags)
    assert "--client.showErrorDetails=none" in flags
    assert out.splitlines()[0] == f"GradLab: http://127.0.0.1:{port}"


def test_app_honours_a_config_toml_in_the_working_folder(tmp_path: Path) -> None:
    port = free_port()
    write_config(tmp_path, f'[server]\nport = {port}\n[client]\nshowErrorDetails = "type"\n')
    server = start_app(tmp_path)
    try:
        flags = serving(server, port)
    finally:
        stop(server)
    assert not any(f.startswith(("--server.port", "--client.showErrorDetails")) for f in flags)
    assert "--client.toolbarMode=viewer" in flags


def test_a_port_given_to_gradlab_app_wins_over_the_configuration(tmp_path: Path) -> None:
    configured, given = free_port(), free_port()
    write_config(tmp_path, f"[server]\nport = {configured}\n")
    server = start_app(
        tmp_path, "--port", str(given), env={"STREAMLIT_SERVER_PORT": str(configured)}
    )
    try:
        flags = serving(server, given)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{configured}/_stcore/health", timeout=2)
    finally:
        stop(server)
    assert f"--server.port={given}" in flags


def test_a_broken_config_toml_is_one_line(tmp_path: Path) -> None:
    write_config(tmp_path, "[server\n")
    server = start_app(tmp_path)
    out, _ = server.communicate(timeout=60)
    assert server.returncode == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "not valid TOML" in lines[0] and "Traceback" not in out


# --- what a browser sees --------------------------------------------------------------------

PAGE = """
import streamlit as st

st.title("probe page")


def handler_at_a_secret_place():
    raise ValueError("boom: the secret is in " + __file__)


handler_at_a_secret_place()
"""


@pytest.fixture
def raising_page(tmp_path: Path) -> Iterator[Any]:
    """Start ``streamlit run`` on a page that raises, with given extra options."""
    script = tmp_path / "secret_page.py"
    script.write_text(PAGE)
    servers: list[subprocess.Popen[str]] = []

    def start(overrides: dict[str, str]) -> str:
        port = free_port()
        plan = launch_plan({"server.port": port, **overrides}, {}, [])
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), *plan.flags()],
            cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        servers.append(server)
        serving(server, port)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        stop(server)


@pytest.mark.browser
def test_an_uncaught_exception_shows_no_details(raising_page: Any, page: Any) -> None:
    # The control: Streamlit's defaults show the traceback and the Deploy button.
    page.goto(raising_page({"client.showErrorDetails": "full", "client.toolbarMode": "auto"}))
    wait_for_app(page)
    page.wait_for_selector("[data-testid='stException']")
    text = page.inner_text("body")
    assert "boom" in text and "secret_page.py" in text
    assert page.locator("[data-testid='stAppDeployButton']").count() == 1
    page.click("[data-testid='stMainMenu']")
    assert "Clear cache" in page.inner_text("body")

    page.goto(raising_page({}))  # gradlab app's settings
    wait_for_app(page)
    page.wait_for_selector("[data-testid='stException']")
    screenshot(page, "app-config-uncaught-exception")
    text = page.inner_text("body")
    assert "probe page" in text
    for leak in ("boom", "secret", "Traceback", "ValueError", "handler_at", str(Path.home())):
        assert leak not in text, leak
    assert "/tmp" not in text and str(ARTIFACTS.parent) not in text
    assert page.locator("[data-testid='stAppDeployButton']").count() == 0
    page.click("[data-testid='stMainMenu']")
    screenshot(page, "app-config-menu")
    menu = page.inner_text("body")
    assert "Clear cache" not in menu and "Rerun" not in menu and "Deploy" not in menu


def test_trusted_mode_checks_the_address_streamlit_will_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import argparse

    from gradlab.app.cli.app import plan_from_args

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "0.0.0.0")
    args = argparse.Namespace(port=None, host=None, trusted=True, without_sandbox=False)
    with pytest.raises(
        GradLabError, match=r"needs --host 127\.0\.0\.1 \(the address is 0\.0\.0\.0\)"
    ):
        plan_from_args(args)
    plan = plan_from_args(
        argparse.Namespace(port=None, host="127.0.0.1", trusted=True, without_sandbox=False)
    )
    assert plan.address == "127.0.0.1" and "--server.address=127.0.0.1" in plan.flags()
