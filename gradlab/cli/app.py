"""``gradlab app``: start the browser app with Streamlit."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from gradlab.errors import GradLabError

TRUSTED_ENV = "GRADLAB_TRUSTED"


def add_parser(commands: Any) -> None:
    """Register ``gradlab app``."""
    parser = commands.add_parser(
        "app",
        help="start the browser app",
        description="Start GradLab's browser app (Streamlit) and print its address.",
    )
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--trusted",
        action="store_true",
        help="let the app run model code you paste (only when listening on localhost)",
    )
    parser.set_defaults(run=run)


def entry_script() -> Path:
    """The app's entry script: the source checkout's, else the installed copy."""
    checkout = Path(__file__).resolve().parents[2] / "pages" / "app.py"
    if checkout.is_file():
        return checkout
    spec = importlib.util.find_spec("gradlab_app")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations))) / "pages" / "app.py"
        if installed.is_file():
            return installed
    raise GradLabError("The app's files are missing from this installation; reinstall gradlab.")


def run(args: argparse.Namespace) -> int:
    """Replace this process with ``streamlit run`` on the entry script."""
    if args.trusted:
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            raise GradLabError("--trusted runs pasted code, so it needs --host 127.0.0.1.")
        os.environ[TRUSTED_ENV] = "1"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(entry_script()),
        f"--server.port={args.port}",
        f"--server.address={args.host}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
    ]
    print(f"GradLab: http://{args.host}:{args.port}", flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces the process
