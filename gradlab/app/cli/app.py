"""``gradlab app``: start the browser app with Streamlit, configured as a product.

Streamlit reads its options, each source overriding the one before, from
``~/.streamlit/config.toml``, ``./.streamlit/config.toml`` (the folder the
command runs in), a ``.streamlit/config.toml`` beside the entry script, the
``STREAMLIT_*`` environment variables (``STREAMLIT_SERVER_PORT``) and the
command line. ``gradlab app`` passes on the command line only what none of
these sets: the product settings of :data:`PRODUCT` and its own defaults for
the port and the address. A ``--port`` or ``--host`` given to ``gradlab app``
itself always wins. :func:`launch_plan` decides; it reads the environment
and the files it is given and nothing else, so it is tested on its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradlab.app.cli.command import command
from gradlab.core.errors import GradLabError
from gradlab.isolation import sandbox
from gradlab.isolation.trusted import TRUSTED_ENV

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

#: What a hosted GradLab needs from Streamlit, unless Streamlit's own configuration
#: sets it: no tracebacks or server paths in the browser (a generic message, the
#: details in the server's log), no Deploy button or developer menu, small limits
#: on what a browser may send (the app takes no uploads; its largest message, the
#: 1,000-layer MLP drawn in full, is 2.4 MB), no file watcher, no usage statistics.
PRODUCT: dict[str, str | int | bool] = {
    "server.headless": True,
    "browser.gatherUsageStats": False,
    "server.fileWatcherType": "none",
    "client.showErrorDetails": "none",
    "client.toolbarMode": "viewer",
    "server.maxUploadSize": 16,  # MB
    "server.maxMessageSize": 32,  # MB, each websocket message, either way
    "server.maxWidgetStateSize": 2,  # MB, what a browser sends for one rerun
}


@dataclass(frozen=True)
class Launch:
    """How ``streamlit run`` is started: the flags passed, and where it will listen."""

    options: dict[str, str | int | bool]  # passed as --key=value
    configured: dict[str, str]  # option -> where Streamlit's own configuration sets it
    address: str  # the address it will listen on, whoever set it
    port: int

    def flags(self) -> list[str]:
        """The options as ``streamlit run`` flags."""
        return [f"--{key}={_flag_value(value)}" for key, value in self.options.items()]

    @property
    def url(self) -> str:
        """Where a browser on this machine finds the app."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


def add_parser(commands: Any) -> None:
    """Register ``gradlab app``."""
    parser = command(
        commands,
        "app",
        help="start the browser app",
        description="Start GradLab's browser app (Streamlit) and print its address. "
        "Streamlit's own configuration (STREAMLIT_* environment variables, "
        ".streamlit/config.toml here or in your home folder) is honoured; "
        "--port and --host, when given, win over it.",
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"port (default {DEFAULT_PORT}, or as configured)"
    )
    parser.add_argument(
        "--host",
        default=None,
        help=f"address to listen on (default {DEFAULT_HOST}, or as configured)",
    )
    parser.add_argument(
        "--without-sandbox",
        action="store_true",
        help="serve other machines even where the OS sandbox for programs is incomplete: "
        "their programs then run with only GradLab's interpreter as a wall (a risk)",
    )
    parser.add_argument(
        "--trusted",
        action="store_true",
        help="let the app run model code you paste (only when listening on localhost)",
    )
    parser.set_defaults(run=run)


def entry_script() -> Path:
    """The app's entry script: the source checkout's, else the installed copy."""
    checkout = Path(__file__).resolve().parents[3] / "pages" / "app.py"
    if checkout.is_file():
        return checkout
    spec = importlib.util.find_spec("gradlab_app")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations))) / "pages" / "app.py"
        if installed.is_file():
            return installed
    raise GradLabError("The app's files are missing from this installation; reinstall gradlab.")


def config_files(script: Path, cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    """The ``config.toml`` files Streamlit reads for ``script``, weakest first."""
    files = [
        (home or Path.home()) / ".streamlit" / "config.toml",
        (cwd or Path.cwd()) / ".streamlit" / "config.toml",
        script.resolve().parent / ".streamlit" / "config.toml",
    ]
    return list(dict.fromkeys(files))


def env_var(key: str) -> str:
    """The environment variable Streamlit reads for option ``key`` (``STREAMLIT_SERVER_PORT``)."""
    name = key.replace(".", "_")
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return "STREAMLIT_" + re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()


def streamlit_configuration(
    keys: Sequence[str], environ: Mapping[str, str], files: Sequence[Path]
) -> dict[str, tuple[object, str]]:
    """Which of ``keys`` Streamlit's configuration sets: ``key -> (value, where)``.

    The same order as Streamlit's: later files over earlier ones, the
    environment over the files. A file that is not valid TOML is an error
    (Streamlit would print a traceback and ignore it).
    """
    found: dict[str, tuple[object, str]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise GradLabError(
                f"Cannot read Streamlit's configuration file {path}: {exc}."
            ) from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise GradLabError(
                f"Streamlit's configuration file {path} is not valid TOML ({exc}): "
                "fix it or move it away."
            ) from exc
        for key in keys:
            section, _, name = key.rpartition(".")
            table = data.get(section)
            if isinstance(table, dict) and name in table:
                found[key] = (_env_reference(table[name], environ), str(path))
    for key in keys:
        value = environ.get(env_var(key))
        if value:  # click, which reads them for Streamlit, ignores empty ones
            found[key] = (value, f"the environment variable {env_var(key)}")
    return found


def launch_plan(
    given: Mapping[str, object], environ: Mapping[str, str], files: Sequence[Path]
) -> Launch:
    """The flags for ``streamlit run``: ``given`` (``gradlab app``'s own flags, by option)
    always, the defaults only where Streamlit's configuration does not set them.
    """
    defaults: dict[str, str | int | bool] = {
        "server.port": DEFAULT_PORT,
        "server.address": DEFAULT_HOST,
        **PRODUCT,
    }
    configured = streamlit_configuration(list(defaults), environ, files)
    options: dict[str, str | int | bool] = {}
    for key, default in defaults.items():
        if key in given:
            options[key] = _option(given[key])
        elif key not in configured:
            options[key] = default
    for key, value in given.items():
        options.setdefault(key, _option(value))

    def effective(key: str) -> object:
        return options[key] if key in options else configured[key][0]

    port = effective("server.port")
    try:
        number = int(str(port))
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        where = "--port" if "server.port" in given else configured["server.port"][1]
        raise GradLabError(f"The port {port!r} (from {where}) is not a port number (1-65535).")
    return Launch(
        options=options,
        configured={key: where for key, (_, where) in configured.items() if key not in given},
        address=str(effective("server.address")),
        port=number,
    )


def plan_from_args(args: argparse.Namespace) -> Launch:
    """``gradlab app``'s arguments, with Streamlit's configuration, as a launch plan.

    Every check of the arguments (trusted mode, the address) belongs here.
    """
    given: dict[str, object] = {}
    if args.port is not None:
        given["server.port"] = args.port
    if args.host is not None:
        given["server.address"] = args.host
    plan = launch_plan(given, os.environ, config_files(entry_script()))
    if args.trusted and plan.address not in LOOPBACK:
        raise GradLabError(
            f"--trusted runs pasted code, so it needs --host 127.0.0.1 (the address "
            f"is {plan.address})."
        )
    if plan.address not in LOOPBACK and not args.without_sandbox:
        check_sandbox(plan.address)
    return plan


def check_sandbox(address: str) -> None:
    """Refuse to serve other machines when the OS sandbox for programs is incomplete."""
    found = sandbox.status()
    if not found.complete:
        raise GradLabError(
            f"Not serving on {address}: programs typed in the app run in an OS sandbox "
            f"(Landlock, seccomp, a network namespace), but {found.reason}. Other people's "
            "programs would run with only GradLab's interpreter between them and this "
            "machine. Serve on 127.0.0.1, run it on a Linux machine that has these (kernel "
            "5.13 or newer, user namespaces enabled), or pass --without-sandbox to take "
            "that risk."
        )


def run(args: argparse.Namespace) -> int:
    """Replace this process with ``streamlit run`` on the entry script."""
    plan = plan_from_args(args)
    if args.trusted:
        os.environ[TRUSTED_ENV] = "1"
    command = [sys.executable, "-m", "streamlit", "run", str(entry_script()), *plan.flags()]
    print(f"GradLab: {plan.url}", flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces the process


def _option(value: object) -> str | int | bool:
    return value if isinstance(value, str | int | bool) else str(value)


def _flag_value(value: str | int | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _env_reference(value: object, environ: Mapping[str, str]) -> object:
    """Streamlit reads a config.toml value ``"env:NAME"`` from the environment variable NAME."""
    if isinstance(value, str) and value.startswith("env:"):
        return environ.get(value[4:], value)
    return value
