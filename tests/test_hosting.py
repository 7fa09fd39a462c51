"""Hosting for a class: ``gradlab app --host 0.0.0.0`` needs the OS sandbox, or an explicit risk."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gradlab.app.cli import app
from gradlab.core.errors import GradLabError
from gradlab.isolation import sandbox

from .conftest import free_port

MISSING = sandbox.Status(0, False, True, "this kernel or container lacks Landlock, seccomp")


def args(host: str | None, *, without_sandbox: bool = False) -> argparse.Namespace:
    return argparse.Namespace(port=None, host=host, trusted=False, without_sandbox=without_sandbox)


def test_a_class_server_is_refused_without_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_STATUS", MISSING)
    with pytest.raises(GradLabError) as refused:
        app.plan_from_args(args("0.0.0.0"))
    message = str(refused.value)
    assert "0.0.0.0" in message and "Landlock, seccomp" in message
    assert "--without-sandbox" in message and "127.0.0.1" in message


def test_the_risk_can_be_taken_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_STATUS", MISSING)
    assert app.plan_from_args(args("0.0.0.0", without_sandbox=True)).address == "0.0.0.0"


def test_localhost_never_needs_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_STATUS", MISSING)
    for host in (None, "127.0.0.1", "localhost", "::1"):
        assert app.plan_from_args(args(host)).address in app.LOOPBACK


def test_the_configured_address_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_STATUS", MISSING)
    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "0.0.0.0")
    with pytest.raises(GradLabError, match=r"Not serving on 0\.0\.0\.0"):
        app.plan_from_args(args(None))


@pytest.mark.skipif(not sandbox.status().complete, reason="no OS sandbox here")
def test_with_the_sandbox_gradlab_app_serves_every_interface(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gradlab", "app", "--host", "0.0.0.0", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(tmp_path),
        env={**os.environ, "GRADLAB_HOME": str(tmp_path)},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        first = server.stdout.readline().decode()
        assert first.strip() == f"GradLab: http://0.0.0.0:{port}"
        for _ in range(600):
            try:
                health = f"http://127.0.0.1:{port}/_stcore/health"
                with urllib.request.urlopen(health, timeout=1) as answer:
                    assert answer.read() == b"ok"
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"the server stopped: {server.stdout.read().decode()[-2000:]}")
                time.sleep(0.1)
        else:
            pytest.fail("the server never answered")
    finally:
        server.terminate()
        server.wait(20)


def test_a_machine_without_the_layers_still_runs_programs_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gradlab.isolation import pool

    monkeypatch.setattr(sandbox, "_STATUS", MISSING)
    result = pool.run_program("x = torch.tensor([2., 3.], requires_grad=True)\n"
                              "(x ** 2).sum().backward()", here=True)  # fmt: skip
    assert result.ok and result.variables[0].grad["values"] == [4.0, 6.0]


def test_a_teacher_sets_the_programs_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradlab.isolation import pool

    monkeypatch.setenv("GRADLAB_PROGRAM_SECONDS", "0.5")
    result = pool.run_program("while True:\n    pass", here=True)
    assert result.error is not None and "0.5 s" in result.error.message
    monkeypatch.setenv("GRADLAB_PROGRAM_SECONDS", "soon")
    with pytest.raises(pool.WorkerError, match="GRADLAB_PROGRAM_SECONDS"):
        pool.program_limits()


def test_gradlab_app_in_a_checkout_serves_the_checkout_s_pages() -> None:
    """Not an installed copy: a change to pages/ shows at the next start."""
    checkout = Path(__file__).resolve().parent.parent
    assert app.entry_script() == checkout / "pages" / "app.py"
