"""``gradlab plugins``: the training scenarios installed, and the plugins that failed to load."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gradlab.app.cli.command import command
from gradlab.train.discover import ENTRY_POINT_GROUP, ENV_DISABLE_AUTOLOAD, ENV_PLUGINS, discover


def add_parser(commands: Any) -> None:
    """Register ``gradlab plugins``."""
    parser = command(
        commands,
        "plugins",
        help="list the training scenarios and the plugins that failed to load",
        description=f"List built-in scenarios and those installed through the entry-point "
        f"group `{ENTRY_POINT_GROUP}`. {ENV_DISABLE_AUTOLOAD}=1 stops third-party plugins "
        f"from loading by themselves; {ENV_PLUGINS}=a,b loads only those named.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the scenarios and failures; exit code 1 when some plugin failed to load."""
    found = discover(refresh=True)
    if args.json:
        print(
            json.dumps(
                {
                    "scenarios": [
                        {"name": s.name, "title": s.title, "source": found.sources[s.name]}
                        for s in found.scenarios.values()
                    ],
                    "failed": [
                        {"name": e.name, "source": e.source, "error": e.message}
                        for e in found.errors
                    ],
                },
                indent=1,
            )
        )
        return 1 if found.errors else 0
    width = max((len(n) for n in found.scenarios), default=4)
    print(f"{len(found.scenarios)} scenarios:")
    for name, scenario in found.scenarios.items():
        print(f"  {name:<{width}}  {scenario.title}  [{found.sources[name]}]")
    if found.errors:
        print(f"{len(found.errors)} failed to load:")
        for e in found.errors:
            print(f"  {e.name}  [{e.source}]: {e.message}")
    return 1 if found.errors else 0
