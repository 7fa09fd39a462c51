"""The ``gradlab`` command. Each subcommand lives in a module of its own."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from gradlab.app.cli import app, doctor, export, plugins, runs, steps, train
from gradlab.core.errors import GradLabError

COMMANDS = (app, export, steps, train, plugins, runs, doctor)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gradlab`` with ``argv`` (default: the process arguments); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="gradlab",
        description="See and debug what PyTorch's autograd really does.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except GradLabError as exc:
        print(f"gradlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gradlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _pipe_closed()
    try:
        sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at exit
    except BrokenPipeError:
        return _pipe_closed()
    return code


def _pipe_closed() -> int:
    """The reader of stdout went away (``gradlab steps f.py:make | head``): end quietly.

    stdout is pointed at /dev/null so that Python's flush at exit does not fail
    again; the status is a shell's for a process killed by SIGPIPE.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + 13
