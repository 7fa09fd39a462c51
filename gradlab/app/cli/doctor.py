"""``gradlab doctor``: diagnose a model's gradients from the command line, for CI.

Exit status: 0 when there is no error-level finding (warnings and notes are
printed), 1 when there is one, 2 when the target could not be run at all.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from gradlab.app.cli.command import command, sources
from gradlab.app.targets import load_callable
from gradlab.core.errors import GradLabError
from gradlab.diagnose import Finding, Report, examine
from gradlab.diagnose import gallery as cases
from gradlab.isolation.pool import diagnose_program
from gradlab.zoo import presets

EPILOG = """examples:
  gradlab doctor model.py:loss          # loss() returns the loss, or (model, loss)
  gradlab doctor --gallery where_nan_gradient
  gradlab doctor --gallery list
  gradlab doctor --preset lenet --gradcheck
  gradlab doctor --expr "x = torch.tensor([0., 1.], requires_grad=True)
  x.log().sum().backward()"

exit status: 0 no error-level finding, 1 an error-level finding, 2 the target did not run
"""
_MARK = {"error": "error  ", "warning": "warning", "info": "note   "}


def add_parser(commands: Any) -> None:
    """Register ``gradlab doctor``."""
    parser = command(
        commands,
        "doctor",
        help="find why gradients are None, NaN, vanishing or exploding",
        description="Run a function, a preset, a gallery case or a tensor program, and print "
        "what is wrong with its gradients: where, why, and the fix.",
        epilog=EPILOG,
    )
    source = sources(
        parser, "path/to/file.py:function (no arguments; returns a loss or (model, loss))"
    )
    source.add_argument("--gallery", metavar="NAME", help="a broken case of the gallery ('list')")
    source.add_argument("--preset", metavar="NAME", help=f"a preset: {', '.join(presets.PRESETS)}")
    parser.add_argument(
        "--gradcheck", action="store_true",
        help="compare autograd with finite differences (presets and gallery models)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Diagnose the chosen source, print the findings, return the exit status."""
    if args.gallery == "list":
        for case in cases.CASES:
            print(f"{case.name:28} {case.expect:18} {case.title}")
        return 0
    try:
        label, report = _examine(args)
    except GradLabError as exc:
        print(f"gradlab doctor: {exc}", file=sys.stderr)
        return 2
    print(describe(label, report.findings))
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def _examine(args: argparse.Namespace) -> tuple[str, Report]:
    if args.gallery:
        case = cases.get(args.gallery)
        if args.gradcheck and case.form != "model":
            raise GradLabError(f"--gradcheck needs a model; gallery case '{case.name}' is not.")
        if case.form == "program":
            return case.name, examine(case.program)
        assert case.build is not None
        subject = case.build() if case.form == "model" else case.build
        return case.name, examine(subject, gradcheck=args.gradcheck or case.gradcheck)
    if args.preset:
        built = presets.get(args.preset).build()
        return f"preset {args.preset}", examine(built, gradcheck=args.gradcheck)
    if args.gradcheck:
        raise GradLabError("--gradcheck needs a model with its batch: use --preset or --gallery.")
    if args.expr is not None:  # typed programs run in a sandboxed worker, like in the app
        return "the program", diagnose_program(args.expr, here=True)
    func = load_callable(args.target)
    try:
        report = examine(func)
    except GradLabError as exc:
        raise GradLabError(f"{args.target}: {exc}") from exc
    except SystemExit as exc:
        raise GradLabError(f"{args.target} called sys.exit({exc.code!r}).") from exc
    for f in report.findings:
        if f.kind == "autograd_error" and f.cause == "unknown":
            # Not an autograd mistake: the target itself could not run.
            message = f.explanation.strip().splitlines()[0] if f.explanation.strip() else ""
            raise GradLabError(f"{args.target} raised {f.where}: {message}".rstrip(": "))
    return args.target, report


def describe(label: str, findings: tuple[Finding, ...] | list[Finding]) -> str:
    """The findings as text for a terminal: a summary line, then one block per finding."""
    if not findings:
        return f"{label}: no problems found with the gradients."
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    shown = ", ".join(f"{n} {s if n == 1 else s + 's'}" for s, n in counts.items() if n)
    lines = [f"{label}: {shown.replace('infos', 'notes').replace('info', 'note')}"]
    for f in findings:
        where = f" [{', '.join(f.nodes)}]" if f.nodes else ""
        lines.append("")
        lines.append(f"{_MARK[f.severity]}  {f.kind}: {f.title}{where}")
        lines += textwrap.wrap(f.explanation, 96, initial_indent=" " * 9, subsequent_indent=" " * 9)
        for i, line in enumerate(f.fix.splitlines()):
            lead = " " * 9 + ("fix: " if i == 0 else " " * 5)
            lines += textwrap.wrap(line, 96, initial_indent=lead, subsequent_indent=" " * 14)
    return "\n".join(lines)
