"""``gradlab steps``: walk through a backward pass in the engine's order, in the terminal."""

from __future__ import annotations

import argparse
from typing import Any

from gradlab.app.cli.command import command, sources
from gradlab.app.cli.export import program_graph
from gradlab.app.targets import run_target, trace_target
from gradlab.render.steps import step_lines
from gradlab.teach.steps import steps

EPILOG = """examples:
  gradlab steps --expr "x = torch.ones(2, 2, requires_grad=True)
  y = x + 2
  out = (y * y * 3).mean()
  out.backward()"
  gradlab steps model.py:loss      # loss() returns a tensor or (model, tensor)
"""


def add_parser(commands: Any) -> None:
    """Register ``gradlab steps``."""
    parser = command(
        commands,
        "steps",
        help="print each step of backward() with the gradients it received and sent",
        description="Run a program (or your function) and its backward pass, then print every "
        "step the autograd engine ran, in its order: the gradient that arrived at each op "
        "(summed where paths meet), what it sent to each input, and what each .grad became.",
        epilog=EPILOG,
    )
    sources(parser, "path/to/file.py:function to call and trace")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the steps of the chosen source's backward pass."""
    if args.expr is not None:
        G = program_graph(args.expr, needs_backward=True)
    else:
        G = trace_target(run_target(args.target), run_backward=True, show_saved=False)
    all_steps = steps(G)
    for step in all_steps:
        print("\n".join(step_lines(G, step, len(all_steps))))
        print()
    return 0
