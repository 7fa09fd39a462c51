"""``gradlab export``: write a backward graph to a file."""

from __future__ import annotations

import argparse
from typing import Any

from gradlab.app.targets import run_target, trace_case, trace_target
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.render.formats import FORMATS, save, suffixes
from gradlab.zoo import presets

EPILOG = """examples:
  gradlab export -o x2.svg --expr "x = torch.tensor([2., 3.], requires_grad=True)
  (x ** 2).sum().backward()"
  gradlab export --preset lenet -o lenet.json
  gradlab export --preset lenet -o lenet.html  # the interactive viewer, works offline
  gradlab export --preset mlp --param depth=100 -o mlp.graphml
  gradlab export model.py:loss -o loss.png     # loss() returns a tensor or (model, tensor)
"""


def add_parser(commands: Any) -> None:
    """Register ``gradlab export``."""
    parser = commands.add_parser(
        "export",
        help=f"write a backward graph to {'/'.join('.' + suffix for suffix in FORMATS)}",
        description="Trace a program, a preset model or your own function and write its "
        "backward graph, with values and gradients, to a file chosen by suffix.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("target", nargs="?", help="path/to/file.py:function to call and trace")
    source.add_argument("--expr", metavar="PROGRAM", help="a tensor program, as in the app")
    source.add_argument(
        "--preset",
        metavar="NAME",
        help=f"a preset model with a batch and a loss: {', '.join(presets.PRESETS)}",
    )
    parser.add_argument(
        "-o", "--output", required=True, help=f"output file: {suffixes()}"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a preset parameter, e.g. depth=100 (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for presets (default 0)")
    parser.add_argument("--saved", action="store_true", help="add the tensors saved for backward")
    parser.add_argument("--clusters", action="store_true", help="box each module (dot/svg/png)")
    parser.add_argument("--no-backward", action="store_true", help="trace only; skip backward()")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the graph from the chosen source and save it."""
    G = _graph(args)
    path = save(G, args.output, clusters=args.clusters)
    ops = sum(1 for _, kind in G.nodes(data="kind") if kind == "op")
    print(f"wrote {path} ({ops} autograd nodes, {G.number_of_nodes()} nodes in all)")
    return 0


def _graph(args: argparse.Namespace) -> Graph:
    if args.preset:
        case = presets.get(args.preset).build(args.seed, **_params(args.param))
        return trace_case(case, run_backward=not args.no_backward, show_saved=args.saved)
    if args.expr is not None:
        return program_graph(args.expr)
    if args.param:
        raise GradLabError("--param applies to --preset only.")
    target = run_target(args.target)
    return trace_target(target, run_backward=not args.no_backward, show_saved=args.saved)


def program_graph(source: str, needs_backward: bool = False) -> Graph:
    """The graph of a tensor program; a program error or an empty graph is a GradLabError."""
    from gradlab.isolation.pool import run_program

    result = run_program(source, here=True)  # in a sandboxed worker, like in the app
    if result.error is not None:
        raise GradLabError(result.error.describe())
    if result.graph is None:
        raise GradLabError(
            "The program made no tensor with a grad_fn to trace. Create a tensor with "
            "requires_grad=True and compute something from it."
        )
    if needs_backward and not result.backward_calls:
        raise GradLabError(
            "The program never calls backward(): end it with one, e.g. loss.backward() "
            "(or y.sum().backward() for a tensor of several numbers)."
        )
    return result.graph


def _params(items: list[str]) -> dict[str, int]:
    params: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GradLabError(f"--param '{item}' is not of the form NAME=VALUE.")
        try:
            params[name.strip()] = int(value)
        except ValueError:
            raise GradLabError(f"--param {name}: '{value}' is not an integer.") from None
    return params
