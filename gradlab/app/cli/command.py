"""What every subcommand's parser starts with."""

from __future__ import annotations

import argparse
from typing import Any


def command(
    commands: Any, name: str, *, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``; its ``epilog`` of examples keeps its line breaks."""
    layout: dict[str, Any] = {}
    if epilog is not None:
        layout = {"epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=description, **layout
    )
    return parser


def sources(parser: argparse.ArgumentParser, target: str) -> Any:
    """The one thing a command reads: a ``path/to/file.py:function`` target or ``--expr``.

    Returns the group, for commands that read more kinds of source.
    """
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("target", nargs="?", help=target)
    group.add_argument("--expr", metavar="PROGRAM", help="a tensor program, as in the app")
    return group
