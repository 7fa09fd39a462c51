"""A plain wheel (not editable) in a fresh virtual environment works from any folder."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT, _wait_healthy, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with only the built wheel installed; dependencies come from this venv."""
    base = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (base / "dist").glob("gradlab-*.whl")
    env = base / "env"
    venv.create(env, with_pip=False)
    site = site_packages(env)
    # Dependencies (torch, streamlit, ...) from the test venv, after the wheel's own files.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    (env / "bin" / "gradlab").write_text(
        f"#!{env / 'bin' / 'python'}\nimport sys\n"
        "from gradlab.app.cli import main\nsys.exit(main())\n"
    )
    (env / "bin" / "gradlab").chmod(0o755)
    return env


def site_packages(env: Path) -> Path:
    out = subprocess.check_output(
        [env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True,
    )
    return Path(out.strip())


def test_no_bare_pages_or_plugins_package(wheel_env: Path) -> None:
    site = site_packages(wheel_env)
    assert not (site / "pages").exists() and not (site / "plugins").exists()
    assert (site / "gradlab_app" / "pages" / "app.py").is_file()
    assert (site / "gradlab_app" / "pages").is_dir()
    assert (site / "gradlab").is_dir()


def test_export_from_another_folder(wheel_env: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [wheel_env / "bin" / "gradlab", "export", "--preset", "mlp", "-o", "mlp.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlp.json").stat().st_size > 0
    where = subprocess.check_output(
        [wheel_env / "bin" / "python", "-c", "import gradlab; print(gradlab.__file__)"],
        cwd=tmp_path,
        text=True,
    )
    assert str(site_packages(wheel_env)) in where  # the wheel's copy, not the checkout


def test_app_from_another_folder(wheel_env: Path, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [wheel_env / "bin" / "gradlab", "app", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", server)  # type: ignore[arg-type]
        # gradlab app replaced itself with streamlit run: the product settings travel too.
        flags = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--client.showErrorDetails=none" in flags
        assert b"--client.toolbarMode=viewer" in flags
    finally:
        server.terminate()
        server.wait(10)


def test_installed_pages_run_without_exception(wheel_env: Path, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import gradlab_app\n"
        "from streamlit.testing.v1 import AppTest\n"
        "root = Path(gradlab_app.__path__[0])\n"
        "pages = sorted((root / 'pages').glob('*.py'))\n"
        "at = AppTest.from_file(str(root / 'pages' / 'app.py'), default_timeout=120)\n"
        "at.run()\n"
        "assert not at.exception, at.exception\n"
        "print('pages', len(pages))\n"
    )
    result = subprocess.run(
        [wheel_env / "bin" / "python", "-c", script],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pages" in result.stdout


def test_the_viewer_ships_in_the_wheel(wheel_env: Path, tmp_path: Path) -> None:
    site = site_packages(wheel_env)
    assert (site / "gradlab" / "render" / "viewer" / "static" / "viewer.js").is_file()
    assert (site / "gradlab" / "render" / "viewer" / "static" / "viewer.css").is_file()
    result = subprocess.run(
        [wheel_env / "bin" / "gradlab", "export", "--preset", "linear", "-o", "linear.html"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "window.GradLabViewer" in (tmp_path / "linear.html").read_text("utf-8")
