"""``gradlab train``: run a training scenario headless, with a progress bar, to JSON."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO, Any, NoReturn

from gradlab.core.errors import GradLabError
from gradlab.train.discover import discover
from gradlab.train.driver import train
from gradlab.train.loop import MAX_STEPS
from gradlab.train.params import param_field
from gradlab.train.records import RunInfo, StepRecord, to_json
from gradlab.train.scenario import Scenario
from gradlab.train.store import RunStore

EPILOG = """examples:
  gradlab train linear_regression --steps 100 --out run.json
  gradlab train classify_2d --dataset spiral --depth 4 --every 10
  gradlab train ddp --processes 2 --steps 30      # torchrun, gloo on CPU
  gradlab train digits_cnn --help                 # the scenario's own flags
  gradlab plugins                                 # which scenarios are installed
"""


def add_parser(commands: Any) -> None:
    """Register ``gradlab train``."""
    parser = commands.add_parser(
        "train",
        help="train a scenario headless and write its run to JSON",
        description="Train one scenario (see `gradlab plugins`), capturing every node's "
        "gradient norm every K-th step. The run is kept in the run store and, with --out, "
        "written to a JSON file. `gradlab train NAME --help` lists the scenario's flags.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", nargs="?", help="scenario name")
    parser.add_argument(
        "options", nargs=argparse.REMAINDER, help="the run's and the scenario's flags (NAME --help)"
    )
    parser.set_defaults(run=run)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes become one-line GradLab errors."""

    def error(self, message: str) -> NoReturn:
        raise GradLabError(f"{message} (see `{self.prog} --help`)")


def scenario_parser(scenario: Scenario) -> argparse.ArgumentParser:
    """The flags of ``gradlab train NAME``: the run's options and one per scenario parameter."""
    parser = _Parser(
        prog=f"gradlab train {scenario.name}",
        description=f"{scenario.title}: {scenario.description}",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--steps", type=int, default=scenario.steps, help=f"steps to train (at most {MAX_STEPS:,})"
    )
    run.add_argument(
        "--every", type=int, default=scenario.every, help="capture every K-th step (0: never)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    run.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    run.add_argument("--out", type=Path, help="write the run to this JSON file")
    run.add_argument("--no-store", action="store_true", help="do not keep it in the run store")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("scenario parameters")
    for f in map(param_field, scenario.params):
        group.add_argument(f.flag, dest=f"param_{f.name}", metavar=f.metavar, help=f.summary)
    return parser


def run(args: argparse.Namespace) -> int:
    """Parse the scenario's flags, train, store and write the run."""
    if args.scenario is None:
        raise GradLabError("name a scenario: gradlab train NAME (`gradlab plugins` lists them)")
    scenario = discover().get(args.scenario)
    parser = scenario_parser(scenario)
    if any(o in ("-h", "--help") for o in args.options):
        parser.print_help()
        return 0
    options = parser.parse_args(args.options)
    params = {
        p.name: p.parse(getattr(options, f"param_{p.name}"))
        for p in scenario.params
        if getattr(options, f"param_{p.name}") is not None
    }
    store = None if options.no_store else RunStore()
    bar = None if options.quiet else Bar(sys.stderr, options.steps)
    result = train(
        scenario,
        params,
        steps=options.steps,
        every=options.every,
        seed=options.seed,
        device=options.device,
        on_record=bar.update if bar is not None else None,
        store=store,
    )
    if bar is not None:
        bar.close()
    if options.out is not None:
        info = RunInfo(result.run_id, result.config, "finished")
        try:
            options.out.write_text(to_json(info, result.records, result.graph))
        except OSError as exc:
            raise GradLabError(f"Cannot write {options.out}: {exc.strerror}.") from exc
        print(f"wrote {options.out}", file=sys.stderr)
    last = result.records[-1]
    print(f"{scenario.name}: {len(result.records)} steps, final loss {last.loss:.6g}")
    metrics = {k: v for r in result.records for k, v in r.metrics.items()}  # each one's latest
    for name, value in metrics.items():
        print(f"  {name} {value:.6g}")
    return 0


class Bar:
    """A one-line progress bar with the loss and an ETA, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, stream: IO[str], total: int) -> None:
        self.stream = stream
        self.total = total
        self.start = time.monotonic()
        self.drawn = 0.0
        self.tty = stream.isatty()

    def update(self, record: StepRecord) -> None:
        """Show the step just done."""
        done = record.step + 1
        now = time.monotonic()
        if done < self.total and now - self.drawn < (0.1 if self.tty else 5.0):
            return
        self.drawn = now
        eta = (now - self.start) / done * (self.total - done)
        filled = round(self.WIDTH * done / self.total)
        line = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{self.total} "
            f"loss {record.loss:.4g} eta {eta:.0f}s"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
